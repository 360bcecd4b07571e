//! `OciRule` (`oci:<arch>`): the `ostree-commit` node's `repo/` + `commit.json` exported as
//! `out/<name>-<version>-ostree.<arch>.ociarchive`, with `out/oci.json` describing it; layered by
//! component when given the nodes whose outputs say which paths each component (package,
//! overlay, rpm database) provides.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nosa_cache::{EntryKind, Tree, TreeEntry};
use nosa_commit::CommitRecord;
use nosa_engine::{Params, Rule, RunContext, RunError};

use crate::chunking::check_component;
use crate::export::canonical_json;
use crate::{Chunking, ExportRequest, LayerFile, ReusableLayer, export_commit};

/// A dependency whose output lists the files of one component: every file and symlink under
/// `subdir/` of its output is a path of the OS tree (`subdir/usr/bin/sh` is `/usr/bin/sh`;
/// `etc/...` is mapped to `/usr/etc/...`, where the commit keeps it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ComponentSource {
    /// The dependency's node id (`unpack:x86_64:bash-5.2-1.x86_64`).
    pub node: String,
    /// The component its files belong to (`bash`).
    pub component: String,
    /// Where the tree is in its output (`root`, or empty for the whole output).
    pub subdir: String,
}

/// Exports the commit its first dependency produced.
///
/// Dependencies: the first must hold `repo/` and `commit.json` (the `ostree-commit` rule's
/// output); the others are the [`ComponentSource`] nodes, whose files fill the path map of a
/// [`Chunking::Components`] policy. A path provided by several sources goes to the last one
/// (overlays are given after packages, as they are applied after them).
#[derive(Clone, Debug)]
pub struct OciRule {
    arch: String,
    name: String,
    version: String,
    chunking: Chunking,
    sources: Vec<ComponentSource>,
    labels: BTreeMap<String, String>,
}

impl OciRule {
    /// Exports for `arch` as `<name>-<version>-ostree.<arch>.ociarchive`, one layer.
    pub fn new(arch: &str, name: &str, version: &str) -> Self {
        OciRule {
            arch: arch.into(),
            name: name.into(),
            version: version.into(),
            chunking: Chunking::Single,
            sources: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    /// Layers by component: the path map comes from `sources` (declare them as the
    /// dependencies after the commit, in the same order), at most `max_layers` layers.
    pub fn components(mut self, sources: Vec<ComponentSource>, max_layers: usize) -> Self {
        self.chunking = Chunking::Components {
            components: BTreeMap::new(),
            max_layers,
        };
        self.sources = sources;
        self
    }

    /// The chunking policy.
    pub fn chunking(mut self, c: Chunking) -> Self {
        self.chunking = c;
        self
    }

    /// Extra image labels.
    pub fn labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// The node id: `oci:<arch>`.
    pub fn node_id(&self) -> String {
        format!("oci:{}", self.arch)
    }
}

impl OciRule {
    /// Path -> component from the source dependencies' output listings (no file is read).
    fn path_map(&self, ctx: &RunContext<'_>) -> Result<BTreeMap<String, String>, RunError> {
        let mut map = BTreeMap::new();
        for src in &self.sources {
            check_component(&src.component).map_err(msg)?;
            let dep = ctx.deps.iter().find(|d| d.id == src.node).ok_or_else(|| {
                RunError::msg(format!(
                    "component source {} is not a dependency of the oci node",
                    src.node
                ))
            })?;
            let prefix = if src.subdir.is_empty() {
                String::new()
            } else {
                format!("{}/", src.subdir.trim_end_matches('/'))
            };
            for e in ctx.dep_tree(dep)?.entries {
                if matches!(e.kind, EntryKind::Dir) {
                    continue;
                }
                let Some(rel) = e.path.strip_prefix(&prefix) else {
                    continue;
                };
                map.insert(commit_path(rel), src.component.clone());
            }
        }
        Ok(map)
    }
}

/// The memo's index of layers; each blob is `layers/<key>` beside it.
const LAYER_INDEX: &str = "layers.json";

/// The memo's content object sizes, by checksum (`ExportRequest::known_sizes`).
const OBJECT_SIZES: &str = "object-sizes.json";

/// The component layers the node's last run kept in its memo, where the store still has
/// them, with each one's blob digest.
fn previous_layers(ctx: &RunContext<'_>) -> (BTreeMap<String, ReusableLayer>, Tree) {
    let store = ctx.store();
    let Some((tree, index)) = ctx.previous_memo_file(LAYER_INDEX) else {
        return (BTreeMap::new(), Tree::default());
    };
    let index: Option<BTreeMap<String, ReusableLayer>> = serde_json::from_slice(&index).ok();
    let mut layers = index.unwrap_or_default();
    layers.retain(|key, layer| match tree.file(&layer_blob(key)) {
        Some(d) if store.has_blob(&d) => {
            layer.path = store.blob_path(&d);
            true
        }
        _ => false,
    });
    (layers, tree)
}

/// Where a layer's blob is in the memo.
fn layer_blob(key: &str) -> String {
    format!("layers/{key}")
}

/// The content object sizes the node's last run kept in its memo (none if it is gone).
fn previous_sizes(ctx: &RunContext<'_>) -> BTreeMap<String, u64> {
    ctx.previous_memo_file(OBJECT_SIZES)
        .and_then(|(_, bytes)| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The memo of this run: every component layer's blob (stored) and their index, and the
/// content object sizes. A reused layer's blob digest comes from the previous memo `prev`,
/// not from hashing it again.
fn layer_memo(
    ctx: &RunContext<'_>,
    files: &[LayerFile],
    sizes: &BTreeMap<String, u64>,
    prev: &Tree,
) -> Result<Tree, RunError> {
    let store = ctx.store();
    let mut index = BTreeMap::new();
    let mut entries = Vec::new();
    for f in files {
        let known = f.reused.then(|| prev.file(&layer_blob(&f.key))).flatten();
        let digest = match known {
            Some(d) => d,
            None => store.put_file(&f.layer.path, true)?,
        };
        entries.push(TreeEntry {
            path: layer_blob(&f.key),
            mode: 0o444,
            kind: EntryKind::File {
                digest,
                size: f.layer.size,
            },
        });
        let mut layer = f.layer.clone();
        layer.path = PathBuf::new();
        index.insert(f.key.clone(), layer);
    }
    for (path, json) in [
        (LAYER_INDEX, serde_json::to_vec(&index).map_err(msg)?),
        (OBJECT_SIZES, serde_json::to_vec(sizes).map_err(msg)?),
    ] {
        entries.push(TreeEntry {
            path: path.into(),
            mode: 0o444,
            kind: EntryKind::File {
                digest: store.put_bytes(&json)?,
                size: json.len() as u64,
            },
        });
    }
    let mut tree = Tree { entries };
    tree.normalize();
    Ok(tree)
}

/// The absolute path in the commit of a tree-relative path: `/etc` lives at `/usr/etc`.
fn commit_path(rel: &str) -> String {
    match rel.strip_prefix("etc/") {
        Some(rest) => format!("/usr/etc/{rest}"),
        None => format!("/{rel}"),
    }
}

fn msg(e: impl std::fmt::Display) -> RunError {
    RunError::msg(e.to_string())
}

impl Rule for OciRule {
    fn kind(&self) -> &str {
        "oci"
    }

    fn version(&self) -> u32 {
        3
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("name", &self.name);
        p.add("version", &self.version);
        let chunking = canonical_json(&self.chunking).unwrap_or_default();
        p.add("chunking", &String::from_utf8_lossy(&chunking).into_owned());
        let sources = canonical_json(&self.sources).unwrap_or_default();
        p.add("sources", &String::from_utf8_lossy(&sources).into_owned());
        let labels = canonical_json(&self.labels).unwrap_or_default();
        p.add("labels", &String::from_utf8_lossy(&labels).into_owned());
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let Some(dep) = ctx.deps.first().cloned() else {
            return Err(RunError::msg(
                "oci needs the ostree commit as its first dependency",
            ));
        };
        // Read-only hardlinks: the export only reads the repository.
        // Kept between runs, synced to the commit's output: a new commit relinks its new
        // objects and nothing else.
        let staged = ctx.stage_dep_kept(&dep)?;
        let record: CommitRecord =
            serde_json::from_slice(&fs_err::read(staged.join("commit.json"))?)
                .map_err(|e| RunError::msg(format!("{}: commit.json: {e}", dep.id)))?;
        let mut chunking = self.chunking.clone();
        if let Chunking::Components { components, .. } = &mut chunking {
            components.extend(self.path_map(ctx)?);
        }
        let (reuse, previous_memo) = previous_layers(ctx);
        let req = ExportRequest {
            repo: staged.join("repo"),
            rev: record.checksum.clone(),
            arch: self.arch.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            chunking,
            labels: self.labels.clone(),
            out_dir: ctx.out.clone(),
            scratch: ctx.scratch.join("layers"),
            // Speed only: the component layers of the last run, so that unchanged components
            // are not compressed again (oci/tests/export.rs checks a reusing export is
            // byte-identical to a cold one).
            reuse,
            // Speed only, like `reuse`: sizes of the objects the last export read.
            known_sizes: previous_sizes(ctx),
        };
        let mut result = export_commit(&req).map_err(msg)?;
        let reused = result.layer_files.iter().filter(|l| l.reused).count();
        writeln!(
            ctx.log,
            "component layers: {reused} reused from the last run, {} written",
            result.layer_files.len() - reused
        )?;
        ctx.set_memo(layer_memo(
            ctx,
            &result.layer_files,
            &result.object_sizes,
            &previous_memo,
        )?);
        result.path = PathBuf::from(&result.file_name);
        writeln!(
            ctx.log,
            "exported {} as {} ({} layers, manifest {})",
            result.commit,
            result.file_name,
            result.layers.len(),
            result.manifest_digest
        )?;
        let json = serde_json::to_vec_pretty(&result).map_err(msg)?;
        fs_err::write(ctx.out.join("oci.json"), json)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_paths_map_to_commit_paths() {
        assert_eq!(commit_path("usr/bin/sh"), "/usr/bin/sh");
        assert_eq!(commit_path("etc/passwd"), "/usr/etc/passwd");
        assert_eq!(commit_path("etcetera/x"), "/etcetera/x");
    }
}
