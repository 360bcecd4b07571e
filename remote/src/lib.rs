//! Remote caches shared between machines, behind the engine's [`RemoteCache`]: REAPI v2 over
//! gRPC ([`grpc`]: BuildGrid, buildbox-casd, Buildbarn, bazel-remote, NativeLink) and Bazel's
//! HTTP cache layout ([`http`]: nginx with WebDAV PUT, bazel-remote). docs/remote-cache.md.
//!
//! Both speak the same entries ([`entry`]): a node's result is an REAPI `ActionResult` under
//! the digest of an `Action` derived from the nosa key, whose one output file is a manifest
//! in CAS naming the record and every tree and blob it needs by BLAKE3 (nosa's store) and
//! SHA-256 (CAS). A transport only moves bytes; every check is the entry layer's.
//!
//! [`exec`] runs commands on a build farm (REAPI `Execution`) for rules that can run remotely.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;

pub mod entry;
pub mod exec;
pub mod grpc;
pub mod http;

pub use entry::Remote;
pub use exec::Executor;

/// `[cache]` in nestos.build.toml, or `--remote-cache`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteConfig {
    /// `grpc://host:port`, `grpcs://host:port` (REAPI) or `http(s)://host:port/prefix`.
    pub url: String,
    /// Only read: never upload.
    pub read_only: bool,
    /// Environment variable whose value is sent as the `Authorization` header (HTTP) or
    /// `authorization` metadata (gRPC).
    pub auth_env: Option<String>,
    /// REAPI instance name (gRPC only; over HTTP the URL's prefix plays it).
    pub instance: Option<String>,
    /// PEM file of the CA certificates a `grpcs://` server's certificate must chain to,
    /// instead of the system's roots.
    pub tls_roots: Option<PathBuf>,
}

/// Which protocol a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// REAPI v2 over gRPC.
    Grpc,
    /// Bazel's HTTP cache layout.
    Http,
}

/// Whether `url` names a remote cache nosa can use, and with which protocol; the message says
/// why not.
pub fn check_url(url: &str) -> Result<Protocol, String> {
    let (proto, rest) = if let Some(r) = url
        .strip_prefix("grpc://")
        .or_else(|| url.strip_prefix("grpcs://"))
    {
        (Protocol::Grpc, r)
    } else if let Some(r) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        (Protocol::Http, r)
    } else {
        return Err(format!(
            "{url}: a remote cache URL starts with grpc:// or grpcs:// (REAPI), or http:// or \
             https:// (Bazel's HTTP cache layout)"
        ));
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "{url}: not a base URL (grpc://host:port, or http://host:port/prefix)"
        ));
    }
    if proto == Protocol::Grpc && rest.trim_end_matches('/').contains('/') {
        return Err(format!(
            "{url}: a gRPC URL has no path; the REAPI instance name goes in [cache] instance"
        ));
    }
    Ok(proto)
}

/// The `Authorization` value `cfg.auth_env` names, if any.
fn auth_of(cfg: &RemoteConfig) -> Result<Option<String>, String> {
    match &cfg.auth_env {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .map(Some)
            .map_err(|_| format!("the remote cache's auth-env names {var}, which is not set")),
    }
}

/// The remote cache `cfg` names and, with `execute`, its build farm (the same REAPI server,
/// over the same connection); a configuration they cannot serve is an error naming the fix.
/// Nothing is asked of the server yet: an unreachable one is found on first use, and costs a
/// warning, not the build.
pub fn open(cfg: &RemoteConfig, execute: bool) -> Result<(Remote, Option<Executor>), String> {
    let auth = auth_of(cfg)?;
    let url = cfg.url.trim_end_matches('/').to_string();
    let (t, farm): (Arc<dyn Transport>, _) = match check_url(&cfg.url)? {
        Protocol::Http => {
            if cfg.instance.is_some() || cfg.tls_roots.is_some() {
                return Err(format!(
                    "{}: instance and tls-roots are for grpc:// remotes; over HTTP the URL's \
                     prefix plays the instance name",
                    cfg.url
                ));
            }
            if execute {
                return Err(format!(
                    "{}: remote execution needs an REAPI server (grpc:// or grpcs://)",
                    cfg.url
                ));
            }
            (Arc::new(http::HttpTransport::new(&cfg.url, auth)), None)
        }
        Protocol::Grpc => {
            let t = Arc::new(grpc::GrpcTransport::new(cfg, auth)?);
            let farm = execute.then(|| Executor::new(url.clone(), Arc::clone(&t)));
            (t, farm)
        }
    };
    Ok((Remote::new(url, t, cfg.read_only), farm))
}

/// A blob's name in CAS: SHA-256 (lowercase hex) and size.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CasId {
    /// SHA-256, lowercase hex.
    pub hash: String,
    /// Bytes.
    pub size: u64,
}

impl CasId {
    /// The name of `bytes`.
    pub fn of(bytes: &[u8]) -> CasId {
        CasId {
            hash: hex_sha256(bytes),
            size: bytes.len() as u64,
        }
    }

    /// As REAPI's `Digest`.
    pub fn to_reapi(&self) -> reapi::Digest {
        reapi::Digest {
            hash: self.hash.clone(),
            size_bytes: i64::try_from(self.size).unwrap_or(i64::MAX),
        }
    }

    /// From REAPI's `Digest`, if it is a SHA-256 one.
    pub fn from_reapi(d: &reapi::Digest) -> Option<CasId> {
        (d.hash.len() == 64 && d.hash.bytes().all(|c| c.is_ascii_hexdigit())).then(|| CasId {
            hash: d.hash.to_ascii_lowercase(),
            size: u64::try_from(d.size_bytes).unwrap_or(0),
        })
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn hex_sha256(bytes: &[u8]) -> String {
    let mut h = nosa_repo::ChecksumKind::Sha256.hasher();
    h.update(bytes);
    h.finish_hex()
}

/// A failed request.
#[derive(Debug)]
pub enum Failure {
    /// Not there.
    NotFound,
    /// The server is unreachable, too slow, refuses or fails: stop asking it.
    Outage(String),
    /// This entry's content is wrong, or the local store could not take it.
    Other(String),
}

/// A writer that remembers a failure of the writer under it (the local disk), as against
/// the [`nosa_repo::HashingWriter`] above it refusing bytes beyond a blob's size.
struct Watched<W> {
    inner: W,
    failed: Option<String>,
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(b);
        if let Err(e) = &r {
            self.failed.get_or_insert_with(|| e.to_string());
        }
        r
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        if let Err(e) = &r {
            self.failed.get_or_insert_with(|| e.to_string());
        }
        r
    }
}

/// Blob `b` streamed from `t` into `w` through the repository downloads' [`HashingWriter`]:
/// at most `b.size` bytes taken, and the content must be exactly `b.size` bytes of that
/// SHA-256. Also the bytes received, whatever happened.
///
/// [`HashingWriter`]: nosa_repo::HashingWriter
pub(crate) fn read_verified<W: Write>(
    t: &dyn Transport,
    b: &CasId,
    w: W,
) -> (Result<W, Failure>, u64) {
    let w = Watched {
        inner: w,
        failed: None,
    };
    let mut hw = nosa_repo::HashingWriter::new(w, nosa_repo::ChecksumKind::Sha256, b.size);
    let r = t.read_stream(b, &mut hw);
    let (w, hex, n) = hw.finish();
    if let Some(e) = w.failed {
        return (
            Err(Failure::Other(format!(
                "writing {} here: {e}",
                t.blob_name(b)
            ))),
            n,
        );
    }
    let r = match r {
        Err(f @ (Failure::Outage(_) | Failure::NotFound)) => Err(f),
        Ok(()) if n == b.size && hex == b.hash => Ok(w.inner),
        _ => Err(Failure::Other(format!(
            "{} does not match its digest ({n} bytes received, {} expected)",
            t.blob_name(b),
            b.size
        ))),
    };
    (r, n)
}

/// How a protocol moves bytes; [`entry`] decides what to move and checks everything.
pub trait Transport: Send + Sync {
    /// How a blob is named in messages (`cas/<sha256>`, `blobs/<sha256>/<size>`).
    fn blob_name(&self, b: &CasId) -> String;
    /// The most bytes one [`Transport::read_batch`] or [`Transport::write_batch`] moves, and
    /// the most blobs; a larger blob goes by itself through the streaming calls.
    fn batch_limits(&self) -> (u64, usize);
    /// Whether the server takes uploads of action results (asked once; an error is an outage).
    fn updates_allowed(&self) -> Result<bool, Failure>;
    /// The `ActionResult` stored under `action`.
    fn get_action(&self, action: &CasId) -> Result<reapi::ActionResult, Failure>;
    /// Stores `result` under `action`.
    fn put_action(&self, action: &CasId, result: &reapi::ActionResult) -> Result<(), Failure>;
    /// Those of `blobs` the server lacks.
    fn find_missing(&self, blobs: &[CasId]) -> Result<Vec<CasId>, Failure>;
    /// `blobs`' contents, in order, unverified; at most [`Transport::batch_limits`] at once.
    fn read_batch(&self, blobs: &[CasId]) -> Result<Vec<Vec<u8>>, Failure>;
    /// Blob `b` streamed into `w`, unverified; a failed write to `w` is [`Failure::Other`].
    fn read_stream(&self, b: &CasId, w: &mut dyn Write) -> Result<(), Failure>;
    /// Stores small blobs; at most [`Transport::batch_limits`] at once.
    fn write_batch(&self, blobs: &[(CasId, Vec<u8>)]) -> Result<(), Failure>;
    /// Stores the file at `path`, whose name is `b`.
    fn write_file(&self, b: &CasId, path: &Path) -> Result<(), Failure>;
}

/// Stores `blobs` (in memory) in batches, [`LANES`] batches at a time; returns the bytes sent.
pub(crate) fn write_blobs(t: &dyn Transport, blobs: Vec<(CasId, Vec<u8>)>) -> Result<u64, Failure> {
    let runs = batches(blobs, |(id, _)| id.size, t.batch_limits());
    in_lanes(&runs, |run| t.write_batch(run))?;
    Ok(runs.iter().flatten().map(|(id, _)| id.size).sum())
}

/// Uploads what the server lacks of `files` (on disk) and `blobs` (in memory), each name
/// once: one FindMissingBlobs, then blobs under the batch limit in batches and larger files
/// streamed. Returns the bytes sent.
pub(crate) fn upload_missing(
    t: &dyn Transport,
    files: &[(CasId, PathBuf)],
    blobs: Vec<(CasId, Vec<u8>)>,
) -> Result<u64, Failure> {
    let mut ids: Vec<CasId> = files.iter().map(|(id, _)| id.clone()).collect();
    ids.extend(blobs.iter().map(|(id, _)| id.clone()));
    ids.sort();
    ids.dedup();
    let missing: std::collections::HashSet<CasId> = t.find_missing(&ids)?.into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    let mut small: Vec<(CasId, Vec<u8>)> = blobs
        .into_iter()
        .filter(|(id, _)| missing.contains(id) && seen.insert(id.clone()))
        .collect();
    let limit = t.batch_limits().0;
    let mut large: Vec<&(CasId, PathBuf)> = vec![];
    for f @ (id, path) in files {
        if !missing.contains(id) || !seen.insert(id.clone()) {
            continue;
        }
        if id.size <= limit {
            let bytes = fs_err::read(path).map_err(|e| Failure::Other(e.to_string()))?;
            small.push((id.clone(), bytes));
        } else {
            large.push(f);
        }
    }
    in_lanes(&large, |(id, path)| t.write_file(id, path))?;
    let streamed: u64 = large.iter().map(|(id, _)| id.size).sum();
    Ok(streamed + write_blobs(t, small)?)
}

/// Requests in flight at once: one entry's blobs are mostly small files, so a transfer is
/// mostly waiting for the server.
pub(crate) const LANES: usize = 8;

/// `f` on every item, [`LANES`] at a time; stops at the first failure and returns it.
pub(crate) fn in_lanes<T: Sync>(
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

/// Splits `items` (with their sizes) into runs of at most `max_bytes` and `max_count` each;
/// an item alone over `max_bytes` gets a run of its own.
pub(crate) fn batches<T>(
    items: Vec<T>,
    size: impl Fn(&T) -> u64,
    (max_bytes, max_count): (u64, usize),
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = vec![];
    let mut bytes = 0;
    for it in items {
        let n = size(&it);
        match out.last_mut() {
            Some(last) if last.len() < max_count && bytes + n <= max_bytes => {
                bytes += n;
                last.push(it);
            }
            _ => {
                bytes = n;
                out.push(vec![it]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_sorted_by_protocol_and_bad_ones_refused() {
        assert_eq!(check_url("grpc://127.0.0.1:8980"), Ok(Protocol::Grpc));
        assert_eq!(check_url("grpcs://cache.example:443/"), Ok(Protocol::Grpc));
        assert_eq!(check_url("http://h:1/nosa"), Ok(Protocol::Http));
        assert!(
            check_url("grpc://h:1/instance")
                .unwrap_err()
                .contains("[cache] instance")
        );
        assert!(check_url("ftp://h").unwrap_err().contains("grpc://"));
        assert!(check_url("http://").is_err());
        assert!(check_url("http://h/?q").is_err());
    }

    #[test]
    fn batches_respect_both_limits_and_give_a_large_item_its_own_run() {
        let b = batches(vec![3u64, 3, 3, 10, 1, 1, 1], |&n| n, (7, 2));
        assert_eq!(b, vec![vec![3, 3], vec![3], vec![10], vec![1, 1], vec![1]]);
        assert!(batches(Vec::<u64>::new(), |&n| n, (7, 2)).is_empty());
    }

    #[test]
    fn cas_ids_round_trip_through_reapi_and_refuse_other_digests() {
        let id = CasId::of(b"abc");
        assert_eq!(
            id.hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(CasId::from_reapi(&id.to_reapi()), Some(id));
        let blake3_like = reapi::Digest {
            hash: "ab".repeat(20),
            size_bytes: 3,
        };
        assert_eq!(CasId::from_reapi(&blake3_like), None);
    }
}
