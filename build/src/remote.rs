//! The remote cache over HTTP in Bazel's layout (`/ac/<sha256>`, `/cas/<sha256>`; GET, HEAD,
//! PUT), as nginx with WebDAV PUT, bazel-remote and object-store proxies serve it: nosa's
//! implementation of [`RemoteCache`] (docs/remote-cache.md).
//!
//! A node's entry is an `ActionResult` (REAPI's message, hand-encoded: one output file) under
//! `/ac/<sha256("nosa-remote-v1\0" ‖ key)>`. Its one output file is a JSON manifest in CAS:
//! the action record, and for every tree and blob the record names (output tree, memo, log)
//! its BLAKE3 name in nosa's store, its SHA-256 name in CAS and its size. Everything fetched is
//! checked against both digests before the store takes it; the record is installed last.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nosa_cache::{Digest, EntryKind, Store, Tree};
use nosa_engine::{ActionRecord, RemoteCache, RemoteLookup};
use nosa_repo::{ChecksumKind, HashingWriter, is_too_long};
use serde::{Deserialize, Serialize};

/// The path of the manifest in an entry's `ActionResult`.
const MANIFEST_PATH: &str = "nosa-manifest.json";
/// Names the entry format; part of every `/ac/` key.
const AC_DOMAIN: &[u8] = b"nosa-remote-v1\0";
/// The largest manifest or tree nosa reads (a tree of 100,000 entries is ~15 MB of JSON).
const SMALL_LIMIT: u64 = 256 << 20;

/// `[cache]` in nestos.build.toml, or `--remote-cache`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Base URL: `http://host:port/prefix` (the prefix plays the instance name).
    pub url: String,
    /// Only read: never upload.
    pub read_only: bool,
    /// Environment variable whose value is sent as the `Authorization` header.
    pub auth_env: Option<String>,
}

/// One file of an entry: its name in nosa's store and in CAS.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Part {
    blake3: Digest,
    sha256: String,
    size: u64,
}

/// The manifest an entry's `ActionResult` points at.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    record: ActionRecord,
    /// Trees, as the store's JSON (output tree, memo).
    trees: Vec<Part>,
    /// Blobs of those trees, and the log.
    blobs: Vec<Part>,
}

/// A failed request.
enum Failure {
    /// 404: not there.
    NotFound,
    /// The server is unreachable, too slow, refuses or fails (any HTTP error but 404): stop
    /// asking it.
    Outage(String),
    /// This entry's content is wrong, or the local store could not take it.
    Other(String),
}

/// The HTTP remote cache.
pub struct HttpCache {
    base: String,
    agent: ureq::Agent,
    read_only: bool,
    auth: Option<String>,
    off: AtomicBool,
    down: AtomicU64,
    up: AtomicU64,
    hits: AtomicU64,
}

impl std::fmt::Debug for HttpCache {
    // Not derived: the Authorization header's value stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCache")
            .field("base", &self.base)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl HttpCache {
    /// A client for `cfg`; a URL it cannot serve is an error naming the fix.
    pub fn new(cfg: &RemoteConfig) -> Result<HttpCache, String> {
        check_url(&cfg.url)?;
        let url = cfg.url.trim_end_matches('/');
        let auth = match &cfg.auth_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                format!("the remote cache's auth-env names {var}, which is not set")
            })?),
        };
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(30)))
            .timeout_per_write(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .user_agent(concat!("nosa/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(HttpCache {
            base: url.to_string(),
            agent: ureq::Agent::new_with_config(config),
            read_only: cfg.read_only,
            auth,
            off: AtomicBool::new(false),
            down: AtomicU64::new(0),
            up: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        })
    }

    /// Whether it found, moved or missed anything in this process.
    pub fn active(&self) -> bool {
        self.hits.load(Ordering::Relaxed) > 0
            || self.up.load(Ordering::Relaxed) > 0
            || self.down.load(Ordering::Relaxed) > 0
            || self.off.load(Ordering::Relaxed)
    }

    /// One line on what this process moved: hits, bytes down and up.
    pub fn summary(&self) -> String {
        format!(
            "remote cache {}: {} hits, {} downloaded, {} uploaded{}",
            self.base,
            self.hits.load(Ordering::Relaxed),
            human(self.down.load(Ordering::Relaxed)),
            human(self.up.load(Ordering::Relaxed)),
            if self.off.load(Ordering::Relaxed) {
                " (unreachable since a request failed)"
            } else {
                ""
            }
        )
    }

    fn url(&self, kind: &str, sha256: &str) -> String {
        format!("{}/{kind}/{sha256}", self.base)
    }

    /// Stops asking the server, with one warning for the whole build.
    fn go_off(&self, why: &str) {
        if !self.off.swap(true, Ordering::SeqCst) {
            eprintln!(
                "warning: remote cache {}: {why}; building locally from here on",
                self.base
            );
        }
    }

    fn classify(e: ureq::Error) -> Failure {
        match e {
            ureq::Error::StatusCode(404) => Failure::NotFound,
            // Refused access, a method the server does not allow, a server error: the same
            // for every request that follows, so stop asking.
            ureq::Error::StatusCode(c @ (401 | 403)) => Failure::Outage(format!(
                "HTTP status {c}: access refused (is the auth-env variable right?)"
            )),
            ureq::Error::StatusCode(c) => Failure::Outage(format!("HTTP status {c}")),
            ureq::Error::Io(e) => Failure::Outage(e.to_string()),
            e @ (ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed) => Failure::Outage(e.to_string()),
            e => Failure::Other(e.to_string()),
        }
    }

    fn with_auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    /// The body of `GET kind/name`.
    fn get(&self, kind: &str, name: &str) -> Result<ureq::Body, Failure> {
        Ok(self
            .with_auth(self.agent.get(self.url(kind, name)))
            .call()
            .map_err(Self::classify)?
            .into_body())
    }

    /// `cas/sha256` streamed into `w` through the repository downloads' [`HashingWriter`]: at
    /// most `size` bytes taken, and the content must be exactly `size` bytes of that SHA-256.
    fn get_cas<W: Write>(&self, sha256: &str, size: u64, w: W) -> Result<W, Failure> {
        let body = self.get("cas", sha256)?;
        let mut hw = HashingWriter::new(w, ChecksumKind::Sha256, size);
        let copied = std::io::copy(&mut body.into_reader(), &mut hw);
        let (w, hex, n) = hw.finish();
        self.down.fetch_add(n, Ordering::Relaxed);
        match copied {
            Err(e) if !is_too_long(&e) => Err(Failure::Outage(e.to_string())),
            Ok(_) if n == size && hex == sha256 => Ok(w),
            _ => Err(Failure::Other(format!(
                "cas/{sha256} does not match its digest ({n} bytes received, {size} expected)"
            ))),
        }
    }

    /// A manifest or a tree from CAS, whole in memory (at most [`SMALL_LIMIT`] bytes).
    fn get_cas_small(&self, sha256: &str, size: u64) -> Result<Vec<u8>, Failure> {
        if size > SMALL_LIMIT {
            return Err(Failure::Other(format!(
                "cas/{sha256} is said to have {size} bytes, more than nosa reads into memory"
            )));
        }
        self.get_cas(sha256, size, Vec::new())
    }

    /// Streams blob `p` into the store, checking its SHA-256, size and BLAKE3.
    fn get_blob(&self, store: &Store, p: &Part) -> Result<(), Failure> {
        let tmp = nosa_cache::atomic::temp_name(&store.tmp_dir(), "remote");
        let result = (|| {
            let f = fs_err::File::create(&tmp).map_err(|e| Failure::Other(e.to_string()))?;
            let f = self.get_cas(
                &p.sha256,
                p.size,
                std::io::BufWriter::with_capacity(1 << 20, f),
            )?;
            f.into_inner().map_err(|e| Failure::Other(e.to_string()))?;
            let d = store
                .put_file(&tmp, true)
                .map_err(|e| Failure::Other(e.to_string()))?;
            if d != p.blake3 {
                return Err(Failure::Other(format!(
                    "cas/{} is not blob {} of the manifest",
                    p.sha256,
                    p.blake3.short()
                )));
            }
            Ok(())
        })();
        let _ = fs_err::remove_file(&tmp);
        result
    }

    fn exists(&self, sha256: &str) -> Result<bool, Failure> {
        match self
            .with_auth(self.agent.head(self.url("cas", sha256)))
            .call()
        {
            Ok(_) => Ok(true),
            Err(e) => match Self::classify(e) {
                Failure::NotFound => Ok(false),
                f => Err(f),
            },
        }
    }

    fn put(&self, kind: &str, sha256: &str, body: PutBody<'_>) -> Result<(), Failure> {
        let req = self.with_auth(self.agent.put(self.url(kind, sha256)));
        let n = match body {
            PutBody::Bytes(b) => {
                req.send(b).map_err(Self::classify)?;
                b.len() as u64
            }
            PutBody::File(path) => {
                let f = fs_err::File::open(path).map_err(|e| Failure::Other(e.to_string()))?;
                let n = f
                    .metadata()
                    .map_err(|e| Failure::Other(e.to_string()))?
                    .len();
                req.send(f.file()).map_err(Self::classify)?;
                n
            }
        };
        self.up.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    fn fetch_inner(&self, store: &Store, key: &Digest) -> Result<ActionRecord, Failure> {
        let mut ac = Vec::new();
        self.get("ac", &ac_key(key))?
            .into_reader()
            .take(SMALL_LIMIT)
            .read_to_end(&mut ac)
            .map_err(|e| Failure::Outage(e.to_string()))?;
        self.down.fetch_add(ac.len() as u64, Ordering::Relaxed);
        let (sha, size) = parse_action_result(&ac)
            .ok_or_else(|| Failure::Other(format!("ac/{} is not a nosa entry", ac_key(key))))?;
        let manifest: Manifest = serde_json::from_slice(&self.get_cas_small(&sha, size)?)
            .map_err(|e| Failure::Other(format!("the manifest cas/{sha}: {e}")))?;
        if manifest.format != 1 || manifest.record.key != *key {
            return Err(Failure::Other(format!(
                "the manifest cas/{sha} is for another key or format"
            )));
        }
        let missing: Vec<&Part> = manifest
            .blobs
            .iter()
            .filter(|p| !store.has_blob(&p.blake3))
            .collect();
        in_lanes(&missing, |p| self.get_blob(store, p))?;
        for t in &manifest.trees {
            if store.tree_path(&t.blake3).is_file() {
                continue;
            }
            let bytes = self.get_cas_small(&t.sha256, t.size)?;
            let tree: Tree = serde_json::from_slice(&bytes)
                .map_err(|e| Failure::Other(format!("tree cas/{}: {e}", t.sha256)))?;
            let d = store
                .put_tree(&tree)
                .map_err(|e| Failure::Other(e.to_string()))?;
            if d != t.blake3 {
                return Err(Failure::Other(format!(
                    "tree cas/{} is not tree {} of the manifest",
                    t.sha256,
                    t.blake3.short()
                )));
            }
        }
        let rec = manifest.record;
        if !store.tree_complete(&rec.tree) {
            return Err(Failure::Other(format!(
                "the manifest cas/{sha} does not name every blob of its output tree"
            )));
        }
        store
            .put_action(&rec)
            .map_err(|e| Failure::Other(e.to_string()))?;
        Ok(rec)
    }

    fn upload_inner(&self, store: &Store, rec: &ActionRecord) -> Result<(), Failure> {
        let mut trees = vec![];
        let mut blobs: Vec<(Digest, u64)> = vec![];
        for t in std::iter::once(rec.tree).chain(rec.memo) {
            let tree = store
                .get_tree(&t)
                .map_err(|e| Failure::Other(e.to_string()))?;
            for e in &tree.entries {
                if let EntryKind::File { digest, size } = &e.kind {
                    blobs.push((*digest, *size));
                }
            }
            trees.push((t, tree));
        }
        if let Some(l) = rec.log {
            let size = fs_err::metadata(store.blob_path(&l))
                .map_err(|e| Failure::Other(e.to_string()))?
                .len();
            blobs.push((l, size));
        }
        blobs.sort();
        blobs.dedup();
        let mut manifest = Manifest {
            format: 1,
            record: rec.clone(),
            trees: vec![],
            blobs: vec![],
        };
        let parts = std::sync::Mutex::new(Vec::with_capacity(blobs.len()));
        in_lanes(&blobs, |&(d, size)| {
            let sha = crate::os::sha256_of(store, &d).map_err(|e| Failure::Other(e.to_string()))?;
            if !self.exists(&sha)? {
                self.put("cas", &sha, PutBody::File(&store.blob_path(&d)))?;
            }
            parts.lock().expect("parts").push(Part {
                blake3: d,
                sha256: sha,
                size,
            });
            Ok(())
        })?;
        manifest.blobs = parts.into_inner().expect("parts");
        manifest.blobs.sort_by_key(|p| p.blake3);
        for (d, tree) in trees {
            let bytes = serde_json::to_vec(&tree).map_err(|e| Failure::Other(e.to_string()))?;
            let sha = hex_sha256(&bytes);
            if !self.exists(&sha)? {
                self.put("cas", &sha, PutBody::Bytes(&bytes))?;
            }
            manifest.trees.push(Part {
                blake3: d,
                sha256: sha,
                size: bytes.len() as u64,
            });
        }
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Failure::Other(e.to_string()))?;
        let sha = hex_sha256(&bytes);
        self.put("cas", &sha, PutBody::Bytes(&bytes))?;
        let ac = encode_action_result(&sha, bytes.len() as u64);
        self.put("ac", &ac_key(&rec.key), PutBody::Bytes(&ac))
    }
}

/// Requests one entry's blobs make at once: they are mostly small files, so a transfer is
/// mostly waiting for the server.
const LANES: usize = 8;

/// `f` on every item, [`LANES`] at a time; stops at the first failure and returns it.
fn in_lanes<T: Sync>(
    items: &[T],
    f: impl Fn(&T) -> Result<(), Failure> + Sync,
) -> Result<(), Failure> {
    if items.len() < 2 {
        return items.iter().try_for_each(f);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: std::sync::Mutex<Option<Failure>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..LANES.min(items.len()) {
            scope.spawn(|| {
                loop {
                    if failed.lock().expect("failure").is_some() {
                        return;
                    }
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    if let Err(e) = f(item) {
                        failed.lock().expect("failure").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("failure") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

enum PutBody<'a> {
    Bytes(&'a [u8]),
    File(&'a std::path::Path),
}

impl RemoteCache for HttpCache {
    fn fetch(&self, store: &Store, key: &Digest) -> RemoteLookup {
        if self.off.load(Ordering::Relaxed) {
            return RemoteLookup::Off;
        }
        match self.fetch_inner(store, key) {
            Ok(rec) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                RemoteLookup::Hit(Box::new(rec))
            }
            Err(Failure::NotFound) => RemoteLookup::Missing,
            Err(Failure::Outage(why)) => {
                self.go_off(&why);
                RemoteLookup::Off
            }
            Err(Failure::Other(why)) => {
                eprintln!(
                    "warning: remote cache {}: entry for key {} not used: {why}",
                    self.base,
                    key.short()
                );
                RemoteLookup::Unusable(why)
            }
        }
    }

    fn upload(&self, store: &Store, rec: &ActionRecord) {
        if self.read_only || self.off.load(Ordering::Relaxed) {
            return;
        }
        match self.upload_inner(store, rec) {
            Ok(()) => {}
            Err(Failure::NotFound) => self.go_off("uploads are refused (HTTP status 404)"),
            Err(Failure::Outage(why)) => self.go_off(&why),
            Err(Failure::Other(why)) => self.go_off(&format!("an upload failed: {why}")),
        }
    }

    fn describe(&self) -> String {
        self.base.clone()
    }
}

/// Whether `url` names a remote cache nosa can use; the message says why not.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("grpc://") || url.starts_with("grpcs://") {
        return Err(format!(
            "{url}: REAPI over gRPC is not supported yet; use an HTTP cache in Bazel's layout \
             (http:// or https://)"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url}: a remote cache URL starts with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "{url}: not a base URL (http://host:port or http://host:port/prefix)"
        ));
    }
    Ok(())
}

/// The `/ac/` name of nosa key `key`.
fn ac_key(key: &Digest) -> String {
    let mut h = ChecksumKind::Sha256.hasher();
    h.update(AC_DOMAIN);
    h.update(&key.0);
    h.finish_hex()
}

fn hex_sha256(bytes: &[u8]) -> String {
    let mut h = ChecksumKind::Sha256.hasher();
    h.update(bytes);
    h.finish_hex()
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// REAPI `ActionResult { output_files: [OutputFile { path, digest: Digest { hash, size } }] }`
/// naming the manifest.
fn encode_action_result(sha256: &str, size: u64) -> Vec<u8> {
    let mut digest = vec![];
    len_field(&mut digest, 1, sha256.as_bytes());
    varint(&mut digest, 2 << 3);
    varint(&mut digest, size);
    let mut file = vec![];
    len_field(&mut file, 1, MANIFEST_PATH.as_bytes());
    len_field(&mut file, 2, &digest);
    let mut out = vec![];
    len_field(&mut out, 2, &file);
    out
}

/// A protobuf field's value, of the two wire types nosa's messages use.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of a protobuf message: (field number, value); fixed-width fields are skipped.
fn fields(mut b: &[u8]) -> Option<Vec<(u64, Value<'_>)>> {
    fn read_varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = vec![];
    while !b.is_empty() {
        let tag = read_varint(&mut b)?;
        let value = match tag & 7 {
            0 => Value::Varint(read_varint(&mut b)?),
            1 => {
                b = b.get(8..)?;
                continue;
            }
            2 => {
                let n = usize::try_from(read_varint(&mut b)?).ok()?;
                let (v, rest) = (b.get(..n)?, b.get(n..)?);
                b = rest;
                Value::Bytes(v)
            }
            5 => {
                b = b.get(4..)?;
                continue;
            }
            _ => return None,
        };
        out.push((tag >> 3, value));
    }
    Some(out)
}

/// The manifest's SHA-256 and size from an `ActionResult`, if it names one.
fn parse_action_result(b: &[u8]) -> Option<(String, u64)> {
    for (n, v) in fields(b)? {
        let (2, Value::Bytes(file)) = (n, v) else {
            continue;
        };
        let f = fields(file)?;
        let path = f.iter().find_map(|(n, v)| match (n, v) {
            (1, Value::Bytes(p)) => Some(*p),
            _ => None,
        })?;
        if path != MANIFEST_PATH.as_bytes() {
            continue;
        }
        let digest = f.iter().find_map(|(n, v)| match (n, v) {
            (2, Value::Bytes(d)) => Some(*d),
            _ => None,
        })?;
        let d = fields(digest)?;
        let hash = d.iter().find_map(|(n, v)| match (n, v) {
            (1, Value::Bytes(h)) => std::str::from_utf8(h).ok(),
            _ => None,
        })?;
        let size = d
            .iter()
            .find_map(|(n, v)| match (n, v) {
                (2, Value::Varint(s)) => Some(*s),
                _ => None,
            })
            .unwrap_or(0);
        if hash.len() == 64 && hash.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Some((hash.to_ascii_lowercase(), size));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_result_round_trips_and_refuses_junk() {
        let sha = hex_sha256(b"manifest");
        let ac = encode_action_result(&sha, 1234);
        assert_eq!(parse_action_result(&ac), Some((sha.clone(), 1234)));
        assert_eq!(parse_action_result(b"\x12\xff"), None);
        assert_eq!(parse_action_result(b""), None);
        // Another output file's path is not a manifest.
        let mut other = vec![];
        let mut file = vec![];
        len_field(&mut file, 1, b"other");
        len_field(&mut other, 2, &file);
        assert_eq!(parse_action_result(&other), None);
    }

    #[test]
    fn ac_keys_differ_by_key() {
        let a = ac_key(&Digest([1; 32]));
        assert_eq!(a.len(), 64);
        assert_ne!(a, ac_key(&Digest([2; 32])));
    }
}
