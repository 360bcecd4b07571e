//! Helpers shared by the benchmarks: a seeded PRNG, timing of whole processes, medians.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// splitmix64: deterministic, dependency-free, good enough to shape test data.
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Where benchmarks keep generated data: `target/tmp/nosa-bench/<what>`, reused across runs.
pub fn work_dir(what: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("nosa-bench")
        .join(what)
}

/// Comma-separated sizes from the environment variable `var`, else `default`.
pub fn sizes(var: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: not a number: {s:?}"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

/// A number from the environment variable `var`, else `default`.
pub fn env_num(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Fails with a message naming the Debian package when `tool` is not on PATH.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("error: `{tool}` not found; install it with `apt-get install -y {package}`");
        std::process::exit(2);
    }
}

/// Runs `cmd` to completion, discarding its output, and returns its wall time. Panics, with
/// the command's stderr, if it fails.
pub fn time_run(cmd: &mut Command) -> Duration {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let dt = t0.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dt
}

/// Runs `cmd` and returns its stdout; panics with its stderr if it fails.
pub fn run_output(cmd: &mut Command) -> String {
    cmd.stdin(Stdio::null());
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The median of `v` (which must not be empty).
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The `nosa` binary cargo built for the benchmarks.
pub fn nosa() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nosa"))
}

/// A workdir with a copy of examples/ and the fixture repo linked in.
pub fn example_workdir(root: &Path, name: &str) -> (PathBuf, PathBuf) {
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = repo_root.join("fixtures/out/repo");
    assert!(
        fixture.join("x86_64/repodata/repomd.xml").is_file(),
        "run `cargo xtask fixture-distro` first"
    );
    let base = root.join(name);
    let _ = fs_err::remove_dir_all(&base);
    fs_err::create_dir_all(&base).unwrap();
    let cfg = base.join("config");
    nosa_testkit::cp_a(&repo_root.join("examples"), &cfg);
    let w = base.join("work");
    fs_err::create_dir_all(w.join("fixtures/out")).unwrap();
    std::os::unix::fs::symlink(&fixture, w.join("fixtures/out/repo")).unwrap();
    let out = Command::new(nosa())
        .args(["init", "--force", cfg.to_str().unwrap()])
        .current_dir(&w)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (w, cfg)
}

/// Runs `nosa ARGS` in `dir`; panics with its stderr unless it succeeds. Returns stdout.
pub fn nosa_ok(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(nosa())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run nosa");
    assert!(
        out.status.success(),
        "nosa {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
