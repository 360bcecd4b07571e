//! Benchmark: unpacking every RPM of the fixture distro with nosa's unpack rule vs
//! `rpm2cpio PKG | cpio -idm` on the same RPMs, each into a fresh directory. Prints both times
//! (median of several rounds) and the ratio. Run: `cargo bench --bench unpack`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn packages() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/out/repo/x86_64/Packages");
    assert!(
        dir.is_dir(),
        "{} is missing: run `cargo xtask fixture-distro` first",
        dir.display()
    );
    let mut v: Vec<PathBuf> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rpm"))
        .collect();
    v.sort();
    v
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn nosa_round(pkgs: &[PathBuf], work: &Path) -> Duration {
    let t = Instant::now();
    for (i, p) in pkgs.iter().enumerate() {
        nosa_rules::unpack::unpack(p, &work.join(format!("n{i}")), "bench").expect("unpack");
    }
    t.elapsed()
}

fn cpio_round(pkgs: &[PathBuf], work: &Path) -> Duration {
    let t = Instant::now();
    for (i, p) in pkgs.iter().enumerate() {
        let dest = work.join(format!("c{i}"));
        fs_err::create_dir_all(&dest).unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "rpm2cpio '{}' | cpio -idm --quiet --no-absolute-filenames",
                p.display()
            ))
            .current_dir(&dest)
            .stderr(Stdio::null())
            .status()
            .expect("run rpm2cpio | cpio (Debian packages rpm2cpio, cpio)");
        assert!(
            status.success(),
            "rpm2cpio | cpio failed on {}",
            p.display()
        );
    }
    t.elapsed()
}

fn main() {
    let pkgs = packages();
    let bytes: u64 = pkgs
        .iter()
        .map(|p| fs_err::metadata(p).unwrap().len())
        .sum();
    let rounds: usize = std::env::var("NOSA_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let (mut n, mut c) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Interleave the tools so background load hits both alike.
        let w = tempfile::tempdir().unwrap();
        n.push(nosa_round(&pkgs, w.path()));
        let w = tempfile::tempdir().unwrap();
        c.push(cpio_round(&pkgs, w.path()));
    }
    let (n, c) = (median(n), median(c));
    println!(
        "unpack {} RPMs ({:.1} MiB): nosa {:.1} ms, rpm2cpio|cpio {:.1} ms, nosa/cpio = {:.2}x (median of {rounds})",
        pkgs.len(),
        bytes as f64 / (1 << 20) as f64,
        n.as_secs_f64() * 1e3,
        c.as_secs_f64() * 1e3,
        n.as_secs_f64() / c.as_secs_f64()
    );
}
