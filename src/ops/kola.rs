//! `nosa kola run`, `nosa kola-run`, `nosa kola list`: select the `kola:` nodes of the latest
//! build's images, build them (each test boots its image once; a result cached for the same
//! image and test is reported, not rerun), and write the report under `tmp/kola/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nosa_engine::{BuildOptions, Planned, Status};
use nosa_image::kola::KolaResult;
use serde_json::{Value as J, json};

use crate::cli::{Cli, KolaListArgs, KolaRunArgs};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::graph::staged_build;
use crate::ops::{Session, latest_build_id, read_json};
use crate::render::Progress;

/// A kola node id's parts: arch, image, test.
fn parts(id: &str) -> Option<(&str, &str, &str)> {
    let rest = id.strip_prefix("kola:")?;
    let (arch, rest) = rest.split_once(':')?;
    let (image, test) = rest.split_once(':')?;
    Some((arch, image, test))
}

/// The latest build's id and, per arch, the image formats it recorded.
fn latest_build(s: &Session) -> Option<(String, BTreeMap<String, Vec<String>>)> {
    let builds = s.engine.workdir().join("builds");
    let id = latest_build_id(s.engine.workdir())?;
    let mut images = BTreeMap::new();
    for c in &s.ws.configs {
        let arch = c.arch.to_string();
        let formats: Vec<String> = read_json(&builds.join(&id).join(&arch).join("meta.json"))
            .and_then(|m| m["images"].as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default();
        images.insert(arch, formats);
    }
    Some((id, images))
}

/// One line of the report.
struct Row {
    test: String,
    image: String,
    arch: String,
    status: &'static str,
    detail: String,
    result: Option<KolaResult>,
    node: String,
}

/// `nosa kola list`.
pub fn list(cli: &Cli, a: &KolaListArgs) -> OpResult {
    let mut s = Session::open(cli, None, a.arch.as_deref())?;
    s.expand_current()?;
    let ids = s.ws.targets.get("kola").cloned().unwrap_or_default();
    let mut rows = Vec::new();
    for id in &ids {
        if let Some((arch, image, test)) = parts(id) {
            let kind =
                s.ws.graph
                    .index_of(id)
                    .map(|i| s.ws.graph.node(i).rule.kind().to_string())
                    .unwrap_or_default();
            rows.push(
                json!({"test": test, "image": image, "arch": arch, "node": id,
                             "runnable": kind == "kola"}),
            );
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(runtime)?);
    } else {
        for r in &rows {
            println!(
                "{:<32} {:<8} {}",
                r["test"].as_str().unwrap_or(""),
                r["image"].as_str().unwrap_or(""),
                r["arch"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// `nosa kola run [PATTERN]` (and `kola-run`, which also prints the summary report).
pub fn run(cli: &Cli, a: &KolaRunArgs, summary: bool) -> OpResult {
    let what = if summary {
        "nosa kola-run"
    } else {
        "nosa kola run"
    };
    let mut s = Session::open(cli, Some(what), a.arch.as_deref())?;
    s.expand_current()?;
    let Some((build_id, built)) = latest_build(&s) else {
        return Err(Failure::Build(Some(miette::miette!(
            help = "run `nosa build qemu` (or `nosa build qemu metal metal4k`) first",
            "no build to test: builds/builds.json lists none"
        ))));
    };
    for img in &a.images {
        if nosa_image::ImageFormat::parse(img).is_none() {
            return Err(Failure::Config(miette::miette!(
                help = "use one of qemu, metal, metal4k",
                "--image {img}: not an image kola boots"
            )));
        }
    }
    let pattern = a.pattern.clone().unwrap_or_else(|| "*".into());
    let stream =
        s.ws.configs
            .first()
            .and_then(|c| c.treefile.variables.get("stream"))
            .and_then(J::as_str)
            .map(str::to_string);
    let today = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let d = nosa_config::BuildDate::from_unix(now as i64);
        format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
    };
    // arch -> its denylist entries (pattern, tracker), read once.
    let denylists: BTreeMap<String, Vec<(String, String)>> =
        s.ws.configs
            .iter()
            .map(|c| {
                let arch = c.arch.to_string();
                let deny = nosa_rules::kola::denylist(c, &arch, stream.as_deref(), &today);
                (arch, deny)
            })
            .collect();
    let mut rows: Vec<Row> = Vec::new();
    let mut selected: Vec<String> = Vec::new();
    let ids = s.ws.targets.get("kola").cloned().unwrap_or_default();
    for id in &ids {
        let Some((arch, image, test)) = parts(id) else {
            continue;
        };
        if !nosa_rules::kola::name_matches(&pattern, test) {
            continue;
        }
        let wanted_image = if a.images.is_empty() {
            built
                .get(arch)
                .is_some_and(|f| f.iter().any(|f| f == image))
        } else {
            a.images.iter().any(|i| i == image)
        };
        if !wanted_image {
            continue;
        }
        let mut row = Row {
            test: test.into(),
            image: image.into(),
            arch: arch.into(),
            status: "",
            detail: String::new(),
            result: None,
            node: id.clone(),
        };
        if let Some((p, tracker)) = denylists
            .get(arch)
            .into_iter()
            .flatten()
            .find(|(p, _)| nosa_rules::kola::name_matches(p, test))
        {
            row.status = "SKIP";
            row.detail = format!("denylisted ({p}) {tracker}").trim().to_string();
            rows.push(row);
            continue;
        }
        selected.push(id.clone());
        rows.push(row);
    }
    if selected.is_empty() {
        return Err(Failure::Config(miette::miette!(
            help = "`nosa kola list` shows the tests; images not in the latest build need `nosa build <image>` (or pass --image)",
            "no test matches {pattern:?} on the images of build {build_id}"
        )));
    }

    // The images must be the latest build's: kola tests builds, it does not make them.
    let image_nodes: Vec<usize> = selected
        .iter()
        .filter_map(|id| parts(id))
        .filter_map(|(arch, image, _)| s.ws.graph.index_of(&format!("image:{arch}:{image}")))
        .collect();
    let plan = s.engine.plan(&s.ws.graph, &image_nodes).map_err(runtime)?;
    let stale: Vec<String> = plan
        .iter()
        .filter(|e| e.id.starts_with("image:") && e.planned != Planned::UpToDate)
        .map(|e| e.id.clone())
        .collect();
    if !stale.is_empty() {
        return Err(Failure::Build(Some(miette::miette!(
            help = "run `nosa build qemu metal metal4k` (the images you test) first",
            "these images are not up to date with the config: {}",
            stale.join(", ")
        ))));
    }

    let workdir = s.engine.workdir().to_path_buf();
    let opts = BuildOptions {
        jobs: a.jobs.unwrap_or(1).max(1),
        keep_going: true,
        ..BuildOptions::default()
    };
    let mut progress = Progress::new(a.json, &workdir);
    let report = staged_build(&mut s, &selected, &opts, a.force, &mut progress)?;
    let report_txt = progress.rel(&workdir.join("tmp/kola/reports/report.txt"));
    progress.finish(&report);

    let state = s.engine.state();
    let out_dir = workdir.join("tmp/kola");
    if out_dir.exists() {
        fs_err::remove_dir_all(&out_dir).map_err(runtime)?;
    }
    for row in rows.iter_mut().filter(|r| r.status.is_empty()) {
        let node = report.nodes.iter().find(|n| n.id == row.node);
        match node.map(|n| n.status) {
            Some(Status::Ran | Status::Cached | Status::Cutoff) => {
                let r: Option<KolaResult> = s
                    .output_file(&state, &row.node, "result.json")
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let dir = out_dir.join(&row.arch).join(&row.image).join(&row.test);
                fs_err::create_dir_all(&dir).map_err(runtime)?;
                for f in ["result.json", "output.txt", "console.txt"] {
                    if let Some(b) = s.output_file(&state, &row.node, f) {
                        fs_err::write(dir.join(f), b).map_err(runtime)?;
                    }
                }
                let how = if node.is_some_and(|n| n.status == Status::Ran) {
                    "ran"
                } else {
                    "cached"
                };
                match r {
                    Some(r) => {
                        row.status = if r.status == "PASS" { "PASS" } else { "FAIL" };
                        row.detail = format!("{} {} s, {how}", r.firmware, r.secs);
                        row.result = Some(r);
                    }
                    None => {
                        row.status = "ERROR";
                        row.detail = "the node's output has no result.json".into();
                    }
                }
            }
            Some(Status::Failed) => {
                row.status = "ERROR";
                row.detail = node
                    .and_then(|n| n.error.clone())
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
            }
            _ => {
                row.status = "ERROR";
                row.detail = "not run (a dependency failed)".into();
            }
        }
    }

    let count = |st: &str| rows.iter().filter(|r| r.status == st).count();
    let mut text = format!("nosa kola report: build {build_id}\n\n");
    for r in &rows {
        let _ = writeln!(
            text,
            "{:<5}  {:<32} {:<8} {:<7} {}",
            r.status, r.test, r.image, r.arch, r.detail
        );
    }
    let _ = writeln!(
        text,
        "\nSummary: {} tests: {} PASS, {} FAIL, {} ERROR, {} SKIP",
        rows.len(),
        count("PASS"),
        count("FAIL"),
        count("ERROR"),
        count("SKIP")
    );
    let reports = out_dir.join("reports");
    fs_err::create_dir_all(&reports).map_err(runtime)?;
    fs_err::write(reports.join("report.txt"), &text).map_err(runtime)?;
    let json_rows: Vec<J> = rows
        .iter()
        .map(|r| {
            json!({"test": r.test, "image": r.image, "arch": r.arch, "status": r.status,
                   "detail": r.detail, "node": r.node, "result": r.result})
        })
        .collect();
    let rj = json!({"build": build_id, "tests": json_rows, "summary": {
        "total": rows.len(), "pass": count("PASS"), "fail": count("FAIL"),
        "error": count("ERROR"), "skip": count("SKIP")}});
    fs_err::write(
        reports.join("report.json"),
        serde_json::to_vec_pretty(&rj).map_err(runtime)?,
    )
    .map_err(runtime)?;

    if !a.json {
        for r in &rows {
            let mark = match r.status {
                "PASS" => "PASS ",
                "SKIP" => "SKIP ",
                "FAIL" => "FAIL ",
                _ => "ERROR",
            };
            eprintln!("{mark} {} on {} ({}) {}", r.test, r.image, r.arch, r.detail);
        }
    }
    if summary {
        print!("{text}");
    } else if !a.json {
        eprintln!("report: {report_txt}");
    }
    if count("FAIL") + count("ERROR") > 0 {
        for r in rows.iter().filter(|r| r.status == "FAIL") {
            eprintln!(
                "{} on {}: output in tmp/kola/{}/{}/{}/output.txt",
                r.test, r.image, r.arch, r.image, r.test
            );
        }
        return Err(Failure::Build(Some(miette::miette!(
            "{} of {} tests failed",
            count("FAIL") + count("ERROR"),
            rows.len()
        ))));
    }
    Ok(())
}
