//! `cargo bench --bench hash`: throughput of nosa's input hashing (cold stat cache, warm page
//! cache) against `b3sum` over the same 1 GiB tree of mixed file sizes.
//!
//! The tree is generated once from a seeded PRNG under `target/tmp/nosa-bench/hash/tree` and
//! reused. `NOSA_BENCH_RUNS` sets the timed runs per tool (default 5).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Rng, env_num, median, require_tool, work_dir};
use nosa_cache::StatCache;
use nosa_engine::InputSpec;
use nosa_engine::inputs::resolve_inputs;

/// Bump when the generated tree changes.
const GENERATOR: &str = "hash-gen-v1";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Writes the tree: ~330 MiB of 1-64 KiB files, ~310 MiB of 1-10 MiB files and three files of
/// 100-156 MiB (1 GiB in all).
fn generate(workdir: &Path) {
    let stamp = workdir.join("generated");
    if fs_err::read_to_string(&stamp).ok().as_deref() == Some(GENERATOR) {
        return;
    }
    eprintln!("generating {}/tree (1 GiB, once)", workdir.display());
    let tree = workdir.join("tree");
    if tree.exists() {
        fs_err::remove_dir_all(&tree).expect("remove stale tree");
    }
    let mut rng = Rng::new(0xb3);
    let mut buf = vec![0u8; 4 * MIB as usize];
    let mut write = |path: PathBuf, size: u64, rng: &mut Rng| {
        fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut f = fs_err::File::create(&path).expect("create");
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            std::io::Write::write_all(&mut f, &buf[..n]).expect("write");
            left -= n as u64;
        }
    };
    let mut total = 0;
    let mut i = 0;
    while total < 330 * MIB {
        let size = rng.range(KIB, 64 * KIB);
        write(
            tree.join(format!("small/{:03}/f{i}.bin", i / 100)),
            size,
            &mut rng,
        );
        total += size;
        i += 1;
    }
    let mut total = 0;
    let mut i = 0;
    while total < 310 * MIB {
        let size = rng.range(MIB, 10 * MIB);
        write(tree.join(format!("medium/m{i}.bin")), size, &mut rng);
        total += size;
        i += 1;
    }
    for (i, size) in [100 * MIB, 128 * MIB, 156 * MIB].into_iter().enumerate() {
        write(tree.join(format!("large/l{i}.bin")), size, &mut rng);
    }
    fs_err::write(&stamp, GENERATOR).expect("stamp");
}

/// Runs nosa's input resolution over `tree` with a cold stat cache.
fn nosa_hash(workdir: &Path) -> (Duration, HashMap<String, String>) {
    let specs = [vec![InputSpec::parse("tree")]];
    let mut stat = StatCache::default();
    let t0 = Instant::now();
    let r = resolve_inputs(workdir, &specs, &mut stat);
    let dt = t0.elapsed();
    let files = r
        .into_iter()
        .next()
        .expect("one node")
        .expect("tree hashes");
    let map = files
        .into_iter()
        .map(|f| (f.rel, f.digest.to_hex()))
        .collect();
    (dt, map)
}

fn b3sum(workdir: &Path, files: &[String]) -> (Duration, String) {
    let t0 = Instant::now();
    let out = Command::new("b3sum")
        .current_dir(workdir)
        .args(["--num-threads", "2", "--"])
        .args(files)
        .output()
        .expect("run b3sum");
    let dt = t0.elapsed();
    assert!(out.status.success(), "b3sum failed: {}", out.status);
    (dt, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    require_tool("b3sum", "b3sum");
    let runs = env_num("NOSA_BENCH_RUNS", 5).max(3);
    let workdir = work_dir("hash");
    generate(&workdir);

    // Warm the page cache and check that both tools agree on every file.
    let (_, digests) = nosa_hash(&workdir);
    let mut files: Vec<String> = digests.keys().cloned().collect();
    files.sort();
    let bytes: u64 = files
        .iter()
        .map(|f| fs_err::metadata(workdir.join(f)).expect("stat").len())
        .sum();
    let (_, listing) = b3sum(&workdir, &files);
    let mut checked = 0;
    for line in listing.lines() {
        let (hex, path) = line.split_once("  ").expect("b3sum line");
        assert_eq!(digests.get(path).map(String::as_str), Some(hex), "{path}");
        checked += 1;
    }
    assert_eq!(checked, files.len());

    let (mut tn, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        tn.push(nosa_hash(&workdir).0);
        tb.push(b3sum(&workdir, &files).0);
    }
    let (mn, mb) = (median(&mut tn), median(&mut tb));
    let mib = bytes as f64 / MIB as f64;
    println!(
        "hash {} files, {mib:.0} MiB: nosa {:.0} MiB/s ({:.3} s) | b3sum {:.0} MiB/s ({:.3} s) \
         | b3sum_time/nosa_time {:.2}x (median of {runs}, warm page cache)",
        files.len(),
        mib / mn.as_secs_f64(),
        mn.as_secs_f64(),
        mib / mb.as_secs_f64(),
        mb.as_secs_f64(),
        mb.as_secs_f64() / mn.as_secs_f64()
    );
    println!(
        "b3sum command: cd {} && b3sum --num-threads 2 -- <all {} files, sorted> >/dev/null (one process)",
        workdir.display(),
        files.len()
    );
}
