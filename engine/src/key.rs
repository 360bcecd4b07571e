//! Keys, and when a stored output is trusted: parameters are hashed through the explicit
//! [`KeyHash`] trait (never `std::hash::Hash` or `Debug` output), field by field, into a
//! versioned encoding; a node's key is blake3 over its sorted, named [`Component`]s, which the
//! action record keeps so that `why` can diff them later.
//!
//! # Freshness: when is a stored output trusted?
//!
//! A node's output is found in the store's action cache by its **key**, computed here as blake3
//! over a versioned encoding of these components:
//!
//! | component | enters the key as | changes when |
//! |---|---|---|
//! | rule kind + version | `rule` | the rule's code changes meaning (authors bump the version) |
//! | each parameter | `param <name>` = digest of its canonical encoding | a resolved config value changes |
//! | each declared input file | `input <path>` = blake3 of its content | the file's bytes change, or it appears/disappears |
//! | each dependency | `dep <node>` = the dependency's **output** digest | the dependency produced different output |
//!
//! Deliberately left out: mtimes, owners and absolute paths of inputs (a checkout in another
//! directory or a `touch` must not rebuild), the dependency's *key* (that is what lets a rerun
//! with an identical output stop propagation: early cutoff), and wall-clock time. The golden
//! test (`golden.rs`) pins the encoding: a change that moves every key fails it, and is made
//! deliberately by bumping `KEY_ENCODING`.
//!
//! Mtimes enter only through file stamps (`nosa_cache::stamp`): the stat cache skips rehashing
//! a file whose stamp is unchanged, and the no-op witness skips a whole build whose observed
//! stamps are unchanged. Both refuse a stamp within the racy window, so a fast edit is always
//! rehashed.
//!
//! A record is trusted only when its tree and blobs are all present (the store checks); a
//! record whose output is gone is a miss, never a stale hit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nosa_cache::Digest;
use serde::{Deserialize, Serialize};

/// What a key component stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// The rule kind and version.
    Rule = 1,
    /// A parameter (a resolved configuration value).
    Param = 2,
    /// A file the node declared as input, by content digest.
    Input = 3,
    /// A dependency, by its output digest.
    Dep = 4,
}

/// One named part of a key, e.g. `input overlay.d/15nestos/etc/test/test.txt = 1a2b…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// What it stands for.
    pub kind: ComponentKind,
    /// Its name (parameter name, file path, dependency node id).
    pub name: String,
    /// The digest that entered the key.
    pub digest: Digest,
    /// A short rendering of the value for people (parameters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// An action record as the engine stores it: the store's record with this module's components.
pub type ActionRecord = nosa_cache::ActionRecord<Component>;

/// Bump when the key encoding changes: every key in every cache changes with it. Also bumped
/// when outputs the store already holds may be wrong: v2 because the store's ingestion could
/// record a hardlinked file with its blob's mode (0444) instead of its own; v3 because an
/// input file's mode and type were not in its component (a `chmod` reused the old output).
const KEY_ENCODING: &[u8] = b"nosa-key-v3\0";

/// Feeds values into blake3 in a canonical, length-prefixed, type-tagged form.
#[derive(Debug)]
pub struct KeyHasher(blake3::Hasher);

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyHasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        KeyHasher(blake3::Hasher::new())
    }
    /// A one-byte type tag, so that `"1"` and `1` differ.
    pub fn tag(&mut self, t: u8) {
        self.0.update(&[t]);
    }
    /// An integer.
    pub fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }
    /// The digest.
    pub fn finish(self) -> Digest {
        self.0.finalize().into()
    }
}

/// Feeds the running executable's identity (device, inode, size, mtime, ctime) into `h`, so
/// that whatever is keyed by it misses after nosa is rebuilt or replaced. Returns the
/// executable's path, or `None` when it cannot be identified (callers then cache nothing).
pub fn hash_executable(h: &mut KeyHasher) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    hash_file_identity(h, &exe)?;
    Some(exe)
}

/// Feeds the identity of the file at `path` (device, inode, size, mtime, ctime) into `h`;
/// `None` when it cannot be stat'ed.
pub fn hash_file_identity(h: &mut KeyHasher, path: &Path) -> Option<()> {
    use std::os::unix::fs::MetadataExt;
    let m = fs_err::metadata(path).ok()?;
    for v in [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
    ] {
        h.u64(v);
    }
    Some(())
}

/// The environment variable through which the `nosa` front program tells `nosa-core` its own
/// path: the no-op witness key covers both programs.
pub const FRONT_EXE_ENV: &str = "NOSA_FRONT_EXE";

/// Set by the front program when it checked the no-op witness under the workdir lock and the
/// witness did not hold: `nosa-core` builds without checking it a second time (at 30,000
/// steps a check reads 6 MB and stats 60,000 paths). Skipping the check is always safe.
pub const WITNESS_CHECKED_ENV: &str = "NOSA_WITNESS_CHECKED";

/// Environment variables a build's decisions may depend on beyond its files: the tool search
/// path (which `rpm` writes the rpm database), the tracer switch, the build clock. Each enters
/// the no-op witness key.
pub const WITNESS_ENV: [&str; 3] = ["PATH", "NOSA_TRACE", "SOURCE_DATE_EPOCH"];

/// The no-op witness key of a build command (see `witness`): the front program (if one ran)
/// and the core program, each by identity, the build file's path, the command (`graph
/// build`, `build`), the selection and the variables of [`WITNESS_ENV`]. The build file's
/// content is covered by its stamp, which the witness records. `None` when a program cannot
/// be identified. The front computes it for the core it would run, and the core for itself,
/// so the two agree.
pub fn noop_witness_key(
    front: Option<&Path>,
    core: &Path,
    file: &Path,
    command: &str,
    targets: &[String],
    arch: Option<&str>,
) -> Option<Digest> {
    use std::os::unix::ffi::OsStrExt;
    let mut h = KeyHasher::new();
    h.bytes(b"nosa-noop-witness-v3");
    h.bytes(command.as_bytes());
    match front {
        Some(f) => {
            h.u64(1);
            hash_file_identity(&mut h, f)?;
            h.bytes(f.as_os_str().as_bytes());
        }
        None => h.u64(0),
    }
    hash_file_identity(&mut h, core)?;
    h.bytes(core.as_os_str().as_bytes());
    h.bytes(file.as_os_str().as_bytes());
    h.u64(targets.len() as u64);
    for t in targets {
        h.bytes(t.as_bytes());
    }
    match arch {
        Some(arch) => {
            h.u64(1);
            h.bytes(arch.as_bytes());
        }
        None => h.u64(0),
    }
    for var in WITNESS_ENV {
        match std::env::var_os(var) {
            Some(v) => {
                h.u64(1);
                h.bytes(v.as_bytes());
            }
            None => h.u64(0),
        }
    }
    Some(h.finish())
}

/// A value that can enter a key. Implementations feed every field that influences the output,
/// in a fixed order, with [`KeyHasher`]; forgetting a field means a change to it does not rebuild.
pub trait KeyHash {
    /// Feeds `self` into `h`.
    fn key_hash(&self, h: &mut KeyHasher);
    /// A short rendering for `why` output, if the value is small enough to show.
    fn preview(&self) -> Option<String> {
        None
    }
}

fn clip(s: String) -> String {
    const MAX: usize = 72;
    if s.chars().count() <= MAX {
        s
    } else {
        let cut: String = s.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

impl KeyHash for str {
    fn key_hash(&self, h: &mut KeyHasher) {
        h.tag(b's');
        h.bytes(self.as_bytes());
    }
    fn preview(&self) -> Option<String> {
        Some(clip(format!("{self:?}")))
    }
}

impl KeyHash for String {
    fn key_hash(&self, h: &mut KeyHasher) {
        self.as_str().key_hash(h)
    }
    fn preview(&self) -> Option<String> {
        self.as_str().preview()
    }
}

impl KeyHash for Path {
    fn key_hash(&self, h: &mut KeyHasher) {
        h.tag(b'p');
        h.bytes(self.as_os_str().as_encoded_bytes());
    }
    fn preview(&self) -> Option<String> {
        Some(clip(self.display().to_string()))
    }
}

impl KeyHash for PathBuf {
    fn key_hash(&self, h: &mut KeyHasher) {
        self.as_path().key_hash(h)
    }
    fn preview(&self) -> Option<String> {
        self.as_path().preview()
    }
}

impl KeyHash for bool {
    fn key_hash(&self, h: &mut KeyHasher) {
        h.tag(b'b');
        h.u64(u64::from(*self));
    }
    fn preview(&self) -> Option<String> {
        Some(self.to_string())
    }
}

macro_rules! int_key_hash {
    ($($t:ty),*) => {$(
        impl KeyHash for $t {
            fn key_hash(&self, h: &mut KeyHasher) {
                h.tag(b'i');
                h.u64(*self as u64);
            }
            fn preview(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
int_key_hash!(u8, u16, u32, u64, usize, i32, i64);

impl KeyHash for Digest {
    fn key_hash(&self, h: &mut KeyHasher) {
        h.tag(b'd');
        h.0.update(&self.0);
    }
    fn preview(&self) -> Option<String> {
        Some(self.short())
    }
}

impl<T: KeyHash> KeyHash for Option<T> {
    fn key_hash(&self, h: &mut KeyHasher) {
        match self {
            None => h.tag(b'0'),
            Some(v) => {
                h.tag(b'1');
                v.key_hash(h);
            }
        }
    }
    fn preview(&self) -> Option<String> {
        match self {
            None => Some("none".into()),
            Some(v) => v.preview(),
        }
    }
}

impl<T: KeyHash> KeyHash for [T] {
    fn key_hash(&self, h: &mut KeyHasher) {
        h.tag(b'l');
        h.u64(self.len() as u64);
        for v in self {
            v.key_hash(h);
        }
    }
    fn preview(&self) -> Option<String> {
        let parts: Option<Vec<String>> = self.iter().map(KeyHash::preview).collect();
        Some(clip(format!("[{}]", parts?.join(", "))))
    }
}

impl<T: KeyHash> KeyHash for Vec<T> {
    fn key_hash(&self, h: &mut KeyHasher) {
        self.as_slice().key_hash(h)
    }
    fn preview(&self) -> Option<String> {
        self.as_slice().preview()
    }
}

impl<K: KeyHash, V: KeyHash> KeyHash for BTreeMap<K, V> {
    fn key_hash(&self, h: &mut KeyHasher) {
        h.tag(b'm');
        h.u64(self.len() as u64);
        for (k, v) in self {
            k.key_hash(h);
            v.key_hash(h);
        }
    }
}

impl<A: KeyHash, B: KeyHash> KeyHash for (A, B) {
    fn key_hash(&self, h: &mut KeyHasher) {
        h.tag(b't');
        self.0.key_hash(h);
        self.1.key_hash(h);
    }
}

/// Digest of one value.
pub fn digest_of<T: KeyHash + ?Sized>(v: &T) -> Digest {
    let mut h = KeyHasher::new();
    v.key_hash(&mut h);
    h.finish()
}

/// Collects a rule's named parameters.
#[derive(Debug, Default)]
pub struct Params {
    pub(crate) items: Vec<Component>,
    /// Skip the previews: set when only the key is wanted (previews do not enter it), which
    /// is most of the cost of a parameter on the no-op path.
    pub(crate) key_only: bool,
}

impl Params {
    /// Declares parameter `name` with value `v`. Every value the rule's `run` reads, other than
    /// declared input files and dependency outputs, must be declared here.
    pub fn add<T: KeyHash + ?Sized>(&mut self, name: &str, v: &T) -> &mut Self {
        self.items.push(Component {
            kind: ComponentKind::Param,
            name: name.to_string(),
            digest: digest_of(v),
            preview: if self.key_only { None } else { v.preview() },
        });
        self
    }

    /// A digest of the parameters declared so far, names and values in order: what a memo
    /// that must not depend on the node's input files is valid for.
    pub fn digest(&self) -> Digest {
        let mut h = KeyHasher::new();
        h.tag(b'P');
        h.u64(self.items.len() as u64);
        for c in &self.items {
            c.name.key_hash(&mut h);
            c.digest.key_hash(&mut h);
        }
        h.finish()
    }
}

/// The `rule` component: kind and version.
pub fn rule_component(kind: &str, version: u32) -> Component {
    Component {
        kind: ComponentKind::Rule,
        name: kind.to_string(),
        digest: rule_digest(kind, version),
        preview: Some(format!("{kind} v{version}")),
    }
}

/// The digest of the `rule` component.
pub fn rule_digest(kind: &str, version: u32) -> Digest {
    let mut h = KeyHasher::new();
    kind.key_hash(&mut h);
    version.key_hash(&mut h);
    h.finish()
}

/// Sorts components canonically (by kind, then name).
pub fn sort_components(c: &mut [Component]) {
    c.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
}

/// The key: blake3 over the versioned encoding of the sorted components.
pub fn key_of(components: &[Component]) -> Digest {
    key_of_iter(
        components.len(),
        components
            .iter()
            .map(|c| (c.kind, c.name.as_str(), &c.digest)),
    )
}

/// [`key_of`] over borrowed `(kind, name, digest)` parts, sorted as [`sort_components`] sorts:
/// the same key, without building [`Component`]s.
pub fn key_of_parts(parts: &[(ComponentKind, &str, Digest)]) -> Digest {
    key_of_iter(parts.len(), parts.iter().map(|(k, n, d)| (*k, *n, d)))
}

fn key_of_iter<'a>(
    len: usize,
    parts: impl Iterator<Item = (ComponentKind, &'a str, &'a Digest)>,
) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(KEY_ENCODING);
    h.update(&(len as u64).to_le_bytes());
    for (kind, name, digest) in parts {
        h.update(&[kind as u8]);
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&digest.0);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_different_types_or_shapes_differ() {
        assert_ne!(digest_of("1"), digest_of(&1u64));
        assert_ne!(
            digest_of(&vec!["ab".to_string()]),
            digest_of(&vec!["a".to_string(), "b".to_string()])
        );
        assert_ne!(digest_of(&Some(0u64)), digest_of(&None::<u64>));
        assert_eq!(digest_of("x"), digest_of(&"x".to_string()));
    }

    #[test]
    fn previews_do_not_enter_the_key() {
        let add = |p: &mut Params| {
            p.add("run", "echo hi")
                .add("outputs", &vec!["a".to_string()]);
        };
        let mut with = Params::default();
        add(&mut with);
        let mut without = Params {
            key_only: true,
            ..Params::default()
        };
        add(&mut without);
        assert!(without.items.iter().all(|c| c.preview.is_none()));
        assert!(with.items.iter().all(|c| c.preview.is_some()));
        assert_eq!(key_of(&with.items), key_of(&without.items));
    }

    #[test]
    fn key_depends_on_every_component() {
        let mut p = Params::default();
        p.add("run", "echo hi");
        let mut a = vec![rule_component("step", 1)];
        a.extend(p.items);
        let base = key_of(&a);
        let mut b = a.clone();
        b[0] = rule_component("step", 2);
        assert_ne!(key_of(&b), base);
        let mut c = a.clone();
        c[1].name = "cmd".into();
        assert_ne!(key_of(&c), base);
    }
}
