//! `nosa build`, `build-fast` and `buildextend-*`: fronts on `nosa_build::os::build_os`, the
//! one path that composes, versions, commits and records an OS build (see that module).

use nosa_build::os::{OsRequest, build_os};
use nosa_build::prune::{Collect, Select};
use nosa_engine::BuildOptions;

use crate::cli::{BuildCmdArgs, BuildextendArgs, Cli};
use crate::exit::OpResult;
use crate::ops::graph::finish_build;
use crate::ops::noop::{Begun, Noop};
use crate::render::Progress;

/// `nosa build-fast`: `nosa build`, refusing to run if any package node would run
/// (nestos-assembler's build-fast reuses the previous build's packages; here the graph proves
/// that nothing of theirs changed).
pub fn build_fast(cli: &Cli, a: &BuildCmdArgs) -> OpResult {
    build_inner(cli, a, true)
}

/// `nosa build`.
pub fn build(cli: &Cli, a: &BuildCmdArgs) -> OpResult {
    build_inner(cli, a, false)
}

/// `nosa buildextend-<format>`: `nosa build <format>` (the OS is rebuilt only if its inputs
/// changed; the image joins the latest build when the tree is unchanged).
pub fn buildextend(cli: &Cli, a: &BuildextendArgs, format: &str) -> OpResult {
    let args = BuildCmdArgs {
        targets: vec![format.to_string()],
        common: a.common.clone(),
        force: false,
        version: None,
        skip_prune: true,
    };
    build_inner(cli, &args, false)
}

/// `nosa build` and `build-fast`. A no-op of the same selection as the last one, which left a
/// witness, is answered from it (as `nosa graph build` is: `crate::ops::noop`).
fn build_inner(cli: &Cli, a: &BuildCmdArgs, fast: bool) -> OpResult {
    let what = if fast {
        "nosa build-fast"
    } else {
        "nosa build"
    };
    // A versioned build is always a new one.
    let begun = Noop::begin(
        cli,
        what,
        what.trim_start_matches("nosa "),
        &a.targets,
        a.common.arch.as_deref(),
        a.common.json,
        !a.force && a.version.is_none(),
    )?;
    let Begun::Load(mut s, noop) = begun else {
        return Ok(());
    };
    let mut opts = BuildOptions::default();
    if let Some(j) = a.common.jobs {
        opts.jobs = j.max(1);
    }
    opts.witness = noop.draft();
    let remote = crate::ops::attach_remote(&mut s, &a.common.remote)?;
    let req = OsRequest {
        targets: a.targets.clone(),
        force: a.force,
        version: a.version.clone(),
        fast,
        now: nosa_build::os::now(),
    };
    let mut progress = Progress::new(a.common.json, s.workdir());
    let out = build_os(&mut s, &req, &opts, &mut progress)?;
    noop.recorded(&s, &out);
    crate::ops::report_remote(remote.as_deref());
    // As coreos-assembler does: a new build prunes the builds beyond keep-last-n (a no-op or
    // a failed build removes nothing; the witness a new build leaves is spoilt anyway).
    if !a.skip_prune && out.recorded.as_ref().is_some_and(|r| r.new) {
        let keep = crate::ops::store::keep_last_n(&s, None);
        // With --arch the graph holds one arch's nodes: the store is left to `nosa prune`.
        let collect = if a.common.arch.is_some() {
            Collect::Never
        } else {
            Collect::IfBuildsRemoved
        };
        let pruned = nosa_build::prune::prune(&s, &Select::KeepLast(keep), collect, false)?;
        for line in crate::ops::store::pruned_lines(&pruned, false, false) {
            eprintln!("prune: {line}");
        }
    }
    finish_build(*s, out.report, progress)
}
