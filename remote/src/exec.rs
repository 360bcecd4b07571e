//! Remote execution over REAPI (`Execution.Execute`): a directory becomes an input root in
//! CAS (files by SHA-256, `Directory` messages bottom-up), the command and action go beside
//! it, the farm runs it, and the outputs come back through CAS, each blob checked against
//! its digest before it is written. nosa's implementation of [`RemoteExecutor`].

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use nosa_engine::{RemoteCommand, RemoteExecutor, RemoteRun, RootFile};
use prost::Message as _;
use reapi::execution_client::ExecutionClient;

use crate::grpc::{GrpcTransport, status_failure};
use crate::{CasId, Failure, in_lanes};

/// How long one remote run may take, queueing included.
const RUN_DEADLINE: Duration = Duration::from_secs(2 * 3600);

/// A build farm speaking REAPI's Execution service.
pub struct Executor {
    url: String,
    t: Arc<GrpcTransport>,
    platform: Vec<(String, String)>,
    off: AtomicBool,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A directory of an input root, before it is named: entries by name.
#[derive(Default)]
struct Dir(std::collections::BTreeMap<String, Entry>);

/// An entry of an input root's directory.
enum Entry {
    File {
        id: CasId,
        path: PathBuf,
        executable: bool,
    },
    Link(String),
    Dir(Dir),
}

/// What an input root is made of: files to upload from disk, and the `Directory` messages.
#[derive(Default)]
struct Root {
    files: Vec<(CasId, PathBuf)>,
    messages: Vec<(CasId, Vec<u8>)>,
}

impl Executor {
    /// The farm at `url`, reached over the remote cache's connection `t` ([`crate::open`]).
    pub(crate) fn new(url: String, t: Arc<GrpcTransport>) -> Executor {
        Executor {
            url,
            t,
            platform: platform_of_this_machine(),
            off: AtomicBool::new(false),
        }
    }

    /// Reads `dir` (hashing its files) into a directory of the input root.
    fn scan_dir(dir: &Path) -> Result<Dir, Failure> {
        let io = |e: std::io::Error| Failure::Other(format!("{}: {e}", dir.display()));
        let mut out = Dir::default();
        for e in fs_err::read_dir(dir).map_err(io)? {
            let e = e.map_err(io)?;
            let name = e
                .file_name()
                .into_string()
                .map_err(|n| Failure::Other(format!("{n:?} in {}: not UTF-8", dir.display())))?;
            let path = e.path();
            let meta = fs_err::symlink_metadata(&path).map_err(io)?;
            let node = if meta.file_type().is_symlink() {
                let target = fs_err::read_link(&path).map_err(io)?;
                Entry::Link(target.to_string_lossy().into_owned())
            } else if meta.is_dir() {
                Entry::Dir(Self::scan_dir(&path)?)
            } else if meta.is_file() {
                let (hash, size) = nosa_cache::sha256_file(&path)
                    .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
                Entry::File {
                    id: CasId { hash, size },
                    path,
                    executable: meta.permissions().mode() & 0o111 != 0,
                }
            } else {
                return Err(Failure::Other(format!(
                    "{}: neither a file, a directory nor a symlink",
                    path.display()
                )));
            };
            out.0.insert(name, node);
        }
        Ok(out)
    }

    /// Puts `f` into `dir` at its path, making the directories on the way.
    fn add_file(dir: &mut Dir, f: &RootFile) -> Result<(), Failure> {
        let bad = |why: &str| Failure::Other(format!("input root file {}: {why}", f.path));
        let mut parts: Vec<&str> = f.path.split('/').collect();
        let name = parts.pop().ok_or_else(|| bad("empty path"))?;
        let mut cur = dir;
        for p in parts {
            safe_name(p)?;
            let next = cur
                .0
                .entry(p.to_string())
                .or_insert_with(|| Entry::Dir(Dir::default()));
            cur = match next {
                Entry::Dir(d) => d,
                _ => return Err(bad("a parent is not a directory")),
            };
        }
        safe_name(name)?;
        let id = match &f.sha256 {
            Some(hash) => CasId {
                hash: hash.clone(),
                size: fs_err::metadata(&f.source)
                    .map_err(|e| Failure::Other(e.to_string()))?
                    .len(),
            },
            None => {
                let (hash, size) = nosa_cache::sha256_file(&f.source)
                    .map_err(|e| Failure::Other(format!("{}: {e}", f.source.display())))?;
                CasId { hash, size }
            }
        };
        match cur.0.get(name) {
            // The same blob placed twice (a dependency's file that is also an input).
            Some(Entry::File { id: there, .. }) if *there == id => Ok(()),
            Some(_) => Err(bad("the directory has another entry there")),
            None => {
                let file = Entry::File {
                    id,
                    path: f.source.clone(),
                    executable: f.executable,
                };
                cur.0.insert(name.to_string(), file);
                Ok(())
            }
        }
    }

    /// Names `d` and everything below it in `root`: its `Directory` message's name.
    fn digest_dir(d: &Dir, root: &mut Root) -> CasId {
        let mut msg = reapi::Directory::default();
        // A BTreeMap of names: sorted as REAPI wants.
        for (name, node) in &d.0 {
            match node {
                Entry::Link(target) => msg.symlinks.push(reapi::SymlinkNode {
                    name: name.clone(),
                    target: target.clone(),
                    ..Default::default()
                }),
                Entry::Dir(sub) => {
                    let id = Self::digest_dir(sub, root);
                    msg.directories.push(reapi::DirectoryNode {
                        name: name.clone(),
                        digest: Some(id.to_reapi()),
                    });
                }
                Entry::File {
                    id,
                    path,
                    executable,
                } => {
                    msg.files.push(reapi::FileNode {
                        name: name.clone(),
                        digest: Some(id.to_reapi()),
                        is_executable: *executable,
                        ..Default::default()
                    });
                    root.files.push((id.clone(), path.clone()));
                }
            }
        }
        let bytes = msg.encode_to_vec();
        let id = CasId::of(&bytes);
        root.messages.push((id.clone(), bytes));
        id
    }

    /// Blob `id`, checked against its digest, written to `to`.
    fn fetch_to(&self, id: &CasId, to: &Path, executable: bool) -> Result<(), Failure> {
        let other = |e: std::io::Error| Failure::Other(format!("{}: {e}", to.display()));
        if let Some(p) = to.parent() {
            fs_err::create_dir_all(p).map_err(other)?;
        }
        let f = fs_err::File::create(to).map_err(other)?;
        let f = crate::read_verified(self.t.as_ref(), id, f).0?;
        let mode = if executable { 0o755 } else { 0o644 };
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(other)
    }

    /// A small message blob, checked against its digest.
    fn fetch_small(&self, id: &CasId) -> Result<Vec<u8>, Failure> {
        crate::read_verified(self.t.as_ref(), id, Vec::new()).0
    }

    /// Writes directory `d` of an output tree at `to`.
    fn write_dir(
        &self,
        d: &reapi::Directory,
        children: &HashMap<CasId, reapi::Directory>,
        to: &Path,
        files: &mut Vec<(CasId, PathBuf, bool)>,
    ) -> Result<(), Failure> {
        let other = |e: std::io::Error| Failure::Other(format!("{}: {e}", to.display()));
        fs_err::create_dir_all(to).map_err(other)?;
        for f in &d.files {
            let id = f
                .digest
                .as_ref()
                .and_then(CasId::from_reapi)
                .ok_or_else(|| {
                    Failure::Other(format!("output file {} has no SHA-256 digest", f.name))
                })?;
            files.push((id, to.join(safe_name(&f.name)?), f.is_executable));
        }
        for s in &d.symlinks {
            std::os::unix::fs::symlink(&s.target, to.join(safe_name(&s.name)?)).map_err(other)?;
        }
        for sub in &d.directories {
            let id = sub
                .digest
                .as_ref()
                .and_then(CasId::from_reapi)
                .ok_or_else(|| {
                    Failure::Other(format!("output directory {} has no digest", sub.name))
                })?;
            let child = children.get(&id).ok_or_else(|| {
                Failure::Other(format!("output tree lacks directory {}", sub.name))
            })?;
            self.write_dir(child, children, &to.join(safe_name(&sub.name)?), files)?;
        }
        Ok(())
    }

    /// The action result's outputs under `out`, and what the command printed. Only paths of
    /// `declared` outputs (or under them) are taken, as a local run takes only those: a
    /// result naming anything else is refused.
    fn take_outputs(
        &self,
        r: &reapi::ActionResult,
        declared: &[String],
        out: &Path,
    ) -> Result<Vec<u8>, Failure> {
        let output_path = |p| declared_path(p, declared);
        let mut files: Vec<(CasId, PathBuf, bool)> = vec![];
        for f in &r.output_files {
            let id = f
                .digest
                .as_ref()
                .and_then(CasId::from_reapi)
                .ok_or_else(|| {
                    Failure::Other(format!("output {} has no SHA-256 digest", f.path))
                })?;
            files.push((id, out.join(output_path(&f.path)?), f.is_executable));
        }
        for s in &r.output_symlinks {
            let to = out.join(output_path(&s.path)?);
            if let Some(p) = to.parent() {
                fs_err::create_dir_all(p).map_err(|e| Failure::Other(e.to_string()))?;
            }
            std::os::unix::fs::symlink(&s.target, &to)
                .map_err(|e| Failure::Other(format!("{}: {e}", to.display())))?;
        }
        for d in &r.output_directories {
            let id = d
                .tree_digest
                .as_ref()
                .and_then(CasId::from_reapi)
                .ok_or_else(|| Failure::Other(format!("output {} has no tree", d.path)))?;
            let tree = reapi::Tree::decode(self.fetch_small(&id)?.as_slice())
                .map_err(|e| Failure::Other(format!("the tree of output {}: {e}", d.path)))?;
            let children: HashMap<CasId, reapi::Directory> = tree
                .children
                .into_iter()
                .map(|c| (CasId::of(&c.encode_to_vec()), c))
                .collect();
            let root = tree.root.unwrap_or_default();
            self.write_dir(
                &root,
                &children,
                &out.join(output_path(&d.path)?),
                &mut files,
            )?;
        }
        in_lanes(&files, |(id, to, x)| self.fetch_to(id, to, *x))?;
        let mut output = r.stdout_raw.clone();
        if let Some(id) = r.stdout_digest.as_ref().and_then(CasId::from_reapi)
            && r.stdout_raw.is_empty()
            && id.size > 0
        {
            output = self.fetch_small(&id)?;
        }
        output.extend_from_slice(&r.stderr_raw);
        if let Some(id) = r.stderr_digest.as_ref().and_then(CasId::from_reapi)
            && r.stderr_raw.is_empty()
            && id.size > 0
        {
            output.extend(self.fetch_small(&id)?);
        }
        Ok(output)
    }

    fn execute_inner(&self, cmd: &RemoteCommand<'_>) -> Result<(i32, Vec<u8>), Failure> {
        let mut dir = Self::scan_dir(cmd.root)?;
        for f in cmd.files {
            Self::add_file(&mut dir, f)?;
        }
        let mut root = Root::default();
        let root_id = Self::digest_dir(&dir, &mut root);
        let mut env: Vec<(String, String)> = cmd.env.to_vec();
        env.sort();
        let mut outputs = cmd.outputs.to_vec();
        outputs.sort();
        let platform = reapi::Platform {
            properties: self
                .platform
                .iter()
                .chain(cmd.platform)
                .map(|(name, value)| reapi::platform::Property {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        };
        // The platform goes in the action (REAPI 2.2) and in the command, where servers
        // older than 2.2 look for it.
        #[allow(deprecated)]
        let command = reapi::Command {
            arguments: cmd.argv.to_vec(),
            environment_variables: env
                .into_iter()
                .map(|(name, value)| reapi::command::EnvironmentVariable { name, value })
                .collect(),
            output_paths: outputs,
            platform: Some(platform.clone()),
            ..Default::default()
        }
        .encode_to_vec();
        let command_id = CasId::of(&command);
        let action = reapi::Action {
            command_digest: Some(command_id.to_reapi()),
            input_root_digest: Some(root_id.to_reapi()),
            platform: Some(platform),
            ..Default::default()
        }
        .encode_to_vec();
        let action_id = CasId::of(&action);
        let mut blobs = root.messages;
        blobs.extend([(command_id, command), (action_id.clone(), action)]);
        crate::upload_missing(self.t.as_ref(), &root.files, blobs)?;

        let req = self.t.request(reapi::ExecuteRequest {
            instance_name: self.t.instance.clone(),
            action_digest: Some(action_id.to_reapi()),
            ..Default::default()
        });
        let op = self.t.run(RUN_DEADLINE, async {
            let mut stream = ExecutionClient::new(self.t.channel.clone())
                .execute(req)
                .await
                .map_err(|s| status_failure(&s))?
                .into_inner();
            while let Some(op) = stream.message().await.map_err(|s| status_failure(&s))? {
                if op.done {
                    return Ok(op);
                }
            }
            Err(Failure::Outage(
                "the execution's stream ended before it was done".into(),
            ))
        })?;
        use bazel_remote_apis::google::longrunning::operation::Result as OpResult;
        let response = match op.result {
            Some(OpResult::Response(any)) => {
                reapi::ExecuteResponse::decode(any.value.as_slice())
                    .map_err(|e| Failure::Other(format!("the execution's response: {e}")))?
            }
            Some(OpResult::Error(s)) => {
                return Err(Failure::Outage(format!(
                    "the execution failed: {} (code {})",
                    s.message, s.code
                )));
            }
            None => return Err(Failure::Outage("the execution gave no result".into())),
        };
        if let Some(s) = response.status.as_ref().filter(|s| s.code != 0) {
            return Err(Failure::Outage(format!(
                "the execution failed: {} (code {})",
                s.message, s.code
            )));
        }
        let result = response
            .result
            .ok_or_else(|| Failure::Other("the execution gave no action result".into()))?;
        let output = self.take_outputs(&result, cmd.outputs, cmd.out)?;
        Ok((result.exit_code, output))
    }
}

/// A name of an output tree: one path component.
fn safe_name(n: &str) -> Result<&str, Failure> {
    if n.is_empty() || n == "." || n == ".." || n.contains('/') {
        return Err(Failure::Other(format!("the output tree names {n:?}")));
    }
    Ok(n)
}

/// Output path `p` of an action result, if it is one of `declared` or under one: relative,
/// without `..`.
fn declared_path<'p>(p: &'p str, declared: &[String]) -> Result<&'p str, Failure> {
    let under = |d: &String| {
        let d = d.trim_end_matches('/');
        p == d || p.strip_prefix(d).is_some_and(|rest| rest.starts_with('/'))
    };
    if p.is_empty()
        || p.starts_with('/')
        || p.split('/').any(|c| c == "..")
        || !declared.iter().any(under)
    {
        return Err(Failure::Other(format!(
            "the action result names output {p:?}, which the command did not declare"
        )));
    }
    Ok(p)
}

/// The platform properties of a command made here, so that the farm runs it on a worker like
/// this machine: REAPI's `OSFamily` and `ISA`.
fn platform_of_this_machine() -> Vec<(String, String)> {
    let isa = match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "aarch64",
        a => a,
    };
    vec![
        ("ISA".to_string(), isa.to_string()),
        ("OSFamily".to_string(), "linux".to_string()),
    ]
}

impl RemoteExecutor for Executor {
    fn execute(&self, cmd: &RemoteCommand<'_>) -> RemoteRun {
        if self.off.load(Ordering::Relaxed) {
            return RemoteRun::Unavailable("the build farm failed earlier in this build".into());
        }
        match self.execute_inner(cmd) {
            Ok((exit_code, output)) => RemoteRun::Done { exit_code, output },
            Err(Failure::NotFound) => self.unavailable("a blob it needs is gone (not found)"),
            Err(Failure::Outage(why) | Failure::Other(why)) => self.unavailable(&why),
        }
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

impl Executor {
    fn unavailable(&self, why: &str) -> RemoteRun {
        if !self.off.swap(true, Ordering::SeqCst) {
            eprintln!(
                "warning: build farm {}: {why}; running commands locally from here on",
                self.url
            );
        }
        RemoteRun::Unavailable(why.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_root_names_files_dirs_and_symlinks_by_content() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs_err::create_dir_all(d.join("sub")).unwrap();
        fs_err::write(d.join("a"), "x").unwrap();
        fs_err::write(d.join("sub/b"), "x").unwrap();
        fs_err::set_permissions(d.join("sub/b"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("a", d.join("link")).unwrap();
        let mut root = Root::default();
        let id = Executor::digest_dir(&Executor::scan_dir(d).unwrap(), &mut root);
        assert_eq!(root.files.len(), 2);
        assert_eq!(root.files[0].0, root.files[1].0, "same content, same blob");
        assert_eq!(root.messages.len(), 2);
        let top = reapi::Directory::decode(root.messages[1].1.as_slice()).unwrap();
        assert_eq!(root.messages[1].0, id);
        let names: Vec<&str> = top.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(top.directories[0].name, "sub");
        assert_eq!(top.symlinks[0].target, "a");
        let sub = reapi::Directory::decode(root.messages[0].1.as_slice()).unwrap();
        assert!(sub.files[0].is_executable);
        // Another directory with the same content has the same name.
        let t2 = tempfile::tempdir().unwrap();
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", d.display()))
            .arg(t2.path())
            .status()
            .unwrap();
        assert!(copied.success());
        let scanned = Executor::scan_dir(t2.path()).unwrap();
        assert_eq!(Executor::digest_dir(&scanned, &mut Root::default()), id);
    }

    #[test]
    fn output_paths_stay_under_the_declared_outputs() {
        let declared = ["out".to_string(), "final/wc.txt".to_string()];
        assert!(declared_path("out/a", &declared).is_ok());
        assert!(declared_path("out", &declared).is_ok());
        assert!(declared_path("final/wc.txt", &declared).is_ok());
        assert!(
            declared_path("outside", &declared).is_err(),
            "a prefix is not a parent"
        );
        assert!(declared_path("final/other", &declared).is_err());
        assert!(declared_path("out/../x", &declared).is_err());
        assert!(declared_path("/etc", &declared).is_err());
        assert!(safe_name("a/b").is_err() && safe_name("..").is_err());
    }
}
