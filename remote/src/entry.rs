//! A node's entry in a remote cache, whatever the protocol: what is read and written, in
//! which order, and every check on what comes back (docs/remote-cache.md).
//!
//! The entry of nosa key K is an `ActionResult` stored under the digest of an `Action` whose
//! `Command` names K and the entry format, so an REAPI server sees an ordinary action. Its
//! one output file, [`MANIFEST_PATH`], is a JSON manifest in CAS: the action record, and for
//! every tree and blob the record names (output tree, memo, log) its BLAKE3 name in nosa's
//! store, its SHA-256 name in CAS and its size. Everything fetched is checked against both
//! digests before the store takes it; the record is installed last. Uploads go blobs first,
//! then trees, manifest and action, and the entry last, so no reader finds an entry whose
//! content is not there yet.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use nosa_cache::{Digest, EntryKind, Store, Tree};
use nosa_engine::{ActionRecord, RemoteCache, RemoteLookup};
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::{CasId, Failure, Transport, batches, in_lanes};

/// The path of the manifest among an entry's output files.
pub const MANIFEST_PATH: &str = "nosa-manifest.json";
/// The entry format; part of every entry's `Command`, so another format is another action.
const FORMAT: u32 = 2;
/// The largest manifest or tree nosa reads (a tree of 100,000 entries is ~15 MB of JSON).
const SMALL_LIMIT: u64 = 256 << 20;

/// One file of an entry: its name in nosa's store and in CAS.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Part {
    blake3: Digest,
    sha256: String,
    size: u64,
}

impl Part {
    fn cas(&self) -> CasId {
        CasId {
            hash: self.sha256.clone(),
            size: self.size,
        }
    }
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

/// The `Action` (and its `Command`) whose result is the entry of `key`: the action's CAS
/// name, and both messages' bytes with their names.
pub fn action_for(key: &Digest) -> (CasId, Vec<(CasId, Vec<u8>)>) {
    let command = reapi::Command {
        arguments: vec![
            "nosa".into(),
            "cache-entry".into(),
            format!("--format={FORMAT}"),
            key.to_hex(),
        ],
        output_paths: vec![MANIFEST_PATH.into()],
        ..Default::default()
    }
    .encode_to_vec();
    let command_id = CasId::of(&command);
    let action = reapi::Action {
        command_digest: Some(command_id.to_reapi()),
        // The empty Directory: nothing is read, since the entry is only ever looked up.
        input_root_digest: Some(CasId::of(b"").to_reapi()),
        ..Default::default()
    }
    .encode_to_vec();
    let action_id = CasId::of(&action);
    (
        action_id.clone(),
        vec![(command_id, command), (action_id, action)],
    )
}

/// The manifest's name from an entry's `ActionResult`, if it names one.
fn manifest_of(r: &reapi::ActionResult) -> Option<CasId> {
    r.output_files
        .iter()
        .find(|f| f.path == MANIFEST_PATH)
        .and_then(|f| f.digest.as_ref())
        .and_then(CasId::from_reapi)
}

/// A remote cache over some [`Transport`]: nosa's implementation of [`RemoteCache`].
pub struct Remote {
    url: String,
    t: std::sync::Arc<dyn Transport>,
    read_only: bool,
    /// Whether the server takes uploads (asked on the first upload).
    writable: OnceLock<bool>,
    off: AtomicBool,
    down: AtomicU64,
    up: AtomicU64,
    hits: AtomicU64,
}

impl std::fmt::Debug for Remote {
    // Not derived: the transport holds the Authorization header's value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub(crate) fn new(url: String, t: std::sync::Arc<dyn Transport>, read_only: bool) -> Remote {
        Remote {
            url,
            t,
            read_only,
            writable: OnceLock::new(),
            off: AtomicBool::new(false),
            down: AtomicU64::new(0),
            up: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
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
            self.url,
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

    /// Stops asking the server, with one warning for the whole build.
    fn go_off(&self, why: &str) {
        if !self.off.swap(true, Ordering::SeqCst) {
            eprintln!(
                "warning: remote cache {}: {why}; building locally from here on",
                self.url
            );
        }
    }

    /// `b`'s content, whole in memory and checked against its digest.
    fn verified(&self, b: &CasId, bytes: Vec<u8>) -> Result<Vec<u8>, Failure> {
        self.down.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 == b.size && crate::hex_sha256(&bytes) == b.hash {
            Ok(bytes)
        } else {
            Err(Failure::Other(format!(
                "{} does not match its digest ({} bytes received, {} expected)",
                self.t.blob_name(b),
                bytes.len(),
                b.size
            )))
        }
    }

    /// A manifest or a tree from CAS, whole in memory (at most [`SMALL_LIMIT`] bytes).
    fn get_small(&self, b: &CasId) -> Result<Vec<u8>, Failure> {
        if b.size > SMALL_LIMIT {
            return Err(Failure::Other(format!(
                "{} is said to have {} bytes, more than nosa reads into memory",
                self.t.blob_name(b),
                b.size
            )));
        }
        if b.size <= self.t.batch_limits().0 {
            let got = self.t.read_batch(std::slice::from_ref(b))?;
            let bytes = got.into_iter().next().unwrap_or_default();
            return self.verified(b, bytes);
        }
        self.get_stream(b, Vec::new())
    }

    /// Blob `b` streamed into `w`, checked against its digest ([`crate::read_verified`]).
    fn get_stream<W: Write>(&self, b: &CasId, w: W) -> Result<W, Failure> {
        let (r, n) = crate::read_verified(self.t.as_ref(), b, w);
        self.down.fetch_add(n, Ordering::Relaxed);
        r
    }

    /// Streams a large blob into the store, checking its SHA-256, size and BLAKE3.
    fn get_large_blob(&self, store: &Store, p: &Part) -> Result<(), Failure> {
        let tmp = nosa_cache::atomic::temp_name(&store.tmp_dir(), "remote");
        let result = (|| {
            let f = fs_err::File::create(&tmp).map_err(|e| Failure::Other(e.to_string()))?;
            let f = self.get_stream(&p.cas(), std::io::BufWriter::with_capacity(1 << 20, f))?;
            f.into_inner()
                .map_err(|e| Failure::Other(e.error().to_string()))?;
            let d = store
                .put_file(&tmp, true)
                .map_err(|e| Failure::Other(e.to_string()))?;
            self.check_blake3(p, d)
        })();
        let _ = fs_err::remove_file(&tmp);
        result
    }

    fn check_blake3(&self, p: &Part, d: Digest) -> Result<(), Failure> {
        if d == p.blake3 {
            Ok(())
        } else {
            Err(Failure::Other(format!(
                "{} is not blob {} of the manifest",
                self.t.blob_name(&p.cas()),
                p.blake3.short()
            )))
        }
    }

    /// Small blobs in batches into the store, each checked against both digests.
    fn get_small_blobs(&self, store: &Store, parts: Vec<&Part>) -> Result<(), Failure> {
        let runs = batches(parts, |p| p.size, self.t.batch_limits());
        in_lanes(&runs, |run| {
            let ids: Vec<CasId> = run.iter().map(|p| p.cas()).collect();
            let got = self.t.read_batch(&ids)?;
            if got.len() != run.len() {
                return Err(Failure::Other(format!(
                    "asked for {} blobs, got {}",
                    run.len(),
                    got.len()
                )));
            }
            for ((p, id), bytes) in run.iter().zip(&ids).zip(got) {
                let bytes = self.verified(id, bytes)?;
                let d = store
                    .put_bytes(&bytes)
                    .map_err(|e| Failure::Other(e.to_string()))?;
                self.check_blake3(p, d)?;
            }
            Ok(())
        })
    }

    fn fetch_inner(&self, store: &Store, key: &Digest) -> Result<ActionRecord, Failure> {
        let (action, _) = action_for(key);
        let result = self.t.get_action(&action)?;
        self.down
            .fetch_add(result.encoded_len() as u64, Ordering::Relaxed);
        let m = manifest_of(&result).ok_or_else(|| {
            Failure::Other(format!(
                "the entry of action {} names no {MANIFEST_PATH}",
                action.hash
            ))
        })?;
        let manifest: Manifest = serde_json::from_slice(&self.get_small(&m)?)
            .map_err(|e| Failure::Other(format!("the manifest {}: {e}", self.t.blob_name(&m))))?;
        if manifest.format != FORMAT || manifest.record.key != *key {
            return Err(Failure::Other(format!(
                "the manifest {} is for another key or format",
                self.t.blob_name(&m)
            )));
        }
        let (small, large): (Vec<&Part>, Vec<&Part>) = manifest
            .blobs
            .iter()
            .filter(|p| !store.has_blob(&p.blake3))
            .partition(|p| p.size <= self.t.batch_limits().0);
        self.get_small_blobs(store, small)?;
        in_lanes(&large, |p| self.get_large_blob(store, p))?;
        for t in &manifest.trees {
            if store.tree_path(&t.blake3).is_file() {
                continue;
            }
            let bytes = self.get_small(&t.cas())?;
            let tree: Tree = serde_json::from_slice(&bytes)
                .map_err(|e| Failure::Other(format!("tree {}: {e}", self.t.blob_name(&t.cas()))))?;
            let d = store
                .put_tree(&tree)
                .map_err(|e| Failure::Other(e.to_string()))?;
            if d != t.blake3 {
                return Err(Failure::Other(format!(
                    "tree {} is not tree {} of the manifest",
                    self.t.blob_name(&t.cas()),
                    t.blake3.short()
                )));
            }
        }
        let rec = manifest.record;
        if !store.tree_complete(&rec.tree) {
            return Err(Failure::Other(format!(
                "the manifest {} does not name every blob of its output tree",
                self.t.blob_name(&m)
            )));
        }
        store
            .put_action(&rec)
            .map_err(|e| Failure::Other(e.to_string()))?;
        Ok(rec)
    }

    fn upload_inner(&self, store: &Store, rec: &ActionRecord) -> Result<(), Failure> {
        let other = |e: nosa_cache::Error| Failure::Other(e.to_string());
        let mut trees = vec![];
        let mut blobs: Vec<(Digest, u64)> = vec![];
        for t in std::iter::once(rec.tree).chain(rec.memo) {
            let tree = store.get_tree(&t).map_err(other)?;
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

        // Every blob's SHA-256, from the store's memo (computed once per blob).
        let parts = Mutex::new(Vec::with_capacity(blobs.len()));
        in_lanes(&blobs, |&(d, size)| {
            let sha256 = store.sha256_of(&d).map_err(other)?;
            parts.lock().expect("parts").push(Part {
                blake3: d,
                sha256,
                size,
            });
            Ok(())
        })?;
        let mut parts = parts.into_inner().expect("parts");
        parts.sort_by_key(|p| p.blake3);

        // Trees as JSON, named by SHA-256 too.
        let mut small: Vec<(CasId, Vec<u8>)> = vec![];
        let mut tree_parts = vec![];
        for (d, tree) in trees {
            let bytes = serde_json::to_vec(&tree).map_err(|e| Failure::Other(e.to_string()))?;
            let id = CasId::of(&bytes);
            tree_parts.push(Part {
                blake3: d,
                sha256: id.hash.clone(),
                size: id.size,
            });
            small.push((id, bytes));
        }

        // What the server lacks goes up: small blobs in batches, large ones streamed.
        let files: Vec<(CasId, std::path::PathBuf)> = parts
            .iter()
            .map(|p| (p.cas(), store.blob_path(&p.blake3)))
            .collect();
        let sent = crate::upload_missing(self.t.as_ref(), &files, small)?;
        self.up.fetch_add(sent, Ordering::Relaxed);

        // Then the manifest with the action and command, then the entry.
        let manifest = Manifest {
            format: FORMAT,
            record: rec.clone(),
            trees: tree_parts,
            blobs: parts,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Failure::Other(e.to_string()))?;
        let m = CasId::of(&bytes);
        let (action, mut messages) = action_for(&rec.key);
        messages.push((m.clone(), bytes));
        let sent = crate::write_blobs(self.t.as_ref(), messages)?;
        self.up.fetch_add(sent, Ordering::Relaxed);
        let result = reapi::ActionResult {
            output_files: vec![reapi::OutputFile {
                path: MANIFEST_PATH.into(),
                digest: Some(m.to_reapi()),
                ..Default::default()
            }],
            ..Default::default()
        };
        self.t.put_action(&action, &result)?;
        self.up
            .fetch_add(result.encoded_len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl RemoteCache for Remote {
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
                    self.url,
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
        let writable = match self.writable.get() {
            Some(w) => *w,
            None => match self.t.updates_allowed() {
                Ok(w) => {
                    if !w {
                        eprintln!(
                            "warning: remote cache {}: the server does not take action \
                             results; reading only",
                            self.url
                        );
                    }
                    *self.writable.get_or_init(|| w)
                }
                Err(Failure::Outage(why) | Failure::Other(why)) => return self.go_off(&why),
                Err(Failure::NotFound) => return self.go_off("the server is not an REAPI cache"),
            },
        };
        if !writable {
            return;
        }
        match self.upload_inner(store, rec) {
            Ok(()) => {}
            Err(Failure::NotFound) => self.go_off("uploads are refused (not found)"),
            Err(Failure::Outage(why)) => self.go_off(&why),
            Err(Failure::Other(why)) => self.go_off(&format!("an upload failed: {why}")),
        }
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entrys_action_differs_by_key_and_names_its_command() {
        let (a, msgs) = action_for(&Digest([1; 32]));
        let (b, _) = action_for(&Digest([2; 32]));
        assert_ne!(a, b);
        assert_eq!(msgs.len(), 2);
        let action = reapi::Action::decode(msgs[1].1.as_slice()).unwrap();
        assert_eq!(action.command_digest, Some(msgs[0].0.to_reapi()));
        assert_eq!(msgs[1].0, a);
        let cmd = reapi::Command::decode(msgs[0].1.as_slice()).unwrap();
        assert_eq!(cmd.arguments.last().unwrap(), &Digest([1; 32]).to_hex());
    }

    #[test]
    fn the_manifest_is_found_among_output_files_and_junk_is_refused() {
        let m = CasId::of(b"manifest");
        let file = |path: &str, d: Option<reapi::Digest>| reapi::OutputFile {
            path: path.into(),
            digest: d,
            ..Default::default()
        };
        let r = reapi::ActionResult {
            output_files: vec![
                file("other", Some(CasId::of(b"x").to_reapi())),
                file(MANIFEST_PATH, Some(m.to_reapi())),
            ],
            ..Default::default()
        };
        assert_eq!(manifest_of(&r), Some(m));
        let none = reapi::ActionResult {
            output_files: vec![file(MANIFEST_PATH, None)],
            ..Default::default()
        };
        assert_eq!(manifest_of(&none), None);
        assert_eq!(manifest_of(&reapi::ActionResult::default()), None);
    }
}
