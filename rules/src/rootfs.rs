//! The `rootfs` rule: the union of the unpacked packages (in NEVRA order), with
//! `remove-from-packages` applied per package, then the ostree-layers (overlay.d) on top in
//! their order, then `remove-files`. File conflicts between packages are errors naming both.
//! The output is `root/` plus `meta.json` (owners, capabilities, each package's scriptlets in
//! install order) for the scriptlet and commit nodes that follow.

use std::collections::BTreeMap;

use nosa_cache::{EntryKind, Tree, TreeEntry};
use nosa_engine::{Params, Rule, RunContext, RunError};
use serde::{Deserialize, Serialize};

/// One `remove-from-packages` entry: regexes of absolute paths to drop from a package.
#[derive(Debug, Clone)]
pub struct RemoveFrom {
    /// Package name.
    pub package: String,
    /// Regular expressions matched against `/path`.
    pub patterns: Vec<String>,
}

/// Builds `rootfs:<arch>` from its dependencies: `unpack:` nodes and `overlay:` nodes (the
/// overlays in the order they are listed); any other dependency is ignored.
#[derive(Debug, Clone)]
pub struct RootfsRule {
    arch: String,
    remove_files: Vec<String>,
    remove_from: Vec<RemoveFrom>,
}

impl RootfsRule {
    /// The rule for `arch`.
    pub fn new(arch: &str, remove_files: Vec<String>, remove_from: Vec<RemoveFrom>) -> Self {
        RootfsRule {
            arch: arch.to_string(),
            remove_files,
            remove_from,
        }
    }
}

/// What `unpack` writes next to `root/` (the fields rootfs reads).
#[derive(Debug, Deserialize)]
struct UnpackMetaIn {
    nevra: String,
    name: String,
    #[serde(default)]
    owners: BTreeMap<String, String>,
    #[serde(default)]
    caps: BTreeMap<String, String>,
    #[serde(default)]
    scripts: BTreeMap<String, serde_json::Value>,
}

/// `meta.json` of the rootfs.
#[derive(Debug, Serialize, Default)]
pub struct RootfsMeta {
    /// Packages in install order (NEVRA).
    pub packages: Vec<String>,
    /// `/path` -> `user:group`, for paths not owned by root.
    pub owners: BTreeMap<String, String>,
    /// `/path` -> file capabilities.
    pub caps: BTreeMap<String, String>,
    /// Per package (install order): its scriptlets by phase.
    pub scripts: Vec<(String, BTreeMap<String, serde_json::Value>)>,
}

impl Rule for RootfsRule {
    fn kind(&self) -> &str {
        "rootfs"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        let rf: Vec<(String, Vec<String>)> = self
            .remove_from
            .iter()
            .map(|r| (r.package.clone(), r.patterns.clone()))
            .collect();
        p.add("arch", &self.arch)
            .add("remove-files", &self.remove_files)
            .add("remove-from-packages", &rf);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let mut merged: BTreeMap<String, (TreeEntry, String)> = BTreeMap::new();
        let mut meta = RootfsMeta::default();
        let mut unpacks: Vec<_> = ctx
            .deps
            .iter()
            .filter(|d| d.id.starts_with("unpack:"))
            .collect();
        unpacks.sort_by(|a, b| a.id.cmp(&b.id));
        for dep in unpacks {
            let tree = ctx.dep_tree(dep)?;
            let m = tree
                .file("meta.json")
                .ok_or_else(|| RunError::msg(format!("{} has no meta.json", dep.id)))?;
            let pm: UnpackMetaIn =
                serde_json::from_slice(&fs_err::read(ctx.store().blob_path(&m))?)
                    .map_err(|e| RunError::msg(format!("{}: meta.json: {e}", dep.id)))?;
            let drops: Vec<regex::Regex> = self
                .remove_from
                .iter()
                .filter(|r| r.package == pm.name)
                .flat_map(|r| r.patterns.iter())
                .map(|p| {
                    regex::Regex::new(p).map_err(|e| {
                        RunError::msg(format!(
                            "remove-from-packages {}: bad regex {p:?}: {e}",
                            pm.name
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            for e in tree.entries {
                let Some(rel) = e.path.strip_prefix("root/") else {
                    continue;
                };
                let abs = format!("/{rel}");
                if drops.iter().any(|r| r.is_match(&abs)) {
                    continue;
                }
                let entry = TreeEntry {
                    path: rel.to_string(),
                    ..e
                };
                match merged.get(rel) {
                    None => {
                        merged.insert(rel.to_string(), (entry, pm.nevra.clone()));
                    }
                    Some((old, _))
                        if old.kind == EntryKind::Dir && entry.kind == EntryKind::Dir => {}
                    Some((old, _)) if old.kind == entry.kind && old.mode == entry.mode => {}
                    Some((_, owner)) => {
                        return Err(RunError::msg(format!(
                            "file conflict: {abs} is in both {owner} and {} with different content or mode",
                            pm.nevra
                        )));
                    }
                }
            }
            meta.owners.extend(pm.owners);
            meta.caps.extend(pm.caps);
            meta.packages.push(pm.nevra.clone());
            meta.scripts.push((pm.nevra, pm.scripts));
        }
        // The rpm database, written beside the packages' files.
        for dep in ctx.deps.iter().filter(|d| d.id.starts_with("rpmdb:")) {
            for e in ctx.dep_tree(dep)?.entries {
                if let Some(rel) = e.path.strip_prefix("root/") {
                    let rel = rel.to_string();
                    if e.kind == EntryKind::Dir && merged.contains_key(&rel) {
                        continue;
                    }
                    merged.insert(rel.clone(), (TreeEntry { path: rel, ..e }, dep.id.clone()));
                }
            }
        }
        // Overlays on top, in dependency order (the ostree-layers order).
        for dep in ctx.deps.iter().filter(|d| d.id.starts_with("overlay:")) {
            let tree = ctx.dep_tree(dep)?;
            for e in tree.entries {
                if e.kind == EntryKind::Dir
                    && merged
                        .get(&e.path)
                        .is_some_and(|(o, _)| o.kind == EntryKind::Dir)
                {
                    continue;
                }
                let abs = format!("/{}", e.path);
                meta.owners.remove(&abs);
                meta.caps.remove(&abs);
                merged.insert(e.path.clone(), (e, dep.id.clone()));
            }
        }
        for r in &self.remove_files {
            let r = r.trim_matches('/');
            merged.retain(|p, _| p != r && !p.starts_with(&format!("{r}/")));
        }
        // Nothing may lie under a symlink: writing through it could leave the tree.
        for (p, (e, from)) in &merged {
            if let EntryKind::Symlink { .. } = e.kind {
                let prefix = format!("{p}/");
                if let Some((under, (_, other))) = merged
                    .range(prefix.clone()..)
                    .next()
                    .filter(|(k, _)| k.starts_with(&prefix))
                {
                    return Err(RunError::msg(format!(
                        "/{under} (from {other}) lies under the symlink /{p} (from {from})"
                    )));
                }
            }
        }
        // The output is handed over as a tree of blobs the store already has: nothing is
        // copied or hashed again. A directory the packages imply but do not list comes out
        // as `mkdir -p` would make it (0755), as when the tree was written out and ingested.
        let mut entries: Vec<TreeEntry> = Vec::with_capacity(merged.len() + 2);
        let dir = |path: String| TreeEntry {
            path,
            mode: 0o755,
            kind: EntryKind::Dir,
        };
        entries.push(dir("root".into()));
        let mut parents = std::collections::BTreeSet::new();
        for p in merged.keys() {
            let mut at = p.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if merged.contains_key(parent) || !parents.insert(parent.to_string()) {
                    break;
                }
                at = parent;
            }
        }
        entries.extend(parents.into_iter().map(|p| dir(format!("root/{p}"))));
        entries.extend(merged.into_values().map(|(e, _)| TreeEntry {
            path: format!("root/{}", e.path),
            ..e
        }));
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| RunError::msg(e.to_string()))?;
        let digest = ctx.store().put_bytes(&json)?;
        entries.push(TreeEntry {
            path: "meta.json".into(),
            mode: 0o644,
            kind: EntryKind::File {
                digest,
                size: json.len() as u64,
            },
        });
        ctx.set_output_tree(Tree { entries });
        Ok(())
    }
}
