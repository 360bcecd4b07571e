//! `nosa kola run`, `nosa kola-run`, `nosa kola list`: fronts on `nosa_build::kola`, which
//! selects, runs and reports the kola tests of the latest build.

use nosa_build::kola::{KolaRequest, list as list_tests, run as run_tests};

use crate::cli::{Cli, KolaListArgs, KolaRunArgs};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::open;
use crate::render::Progress;

/// `nosa kola list`.
pub fn list(cli: &Cli, a: &KolaListArgs) -> OpResult {
    let mut s = open(cli, None, a.arch.as_deref())?;
    s.expand_current()?;
    let rows = list_tests(&s);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(runtime)?);
    } else {
        for r in &rows {
            println!("{:<32} {:<8} {}", r.test, r.image, r.arch);
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
    let mut s = open(cli, Some(what), a.arch.as_deref())?;
    let req = KolaRequest {
        pattern: a.pattern.clone(),
        images: a.images.clone(),
        force: a.force,
        jobs: a.jobs,
    };
    let mut progress = Progress::new(a.json, s.workdir());
    let run = run_tests(&mut s, &req, &mut progress)?;
    let report_txt = progress.rel(&run.out_dir.join("reports/report.txt"));
    progress.finish(&run.report);
    if !a.json {
        for r in &run.rows {
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
        print!("{}", run.text);
    } else if !a.json {
        eprintln!("report: {report_txt}");
    }
    let bad = run.count("FAIL") + run.count("ERROR");
    if bad > 0 {
        for r in run.rows.iter().filter(|r| r.status == "FAIL") {
            eprintln!(
                "{} on {}: output in tmp/kola/{}/{}/{}/output.txt",
                r.test, r.image, r.arch, r.image, r.test
            );
        }
        return Err(Failure::Build(Some(miette::miette!(
            "{bad} of {} tests failed",
            run.rows.len()
        ))));
    }
    Ok(())
}
