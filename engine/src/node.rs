//! The node contract: what a rule declares (kind, version, parameters, inputs) and what it may do
//! when it runs. Each method says how a wrong implementation corrupts the cache.

use std::io::Write;
use std::path::{Path, PathBuf};

use nosa_cache::{Digest, EntryKind, Materialize, Store, Tree, TreeEntry};

use crate::key::Params;

/// A kind of node. Implementations must be deterministic functions of what they declare.
pub trait Rule: Send + Sync {
    /// The rule kind (`step`, `overlay`, `ostree-commit`, ...). Enters the key.
    fn kind(&self) -> &str;

    /// The version of the rule's behaviour. Enters the key.
    ///
    /// Failure mode: changing what [`Rule::run`] produces without bumping this leaves every
    /// output cached by the old code in place, and builds silently reuse it (stale artifacts).
    fn version(&self) -> u32;

    /// Declares every value, other than input files and dependency outputs, that `run` reads:
    /// resolved configuration values, command lines, environment the rule passes on.
    ///
    /// Failure mode: a value read in `run` but not declared here can change without changing
    /// the key, and the old output is reused (stale artifact).
    fn params(&self, p: &mut Params);

    /// The files this node reads from the workdir, relative to it: literal files, directories
    /// (all files below them) or globs. Their contents enter the key.
    ///
    /// Failure mode: reading a workdir file not covered here makes a stale artifact when that
    /// file changes. `run` should read inputs only through [`RunContext::inputs`].
    fn inputs(&self) -> Vec<InputSpec> {
        Vec::new()
    }

    /// Produces the output: everything left in [`RunContext::out`] when it returns `Ok` is the
    /// node's output tree. It may read the declared inputs, the dependencies' outputs and
    /// write only into `out`, `scratch` and the log.
    ///
    /// Failure mode: output that depends on anything else (time, host state, network, an
    /// undeclared file) makes the cache lie: two builds with the same key differ.
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError>;

    /// The digest dependents see. `None` (the default) uses the output tree's digest. A rule
    /// whose output is not bit-reproducible (a commit timestamp) returns a digest of what is
    /// (the content checksum).
    ///
    /// Failure mode: a digest that ignores a difference that dependents observe stops them from
    /// rebuilding when they should (stale artifact); one that includes noise defeats early cutoff.
    fn equivalence_digest(&self, _out: &Path) -> Option<Digest> {
        None
    }

    /// Where the output is placed in the workdir after a build, if anywhere.
    fn materialize(&self) -> Option<MaterializeTo> {
        None
    }

    /// Whether the node's result may be shared with other machines: looked up in and written
    /// to the remote cache. `false` for a node whose output is not a function of its key (it
    /// reads the network).
    ///
    /// Failure mode: `true` for such a node hands other machines whatever it fetched here,
    /// under a key that does not say what that was.
    fn shareable(&self) -> bool {
        true
    }

    /// The rule's description, when it can run on a build farm's worker: the worker's
    /// `nosa-core exec-node` makes the rule again from it (a [`crate::Decode`]) and runs it
    /// with the node's inputs and dependencies' outputs, nothing else of this machine's. The
    /// worker refuses a description whose rule has other parameters ([`Rule::params`]) than
    /// this one. `None` (the default) runs the node here always: a rule that needs the
    /// workdir (kept directories, its previous output), the network, privileges or tools a
    /// worker's sandbox lacks.
    ///
    /// Failure mode: a rule whose `run` reads anything beyond its inputs, dependencies and
    /// parameters (a host file, an environment variable) computes something else on the
    /// worker, and the farm's output is cached as this node's (stale artifact).
    fn portable(&self) -> Option<Portable> {
        None
    }
}

/// What a rule that can run on a build farm says of itself ([`Rule::portable`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Portable {
    /// Everything the rule was made from, in a form its [`crate::Decode`] reads (JSON).
    pub spec: String,
    /// The host programs its run calls, as platform property `nosa-tools` (sorted, comma
    /// separated): a worker without them must not take the node. Empty: nosa's own code.
    pub tools: Vec<String>,
}

/// Where and how a node's output appears in the workdir.
#[derive(Clone, Debug)]
pub struct MaterializeTo {
    /// Directory, relative to the workdir, that the output tree is written under.
    pub dir: PathBuf,
    /// Copy (files people may edit) or hardlink (read-only artifacts).
    pub how: Materialize,
}

/// A declared input, relative to the workdir.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputSpec {
    /// A file, or a directory standing for every file below it. Must exist.
    Path(String),
    /// A glob (`*`, `?`, `[..]`, `**`); matching nothing is allowed.
    Glob(String),
}

impl InputSpec {
    /// A glob if the pattern has glob characters, else a path.
    pub fn parse(s: &str) -> InputSpec {
        if s.contains(['*', '?', '[', '{']) {
            InputSpec::Glob(s.to_string())
        } else {
            InputSpec::Path(s.trim_end_matches('/').to_string())
        }
    }
}

/// One resolved input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// Path relative to the workdir, `/`-separated.
    pub rel: String,
    /// Absolute path.
    pub abs: PathBuf,
    /// Content digest (for a symlink: digest of its target string).
    pub digest: Digest,
    /// Whether this is a symlink (kept as a link when staged).
    pub symlink: bool,
    /// Permission bits (`mode & 0o7777`; 0o777 for a symlink).
    pub mode: u32,
}

impl InputFile {
    /// What the file contributes to a key: its content, its type and its permission bits
    /// (a `chmod +x` or a file replaced by a symlink to the same text changes the key).
    pub fn key_digest(&self) -> Digest {
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(b"nosa-input\0");
        b.push(if self.symlink { b'l' } else { b'f' });
        b.extend_from_slice(&self.mode.to_le_bytes());
        b.extend_from_slice(&self.digest.0);
        Digest::of(&b)
    }
}

/// A dependency's output, as a rule sees it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DepOutput {
    /// The dependency's node id.
    pub id: String,
    /// Its output tree.
    pub tree: Digest,
    /// Its output digest.
    pub output: Digest,
}

/// What a running rule gets.
pub struct RunContext<'a> {
    /// The node id.
    pub node: &'a str,
    /// The declared inputs, resolved and hashed, sorted by path.
    pub inputs: &'a [InputFile],
    /// The dependencies' outputs, in declaration order.
    pub deps: &'a [DepOutput],
    /// Empty directory: the output.
    pub out: PathBuf,
    /// Empty directory for temporaries, removed after the run.
    pub scratch: PathBuf,
    /// The node's log (stdout/stderr of tools should go here).
    pub log: &'a mut dyn Write,
    /// The output tree of this node's last successful run, if the store still has it: a
    /// cache a rule may draw on to go faster (e.g. objects it would otherwise recompute).
    ///
    /// Failure mode: an output that depends on it (anything but speed) differs between a
    /// cold and an incremental build with the same key; rules that use it test that their
    /// output equals a cold run's. The tree may be missing (pruned): read it fallibly.
    pub previous: Option<Digest>,
    /// The digest of this node's own key components (rule, parameters, declared inputs),
    /// without its dependencies' outputs: what a memo is valid for.
    pub own_key: Digest,
    pub(crate) store: &'a Store,
    pub(crate) log_path: PathBuf,
    /// The key of the record `previous` came from (its memo), unless the run is forced.
    pub(crate) previous_key: Option<Digest>,
    pub(crate) produced: Produced,
    /// Where [`RunContext::memory_scratch`] makes its directory (in memory), if anywhere.
    pub(crate) memory: Option<PathBuf>,
    /// Locks held until the run ends (kept staging directories).
    pub(crate) held: Vec<std::fs::File>,
    /// The build farm, when the build executes remotely.
    pub(crate) executor: Option<&'a dyn crate::remote::RemoteExecutor>,
}

/// What a rule handed the engine besides files in `out`.
#[derive(Debug, Default)]
pub(crate) struct Produced {
    pub tree: Option<Tree>,
    pub equivalence: Option<Digest>,
    pub memo: Option<Tree>,
    pub note: Option<String>,
    pub reused: bool,
    pub farm: Option<String>,
}

impl<'a> RunContext<'a> {
    /// The build farm to run this node's command on, when the build executes remotely
    /// (`--remote-execute`); `None` runs it here.
    pub fn remote_executor(&self) -> Option<&'a dyn crate::remote::RemoteExecutor> {
        self.executor
    }
}

impl RunContext<'_> {
    /// Copies the declared inputs under `dest` at their workdir-relative paths.
    pub fn stage_inputs(&self, dest: &Path) -> Result<(), RunError> {
        for f in self.inputs {
            let to = dest.join(&f.rel);
            if let Some(p) = to.parent() {
                fs_err::create_dir_all(p)?;
            }
            if f.symlink {
                let target = fs_err::read_link(&f.abs)?;
                std::os::unix::fs::symlink(&target, &to)
                    .map_err(|e| RunError::msg(format!("{}: {e}", to.display())))?;
            } else {
                fs_err::copy(&f.abs, &to)?;
            }
        }
        Ok(())
    }

    /// An empty directory for temporaries made of many small files that die with the run (a
    /// deployed sysroot): on a memory file system (`NOSA_MEMORY_TMP`, by default `/dev/shm`
    /// when it is tmpfs) if `bytes`, what the rule expects to write there, fits in a quarter
    /// of the available memory and half of the tmpfs's free space; otherwise
    /// `scratch/<name>`. Removed with the run, and by the
    /// next build if this one is killed. Returns the directory and whether it is in memory.
    ///
    /// Failure mode: none for the cache (the directory is never part of the output); files
    /// hardlinked from the store cannot be linked into it (another file system).
    pub fn memory_scratch(&mut self, name: &str, bytes: u64) -> Result<(PathBuf, bool), RunError> {
        if let Some(base) = &self.memory
            && crate::memtmp::fits_in(base, bytes)
        {
            let dir = base.join(name);
            match fs_err::create_dir_all(&dir) {
                Ok(()) => return Ok((dir, true)),
                Err(e) => writeln!(self.log, "# nosa: no memory scratch ({e}); using disk")?,
            }
        }
        let dir = self.scratch.join(name);
        fs_err::create_dir_all(&dir)?;
        Ok((dir, false))
    }

    /// Writes dependency `dep`'s output tree under `dest` (copies: the rule may modify them).
    pub fn stage_dep(&self, dep: &DepOutput, dest: &Path) -> Result<(), RunError> {
        let t0 = std::time::Instant::now();
        let tree = self.store.get_tree(&dep.tree)?;
        self.store.materialize(&tree, dest, Materialize::Copy)?;
        crate::exec::timing(&format!("{}: stage {}", self.node, dep.id), t0);
        Ok(())
    }

    /// Makes dependency `dep`'s output appear under `dest` without copying: files are
    /// hardlinks to the store's read-only blobs (mode 0444 whatever the tree records; copied
    /// if a link fails), directories and symlinks as recorded. For outputs the rule only
    /// reads (disk images QEMU opens with `snapshot=on`, a repository it exports).
    ///
    /// Failure mode: writing through one of these files changes the blob in the store (root
    /// ignores its 0444), and with it every output that holds that content.
    pub fn stage_dep_readonly(&self, dep: &DepOutput, dest: &Path) -> Result<(), RunError> {
        let t0 = std::time::Instant::now();
        let tree = self.store.get_tree(&dep.tree)?;
        self.store.materialize(&tree, dest, Materialize::Readonly)?;
        crate::exec::timing(&format!("{}: stage {} read-only", self.node, dep.id), t0);
        Ok(())
    }

    /// Like [`RunContext::stage_dep_readonly`], into a directory the store keeps between runs
    /// of this node (`stage/<node>+<dep>`), brought in line with the dependency's tree by
    /// [`Store::sync_into`]: a run pays for what changed in the dependency since the last one,
    /// not for its whole tree. Returns the directory; it is this node's alone until the run
    /// ends (a lock beside it).
    ///
    /// Failure mode: as for `stage_dep_readonly`, writing through its files changes the store;
    /// anything else the rule leaves there is removed by the next sync, before the rule sees
    /// the directory again.
    pub fn stage_dep_kept(&mut self, dep: &DepOutput) -> Result<PathBuf, RunError> {
        let t0 = std::time::Instant::now();
        let dir = self.kept_dir(&crate::run::file_name_for(&dep.id))?;
        let tree = self.store.get_tree(&dep.tree)?;
        self.store.sync_into(&tree, &dir, Materialize::Readonly)?;
        crate::exec::timing(&format!("{}: sync kept {}", self.node, dep.id), t0);
        Ok(dir)
    }

    /// A directory kept between runs of this node (`stage/<node>+<name>`, on the store's file
    /// system), this run's alone until it ends (a lock beside it), holding whatever the last
    /// run left there, or nothing. The rule must bring it to a known state before it relies
    /// on its contents ([`Store::sync_into`] does). For a rule that would otherwise make
    /// the same hundreds of directories again on every run.
    ///
    /// Failure mode: a rule that trusts what it finds there without syncing it reads what a
    /// killed run or another version of the rule left.
    pub fn kept_dir(&mut self, name: &str) -> Result<PathBuf, RunError> {
        let name = format!("{}+{name}", crate::run::file_name_for(self.node));
        let dir = self.store.stage_path(&name);
        let parent = dir.parent().expect("stage path has a parent");
        fs_err::create_dir_all(parent)?;
        let lock = fs_err::File::create(parent.join(format!("{name}.lock")))?;
        rustix::fs::flock(lock.file(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| RunError::msg(format!("locking {}: {e}", dir.display())))?;
        self.held.push(lock.into_parts().0);
        fs_err::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// With [`RunContext::set_output_tree`], the output's equivalence digest
    /// ([`Rule::equivalence_digest`] reads `out`, which is then empty).
    ///
    /// Failure mode: as for `equivalence_digest`, a digest that stays the same when the
    /// output's meaning changed cuts off dependents that needed to run.
    pub fn set_equivalence(&mut self, digest: Digest) {
        self.produced.equivalence = Some(digest);
    }

    /// Hands the engine the output as a tree of blobs already in the store, instead of files
    /// in `out` (which must then stay empty): a rule that derives its output from its input's
    /// tree pays for what it changed, not for the whole tree.
    ///
    /// Failure mode: a tree naming a blob the store lacks is refused when it is stored; one
    /// that differs from what running would write is a stale artifact like any wrong output.
    pub fn set_output_tree(&mut self, tree: Tree) {
        self.produced.tree = Some(tree);
    }

    /// Keeps `memo` (a tree of blobs in the store) with this run's record, for the node's next
    /// run as [`RunContext::previous_memo`]. Never part of the output or the key.
    pub fn set_memo(&mut self, memo: Tree) {
        self.produced.memo = Some(memo);
    }

    /// [`RunContext::set_memo`] of `files` (path, bytes), each stored as a read-only blob.
    pub fn set_memo_files(&mut self, files: &[(&str, &[u8])]) -> Result<(), RunError> {
        let mut entries = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            entries.push(TreeEntry {
                path: path.to_string(),
                mode: 0o444,
                kind: EntryKind::File {
                    digest: self.store.put_bytes(bytes)?,
                    size: bytes.len() as u64,
                },
            });
        }
        self.set_memo(Tree { entries });
        Ok(())
    }

    /// Says that the rule's command ran on the build farm `farm` (its outputs are in `out`).
    pub fn ran_on_farm(&mut self, farm: &str) {
        self.produced.note = Some(format!("ran on the build farm {farm}"));
        self.produced.farm = Some(farm.to_string());
    }

    /// Says how the run went, for `why` (e.g. why a traced node could not be reused).
    pub fn note(&mut self, note: impl Into<String>) {
        self.produced.note = Some(note.into());
    }

    /// Says that the output was produced by replaying a recorded effect instead of running,
    /// and on what grounds (`reused by trace (12 paths read, unchanged)`).
    pub fn reused(&mut self, note: impl Into<String>) {
        self.produced.note = Some(note.into());
        self.produced.reused = true;
    }

    /// The memo tree the node's last successful run kept ([`RunContext::set_memo`]), if its
    /// record is still in the store; `None` for a forced run. Like `previous`, a hint: the
    /// rule must check that it applies (the tree itself may be gone: read it fallibly).
    pub fn previous_memo(&self) -> Option<Digest> {
        let key = self.previous_key?;
        self.store.get_action::<crate::key::Component>(&key)?.memo
    }

    /// The previous memo tree ([`RunContext::previous_memo`]) with the bytes of its file
    /// `path`, if the store still has both.
    pub fn previous_memo_file(&self, path: &str) -> Option<(Tree, Vec<u8>)> {
        let tree = self.store.get_tree(&self.previous_memo()?).ok()?;
        let bytes = fs_err::read(self.store.blob_path(&tree.file(path)?)).ok()?;
        Some((tree, bytes))
    }

    /// Reads dependency `dep`'s output tree listing.
    pub fn dep_tree(&self, dep: &DepOutput) -> Result<Tree, RunError> {
        Ok(self.store.get_tree(&dep.tree)?)
    }

    /// The store, for rules that read blobs directly.
    pub fn store(&self) -> &Store {
        self.store
    }

    /// Path of this run's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

/// Why a rule's run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A message for the user.
    #[error("{0}")]
    Message(String),
    /// IO, with the path in the message.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] nosa_cache::Error),
}

impl RunError {
    /// A failure with a message.
    pub fn msg(s: impl Into<String>) -> RunError {
        RunError::Message(s.into())
    }
}
