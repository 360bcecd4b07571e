//! `nosa compress` and `nosa uncompress`: a build's images compressed in place by graph nodes
//! (`nosa_build::compress`); this front opens the locked workdir and renders.

use nosa_build::compress::{CompressRequest, Outcome, UncompressRequest};
use nosa_engine::BuildOptions;
use nosa_rules::compress::Codec;

use crate::cli::{Cli, CompressArgs, UncompressArgs};
use crate::exit::OpResult;
use crate::ops::graph::finish_build;
use crate::render::Progress;

fn options(jobs: Option<usize>) -> BuildOptions {
    let mut opts = BuildOptions::default();
    if let Some(j) = jobs {
        opts.jobs = j.max(1);
    }
    opts
}

/// Prints what happened to each artifact (stderr), then the nodes' closing line.
fn report(s: nosa_build::Session, out: Outcome, progress: Progress) -> OpResult {
    eprintln!("build {}:", out.build);
    for l in &out.lines {
        eprintln!("  {l}");
    }
    finish_build(s, out.report, progress)
}

/// `nosa compress`.
pub fn compress(cli: &Cli, a: &CompressArgs) -> OpResult {
    let s = crate::ops::open(cli, Some("nosa compress"), a.arch.as_deref())?;
    let req = CompressRequest {
        build: a.build.clone(),
        arch: a.arch.clone(),
        // clap allows only the codecs' names.
        codec: a.compressor.as_deref().and_then(Codec::parse),
        fast: a.fast,
        artifacts: a.artifacts.clone(),
    };
    let mut progress = Progress::new(a.json, s.workdir());
    let out = nosa_build::compress::compress(&s, &req, &options(a.jobs), &mut progress)?;
    report(s, out, progress)
}

/// `nosa uncompress`.
pub fn uncompress(cli: &Cli, a: &UncompressArgs) -> OpResult {
    let s = crate::ops::open(cli, Some("nosa uncompress"), a.arch.as_deref())?;
    let req = UncompressRequest {
        build: a.build.clone(),
        arch: a.arch.clone(),
        artifacts: a.artifacts.clone(),
    };
    let mut progress = Progress::new(a.json, s.workdir());
    let out = nosa_build::compress::uncompress(&s, &req, &options(a.jobs), &mut progress)?;
    report(s, out, progress)
}
