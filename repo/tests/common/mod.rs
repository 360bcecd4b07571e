//! Test support: a static-file HTTP server on 127.0.0.1 started by the test, the fixture
//! repository, a tiny createrepo_c repository, and in-process builds through the engine.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use nosa_cache::{Digest, Store, Tree};
use nosa_engine::{BuildOptions, BuildReport, Engine, Graph, Quiet, Status};

use nosa_testkit::fixture_repo;

/// How many RPMs the fixture repository holds: counted in its `Packages/` directory, so the
/// metadata the tests parse is checked against the files, not against a number written here.
pub fn fixture_rpm_count() -> usize {
    let n = fs_err::read_dir(fixture_repo().join("Packages"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "rpm"))
        })
        .count();
    assert!(n > 10, "the fixture repository has only {n} RPMs");
    n
}

/// A static-file server over `root`; every request path is logged.
pub struct Server {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serves `root` on 127.0.0.1 (an ephemeral port) until the test process ends.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let root = root.to_path_buf();
        let log = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (root, log) = (root.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &root, &log);
                });
            }
        });
        Server { base, requests }
    }

    /// The URL of `rel` on this server.
    pub fn url(&self, rel: &str) -> String {
        format!("{}/{}", self.base, rel.trim_start_matches('/'))
    }

    /// How many requests had a path containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains(needle))
            .count()
    }
}

fn serve(conn: TcpStream, root: &Path, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    log.lock().unwrap().push(path.clone());
    let mut conn = conn;
    let rel = path.trim_start_matches('/');
    let file = (!rel.split('/').any(|c| c == ".."))
        .then(|| root.join(rel))
        .filter(|p| p.is_file());
    match file {
        Some(p) => {
            let mut f = fs_err::File::open(&p)?;
            let len = f.metadata()?.len();
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            )?;
            std::io::copy(&mut f, &mut conn)?;
        }
        None => {
            conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
            )?;
        }
    }
    conn.flush()
}

/// A tiny repository made by createrepo_c over two small packages of the fixture repo.
/// `compress` is `gz` or `xz` (createrepo_c's `--general-compress-type`), or `zst`: Debian 12's
/// createrepo_c 0.17 has no zstd, so its gzip metadata is recompressed here, as newer
/// createrepo_c (Fedora's default) writes it: `<sha256>-<type>.xml.zst`.
pub fn tiny_repo(dir: &Path, compress: &str) -> PathBuf {
    if compress == "zst" {
        let repo = tiny_repo_made(dir, "gz");
        let zst = dir.join("tiny-zst");
        fs_err::rename(&repo, &zst).unwrap();
        recompress_zstd(&zst);
        return zst;
    }
    tiny_repo_made(dir, compress)
}

fn sha256(b: &[u8]) -> String {
    let mut h = nosa_repo::ChecksumKind::Sha256.hasher();
    h.update(b);
    h.finish_hex()
}

/// Rewrites every `.gz` metadata file of `repo` as zstd and updates repomd.xml to match.
fn recompress_zstd(repo: &Path) {
    let repomd_path = repo.join("repodata/repomd.xml");
    let text = fs_err::read_to_string(&repomd_path).unwrap();
    let md = nosa_repo::parse_repomd(text.as_bytes(), "repomd.xml").unwrap();
    let mut blocks: Vec<String> = text.split("<data ").map(str::to_string).collect();
    for d in &md.data {
        let old = fs_err::read(repo.join(&d.href)).unwrap();
        let mut xml = Vec::new();
        std::io::Read::read_to_end(
            &mut nosa_repo::decoder(&d.href, &old[..]).unwrap(),
            &mut xml,
        )
        .unwrap();
        let new = zstd::stream::encode_all(&xml[..], 3).unwrap();
        let sum = sha256(&new);
        let href = format!("repodata/{sum}-{}.xml.zst", d.kind);
        fs_err::remove_file(repo.join(&d.href)).unwrap();
        fs_err::write(repo.join(&href), &new).unwrap();
        let block = blocks
            .iter_mut()
            .find(|b| b.contains(&format!("href=\"{}\"", d.href)))
            .unwrap();
        *block = block
            .replace(&d.href, &href)
            .replace(&d.checksum.hex, &sum)
            .replace(
                &format!("<size>{}</size>", old.len()),
                &format!("<size>{}</size>", new.len()),
            );
    }
    fs_err::write(&repomd_path, blocks.join("<data ")).unwrap();
}

fn tiny_repo_made(dir: &Path, compress: &str) -> PathBuf {
    let fixture = fixture_repo();
    let repo = dir.join(format!("tiny-{compress}"));
    fs_err::create_dir_all(repo.join("Packages")).unwrap();
    for p in [
        "fixture-foo-1.0-1.nosa1.x86_64.rpm",
        "fixture-lib-1.1-1.nosa1.x86_64.rpm",
    ] {
        fs_err::copy(
            fixture.join("Packages").join(p),
            repo.join("Packages").join(p),
        )
        .unwrap();
    }
    let out = Command::new("createrepo_c")
        .args(["-q", "--general-compress-type", compress, "--revision", "1"])
        .arg(&repo)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run createrepo_c ({e}): install the Debian package createrepo-c")
        });
    assert!(
        out.status.success(),
        "createrepo_c failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo
}

/// The path of the `kind` metadata file of the repository at `repo`.
pub fn metadata_file(repo: &Path, kind: &str) -> PathBuf {
    let md = nosa_repo::parse_repomd(
        &fs_err::read(repo.join("repodata/repomd.xml")).unwrap(),
        "r",
    )
    .unwrap();
    repo.join(&md.get(kind).unwrap().href)
}

/// Flips one byte in the middle of `path`.
pub fn flip_byte(path: &Path) {
    let mut b = fs_err::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0xff;
    fs_err::write(path, b).unwrap();
}

/// A workdir with a store and an engine.
pub struct Work {
    pub dir: tempfile::TempDir,
    pub engine: Engine,
}

impl Work {
    pub fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache/store")).unwrap();
        let engine = Engine::new(dir.path(), store);
        Work { dir, engine }
    }

    /// Builds every node of `graph` with `jobs` workers.
    pub fn build(&self, graph: &Graph, jobs: usize) -> BuildReport {
        let all: Vec<usize> = (0..graph.len()).collect();
        let opts = BuildOptions {
            jobs,
            ..Default::default()
        };
        self.engine.build(graph, &all, &opts, &mut Quiet).unwrap()
    }

    /// The output tree of node `id` (its last good result).
    pub fn tree(&self, id: &str) -> Tree {
        let good = self
            .good(id)
            .unwrap_or_else(|| panic!("{id} has no good output"));
        self.engine.store().get_tree(&good.tree).unwrap()
    }

    /// The last good (key, output, tree) of node `id`.
    pub fn good(&self, id: &str) -> Option<nosa_engine::Good> {
        self.engine.state().nodes.get(id).and_then(|n| n.good)
    }

    /// Whether any action record in the store belongs to node `id`.
    pub fn has_record(&self, id: &str) -> bool {
        let store = self.engine.store();
        store.action_keys().unwrap().iter().any(|k| {
            store
                .get_action::<nosa_engine::Component>(k)
                .is_some_and(|r| r.node == id)
        })
    }

    /// The content of file `path` of `tree`.
    pub fn file(&self, tree: &Tree, path: &str) -> Vec<u8> {
        let e = tree
            .entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not in the output"));
        match &e.kind {
            nosa_cache::EntryKind::File { digest, .. } => {
                fs_err::read(self.engine.store().blob_path(digest)).unwrap()
            }
            k => panic!("{path} is {k:?}"),
        }
    }

    /// No run directory is left in the store's tmp/.
    pub fn no_leftover_runs(&self) -> bool {
        let tmp = self.engine.store().tmp_dir();
        !tmp.exists()
            || fs_err::read_dir(&tmp)
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with("run-"))
    }
}

/// Status of node `id` in `report`.
pub fn status(report: &BuildReport, id: &str) -> Status {
    report
        .nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("{id} not in the report"))
        .status
}

/// Error message of node `id` in `report`.
pub fn error(report: &BuildReport, id: &str) -> String {
    report
        .nodes
        .iter()
        .find(|n| n.id == id)
        .and_then(|n| n.error.clone())
        .unwrap_or_else(|| panic!("{id} did not fail"))
}

/// blake3 of a file.
pub fn blake3_of(path: &Path) -> Digest {
    Digest::of(&fs_err::read(path).unwrap())
}

/// The source of repository `id` for x86_64 at `baseurl`, with dnf's defaults.
pub fn source(id: &str, baseurl: Vec<String>) -> nosa_repo::RepoSource {
    nosa_repo::RepoSource {
        id: id.into(),
        arch: "x86_64".into(),
        baseurl,
        metalink: None,
        mirrorlist: None,
        priority: 99,
        cost: 1000,
        exclude: vec![],
        includepkgs: vec![],
        workdir_url: None,
    }
}
