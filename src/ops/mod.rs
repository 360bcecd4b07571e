//! One function per command; each is a thin front on the engine and the rules.

pub mod build;
pub mod config;
pub mod fetch;
pub mod graph;
pub mod kola;
pub mod run;
pub mod store;

use std::path::{Path, PathBuf};

use nosa_cache::EntryKind;
use nosa_cache::{Store, WorkdirLock};
use nosa_engine::Engine;
use nosa_rules::nestos::Known;
use nosa_rules::pins::Pins;
use nosa_rules::{BUILD_FILE, BuildFile, Workspace};

/// `resolved.json`, the output of a resolve node that lists the packages to install.
#[derive(serde::Deserialize)]
struct ResolvedFile {
    arch: String,
    packages: Vec<nosa_solve::ResolvedPackage>,
}

use crate::cli::Cli;
use crate::exit::{Failure, runtime};

/// A JSON file, if it exists and parses.
pub fn read_json(p: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&fs_err::read(p).ok()?).ok()
}

/// The id of the newest build `builds/builds.json` lists, if any.
pub fn latest_build_id(workdir: &Path) -> Option<String> {
    let index = read_json(&workdir.join("builds/builds.json"))?;
    index["builds"][0]["id"].as_str().map(str::to_string)
}

/// A loaded workdir: its graph, store and engine.
pub struct Session {
    pub ws: Workspace,
    pub engine: Engine,
    arch: Option<String>,
    strict: bool,
    /// Commit versions assigned by `nosa build`, kept across re-expansions.
    pub versions: std::collections::BTreeMap<String, nosa_rules::nestos::CommitVersion>,
    _lock: Option<WorkdirLock>,
}

/// The directory the command runs in.
pub fn start_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    let dir = match &cli.workdir {
        Some(d) => d.clone(),
        None => std::env::current_dir().map_err(runtime)?,
    };
    std::path::absolute(&dir).map_err(runtime)
}

/// The workdir: the nearest directory at or above the start that has `nestos.build.toml`.
pub fn find_workdir(cli: &Cli) -> Result<(PathBuf, PathBuf), Failure> {
    let start = start_dir(cli)?;
    match BuildFile::find(&start) {
        Some(file) => Ok((file.parent().expect("file in a dir").to_path_buf(), file)),
        None => Err(Failure::Config(miette::miette!(
            help = "run `nosa init <config>` to make a workdir, or pass -C DIR",
            "no {BUILD_FILE} in {} or any parent directory",
            start.display()
        ))),
    }
}

/// The store of workdir `w`.
pub fn store_dir(w: &Path) -> PathBuf {
    w.join("cache").join("store")
}

/// Takes the workdir lock, saying on stderr who holds it while waiting.
pub fn lock(cli: &Cli, workdir: &Path, what: &str) -> Result<WorkdirLock, Failure> {
    WorkdirLock::acquire(&workdir.join(".nosa.lock"), !cli.no_wait, what, |holder| {
        eprintln!("waiting for the workdir lock, held by {holder}");
    })
    .map_err(|e| match e {
        nosa_cache::Error::Locked { holder, .. } => Failure::Build(Some(miette::miette!(
            help = "wait for it to finish, or drop --no-wait to wait",
            "the workdir {} is locked by {holder}",
            workdir.display()
        ))),
        other => runtime(other),
    })
}

impl Session {
    /// Loads the workdir for `arch` (all configured arches if `None`); with `locked`, takes
    /// its lock first. Configuration warnings go to stderr.
    pub fn open(cli: &Cli, locked: Option<&str>, arch: Option<&str>) -> Result<Session, Failure> {
        Self::open_with(cli, locked, arch, true)
    }

    /// [`Session::open`], with the config's repo check relaxed to warnings when not `strict`.
    pub fn open_with(
        cli: &Cli,
        locked: Option<&str>,
        arch: Option<&str>,
        strict: bool,
    ) -> Result<Session, Failure> {
        let (workdir, file) = find_workdir(cli)?;
        let lock = match locked {
            Some(what) => Some(lock(cli, &workdir, what)?),
            None => None,
        };
        let store = Store::open(store_dir(&workdir)).map_err(runtime)?;
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
    ) -> Result<Session, Failure> {
        if lock.is_some() {
            // Read the engine's state while the graph loads (on a second core).
            engine.prefetch();
        }
        let bf = BuildFile::load_cached(file, engine.store())
            .map_err(|e| Failure::Config((*e).into()))?;
        let ws =
            Workspace::with_options(bf, arch, strict).map_err(|e| Failure::Config(e.into()))?;
        for w in ws.warnings() {
            eprint!("{}", crate::render::diagnostic(w));
        }
        Ok(Session {
            ws,
            engine,
            arch: arch.map(str::to_string),
            strict,
            versions: Default::default(),
            _lock: lock,
        })
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
        state: &nosa_engine::BuildState,
        id: &str,
        path: &str,
    ) -> Option<(PathBuf, nosa_cache::Digest)> {
        let good = state.nodes.get(id).and_then(|n| n.good)?;
        let tree = self.engine.store().get_tree(&good.tree).ok()?;
        let digest = tree.entries.iter().find_map(|e| match &e.kind {
            EntryKind::File { digest, .. } if e.path == path => Some(*digest),
            _ => None,
        })?;
        Some((self.engine.store().blob_path(&digest), digest))
    }

    /// The content of file `path` in node `id`'s last good output, per `state`.
    pub fn output_file(
        &self,
        state: &nosa_engine::BuildState,
        id: &str,
        path: &str,
    ) -> Option<Vec<u8>> {
        let (blob, _) = self.output_blob(state, id, path)?;
        fs_err::read(blob).ok()
    }

    /// Rebuilds the graph with the package sets of the given `resolve:` nodes, read from their
    /// last good outputs. Call only for resolve nodes that are current (built in this
    /// invocation, or planned up to date): an older output would expand stale package nodes.
    pub fn expand_packages(&mut self, resolves: &[usize]) -> Result<(), Failure> {
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
                runtime(std::io::Error::other(format!(
                    "{id}: its cached output has no readable resolved.json (run `nosa prune` or `nosa clean --all`)"
                )))
            })?;
            let v: ResolvedFile = serde_json::from_slice(&bytes).map_err(runtime)?;
            known.resolved.insert(v.arch, v.packages);
        }
        let file = self.ws.file.clone();
        self.ws = Workspace::expanded(file, self.arch.as_deref(), self.strict, &known)
            .map_err(|e| Failure::Config(e.into()))?;
        Ok(())
    }

    /// Reloads the graph (after pins changed).
    pub fn reload(&mut self) -> Result<(), Failure> {
        self.expand_packages(&[])
    }

    /// The commit versions of the latest build under `builds/`, so that graph commands show
    /// the commit nodes as `nosa build` made them.
    pub fn use_latest_versions(&mut self) {
        let builds = self.engine.workdir().join("builds");
        let Some(id) = latest_build_id(self.engine.workdir()) else {
            return;
        };
        for c in &self.ws.configs {
            let arch = c.arch.to_string();
            if let Some(m) = read_json(&builds.join(&id).join(&arch).join(build::COMMIT_JSON))
                && let (Some(v), Some(t)) = (m["version"].as_str(), m["timestamp"].as_u64())
            {
                self.versions.insert(
                    arch,
                    nosa_rules::nestos::CommitVersion {
                        version: v.to_string(),
                        timestamp: t,
                        parent: m["parent"].as_str().map(str::to_string),
                    },
                );
            }
        }
    }

    /// For plan, show and why: expands the package nodes of every resolve node that is up to
    /// date now.
    pub fn expand_current(&mut self) -> Result<(), Failure> {
        self.use_latest_versions();
        let all: Vec<usize> = (0..self.ws.graph.len()).collect();
        let resolves = self.resolve_nodes(&all);
        if resolves.is_empty() {
            return Ok(());
        }
        let plan = self
            .engine
            .plan(&self.ws.graph, &resolves)
            .map_err(runtime)?;
        let current: Vec<usize> = resolves
            .into_iter()
            .filter(|&i| {
                let id = &self.ws.graph.node(i).id;
                plan.iter()
                    .any(|e| &e.id == id && e.planned == nosa_engine::Planned::UpToDate)
            })
            .collect();
        self.expand_packages(&current)
    }

    /// Node indices for the named targets (default set when empty).
    pub fn targets(&self, names: &[String]) -> Result<Vec<usize>, Failure> {
        self.ws
            .resolve_targets(names)
            .map_err(|e| Failure::Config(e.into()))
    }
}
