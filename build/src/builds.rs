//! The `builds/` directory in coreos-assembler's layout, as typed records with one writer:
//! `builds/builds.json` (the index, newest first), `builds/<id>/<arch>/meta.json`,
//! `builds/<id>/<arch>/commitmeta.json`, the commit's repository and record under
//! `builds/<id>/<arch>/ostree-commit/`, and the `builds/latest` symlink.
//!
//! Fields nosa does not set are kept when a record is rewritten (`extra`), so a builds/
//! directory that another tool also writes to loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nosa_commit::CommitRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `builds/builds.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BuildIndex {
    /// `1.0.0`.
    #[serde(rename = "schema-version", default = "schema_version")]
    pub schema_version: String,
    /// The builds, newest first.
    #[serde(default)]
    pub builds: Vec<BuildEntry>,
    /// When the index was last written (RFC 3339).
    #[serde(default)]
    pub timestamp: String,
    /// Fields nosa does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn schema_version() -> String {
    "1.0.0".into()
}

/// One build in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildEntry {
    /// The build id (its version).
    pub id: String,
    /// The arches it has.
    #[serde(default)]
    pub arches: Vec<String>,
    /// Fields nosa does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `builds/<id>/<arch>/meta.json`: the v1 fields nosa records.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// The build id.
    pub buildid: String,
    /// The OS name (image.yaml `name`).
    pub name: String,
    /// The ostree ref.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The arch.
    #[serde(rename = "coreos-assembler.basearch")]
    pub basearch: String,
    /// When the build was made (RFC 3339); kept when the record is rewritten for the same
    /// build (an unchanged rebuild, an image added).
    #[serde(rename = "coreos-assembler.build-timestamp")]
    pub build_timestamp: String,
    /// The commit checksum.
    #[serde(rename = "ostree-commit")]
    pub ostree_commit: String,
    /// The commit's content checksum.
    #[serde(rename = "ostree-content-checksum")]
    pub ostree_content_checksum: String,
    /// The commit timestamp (RFC 3339).
    #[serde(rename = "ostree-timestamp")]
    pub ostree_timestamp: String,
    /// The commit's `version`.
    #[serde(rename = "ostree-version")]
    pub ostree_version: String,
    /// rpm-ostree's input hash: the tree and the commit settings, not the version.
    #[serde(rename = "rpm-ostree-inputhash")]
    pub inputhash: String,
    /// Artifacts by name (`qemu`, `metal`, `ostree` for the OCI archive, ...).
    #[serde(default)]
    pub images: BTreeMap<String, ImageFile>,
    /// Fields nosa does not set.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An artifact in `meta.json`'s `images`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// File name, relative to `builds/<id>/<arch>/`.
    pub path: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// While `nosa compress` has it compressed: the SHA-256 of the file as built.
    #[serde(
        rename = "uncompressed-sha256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub uncompressed_sha256: Option<String>,
    /// While compressed: the size of the file as built.
    #[serde(
        rename = "uncompressed-size",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub uncompressed_size: Option<u64>,
    /// The artifact is used as it is, never compressed (v1's `skip-compression`).
    #[serde(
        rename = "skip-compression",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub skip_compression: Option<bool>,
    /// Fields nosa does not set (`nosa meta --set images.qemu.x=...`, another tool's).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a build keeps the commit's repository and record, under `builds/<id>/<arch>/`.
pub const COMMIT_DIR: &str = "ostree-commit";

/// The builds/ directory of a workdir: the only reader and writer of its records.
#[derive(Clone, Debug)]
pub struct BuildsDir {
    root: PathBuf,
}

fn read<T: for<'de> Deserialize<'de>>(p: &Path) -> Option<T> {
    serde_json::from_slice(&fs_err::read(p).ok()?).ok()
}

/// Writes `v` to `p` as pretty JSON (see [`write_if_changed`]).
fn write_pretty<T: Serialize>(p: &Path, v: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_if_changed(p, &bytes)
}

/// Writes `bytes` to `p` atomically, unless `p` already holds them: an unchanged rebuild
/// rewrites nothing in builds/.
pub(crate) fn write_if_changed(p: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if fs_err::read(p).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let dir = p.parent().expect("a file in a directory");
    fs_err::create_dir_all(dir)?;
    nosa_cache::atomic::write_atomic(dir, p, bytes).map_err(std::io::Error::other)
}

impl BuildsDir {
    /// `builds/` of `workdir`.
    pub fn of(workdir: &Path) -> BuildsDir {
        BuildsDir {
            root: workdir.join("builds"),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `builds/<id>/<arch>/`.
    pub fn arch_dir(&self, id: &str, arch: &str) -> PathBuf {
        self.root.join(id).join(arch)
    }

    /// The index, if there is a readable one.
    pub fn index(&self) -> Option<BuildIndex> {
        read(&self.root.join("builds.json"))
    }

    /// The build `builds/latest` points at.
    pub fn latest_link(&self) -> Option<String> {
        let target = fs_err::read_link(self.root.join("latest")).ok()?;
        Some(target.to_str()?.to_string())
    }

    /// The newest build's id.
    pub fn latest(&self) -> Option<String> {
        self.index()?.builds.into_iter().next().map(|b| b.id)
    }

    /// A build's `meta.json` for `arch`.
    pub fn meta(&self, id: &str, arch: &str) -> Option<Meta> {
        read(&self.arch_dir(id, arch).join("meta.json"))
    }

    /// The commit record a build kept for `arch`.
    pub fn commit_record(&self, id: &str, arch: &str) -> Option<CommitRecord> {
        read(&self.arch_dir(id, arch).join(COMMIT_DIR).join("commit.json"))
    }

    /// The path of an artifact of the latest build (`qemu`, `metal`, ...), with that build's
    /// id and meta.json.
    pub fn latest_image(&self, arch: &str, image: &str) -> Option<(String, Meta, PathBuf)> {
        let id = self.latest()?;
        let meta = self.meta(&id, arch)?;
        let path = self.arch_dir(&id, arch).join(&meta.images.get(image)?.path);
        Some((id, meta, path))
    }

    /// The parent of a new commit for `arch`: the commit of the newest other build that has
    /// `arch` with the same ref (coreos-assembler passes the previous build's commit as
    /// `--parent`). Builds whose meta.json is missing are skipped.
    pub fn previous_commit(&self, version: &str, arch: &str, ref_name: &str) -> Option<String> {
        self.index()?
            .builds
            .iter()
            .filter(|b| b.id != version)
            .filter_map(|b| self.meta(&b.id, arch))
            .find(|m| m.ref_name == ref_name)
            .map(|m| m.ostree_commit)
    }

    /// The next build number for `prefix`: one more than the highest `<prefix>.<n>` directory.
    pub fn next_serial(&self, prefix: &str) -> u64 {
        let mut n = 0;
        if let Ok(rd) = fs_err::read_dir(&self.root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(k) = name
                    .strip_prefix(&format!("{prefix}."))
                    .and_then(|r| r.parse::<u64>().ok())
                {
                    n = n.max(k + 1);
                }
            }
        }
        n
    }

    /// Writes `meta.json` and `commitmeta.json` (the commit's metadata as JSON) of a build.
    pub fn write_meta(
        &self,
        meta: &Meta,
        commitmeta: &BTreeMap<String, Value>,
    ) -> std::io::Result<()> {
        let dir = self.arch_dir(&meta.buildid, &meta.basearch);
        write_pretty(&dir.join("meta.json"), meta)?;
        write_pretty(&dir.join("commitmeta.json"), commitmeta)
    }

    /// Writes a build's `meta.json` alone (an edit of its images: `nosa compress`).
    pub fn write_meta_json(&self, meta: &Meta) -> std::io::Result<()> {
        let dir = self.arch_dir(&meta.buildid, &meta.basearch);
        write_pretty(&dir.join("meta.json"), meta)
    }

    /// Puts build `id` (with `arches`) first in the index and points `latest` at it.
    pub fn record_new(&self, id: &str, arches: &[String], timestamp: &str) -> std::io::Result<()> {
        let mut index = self.index().unwrap_or_default();
        if index.schema_version.is_empty() {
            index.schema_version = schema_version();
        }
        index.builds.retain(|b| b.id != id);
        index.builds.insert(
            0,
            BuildEntry {
                id: id.to_string(),
                arches: arches.to_vec(),
                extra: Map::new(),
            },
        );
        index.timestamp = timestamp.to_string();
        write_pretty(&self.root.join("builds.json"), &index)?;
        self.link_latest(Some(id))
    }

    /// Points `builds/latest` at `id` atomically, or removes it.
    fn link_latest(&self, id: Option<&str>) -> std::io::Result<()> {
        let link = self.root.join("latest");
        let Some(id) = id else {
            return match fs_err::remove_file(&link) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        };
        let tmp = self.root.join(".latest.tmp");
        let _ = fs_err::remove_file(&tmp);
        std::os::unix::fs::symlink(id, &tmp)?;
        fs_err::rename(&tmp, &link)
    }

    /// The graph's node keys a build was made from (`builds/<id>/nosa-keys.json`: node id ->
    /// action key, hex): `nosa prune` keeps their cached outputs while the build is kept.
    pub fn node_keys(&self, id: &str) -> BTreeMap<String, nosa_cache::Digest> {
        read(&self.root.join(id).join(NODE_KEYS)).unwrap_or_default()
    }

    /// Adds `keys` to a build's node keys (a node built again for the same build replaces its
    /// key: an image made again for an unchanged tree).
    pub fn add_node_keys(
        &self,
        id: &str,
        keys: BTreeMap<String, nosa_cache::Digest>,
    ) -> std::io::Result<()> {
        let mut all = self.node_keys(id);
        all.extend(keys);
        write_pretty(&self.root.join(id).join(NODE_KEYS), &all)
    }
}

/// Where a build keeps its node keys, under `builds/<id>/` (see [`BuildsDir::node_keys`]).
pub const NODE_KEYS: &str = "nosa-keys.json";

/// A coreos-assembler tag in builds.json: `{name, created, target}` (and nosa's optional
/// `description`); other fields of a tag are kept when it is rewritten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The tag's name.
    pub name: String,
    /// When it was made or last moved (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// The build id it names.
    pub target: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Why a tag edit was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// builds/builds.json is missing or unreadable.
    #[error("there are no builds (builds/builds.json is missing or unreadable)")]
    NoIndex,
    /// The build is not in builds.json.
    #[error("build {0} is not in builds/builds.json (--force tags it anyway)")]
    NoSuchBuild(String),
    /// No tag has that name.
    #[error("no tag is named {0}")]
    NoSuchTag(String),
    /// A tag name must be a non-empty word.
    #[error("{0:?} is not a tag name: use letters, digits, '.', '_' and '-'")]
    BadName(String),
    /// Writing builds.json failed.
    #[error("writing builds/builds.json: {0}")]
    Io(String),
}

/// Why `nosa prune --build` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruneError {
    /// builds/builds.json is missing or unreadable.
    #[error("there are no builds (builds/builds.json is missing or unreadable)")]
    NoIndex,
    /// The build is not in builds.json (the builds that are).
    #[error("build {0} is not in builds/builds.json (its builds: {1})")]
    NoSuchBuild(String, String),
    /// A tag names the build (the tags).
    #[error("build {0} is tagged ({1}): delete the tag first with `nosa tag delete --tag NAME`")]
    Tagged(String, String),
}

/// The index's `tags` array as it is (every field of every tag).
fn tag_values(index: &BuildIndex) -> Vec<Value> {
    index
        .extra
        .get("tags")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The index's coreos-assembler tags (`tags: [{name, target, ...}]`), in their order there;
/// an entry without a name or target is skipped.
fn tags(index: &BuildIndex) -> Vec<Tag> {
    tag_values(index)
        .into_iter()
        .filter_map(|t| serde_json::from_value(t).ok())
        .collect()
}

/// One build as `nosa list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildSummary {
    /// The build id.
    pub id: String,
    /// Its arches, as the index has them.
    pub arches: Vec<String>,
    /// When it was made (meta.json's build timestamp of its first arch that has one).
    pub timestamp: Option<String>,
    /// The tags that name it.
    pub tags: Vec<String>,
    /// Artifacts per arch, from each arch's meta.json (an arch without one is left out).
    pub artifacts: BTreeMap<String, BTreeMap<String, ImageFile>>,
    /// The config's git commit the build was made from (`coreos-assembler.config-gitrev`).
    pub config_gitrev: Option<String>,
    /// Whether the config had uncommitted changes then (`coreos-assembler.config-dirty`).
    pub config_dirty: Option<bool>,
}

impl BuildsDir {
    /// Every build of the index, newest first.
    pub fn list(&self) -> Vec<BuildSummary> {
        let Some(index) = self.index() else {
            return Vec::new();
        };
        let tags = tags(&index);
        index
            .builds
            .iter()
            .map(|b| {
                let metas: Vec<(String, Meta)> = b
                    .arches
                    .iter()
                    .filter_map(|a| Some((a.clone(), self.meta(&b.id, a)?)))
                    .collect();
                BuildSummary {
                    id: b.id.clone(),
                    arches: b.arches.clone(),
                    timestamp: metas
                        .iter()
                        .map(|(_, m)| m.build_timestamp.clone())
                        .find(|t| !t.is_empty()),
                    tags: tags
                        .iter()
                        .filter(|t| t.target == b.id)
                        .map(|t| t.name.clone())
                        .collect(),
                    config_gitrev: metas.iter().find_map(|(_, m)| {
                        Some(m.extra.get(crate::os::CONFIG_GITREV)?.as_str()?.to_string())
                    }),
                    config_dirty: metas.iter().find_map(|(_, m)| {
                        Some(m.extra.get(crate::os::CONFIG_DIRTY)?.as_str()? == "true")
                    }),
                    artifacts: metas.into_iter().map(|(a, m)| (a, m.images)).collect(),
                }
            })
            .collect()
    }
}

/// Which builds `nosa prune` removes, and which it keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    /// Builds removed, newest first.
    pub remove: Vec<String>,
    /// Builds kept because a tag names them.
    pub tagged: Vec<String>,
    /// Untagged builds kept (the newest `keep`).
    pub kept: Vec<String>,
}

impl BuildsDir {
    /// The tags in builds.json, in their order there.
    pub fn tag_list(&self) -> Vec<Tag> {
        self.index().map(|i| tags(&i)).unwrap_or_default()
    }

    /// Points tag `name` at build `target` (made at `now`), creating it or moving it; the
    /// build must be in builds.json unless `force`. Returns the tag's previous target.
    pub fn tag_update(
        &self,
        name: &str,
        target: &str,
        description: Option<&str>,
        force: bool,
        now: &str,
    ) -> Result<Option<String>, TagError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(TagError::BadName(name.to_string()));
        }
        let mut index = self.index().ok_or(TagError::NoIndex)?;
        if !force && !index.builds.iter().any(|b| b.id == target) {
            return Err(TagError::NoSuchBuild(target.to_string()));
        }
        let mut tags = tag_values(&index);
        let mut previous = None;
        match tags
            .iter_mut()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
        {
            Some(Value::Object(t)) => {
                previous = t.get("target").and_then(Value::as_str).map(str::to_string);
                t.insert("target".into(), target.into());
                t.insert("created".into(), now.into());
                if let Some(d) = description {
                    t.insert("description".into(), d.into());
                }
            }
            _ => {
                let tag = Tag {
                    name: name.to_string(),
                    created: now.to_string(),
                    target: target.to_string(),
                    description: description.map(str::to_string),
                };
                tags.push(serde_json::to_value(tag).expect("a tag is JSON"));
            }
        }
        index.extra.insert("tags".into(), Value::Array(tags));
        write_pretty(&self.root.join("builds.json"), &index)
            .map_err(|e| TagError::Io(e.to_string()))?;
        Ok(previous)
    }

    /// Deletes tag `name`; returns the build it named.
    pub fn tag_delete(&self, name: &str) -> Result<String, TagError> {
        let mut index = self.index().ok_or(TagError::NoIndex)?;
        let mut tags = tag_values(&index);
        let at = tags
            .iter()
            .position(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| TagError::NoSuchTag(name.to_string()))?;
        let gone = tags.remove(at);
        index.extra.insert("tags".into(), Value::Array(tags));
        write_pretty(&self.root.join("builds.json"), &index)
            .map_err(|e| TagError::Io(e.to_string()))?;
        Ok(gone
            .get("target")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    /// The build ids that coreos-assembler-style tags (`tags: [{name, target, ...}]` in
    /// builds.json) point at.
    pub fn tagged(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.tag_list().into_iter().map(|t| t.target).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Keeping the newest `keep` untagged builds (at least 1: the latest stays) and every
    /// tagged one, what goes.
    pub fn prune_plan(&self, keep: usize) -> PrunePlan {
        let tagged = self.tagged();
        let mut plan = PrunePlan::default();
        for b in self.index().unwrap_or_default().builds {
            if tagged.contains(&b.id) {
                plan.tagged.push(b.id);
            } else if plan.kept.len() < keep.max(1) {
                plan.kept.push(b.id);
            } else {
                plan.remove.push(b.id);
            }
        }
        plan
    }

    /// The plan for removing exactly `ids` (`nosa prune --build`): each must be in the index
    /// and untagged; the latest may go (`latest` then names the newest build left).
    pub fn prune_plan_ids(&self, ids: &[String]) -> Result<PrunePlan, PruneError> {
        let index = self.index().ok_or(PruneError::NoIndex)?;
        let tagged = self.tagged();
        for id in ids {
            if !index.builds.iter().any(|b| &b.id == id) {
                let known: Vec<&str> = index.builds.iter().map(|b| b.id.as_str()).collect();
                return Err(PruneError::NoSuchBuild(id.clone(), known.join(", ")));
            }
            if tagged.contains(id) {
                let names: Vec<String> = self
                    .tag_list()
                    .into_iter()
                    .filter(|t| &t.target == id)
                    .map(|t| t.name)
                    .collect();
                return Err(PruneError::Tagged(id.clone(), names.join(", ")));
            }
        }
        let mut plan = PrunePlan::default();
        for b in index.builds {
            if ids.contains(&b.id) {
                plan.remove.push(b.id);
            } else if tagged.contains(&b.id) {
                plan.tagged.push(b.id);
            } else {
                plan.kept.push(b.id);
            }
        }
        Ok(plan)
    }

    /// Removes builds `ids`: first from builds.json (so that a kill leaves at worst a
    /// directory no record names, never a record without its directory), then `latest` is
    /// pointed at the newest build left (removed when none is), then the directories go.
    pub fn remove_builds(&self, ids: &[String]) -> std::io::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut index = self.index().unwrap_or_default();
        index.builds.retain(|b| !ids.contains(&b.id));
        write_pretty(&self.root.join("builds.json"), &index)?;
        if self.latest_link().is_none_or(|l| ids.contains(&l)) {
            self.link_latest(index.builds.first().map(|b| b.id.as_str()))?;
        }
        for id in ids {
            // An id is one path component under builds/, whatever the index says.
            if id.is_empty() || id.contains('/') || id.starts_with('.') {
                continue;
            }
            let dir = self.root.join(id);
            if dir.exists() {
                fs_err::remove_dir_all(&dir)?;
            }
        }
        Ok(())
    }
}

/// meta.json as JSON, for `nosa meta` (the typed [`Meta`] knows only nosa's fields).
impl BuildsDir {
    /// `builds/<id>/<arch>/meta.json`.
    pub fn meta_path(&self, id: &str, arch: &str) -> PathBuf {
        self.arch_dir(id, arch).join("meta.json")
    }

    /// A build's meta.json for `arch` with every field, or why it cannot be read.
    pub fn meta_value(&self, id: &str, arch: &str) -> Result<Value, String> {
        let p = self.meta_path(id, arch);
        let bytes = fs_err::read(&p).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Writes a build's meta.json from JSON as given (every field kept, keys sorted),
    /// atomically (see [`write_if_changed`]). The caller checks it first
    /// (`crate::meta_check`).
    pub fn write_meta_value(&self, id: &str, arch: &str, meta: &Value) -> std::io::Result<()> {
        write_pretty(&self.meta_path(id, arch), meta)
    }
}

impl BuildsDir {
    /// Sets top-level field `key` of a build's meta.json for `arch` to `value` (a field that
    /// [`Meta`] does not name, e.g. `base-oscontainer` after `nosa push-container`), keeping
    /// every other field; written atomically. Fails when the build has no readable meta.json.
    pub fn set_meta_field(
        &self,
        id: &str,
        arch: &str,
        key: &str,
        value: Value,
    ) -> std::io::Result<()> {
        let p = self.arch_dir(id, arch).join("meta.json");
        let mut meta: Meta = serde_json::from_slice(&fs_err::read(&p)?).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", p.display()),
            )
        })?;
        meta.extra.insert(key.to_string(), value);
        write_pretty(&p, &meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meta_field_is_set_and_the_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildsDir::of(dir.path());
        let p = b.arch_dir("v.0", "x86_64").join("meta.json");
        assert!(b.set_meta_field("v.0", "x86_64", "k", 1.into()).is_err());
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, r#"{"buildid":"v.0","other":{"x":1}}"#).unwrap();
        let v = serde_json::json!({"image": "r/n", "digest": "sha256:00"});
        b.set_meta_field("v.0", "x86_64", "base-oscontainer", v.clone())
            .unwrap();
        let m: Value = read(&p).unwrap();
        assert_eq!(m["base-oscontainer"], v);
        assert_eq!(m["other"]["x"], 1, "{m}");
        assert_eq!(m["buildid"], "v.0");
    }

    #[test]
    fn tags_are_made_moved_and_deleted_in_coreos_assemblers_form() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildsDir::of(dir.path());
        assert_eq!(
            b.tag_update("stable", "v.0", None, false, "t0"),
            Err(TagError::NoIndex)
        );
        fs_err::create_dir_all(b.root()).unwrap();
        for i in 0..2 {
            b.record_new(&format!("v.{i}"), &["x86_64".into()], "t")
                .unwrap();
        }
        // A tag another tool wrote, with a field nosa does not know: kept as it is.
        let mut index = b.index().unwrap();
        index.extra.insert(
            "tags".into(),
            serde_json::json!([{"name": "old", "target": "v.0", "created": "t", "x": 1}]),
        );
        write_pretty(&b.root().join("builds.json"), &index).unwrap();

        assert_eq!(
            b.tag_update("stable", "v.0", Some("for CI"), false, "t1"),
            Ok(None)
        );
        assert_eq!(
            b.tag_update("stable", "v.1", None, false, "t2"),
            Ok(Some("v.0".into())),
            "an existing tag moves"
        );
        assert_eq!(
            b.tag_update("x", "v.9", None, false, "t3"),
            Err(TagError::NoSuchBuild("v.9".into()))
        );
        assert_eq!(b.tag_update("x", "v.9", None, true, "t3"), Ok(None));
        assert!(matches!(
            b.tag_update("a b", "v.1", None, false, "t"),
            Err(TagError::BadName(_))
        ));
        let names: Vec<(String, String)> = b
            .tag_list()
            .into_iter()
            .map(|t| (t.name, t.target))
            .collect();
        assert_eq!(
            names,
            [("old", "v.0"), ("stable", "v.1"), ("x", "v.9")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let stable = &b.tag_list()[1];
        assert_eq!(stable.created, "t2");
        assert_eq!(stable.description.as_deref(), Some("for CI"));
        assert_eq!(b.tagged(), ["v.0", "v.1", "v.9"]);

        assert_eq!(b.tag_delete("x"), Ok("v.9".into()));
        assert_eq!(b.tag_delete("x"), Err(TagError::NoSuchTag("x".into())));
        let raw = fs_err::read_to_string(b.root().join("builds.json")).unwrap();
        assert!(raw.contains("\"x\": 1"), "the unknown field stays: {raw}");
    }

    #[test]
    fn prune_keeps_the_newest_and_the_tagged() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildsDir::of(dir.path());
        fs_err::create_dir_all(b.root()).unwrap();
        for i in 0..5 {
            fs_err::create_dir_all(b.arch_dir(&format!("v.{i}"), "x86_64")).unwrap();
            b.record_new(&format!("v.{i}"), &["x86_64".into()], "t")
                .unwrap();
        }
        let mut index = b.index().unwrap();
        index.extra.insert(
            "tags".into(),
            serde_json::json!([{"name": "stable", "target": "v.1", "created": "t"}]),
        );
        write_pretty(&b.root().join("builds.json"), &index).unwrap();
        let plan = b.prune_plan(2);
        assert_eq!(plan.kept, ["v.4", "v.3"]);
        assert_eq!(plan.tagged, ["v.1"]);
        assert_eq!(plan.remove, ["v.2", "v.0"]);
        assert_eq!(b.prune_plan(0).kept, ["v.4"], "the latest always stays");
        b.remove_builds(&plan.remove).unwrap();
        let ids: Vec<String> = b
            .index()
            .unwrap()
            .builds
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["v.4", "v.3", "v.1"]);
        assert!(!b.root().join("v.2").exists() && !b.root().join("v.0").exists());
        assert!(b.root().join("v.1").exists());
        assert_eq!(b.latest().as_deref(), Some("v.4"));
        assert_eq!(b.tagged(), ["v.1"], "tags are kept");
    }

    #[test]
    fn index_round_trip_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildsDir::of(dir.path());
        fs_err::create_dir_all(b.root()).unwrap();
        fs_err::write(
            b.root().join("builds.json"),
            r#"{"schema-version":"1.0.0","builds":[{"id":"a.0","arches":["x86_64"],"policy-cleanup":{"x":1}}],"timestamp":"t","other":true}"#,
        )
        .unwrap();
        b.record_new("a.1", &["x86_64".into()], "t2").unwrap();
        let v: Value = read(&b.root().join("builds.json")).unwrap();
        assert_eq!(v["builds"][0]["id"], "a.1");
        assert_eq!(v["builds"][1]["policy-cleanup"]["x"], 1);
        assert_eq!(v["other"], true);
        assert_eq!(b.latest().as_deref(), Some("a.1"));
        assert_eq!(
            fs_err::read_link(b.root().join("latest")).unwrap(),
            Path::new("a.1")
        );
        assert_eq!(b.next_serial("a"), 0, "no build directories yet");
        fs_err::create_dir_all(b.root().join("a.4")).unwrap();
        assert_eq!(b.next_serial("a"), 5);
    }
}
