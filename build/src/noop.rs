//! What a build of a `[nestos]` workdir reads outside the engine, observed for its no-op
//! witness (`nosa_engine::WitnessDraft`): the engine observes the inputs, records and outputs
//! its own decisions rest on; the graph itself and an OS build's record rest on these too.
//!
//! - the config path as the build file names it, each component (`src/config`, a symlink);
//! - each config tree, whole, symlinks also through (the loader reads files, lists
//!   directories and tests for files all over it: a stamp of every entry catches a content,
//!   mode or existence change), and any file it read outside the tree;
//! - the repository pins (`cache/pins/`), which enter the repo-sync keys;
//! - each repository's local (`file://`) gpgkey files, whose content enters repo-keys' keys;
//! - the workdir's `overrides/rootfs` and `overrides/rpm`, whose presence adds nodes;
//! - the host programs whose versions enter keys, as `PATH` resolves them (`PATH` is in the
//!   witness key), and the earlier `PATH` entries where they are missing;
//! - for an OS build that kept the latest build: `builds/builds.json`, `builds/latest` and
//!   every file of the build's `builds/<id>/<arch>/`, as the record left them.
//!
//! The graph's sources are stat'ed once the workdir is loaded (after the loader read them),
//! the record after the build wrote it. That is sound because the witness refuses any stamp
//! newer than the start of the invocation (the racy rule), so a file changed in between
//! leaves no witness.

use nosa_engine::WitnessDraft;

use crate::builds::BuildsDir;
use crate::expand::OVERRIDES_ROOTFS;
use crate::{Session, pins};

/// Directory names left out of a config tree's observation: the loader reads nothing there.
const SKIP: [&str; 1] = [".git"];

/// Observes what the graph of `s` was made from (see the module doc), besides the build file,
/// which the caller observed before reading it. Call once the workdir is loaded.
pub fn observe_graph(s: &Session, draft: &WitnessDraft) {
    let workdir = s.workdir();
    // The config path as the build file names it (`src/config`, a symlink `nosa init`
    // makes): each component below the workdir as it is, so that a re-pointed link or a
    // replaced directory is seen; the trees below are observed at their canonical paths.
    if let Some(n) = &s.ws.file.nestos {
        let mut at = workdir.to_path_buf();
        for part in std::path::Path::new(n.config.get_ref()).components() {
            at.push(part);
            draft.observe_now(&at, false);
        }
    }
    for c in &s.ws.configs {
        draft.observe_tree(&c.dir, &SKIP);
        for f in c.files_read.iter().filter(|f| !f.starts_with(&c.dir)) {
            draft.observe_now(f, true);
        }
        // Local gpgkey files: their content is in the repo-keys nodes' keys.
        for repo in c.compose_repos() {
            for path in repo.gpgkey.iter().filter_map(|u| u.strip_prefix("file://")) {
                draft.observe_now(std::path::Path::new(path), true);
            }
        }
    }
    draft.observe_tree(&pins::dir(workdir), &[]);
    for d in [OVERRIDES_ROOTFS, nosa_rules::overrides_rpm::OVERRIDES_RPM] {
        draft.observe_now(&workdir.join(d), true);
    }
    observe_tools(draft);
}

/// Observes the host programs of [`nosa_rules::HOST_TOOLS_IN_KEYS`] as `PATH` finds them.
fn observe_tools(draft: &WitnessDraft) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in nosa_rules::HOST_TOOLS_IN_KEYS {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(tool);
            draft.observe_now(&candidate, true);
            if candidate.is_file() {
                break;
            }
        }
    }
}

/// Observes the record an OS build left of build `id` (see the module doc). Call after the
/// record is written.
pub fn observe_record(s: &Session, draft: &WitnessDraft, id: &str) {
    let builds = BuildsDir::of(s.workdir());
    draft.observe_now(&builds.root().join("builds.json"), true);
    draft.observe_now(&builds.root().join("latest"), false);
    for arch in s.arches() {
        draft.observe_tree(&builds.arch_dir(id, &arch), &[]);
    }
}
