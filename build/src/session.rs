//! A loaded workdir: the build file and configs expanded into a graph, the engine and its
//! store, the workdir lock when the operation writes, and the commit versions an OS build
//! assigned (kept across the re-expansions of a staged build).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nosa_cache::{Digest, EntryKind, Store, WorkdirLock};
use nosa_engine::{BuildState, Engine, Planned};

use crate::builds::BuildsDir;
use crate::expand::{CommitVersion, Known};
use crate::pins::Pins;
use crate::{BUILD_FILE, BuildFile, Error, Workspace};

/// `resolved.json`, the output of a resolve node that lists the packages to install.
#[derive(serde::Deserialize)]
struct ResolvedFile {
    arch: String,
    packages: Vec<nosa_solve::ResolvedPackage>,
}

/// The workdir: the nearest directory at or above `start` that has `nestos.build.toml`, and
/// that file.
pub fn find_workdir(start: &Path) -> Result<(PathBuf, PathBuf), Error> {
    match BuildFile::find(start) {
        Some(file) => Ok((file.parent().expect("file in a dir").to_path_buf(), file)),
        None => Err(Error::usage(
            format!(
                "no {BUILD_FILE} in {} or any parent directory",
                start.display()
            ),
            "run `nosa init <config>` to make a workdir, or pass -C DIR",
        )),
    }
}

/// The store of workdir `w`.
pub fn store_dir(w: &Path) -> PathBuf {
    w.join("cache").join("store")
}

/// How to take the workdir lock.
pub struct LockRequest<'a> {
    /// Who takes it (`nosa build`), for whoever waits on it.
    pub what: &'a str,
    /// Wait for the holder (else fail at once).
    pub wait: bool,
    /// Told who holds it, once, before waiting.
    pub on_wait: &'a mut dyn FnMut(&str),
}

/// Takes the workdir lock of `workdir`.
pub fn lock(workdir: &Path, req: LockRequest<'_>) -> Result<WorkdirLock, Error> {
    WorkdirLock::acquire(&workdir.join(".nosa.lock"), req.wait, req.what, req.on_wait).map_err(
        |e| match e {
            nosa_cache::Error::Locked { holder, .. } => Error::refused(
                format!("the workdir {} is locked by {holder}", workdir.display()),
                "wait for it to finish, or drop --no-wait to wait",
            ),
            other => Error::Store(other),
        },
    )
}

/// A loaded workdir: its graph, store and engine.
pub struct Session {
    /// The build file, configs and graph.
    pub ws: Workspace,
    /// The engine of the workdir.
    pub engine: Engine,
    arch: Option<String>,
    strict: bool,
    /// Commit versions assigned by an OS build, kept across re-expansions.
    pub versions: BTreeMap<String, CommitVersion>,
    _lock: Option<WorkdirLock>,
}

impl Session {
    /// Loads the workdir found from `start` for `arch` (all configured arches if `None`);
    /// with `lock`, takes the workdir lock first. With `strict` false, a config's missing
    /// repository definitions are warnings (to inspect a broken config).
    pub fn open(
        start: &Path,
        lock_req: Option<LockRequest<'_>>,
        arch: Option<&str>,
        strict: bool,
    ) -> Result<Session, Error> {
        let (workdir, file) = find_workdir(start)?;
        let lock = match lock_req {
            Some(req) => Some(lock(&workdir, req)?),
            None => None,
        };
        let store = Store::open(store_dir(&workdir))?;
        let engine = Engine::new(workdir, store);
        Self::load(engine, &file, lock, arch, strict)
    }

    /// Loads the graph of `file` for `engine`'s workdir, whose lock `lock` is (if taken).
    pub fn load(
        engine: Engine,
        file: &Path,
        lock: Option<WorkdirLock>,
        arch: Option<&str>,
        strict: bool,
    ) -> Result<Session, Error> {
        if lock.is_some() {
            // Read the engine's state while the graph loads (on a second core).
            engine.prefetch();
        }
        let bf = BuildFile::load_cached(file, engine.store())
            .map_err(|e| Box::new(crate::WorkspaceError::File(e)))?;
        let ws = Workspace::with_options(bf, arch, strict).map_err(Box::new)?;
        Ok(Session {
            ws,
            engine,
            arch: arch.map(str::to_string),
            strict,
            versions: Default::default(),
            _lock: lock,
        })
    }

    /// The workdir.
    pub fn workdir(&self) -> &Path {
        self.engine.workdir()
    }

    /// The workdir's builds/ directory.
    pub fn builds(&self) -> BuildsDir {
        BuildsDir::of(self.engine.workdir())
    }

    /// The configured arches of this session, in order.
    pub fn arches(&self) -> Vec<String> {
        self.ws.configs.iter().map(|c| c.arch.to_string()).collect()
    }

    /// The `resolve:` nodes among `nodes` and their dependencies.
    pub fn resolve_nodes(&self, nodes: &[usize]) -> Vec<usize> {
        self.ws
            .graph
            .closure(nodes)
            .into_iter()
            .filter(|&i| self.ws.graph.node(i).rule.kind() == "resolve")
            .collect()
    }

    /// The store blob (path and digest) of file `path` in node `id`'s last good output, per
    /// `state`. Read-only: it is the store's copy.
    pub fn output_blob(
        &self,
        state: &BuildState,
        id: &str,
        path: &str,
    ) -> Option<(PathBuf, Digest)> {
        let good = state.nodes.get(id).and_then(|n| n.good)?;
        let tree = self.engine.store().get_tree(&good.tree).ok()?;
        let digest = tree.entries.iter().find_map(|e| match &e.kind {
            EntryKind::File { digest, .. } if e.path == path => Some(*digest),
            _ => None,
        })?;
        Some((self.engine.store().blob_path(&digest), digest))
    }

    /// The content of file `path` in node `id`'s last good output, per `state`.
    pub fn output_file(&self, state: &BuildState, id: &str, path: &str) -> Option<Vec<u8>> {
        let (blob, _) = self.output_blob(state, id, path)?;
        fs_err::read(blob).ok()
    }

    /// Rebuilds the graph with the package sets of the given `resolve:` nodes, read from their
    /// last good outputs. Call only for resolve nodes that are current (built in this
    /// invocation, or planned up to date): an older output would expand stale package nodes.
    pub fn expand_packages(&mut self, resolves: &[usize]) -> Result<(), Error> {
        let state = self.engine.state();
        let mut known = Known {
            pins: Pins::load(self.engine.workdir()),
            versions: self.versions.clone(),
            ..Default::default()
        };
        for &i in resolves {
            let id = &self.ws.graph.node(i).id;
            if state.nodes.get(id).and_then(|n| n.good).is_none() {
                continue;
            }
            let bytes = self.output_file(&state, id, "resolved.json").ok_or_else(|| {
                std::io::Error::other(format!(
                    "{id}: its cached output has no readable resolved.json (run `nosa prune` or `nosa clean --all`)"
                ))
            })?;
            let v: ResolvedFile = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
            known.resolved.insert(v.arch, v.packages);
        }
        let file = self.ws.file.clone();
        self.ws = Workspace::expanded(file, self.arch.as_deref(), self.strict, &known)
            .map_err(Box::new)?;
        Ok(())
    }

    /// Reloads the graph (after pins changed).
    pub fn reload(&mut self) -> Result<(), Error> {
        self.expand_packages(&[])
    }

    /// The commit versions of the latest build under `builds/`, so that graph commands show
    /// the commit nodes as the last OS build made them.
    pub fn use_latest_versions(&mut self) {
        let builds = self.builds();
        let Some(id) = builds.latest() else {
            return;
        };
        for arch in self.arches() {
            if let Some(rec) = builds.commit_record(&id, &arch) {
                self.versions.insert(
                    arch,
                    CommitVersion {
                        version: rec.version,
                        timestamp: rec.timestamp,
                        parent: rec.parent,
                    },
                );
            }
        }
    }

    /// For plan, show and why: the latest build's versions, and the package nodes of every
    /// resolve node that is up to date now.
    pub fn expand_current(&mut self) -> Result<(), Error> {
        self.use_latest_versions();
        let all: Vec<usize> = (0..self.ws.graph.len()).collect();
        let resolves = self.resolve_nodes(&all);
        if resolves.is_empty() {
            return Ok(());
        }
        let plan = self.engine.plan(&self.ws.graph, &resolves)?;
        let current: Vec<usize> = resolves
            .into_iter()
            .filter(|&i| {
                let id = &self.ws.graph.node(i).id;
                plan.iter()
                    .any(|e| &e.id == id && e.planned == Planned::UpToDate)
            })
            .collect();
        self.expand_packages(&current)
    }

    /// Node indices for the named targets (default set when empty).
    pub fn targets(&self, names: &[String]) -> Result<Vec<usize>, Error> {
        Ok(self.ws.resolve_targets(names).map_err(Box::new)?)
    }
}
