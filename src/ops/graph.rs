//! `nosa graph build|plan|why|show`.

use nosa_build::Session;
use nosa_build::os::{OsRequest, build_os, selects_os};
use nosa_build::staged::staged_build;
use nosa_engine::{BuildOptions, BuildReport, Planned, Status};

use crate::cli::{BuildArgs, Cli, OutputArgs, PlanArgs, ShowArgs, WhyArgs};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::noop::{Begun, Noop};
use crate::ops::{open, open_with};
use crate::render::Progress;

/// `nosa graph build`.
///
/// A no-op build of the same selection as the last build, when that build found every node
/// cached and left a witness (`Engine::check_witness`), is answered from the witness: every
/// path it observed is stat'ed, and if none changed, every node is reported cached without
/// loading the graph. Otherwise, the normal build runs, and leaves a witness if it turns out
/// to be a no-op (see `crate::ops::noop`).
pub fn build(cli: &Cli, a: &BuildArgs) -> OpResult {
    let begun = Noop::begin(
        cli,
        "nosa graph build",
        "graph build",
        &a.select.targets,
        a.select.arch.as_deref(),
        a.json,
        !a.force,
    )?;
    let Begun::Load(mut s, noop) = begun else {
        return Ok(());
    };
    let mut opts = BuildOptions::default();
    if let Some(j) = a.jobs {
        opts.jobs = j.max(1);
    }
    opts.keep_going = a.keep_going;
    opts.witness = noop.draft();
    let remote = crate::ops::attach_remote(&mut s, &a.remote)?;
    let mut progress = Progress::new(a.json, s.engine.workdir());
    // Targets that need a versioned commit build the OS, exactly as `nosa build` does.
    let names = s.ws.target_names(&a.select.targets);
    if selects_os(&s, &names) {
        let req = OsRequest {
            targets: names,
            force: a.force,
            now: nosa_build::os::now(),
            ..OsRequest::default()
        };
        let out = build_os(&mut s, &req, &opts, &mut progress)?;
        noop.recorded(&s, &out);
        crate::ops::report_remote(remote.as_deref());
        return finish_build(*s, out.report, progress);
    }
    let report = staged_build(&mut s, &a.select.targets, &opts, a.force, &mut progress)?;
    noop.seal(&s, &report, None);
    crate::ops::report_remote(remote.as_deref());
    finish_build(*s, report, progress)
}

/// Prints the end of a build and turns failures into exit code 1.
pub fn finish_build(s: Session, report: BuildReport, progress: Progress) -> OpResult {
    let failed: Vec<_> = report
        .nodes
        .iter()
        .filter(|n| n.status == Status::Failed)
        .map(|n| {
            let log = n
                .log
                .as_ref()
                .map(|l| format!(" (log: {})", progress.rel(l)))
                .unwrap_or_default();
            format!("{}: {}{log}", n.id, n.error.as_deref().unwrap_or("failed"))
        })
        .collect();
    progress.finish(&report);
    // The process exits next: freeing a large graph and report piece by piece would only cost
    // time (tens of milliseconds at 30,000 nodes). The workdir lock is released at exit.
    std::mem::forget(report);
    std::mem::forget(s);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Build(Some(miette::miette!(
            help = "`nosa graph why NODE` explains what changed; the log has the output",
            "build failed: {}",
            failed.join("; ")
        ))))
    }
}

/// `nosa graph plan`.
pub fn plan(cli: &Cli, a: &PlanArgs) -> OpResult {
    let mut s = open_with(cli, None, a.select.arch.as_deref(), false)?;
    s.expand_current()?;
    let targets = s.targets(&a.select.targets)?;
    let plan = s.engine.plan(&s.ws.graph, &targets).map_err(runtime)?;
    let count = |f: fn(&Planned) -> bool| plan.iter().filter(|e| f(&e.planned)).count();
    let run = count(|p| matches!(p, Planned::Run { .. }));
    let may = count(|p| matches!(p, Planned::MayRun { .. }));
    let fail = count(|p| matches!(p, Planned::Fail { .. }));
    let ok = count(|p| matches!(p, Planned::UpToDate));
    if a.json {
        let v = serde_json::json!({
            "nodes": plan, "run": run, "may_run": may, "fail": fail, "up_to_date": ok,
        });
        println!("{v}");
        return Ok(());
    }
    for e in &plan {
        match &e.planned {
            Planned::UpToDate => println!("up-to-date  {}", e.id),
            Planned::Run { reasons } => {
                println!("run         {}", e.id);
                for r in reasons {
                    println!("              {r}");
                }
            }
            Planned::MayRun { reasons } => {
                let deps: Vec<String> = reasons
                    .iter()
                    .filter_map(|r| r.dependency().map(str::to_string))
                    .collect();
                println!("may-run     {} (after {})", e.id, deps.join(", "));
            }
            Planned::Fail { error } => println!("fail        {}: {error}", e.id),
        }
    }
    eprintln!(
        "{} nodes: {run} to run, {may} may run, {ok} up to date{}",
        plan.len(),
        if fail > 0 {
            format!(", {fail} would fail")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `nosa graph why`.
pub fn why(cli: &Cli, a: &WhyArgs) -> OpResult {
    let mut s = open_with(cli, None, a.arch.as_deref(), false)?;
    s.expand_current()?;
    let i = s.targets(std::slice::from_ref(&a.node))?[0];
    let ex = s.engine.why(&s.ws.graph, i).map_err(runtime)?;
    if a.json {
        println!("{}", serde_json::to_string(&ex).map_err(runtime)?);
        return Ok(());
    }
    let headline = match ex.state.as_str() {
        "would-run" => "would run now",
        "may-run" => "may run now (a dependency will run)",
        "ran" => "ran in the last build",
        "failed" => "failed in the last build",
        "cached" => "was cached in the last build: nothing it reads changed",
        "cutoff" => "was cut off in the last build: a dependency reran with the same output",
        "skipped" => "was skipped in the last build (a dependency failed)",
        "remote" => "came from the remote cache in the last build (not in the local store)",
        "would-fail" => "would fail now",
        _ => "is up to date",
    };
    println!("{} {headline}", ex.node);
    for r in &ex.reasons {
        println!("  {r}");
    }
    if ex.state == "ran"
        && let Some(how) = &ex.how
    {
        println!("  {how}");
    }
    let own: Vec<_> = ex
        .root_causes
        .iter()
        .filter(|c| c.node != ex.node || !ex.reasons.contains(&c.reason))
        .collect();
    if !own.is_empty() {
        println!("root causes:");
        for c in own {
            println!("  {}: {}", c.node, c.reason);
        }
    }
    Ok(())
}

/// `nosa graph show`.
pub fn show(cli: &Cli, a: &ShowArgs) -> OpResult {
    let mut s = open_with(cli, None, a.arch.as_deref(), false)?;
    s.expand_current()?;
    let g = &s.ws.graph;
    if a.dot {
        println!("digraph nosa {{");
        println!("  rankdir=LR;");
        for n in g.nodes() {
            println!("  {:?} [label={:?}];", n.id, n.id);
            for &d in &n.deps {
                println!("  {:?} -> {:?};", g.node(d).id, n.id);
            }
        }
        println!("}}");
    } else {
        for n in g.nodes() {
            let deps: Vec<&str> = n.deps.iter().map(|&d| g.node(d).id.as_str()).collect();
            if deps.is_empty() {
                println!("{}", n.id);
            } else {
                println!("{} <- {}", n.id, deps.join(", "));
            }
        }
    }
    Ok(())
}

/// `nosa graph output NODE`.
pub fn output(cli: &Cli, a: &OutputArgs) -> OpResult {
    let mut s = open(cli, None, None)?;
    s.expand_current()?;
    let i = s.targets(std::slice::from_ref(&a.node))?[0];
    let id = &s.ws.graph.node(i).id;
    let state = s.engine.state();
    let Some(good) = state.nodes.get(id).and_then(|n| n.good) else {
        return Err(Failure::Build(Some(miette::miette!(
            help = format!("build it first: `nosa graph build {id}`"),
            "{id} has no output yet"
        ))));
    };
    let tree = s.engine.store().get_tree(&good.tree).map_err(runtime)?;
    if a.json {
        let v = serde_json::json!({
            "node": id, "tree": good.tree.to_hex(), "output": good.output.to_hex(),
            "entries": tree.entries,
        });
        println!("{v}");
        return Ok(());
    }
    for e in &tree.entries {
        match &e.kind {
            nosa_cache::EntryKind::File { digest, size } => {
                println!("{:04o} {:>10} {} {}", e.mode, size, digest.short(), e.path)
            }
            nosa_cache::EntryKind::Symlink { target } => {
                println!(
                    "{:04o} {:>10} {:12} {} -> {target}",
                    e.mode, "", "link", e.path
                )
            }
            nosa_cache::EntryKind::Dir => {
                println!("{:04o} {:>10} {:12} {}/", e.mode, "", "dir", e.path)
            }
        }
    }
    Ok(())
}
