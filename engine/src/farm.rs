//! Nodes on a build farm: a rule that describes itself ([`Rule::portable`]) runs on a worker
//! as `nosa-core exec-node node.json`, in an input root that holds the program, the node's
//! description and a store with its input files and its dependencies' trees and blobs. The
//! worker's output comes back as a tree and its blobs, each blob checked against its BLAKE3
//! name before the local store takes it, as a remote cache hit is.
//!
//! The input root (the farm's client uploads only what its CAS lacks):
//!
//! ```text
//! nosa-core                          the program (this one's own binary)
//! node.json                          NodeFile: rule, parameters' digest, inputs, deps
//! store/trees/<aa>/<tree>.json       each dependency's output tree
//! store/blobs/<aa>/<blob>            each blob those trees name, and each input file
//! ```
//!
//! and its one output, [`FARM_OUTPUT`]: `result.json` (the tree's digest, the equivalence
//! digest, the note, or the rule's error), `tree.json`, `blobs/<blob>` and `log`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nosa_cache::{Digest, Store, Tree};
use serde::{Deserialize, Serialize};

use crate::exec::Engine;
use crate::key::Params;
use crate::node::{DepOutput, InputFile, Portable, Produced, Rule, RunContext, RunError};
use crate::remote::{RemoteCommand, RemoteExecutor, RemoteRun, RootFile};
use crate::run::{Job, panic_text};

/// The output directory of a node run on the farm, relative to the input root.
pub const FARM_OUTPUT: &str = "result";

/// The version of the input root's and output's layout.
const FORMAT: u32 = 1;

/// Makes a rule again from its kind and [`Portable::spec`], on the worker.
pub type Decode = dyn Fn(&str, &str) -> Result<Box<dyn Rule>, String>;

/// `node.json`: what the worker runs.
#[derive(Debug, Serialize, Deserialize)]
struct NodeFile {
    format: u32,
    id: String,
    kind: String,
    version: u32,
    spec: String,
    /// The digest of the rule's parameters here: the worker's rule must have the same.
    params: Digest,
    own_key: Digest,
    inputs: Vec<NodeInput>,
    deps: Vec<DepOutput>,
}

/// A declared input: a blob of the input root's store, or a symlink.
#[derive(Debug, Serialize, Deserialize)]
struct NodeInput {
    rel: String,
    mode: u32,
    digest: Digest,
    link: Option<String>,
}

/// `result.json`: what the worker's run gave.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ResultFile {
    tree: Option<Digest>,
    equivalence: Option<Digest>,
    note: Option<String>,
    error: Option<String>,
}

/// The engine's side of nodes on the farm: the program it ships, and whether the farm still
/// runs nodes in this build.
#[derive(Debug)]
pub(crate) struct FarmNodes {
    program: PathBuf,
    /// The program as a blob of the local store, with its SHA-256 (once per process).
    program_blob: OnceLock<Result<(PathBuf, String), String>>,
    off: AtomicBool,
}

impl FarmNodes {
    pub(crate) fn new(program: PathBuf) -> FarmNodes {
        FarmNodes {
            program,
            program_blob: OnceLock::new(),
            off: AtomicBool::new(false),
        }
    }
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |e| RunError::msg(format!("{}: {e}", what.display()))
}

fn json_err(what: &str) -> impl Fn(serde_json::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The path of blob `d` in a store rooted at `store/` of the input root.
fn blob_rel(d: &Digest) -> String {
    let hex = d.to_hex();
    format!("store/blobs/{}/{hex}", &hex[..2])
}

impl Engine {
    /// Runs `job` on the build farm when its rule can run there and the build executes
    /// remotely. `Ok(None)`: it did not (no farm, a rule that stays here, or a farm that could
    /// not run it, which the log and one warning say); the node then runs here.
    pub(crate) fn run_on_farm(
        &self,
        job: &Job,
        own_key: Digest,
        base: &Path,
        log: &mut dyn Write,
    ) -> Result<Option<Produced>, RunError> {
        let (Some(farm), Some(nodes)) = (self.executor.as_deref(), self.farm.as_deref()) else {
            return Ok(None);
        };
        let Some(portable) = job.rule.portable() else {
            return Ok(None);
        };
        if nodes.off.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match self.farm_run(job, own_key, &portable, (farm, nodes), base, log)? {
            Ok(out) => Ok(Some(out)),
            Err(why) => {
                writeln!(
                    log,
                    "# nosa: the build farm could not run it ({why}); running here"
                )?;
                if !nodes.off.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "warning: build farm {}: {}: {why}; running nodes here from now on",
                        farm.describe(),
                        job.id
                    );
                }
                Ok(None)
            }
        }
    }

    /// The program as a store blob and its SHA-256.
    fn program_blob(&self, nodes: &FarmNodes) -> Result<(PathBuf, String), String> {
        nodes
            .program_blob
            .get_or_init(|| {
                let d = self
                    .store
                    .put_file(&nodes.program, false)
                    .map_err(|e| format!("{}: {e}", nodes.program.display()))?;
                let sha = self.store.sha256_of(&d).map_err(|e| e.to_string())?;
                Ok((self.store.blob_path(&d), sha))
            })
            .clone()
    }

    /// The farm's run: `Err(Ok(why))`-like outcomes are the inner `Err` (the farm could not
    /// run it); the outer `Err` fails the node (the rule failed there, or the store here).
    fn farm_run(
        &self,
        job: &Job,
        own_key: Digest,
        portable: &Portable,
        (farm, nodes): (&dyn RemoteExecutor, &FarmNodes),
        base: &Path,
        log: &mut dyn Write,
    ) -> Result<Result<Produced, String>, RunError> {
        let root = base.join("farm-root");
        let out = base.join("farm-out");
        fs_err::create_dir_all(&root)?;
        fs_err::create_dir_all(&out)?;
        let (program, program_sha) = match self.program_blob(nodes) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let mut files = vec![RootFile {
            path: "nosa-core".into(),
            source: program,
            sha256: Some(program_sha),
            executable: true,
        }];
        let mut placed: HashSet<Digest> = HashSet::new();
        let mut place = |d: Digest, source: Option<&Path>| -> Result<(), RunError> {
            if !placed.insert(d) {
                return Ok(());
            }
            let (source, sha256) = if self.store.has_blob(&d) {
                (self.store.blob_path(&d), Some(self.store.sha256_of(&d)?))
            } else {
                let Some(s) = source else {
                    return Err(RunError::msg(format!(
                        "blob {} is not in the store",
                        d.short()
                    )));
                };
                (s.to_path_buf(), None)
            };
            files.push(RootFile {
                path: blob_rel(&d),
                source,
                sha256,
                executable: false,
            });
            Ok(())
        };
        for dep in &job.deps {
            let tree = self.store.get_tree(&dep.tree)?;
            let from = self.store.tree_path(&dep.tree);
            let to = root.join("store").join(
                from.strip_prefix(self.store.root())
                    .expect("tree under the store"),
            );
            fs_err::create_dir_all(to.parent().expect("sharded path"))?;
            // The store's own file (the worker checks it against its name).
            fs_err::copy(&from, &to)?;
            for b in tree.blobs() {
                place(b, None)?;
            }
        }
        let mut inputs = Vec::with_capacity(job.inputs.len());
        for f in &job.inputs {
            let link = if f.symlink {
                Some(fs_err::read_link(&f.abs)?.to_string_lossy().into_owned())
            } else {
                place(f.digest, Some(&f.abs))?;
                None
            };
            inputs.push(NodeInput {
                rel: f.rel.clone(),
                mode: f.mode,
                digest: f.digest,
                link,
            });
        }
        let mut params = Params::default();
        job.rule.params(&mut params);
        let node = NodeFile {
            format: FORMAT,
            id: job.id.clone(),
            kind: job.rule.kind().to_string(),
            version: job.rule.version(),
            spec: portable.spec.clone(),
            params: params.digest(),
            own_key,
            inputs,
            deps: job.deps.clone(),
        };
        fs_err::write(
            root.join("node.json"),
            serde_json::to_vec_pretty(&node).map_err(|e| RunError::msg(e.to_string()))?,
        )?;
        let argv = [
            "./nosa-core".to_string(),
            "exec-node".to_string(),
            "node.json".to_string(),
        ];
        let env = [
            ("LC_ALL".to_string(), "C.UTF-8".to_string()),
            (
                "PATH".to_string(),
                "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("TZ".to_string(), "UTC".to_string()),
        ];
        let mut tools = portable.tools.clone();
        tools.sort();
        tools.dedup();
        let platform: Vec<(String, String)> = if tools.is_empty() {
            vec![]
        } else {
            vec![("nosa-tools".to_string(), tools.join(","))]
        };
        let outputs = [FARM_OUTPUT.to_string()];
        writeln!(log, "# nosa: running on the build farm {}", farm.describe())?;
        let cmd = RemoteCommand {
            root: &root,
            argv: &argv,
            env: &env,
            outputs: &outputs,
            out: &out,
            files: &files,
            platform: &platform,
        };
        let (exit_code, output) = match farm.execute(&cmd) {
            RemoteRun::Unavailable(why) => return Ok(Err(why)),
            RemoteRun::Done { exit_code, output } => (exit_code, output),
        };
        let result_dir = out.join(FARM_OUTPUT);
        if let Ok(worker_log) = fs_err::read(result_dir.join("log")) {
            log.write_all(&worker_log)?;
        }
        log.write_all(&output)?;
        let result: ResultFile = match fs_err::read(result_dir.join("result.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(json_err("result.json")))
        {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err(format!(
                    "exec-node exited with {exit_code} and no result ({e})"
                )));
            }
        };
        if let Some(error) = result.error {
            return Err(RunError::msg(format!(
                "{error} (on the build farm {})",
                farm.describe()
            )));
        }
        match self.take_farm_tree(&result_dir, &result) {
            Ok(tree) => Ok(Ok(Produced {
                tree: Some(tree),
                equivalence: result.equivalence,
                note: Some(match &result.note {
                    Some(n) => format!("ran on the build farm {} ({n})", farm.describe()),
                    None => format!("ran on the build farm {}", farm.describe()),
                }),
                farm: Some(farm.describe()),
                ..Produced::default()
            })),
            Err(why) => Ok(Err(format!("its result is unusable: {why}"))),
        }
    }

    /// The output tree the worker sent, its blobs in the local store (each named by what it
    /// hashes to here), the tree checked against the digest the worker reported.
    fn take_farm_tree(&self, dir: &Path, result: &ResultFile) -> Result<Tree, String> {
        let want = result.tree.ok_or("result.json names no tree")?;
        let bytes = fs_err::read(dir.join("tree.json")).map_err(|e| e.to_string())?;
        let mut tree: Tree = serde_json::from_slice(&bytes).map_err(json_err("tree.json"))?;
        tree.normalize();
        if tree.digest() != want {
            return Err(format!(
                "tree.json is tree {}, result.json says {}",
                tree.digest().short(),
                want.short()
            ));
        }
        let blobs = dir.join("blobs");
        if blobs.exists() {
            for e in fs_err::read_dir(&blobs).map_err(|e| e.to_string())? {
                let e = e.map_err(|e| e.to_string())?;
                let name = e.file_name().to_string_lossy().into_owned();
                let named: Digest = name.parse().map_err(|e| format!("blobs/{name}: {e}"))?;
                let got = self
                    .store
                    .put_file(&e.path(), true)
                    .map_err(|e| format!("blobs/{name}: {e}"))?;
                if got != named {
                    return Err(format!(
                        "blobs/{name} does not match its name (it is {})",
                        got.short()
                    ));
                }
            }
        }
        if let Some(missing) = tree.blobs().find(|b| !self.store.has_blob(b)) {
            return Err(format!(
                "the tree names blob {} it did not send",
                missing.short()
            ));
        }
        Ok(tree)
    }
}

/// `nosa-core exec-node`: runs the node `node_file` (relative to the input root, the current
/// directory) describes, with the rule `decode` makes, and writes [`FARM_OUTPUT`]. `Ok(true)`:
/// the rule succeeded; `Ok(false)`: it failed, and `result.json` says why; `Err`: the node
/// could not be run here at all (a broken input root, another rule).
pub fn exec_node(node_file: &Path, decode: &Decode) -> Result<bool, String> {
    let root = node_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let node: NodeFile = serde_json::from_slice(&fs_err::read(node_file).map_err(|e| s(&e))?)
        .map_err(json_err("node.json"))?;
    if node.format != FORMAT {
        return Err(format!(
            "node.json has format {}, this nosa reads {FORMAT}",
            node.format
        ));
    }
    let rule = decode(&node.kind, &node.spec)?;
    let mut params = Params::default();
    rule.params(&mut params);
    if rule.kind() != node.kind || rule.version() != node.version || params.digest() != node.params
    {
        return Err(format!(
            "{}: this nosa's rule {} v{} is not the client's {} v{} with the same parameters",
            node.id,
            rule.kind(),
            rule.version(),
            node.kind,
            node.version
        ));
    }
    let store = Store::open(root.join("store")).map_err(|e| s(&e))?;
    let result_dir = root.join(FARM_OUTPUT);
    let work = root.join("work");
    for d in [&result_dir, &work] {
        fs_err::create_dir_all(d).map_err(|e| s(&e))?;
    }
    let log_path = result_dir.join("log");
    let mut log = fs_err::File::create(&log_path).map_err(|e| s(&e))?;
    let outcome = run_here(&*rule, &node, &store, &work, &result_dir, &mut log);
    let result = match outcome {
        Ok(r) => r,
        Err(e) => ResultFile {
            error: Some(e.to_string()),
            ..ResultFile::default()
        },
    };
    let failed = result.error.is_some();
    fs_err::write(
        result_dir.join("result.json"),
        serde_json::to_vec_pretty(&result).map_err(|e| s(&e))?,
    )
    .map_err(|e| s(&e))?;
    Ok(!failed)
}

/// The node's run on the worker, its output written to `result_dir`.
fn run_here(
    rule: &dyn Rule,
    node: &NodeFile,
    store: &Store,
    work: &Path,
    result_dir: &Path,
    log: &mut fs_err::File,
) -> Result<ResultFile, RunError> {
    let input_dir = work.join("in");
    let mut inputs = Vec::with_capacity(node.inputs.len());
    for i in &node.inputs {
        crate::inputs::check_relative(&i.rel).map_err(RunError::msg)?;
        let abs = input_dir.join(&i.rel);
        fs_err::create_dir_all(abs.parent().expect("under in/"))?;
        match &i.link {
            Some(target) => std::os::unix::fs::symlink(target, &abs).map_err(io(&abs))?,
            None => {
                fs_err::copy(store.blob_path(&i.digest), &abs)?;
                if nosa_cache::hash_file(&abs)? != i.digest {
                    return Err(RunError::msg(format!(
                        "input {} does not match its digest",
                        i.rel
                    )));
                }
                use std::os::unix::fs::PermissionsExt;
                fs_err::set_permissions(&abs, std::fs::Permissions::from_mode(i.mode))?;
            }
        }
        inputs.push(InputFile {
            rel: i.rel.clone(),
            abs,
            digest: i.digest,
            symlink: i.link.is_some(),
            mode: i.mode,
        });
    }
    let out = work.join("out");
    let scratch = work.join("scratch");
    fs_err::create_dir_all(&out)?;
    fs_err::create_dir_all(&scratch)?;
    let produced;
    let run = {
        let mut ctx = RunContext {
            node: &node.id,
            inputs: &inputs,
            deps: &node.deps,
            out: out.clone(),
            scratch,
            log,
            previous: None,
            own_key: node.own_key,
            previous_key: None,
            store,
            log_path: result_dir.join("log"),
            produced: Produced::default(),
            memory: None,
            held: Vec::new(),
            executor: None,
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rule.run(&mut ctx)));
        produced = std::mem::take(&mut ctx.produced);
        r.unwrap_or_else(|p| Err(RunError::msg(format!("rule panicked: {}", panic_text(&*p)))))
    };
    run?;
    let equivalence = rule.equivalence_digest(&out).or(produced.equivalence);
    let tree = match produced.tree {
        Some(mut t) => {
            t.normalize();
            crate::run::put_complete_tree(store, &t)?;
            t
        }
        None => {
            // The worker's sandbox may not run as root: what the rule made unreadable to its
            // owner (a package's 0000 /etc/shadow) is opened up to be read, and recorded with
            // the mode the rule gave it.
            let closed = open_up(&out)?;
            let mut t = store.ingest_dir(&out, true)?.1;
            for e in &mut t.entries {
                if let Some(mode) = closed.get(&e.path) {
                    e.mode = *mode;
                }
            }
            t
        }
    };
    let blobs = result_dir.join("blobs");
    fs_err::create_dir_all(&blobs)?;
    let mut sent = HashSet::new();
    for b in tree.blobs() {
        if sent.insert(b) {
            let to = blobs.join(b.to_hex());
            if std::fs::hard_link(store.blob_path(&b), &to).is_err() {
                fs_err::copy(store.blob_path(&b), &to)?;
            }
        }
    }
    fs_err::write(
        result_dir.join("tree.json"),
        serde_json::to_vec(&tree).map_err(|e| RunError::msg(e.to_string()))?,
    )?;
    Ok(ResultFile {
        tree: Some(tree.digest()),
        equivalence,
        note: produced.note,
        error: None,
    })
}

/// Gives the owner read access (and search and write for directories) to whatever under
/// `dir` lacks it; returns those paths (relative, as a tree names them) with their modes.
fn open_up(dir: &Path) -> Result<std::collections::BTreeMap<String, u32>, RunError> {
    use std::os::unix::fs::PermissionsExt;
    let mut closed = std::collections::BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let e = e.map_err(|e| RunError::msg(e.to_string()))?;
        let t = e.file_type();
        let need = if t.is_dir() {
            0o700
        } else if t.is_file() {
            0o400
        } else {
            continue;
        };
        let mode = e
            .metadata()
            .map_err(|e| RunError::msg(e.to_string()))?
            .permissions()
            .mode()
            & 0o7777;
        if mode & need != need {
            fs_err::set_permissions(e.path(), std::fs::Permissions::from_mode(mode | need))?;
            let rel = e.path().strip_prefix(dir).expect("under dir");
            closed.insert(rel.to_string_lossy().into_owned(), mode);
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Copies its one input to `copy` and makes a 0000 file beside it; fails when told to.
    struct Copy {
        fail: bool,
        salt: &'static str,
    }

    impl Rule for Copy {
        fn kind(&self) -> &str {
            "copy"
        }
        fn version(&self) -> u32 {
            1
        }
        fn params(&self, p: &mut Params) {
            p.add("fail", &self.fail).add("salt", self.salt);
        }
        fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
            if self.fail {
                writeln!(ctx.log, "about to fail")?;
                return Err(RunError::msg("told to fail"));
            }
            let [input] = ctx.inputs else {
                return Err(RunError::msg("one input"));
            };
            fs_err::copy(&input.abs, ctx.out.join("copy"))?;
            fs_err::write(ctx.out.join("secret"), "s")?;
            fs_err::set_permissions(
                ctx.out.join("secret"),
                std::fs::Permissions::from_mode(0o000),
            )?;
            Ok(())
        }
    }

    /// An input root for a `Copy` rule made with `fail` and `salt` "a", its input `in.sh`.
    fn root(fail: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path().join("store")).unwrap();
        let d = store.put_bytes(b"echo hi\n").unwrap();
        let mut params = Params::default();
        Copy { fail, salt: "a" }.params(&mut params);
        let node = NodeFile {
            format: FORMAT,
            id: "copy:x".into(),
            kind: "copy".into(),
            version: 1,
            spec: String::new(),
            params: params.digest(),
            own_key: Digest::of(b"own"),
            inputs: vec![NodeInput {
                rel: "in.sh".into(),
                mode: 0o755,
                digest: d,
                link: None,
            }],
            deps: vec![],
        };
        fs_err::write(
            t.path().join("node.json"),
            serde_json::to_vec(&node).unwrap(),
        )
        .unwrap();
        t
    }

    fn decode(
        fail: bool,
        salt: &'static str,
    ) -> impl Fn(&str, &str) -> Result<Box<dyn Rule>, String> {
        move |_, _| Ok(Box::new(Copy { fail, salt }) as Box<dyn Rule>)
    }

    fn result(t: &Path) -> ResultFile {
        serde_json::from_slice(&fs_err::read(t.join("result/result.json")).unwrap()).unwrap()
    }

    #[test]
    fn a_worker_sends_its_output_tree_with_the_modes_the_rule_gave() {
        let t = root(false);
        assert_eq!(
            exec_node(&t.path().join("node.json"), &decode(false, "a")),
            Ok(true)
        );
        let r = result(t.path());
        assert!(r.error.is_none());
        let tree: Tree =
            serde_json::from_slice(&fs_err::read(t.path().join("result/tree.json")).unwrap())
                .unwrap();
        assert_eq!(Some(tree.digest()), r.tree);
        let modes: Vec<(&str, u32)> = tree
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.mode))
            .collect();
        assert_eq!(modes, [("copy", 0o755), ("secret", 0)]);
        for b in tree.blobs() {
            let sent = t.path().join("result/blobs").join(b.to_hex());
            assert_eq!(nosa_cache::hash_file(&sent).unwrap(), b);
        }
    }

    #[test]
    fn a_rule_failing_on_the_worker_says_why_in_its_result() {
        let t = root(true);
        assert_eq!(
            exec_node(&t.path().join("node.json"), &decode(true, "a")),
            Ok(false)
        );
        assert_eq!(result(t.path()).error.as_deref(), Some("told to fail"));
        let log = fs_err::read_to_string(t.path().join("result/log")).unwrap();
        assert!(log.contains("about to fail"), "{log}");
    }

    #[test]
    fn a_worker_refuses_a_rule_with_other_parameters_or_a_changed_input() {
        let t = root(false);
        let e = exec_node(&t.path().join("node.json"), &decode(false, "b")).unwrap_err();
        assert!(e.contains("not the client's"), "{e}");
        assert!(!t.path().join("result").exists(), "nothing ran");

        let t = root(false);
        let store = Store::open(t.path().join("store")).unwrap();
        let blob = store.blob_path(&Digest::of(b"echo hi\n"));
        fs_err::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
        fs_err::write(&blob, "echo bye\n").unwrap();
        assert_eq!(
            exec_node(&t.path().join("node.json"), &decode(false, "a")),
            Ok(false)
        );
        let e = result(t.path()).error.unwrap();
        assert!(e.contains("in.sh does not match its digest"), "{e}");
    }
}
