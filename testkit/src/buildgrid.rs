//! An REAPI cache server for the remote cache's tests and benchmark: BuildGrid 0.9.1 from
//! PyPI, which `scripts/install-deps.sh test` installs into a virtualenv (it needs Python
//! 3.13, which pyenv provides on these machines).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where `scripts/install-deps.sh test` puts BuildGrid's virtualenv; `NOSA_BUILDGRID` names
/// another.
const DEFAULT_VENV: &str = "/var/cache/nosa-tools/buildgrid-0.9.1";

/// BuildGrid's `bgd`, or a failure saying how to install it.
pub fn bgd() -> PathBuf {
    let venv = std::env::var_os("NOSA_BUILDGRID")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV));
    let bgd = venv.join("bin/bgd");
    assert!(
        bgd.is_file(),
        "BuildGrid is missing ({} not found): run `scripts/install-deps.sh test` (`make test` \
         does), which installs buildgrid==0.9.1 from PyPI into {} with pyenv's Python 3.13",
        bgd.display(),
        venv.display()
    );
    bgd
}

/// BuildGrid serving CAS, ByteStream and an action cache from a temporary directory, on a
/// free port of 127.0.0.1; killed when dropped.
pub struct BuildGrid {
    child: Child,
    dir: tempfile::TempDir,
    /// The server's URL (`grpc://127.0.0.1:PORT`, or `grpcs://localhost:PORT` with TLS).
    pub url: String,
}

/// Makes a CA and a server certificate for `localhost` and 127.0.0.1 in `dir` with openssl:
/// `ca.pem`, `server.pem`, `server.key`.
fn make_certs(dir: &std::path::Path) {
    crate::need("openssl", "openssl");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
        &[
            "-subj",
            "/CN=nosa test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
        &["-addext", "keyUsage=critical,keyCertSign"],
    ]
    .concat());
    run(&[
        &["req"],
        &ec[..],
        &["-keyout", "server.key", "-out", "server.csr"],
        &["-subj", "/CN=localhost"],
    ]
    .concat());
    fs_err::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

impl BuildGrid {
    /// Starts it with instance name "" and no TLS; fails saying how to install BuildGrid
    /// when it is missing.
    pub fn start() -> BuildGrid {
        BuildGrid::start_with("", false)
    }

    /// Starts it with instance name `instance`, and with `tls` over TLS with a certificate
    /// of a CA of its own ([`BuildGrid::ca_pem`]).
    pub fn start_with(instance: &str, tls: bool) -> BuildGrid {
        let bgd = bgd();
        let dir = tempfile::tempdir().unwrap();
        let port = crate::net::free_port();
        let d = dir.path().display();
        let channel = if tls {
            make_certs(dir.path());
            format!(
                "    insecure-mode: false\n    credentials:\n      tls-server-key: {d}/server.key\n      \
                 tls-server-cert: {d}/server.pem\n"
            )
        } else {
            "    insecure-mode: true\n".to_string()
        };
        let conf = format!(
            "server:\n\
             \x20 - !channel\n\
             \x20   address: \"127.0.0.1:{port}\"\n\
             {channel}\
             grpc-server-options:\n\
             \x20 grpc.so_reuseport: 0\n\
             storages:\n\
             \x20 - !disk-storage &store\n\
             \x20   path: {d}/cas\n\
             caches:\n\
             \x20 - !lru-action-cache &ac\n\
             \x20   storage: *store\n\
             \x20   max-cached-refs: 1000000\n\
             \x20   allow-updates: true\n\
             instances:\n\
             \x20 - name: \"{instance}\"\n\
             \x20   services:\n\
             \x20     - !action-cache\n\
             \x20       cache: *ac\n\
             \x20     - !cas\n\
             \x20       storage: *store\n\
             \x20     - !bytestream\n\
             \x20       storage: *store\n"
        );
        fs_err::write(dir.path().join("bgd.yml"), conf).unwrap();
        let log = fs_err::File::create(dir.path().join("bgd.log")).unwrap();
        let child = Command::new(&bgd)
            .args(["server", "start"])
            .arg(dir.path().join("bgd.yml"))
            .stdin(Stdio::null())
            .stdout(log.file().try_clone().unwrap())
            .stderr(log.into_file())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bgd.display()));
        // gRPC shares ports by default (SO_REUSEPORT): without grpc.so_reuseport 0 above, a
        // second server on a port taken since `free_port` would start and split the requests.
        crate::net::wait_listening(port, "BuildGrid", Duration::from_secs(60), || {
            fs_err::read_to_string(dir.path().join("bgd.log")).unwrap_or_default()
        });
        BuildGrid {
            child,
            url: if tls {
                format!("grpcs://localhost:{port}")
            } else {
                format!("grpc://127.0.0.1:{port}")
            },
            dir,
        }
    }

    /// The CA certificate its TLS certificate chains to (with `tls`).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The directory of the CAS's blobs (`<aa>/<rest of the SHA-256>`).
    pub fn cas(&self) -> PathBuf {
        self.dir.path().join("cas/cas/objects")
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        self.kill();
    }
}
