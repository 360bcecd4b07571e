//! `nosa prune`, `nosa clean` and `nosa list`: what the store and builds/ keep, what may go,
//! and what is there.

use nosa_build::prune::{Collect, Pruned, Select};

use crate::cli::{CleanArgs, Cli, ListArgs, PruneArgs, TagDeleteArgs, TagListArgs, TagUpdateArgs};
use crate::exit::{OpResult, runtime};
use crate::ops::{find_workdir, lock, store_dir};

/// `nosa prune`: builds beyond the newest N (or those named), then the store's garbage
/// (`nosa_build::prune`).
pub fn prune(cli: &Cli, a: &PruneArgs) -> OpResult {
    let s = crate::ops::open(cli, Some("nosa prune"), None)?;
    let select = if a.build.is_empty() {
        Select::KeepLast(keep_last_n(&s, a.keep_last_n))
    } else {
        Select::Builds(a.build.clone())
    };
    let pruned = nosa_build::prune::prune(&s, &select, Collect::Always, a.dry_run)?;
    if a.json {
        let mut v = serde_json::to_value(&pruned.store).map_err(runtime)?;
        v["dry_run"] = a.dry_run.into();
        v["builds"] = serde_json::to_value(&pruned.builds).map_err(runtime)?;
        println!("{v}");
    } else {
        for line in pruned_lines(&pruned, a.dry_run, !a.build.is_empty()) {
            println!("{line}");
        }
    }
    Ok(())
}

/// The builds to keep: the flag, else the build file's keep-last-n, else 3.
pub fn keep_last_n(s: &nosa_build::Session, flag: Option<u32>) -> usize {
    flag.or_else(|| s.ws.file.nestos.as_ref().and_then(|n| n.keep_last_n))
        .unwrap_or(nosa_config::DEFAULT_KEEP_LAST_N) as usize
}

/// What a prune removed (or would), a line each.
pub fn pruned_lines(p: &Pruned, dry_run: bool, named: bool) -> Vec<String> {
    let plan = &p.builds;
    let mut lines = Vec::new();
    if !plan.remove.is_empty() {
        lines.push(format!(
            "{} {} build{} ({}), keeping {}{}{}",
            if dry_run { "would remove" } else { "removed" },
            plan.remove.len(),
            if plan.remove.len() == 1 { "" } else { "s" },
            plan.remove.join(", "),
            if named { "" } else { "the newest " },
            plan.kept.len(),
            match plan.tagged.len() {
                0 => String::new(),
                n => format!(" and {n} tagged"),
            }
        ));
    }
    if let Some(report) = &p.store {
        let verb = if dry_run { "would free" } else { "freed" };
        lines.push(format!(
            "{verb} {} in {} blobs, {} trees, {} action records; kept {} action records",
            human_bytes(report.freed_bytes),
            report.removed_blobs,
            report.removed_trees,
            report.removed_actions,
            report.kept_actions
        ));
    }
    lines
}

/// `nosa clean`: removes builds/ and tmp/; with `--all` the store too.
pub fn clean(cli: &Cli, a: &CleanArgs) -> OpResult {
    let (workdir, _) = find_workdir(cli)?;
    let _lock = lock(cli, &workdir, "nosa clean")?;
    let mut dirs = vec![workdir.join("builds"), workdir.join("tmp")];
    if a.all {
        dirs.push(store_dir(&workdir));
    }
    for d in dirs {
        if d.exists() {
            fs_err::remove_dir_all(&d).map_err(runtime)?;
            eprintln!(
                "removed {}",
                d.strip_prefix(&workdir).unwrap_or(&d).display()
            );
        }
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `nosa list`: the builds of builds/builds.json, newest first (read-only: no lock).
pub fn list(cli: &Cli, a: &ListArgs) -> OpResult {
    let (workdir, _) = find_workdir(cli)?;
    let builds = nosa_build::BuildsDir::of(&workdir).list();
    let now = nosa_build::os::now() as i64;
    let age = |t: &Option<String>| {
        t.as_deref()
            .and_then(nosa_config::BuildDate::parse_rfc3339)
            .map(|d| (now - d.to_unix()).max(0))
    };
    if a.json {
        let v: Vec<serde_json::Value> = builds
            .iter()
            .map(|b| {
                let mut v = serde_json::to_value(b).expect("a build summary is JSON");
                v["age_seconds"] = age(&b.timestamp).into();
                v
            })
            .collect();
        println!("{}", serde_json::json!({ "builds": v }));
        return Ok(());
    }
    if builds.is_empty() {
        eprintln!("no builds (builds/builds.json is missing or empty)");
    }
    for b in &builds {
        let when = match (&b.timestamp, age(&b.timestamp)) {
            (Some(t), Some(s)) => format!("{t}, {} ago", human_age(s)),
            (Some(t), None) => t.clone(),
            _ => "time unknown".into(),
        };
        let tags = if b.tags.is_empty() {
            String::new()
        } else {
            format!(" [tags: {}]", b.tags.join(", "))
        };
        let config = match (&b.config_gitrev, b.config_dirty) {
            (Some(rev), Some(true)) => format!(" config {rev} (dirty)"),
            (Some(rev), _) => format!(" config {rev}"),
            _ => String::new(),
        };
        println!("{} ({}) {when}{config}{tags}", b.id, b.arches.join(", "));
        for (arch, images) in &b.artifacts {
            let list: Vec<String> = images
                .iter()
                .map(|(name, f)| format!("{name} {}", human_bytes(f.size)))
                .collect();
            println!("  {arch}: {}", list.join(", "));
        }
    }
    Ok(())
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// A refused tag edit: exit 2 for a mistake in the arguments, 1 for a failed write.
fn tag_failure(e: nosa_build::TagError) -> crate::exit::Failure {
    match e {
        nosa_build::TagError::Io(_) => runtime(e),
        e => crate::exit::Failure::Config(miette::miette!(
            help = "`nosa list` shows the builds, `nosa tag list` the tags",
            "{e}"
        )),
    }
}

/// `nosa tag update`.
pub fn tag_update(cli: &Cli, a: &TagUpdateArgs) -> OpResult {
    let (workdir, _) = find_workdir(cli)?;
    let _lock = lock(cli, &workdir, "nosa tag update")?;
    let builds = nosa_build::BuildsDir::of(&workdir);
    let build = match &a.build {
        Some(b) => b.clone(),
        None => builds
            .latest()
            .ok_or_else(|| tag_failure(nosa_build::TagError::NoIndex))?,
    };
    let now = nosa_cache::time::rfc3339(nosa_build::os::now());
    match builds
        .tag_update(&a.tag, &build, a.description.as_deref(), a.force, &now)
        .map_err(tag_failure)?
    {
        Some(old) if old != build => eprintln!("moved tag {} from {old} to {build}", a.tag),
        Some(_) => eprintln!("tag {} names {build}, as before", a.tag),
        None => eprintln!("tagged {build} {}", a.tag),
    }
    Ok(())
}

/// `nosa tag delete`.
pub fn tag_delete(cli: &Cli, a: &TagDeleteArgs) -> OpResult {
    let (workdir, _) = find_workdir(cli)?;
    let _lock = lock(cli, &workdir, "nosa tag delete")?;
    let target = nosa_build::BuildsDir::of(&workdir)
        .tag_delete(&a.tag)
        .map_err(tag_failure)?;
    eprintln!("deleted tag {} (it named {target})", a.tag);
    Ok(())
}

/// `nosa tag list`.
pub fn tag_list(cli: &Cli, a: &TagListArgs) -> OpResult {
    let (workdir, _) = find_workdir(cli)?;
    let tags = nosa_build::BuildsDir::of(&workdir).tag_list();
    if a.json {
        println!("{}", serde_json::json!({ "tags": tags }));
        return Ok(());
    }
    if tags.is_empty() {
        eprintln!("no tags");
    }
    for t in &tags {
        let d = t
            .description
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        println!("{}\t{}\t{}{d}", t.name, t.target, t.created);
    }
    Ok(())
}
