//! `cargo bench --bench noop`: wall time of a no-op `nosa graph build` against a no-op `ninja`
//! on the same generated graph (same input files, commands, outputs and dependencies), in two
//! shapes: `spread` (inputs in directories of 100, each step depending on 0-3 of the 300 before
//! it) and `flat` (every input in one directory, steps in chains of 10).
//!
//! Sizes come from `NOSA_BENCH_SIZES` (default `5000,30000` steps), timed runs per tool from
//! `NOSA_BENCH_RUNS` (default 7, at least 5). Generated workdirs live under
//! `target/tmp/nosa-bench/noop-<N>/{nosa,ninja}` and are reused while the generator is unchanged,
//! so only the first run pays for the full builds.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Rng, env_num, median, ms, require_tool, run_output, sizes, time_run, work_dir};

/// Bump when the generated graph changes, so stale workdirs are regenerated.
const GENERATOR: &str = "noop-gen-v2";

/// How the generated graph is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Inputs in directories of 100; each step depends on 0-3 of the 300 steps before it.
    Spread,
    /// Every input in one directory; steps in chains of 10 (each depends on the one before).
    Flat,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Spread => "spread",
            Shape::Flat => "flat",
        }
    }
}

struct Step {
    inputs: Vec<String>,
    deps: Vec<usize>,
    output: String,
    run: String,
}

fn input_path(shape: Shape, i: u64) -> String {
    match shape {
        Shape::Spread => format!("in/d{:03}/f{i}.txt", i / 100),
        Shape::Flat => format!("in/f{i}.txt"),
    }
}

fn output_path(i: usize) -> String {
    format!("out/d{:03}/s{i}.txt", i / 100)
}

/// A DAG of `n` steps: step `i` reads its own input file and, half the time, another one; its
/// dependencies follow `shape`; it writes one small file (a checksum of what it read, so
/// outputs stay small however deep the graph is).
fn steps(shape: Shape, n: u64) -> Vec<Step> {
    let mut rng = Rng::new(0x6e6f_7361 ^ n);
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let mut inputs = vec![input_path(shape, i as u64)];
        if rng.range(0, 1) == 1 {
            let other = input_path(shape, rng.range(0, n - 1));
            if !inputs.contains(&other) {
                inputs.push(other);
            }
        }
        let mut deps = Vec::new();
        if shape == Shape::Flat {
            if i % 10 != 0 {
                deps.push(i - 1);
            }
        } else if i > 0 {
            let lo = i.saturating_sub(300) as u64;
            for _ in 0..rng.range(0, 3) {
                let d = rng.range(lo, i as u64 - 1) as usize;
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
            deps.sort_unstable();
        }
        let output = output_path(i);
        let reads: Vec<String> = inputs
            .iter()
            .cloned()
            .chain(deps.iter().map(|&d| output_path(d)))
            .collect();
        let run = format!(
            "mkdir -p out/d{:03} && cat {} | cksum > {output}",
            i / 100,
            reads.join(" ")
        );
        out.push(Step {
            inputs,
            deps,
            output,
            run,
        });
    }
    out
}

fn generate(dir: &Path, shape: Shape, n: u64) {
    let stamp = dir.join("generated");
    let want = format!("{GENERATOR} shape={} n={n}\n", shape.name());
    if fs_err::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return;
    }
    eprintln!("generating {} ({n} steps)", dir.display());
    if dir.exists() {
        fs_err::remove_dir_all(dir).expect("remove stale bench workdir");
    }
    let mut rng = Rng::new(n);
    for side in ["nosa", "ninja"] {
        fs_err::create_dir_all(dir.join(side)).expect("mkdir");
    }
    for i in 0..n {
        let rel = input_path(shape, i);
        let mut body = format!("input {i}\n");
        for _ in 0..rng.range(1, 16) {
            let _ = writeln!(body, "{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        }
        for side in ["nosa", "ninja"] {
            let p = dir.join(side).join(&rel);
            fs_err::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs_err::write(&p, &body).expect("write input");
        }
    }
    let steps = steps(shape, n);
    let mut toml = String::new();
    let mut ninja = String::from("rule step\n  command = $cmd\n\n");
    for (i, s) in steps.iter().enumerate() {
        let list = |v: &mut dyn Iterator<Item = String>| {
            v.map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(toml, "[[step]]\nname = \"s{i}\"");
        let _ = writeln!(toml, "inputs = [{}]", list(&mut s.inputs.iter().cloned()));
        let _ = writeln!(toml, "run = {:?}", s.run);
        let _ = writeln!(toml, "outputs = [{:?}]", s.output);
        if !s.deps.is_empty() {
            let _ = writeln!(
                toml,
                "deps = [{}]",
                list(&mut s.deps.iter().map(|d| format!("s{d}")))
            );
        }
        toml.push('\n');
        let reads: Vec<String> = s
            .inputs
            .iter()
            .cloned()
            .chain(s.deps.iter().map(|&d| output_path(d)))
            .collect();
        let _ = writeln!(
            ninja,
            "build {}: step {}\n  cmd = {}",
            s.output,
            reads.join(" "),
            s.run
        );
    }
    fs_err::write(dir.join("nosa/nestos.build.toml"), toml).expect("write build file");
    fs_err::write(dir.join("ninja/build.ninja"), ninja).expect("write build.ninja");
    fs_err::write(&stamp, want).expect("write stamp");
}

fn nosa(dir: &Path, json: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nosa"));
    c.arg("-C").arg(dir).args(["graph", "build", "-j", "2"]);
    if json {
        c.arg("--json");
    }
    c
}

fn ninja(dir: &Path) -> Command {
    let mut c = Command::new("ninja");
    c.arg("-C").arg(dir).args(["-j", "2"]);
    c
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    require_tool("ninja", "ninja-build");
    let runs = env_num("NOSA_BENCH_RUNS", 7).max(5);
    let sizes = sizes("NOSA_BENCH_SIZES", &[5000, 30000]);
    let mut table = Vec::new();
    for (shape, n) in [Shape::Spread, Shape::Flat]
        .into_iter()
        .flat_map(|sh| sizes.iter().map(move |&n| (sh, n)))
    {
        let dir = work_dir(&format!("noop-{}-{n}", shape.name()));
        generate(&dir, shape, n);
        let (nd, jd) = (dir.join("nosa"), dir.join("ninja"));

        eprintln!("full builds of {n} steps (-j 2; skipped if already built)");
        let full_nosa = time_run(&mut nosa(&nd, false));
        let full_ninja = time_run(&mut ninja(&jd));
        eprintln!(
            "  full build: nosa {:.1} s, ninja {:.1} s",
            full_nosa.as_secs_f64(),
            full_ninja.as_secs_f64()
        );
        // Outputs must agree, or the comparison is meaningless.
        let mut rng = Rng::new(7);
        for _ in 0..20 {
            let rel = output_path(rng.range(0, n - 1) as usize);
            let a = fs_err::read(nd.join(&rel)).expect("nosa output");
            let b = fs_err::read(jd.join(&rel)).expect("ninja output");
            assert_eq!(a, b, "{rel} differs between nosa and ninja");
        }
        // Files written within the stat cache's racy window are rehashed, not trusted: let
        // the full build's outputs age past it, as they would between real builds.
        std::thread::sleep(Duration::from_millis(2100));

        // Untimed warm-up runs, which also check that nothing reruns.
        let summary = run_output(&mut nosa(&nd, true));
        let last = summary.lines().last().unwrap_or_default();
        assert!(
            last.contains("\"ran\":0,") && last.contains("\"failed\":0,"),
            "nosa no-op build ran something: {}",
            &last[..last.len().min(300)]
        );
        let out = run_output(&mut ninja(&jd));
        assert!(out.contains("no work to do"), "ninja no-op did work: {out}");

        let (mut tn, mut tj, mut tnj) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            tn.push(time_run(&mut nosa(&nd, false)));
            tnj.push(time_run(&mut nosa(&nd, true)));
            tj.push(time_run(&mut ninja(&jd)));
        }
        let (mn, mnj, mj) = (median(&mut tn), median(&mut tnj), median(&mut tj));
        let ratio = mn.as_secs_f64() / mj.as_secs_f64();
        println!(
            "noop {} N={n}: nosa {} | nosa --json {} | ninja {} | nosa/ninja {ratio:.2}x \
             (median of {runs})",
            shape.name(),
            ms(mn),
            ms(mnj),
            ms(mj)
        );
        table.push((shape.name(), n, mn, mnj, mj, ratio));
        if std::env::var_os("NOSA_TIMINGS").is_some() {
            let mut c = nosa(&nd, false);
            let out = c.output().expect("nosa");
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    println!();
    println!("| shape | steps | nosa no-op | nosa --json no-op | ninja no-op | nosa/ninja |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (shape, n, a, b, c, r) in table {
        println!(
            "| {shape} | {n} | {} | {} | {} | {r:.2}x |",
            ms(a),
            ms(b),
            ms(c)
        );
    }
}
