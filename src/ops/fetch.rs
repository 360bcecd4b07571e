//! `nosa fetch`: re-pin every repository, then build the `fetch` target (repo sync, resolve,
//! one download per package) for every configured arch.

use nosa_build::pins::{Pin, Pins};
use nosa_engine::BuildOptions;
use nosa_repo::{RepoSource, probe_repomd};

use crate::cli::{Cli, FetchArgs};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::graph::finish_build;
use crate::render::Progress;
use nosa_build::staged::staged_build;

/// `nosa fetch`.
pub fn fetch(cli: &Cli, a: &FetchArgs) -> OpResult {
    let mut s = crate::ops::open(cli, Some("nosa fetch"), a.arch.as_deref())?;
    if s.ws.configs.is_empty() {
        return Err(Failure::Config(miette::miette!(
            help = "add a [nestos] table naming a nestos-config, or run `nosa init`",
            "this workdir has no [nestos] configuration: nothing to fetch"
        )));
    }
    let workdir = s.engine.workdir().to_path_buf();
    let mut changed = false;
    for c in &s.ws.configs {
        for repo in c.compose_repos() {
            let source = RepoSource::from_config(repo, c.arch.as_str()).in_workdir(&workdir);
            let digest = probe_repomd(&source).map_err(runtime)?;
            let pin = Pin {
                repomd: digest,
                baseurl: source.portable_baseurl(),
            };
            if Pins::save(&workdir, c.arch.as_str(), &repo.id, &pin).map_err(runtime)? {
                eprintln!(
                    "pinned {} ({}) at repomd {}",
                    repo.id,
                    c.arch,
                    digest.short()
                );
                changed = true;
            }
        }
    }
    if changed {
        s.reload()?;
    }
    let mut opts = BuildOptions::default();
    if let Some(j) = a.jobs {
        opts.jobs = j.max(1);
    }
    let mut progress = Progress::new(a.json, &workdir);
    let report = staged_build(&mut s, &["fetch".to_string()], &opts, false, &mut progress)?;
    finish_build(s, report, progress)
}
