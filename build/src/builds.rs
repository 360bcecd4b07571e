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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// File name, relative to `builds/<id>/<arch>/`.
    pub path: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
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
        let link = self.root.join("latest");
        let tmp = self.root.join(".latest.tmp");
        let _ = fs_err::remove_file(&tmp);
        std::os::unix::fs::symlink(id, &tmp)?;
        fs_err::rename(&tmp, &link)
    }
}

/// The index's coreos-assembler tags (`tags: [{name, target, ...}]`) as (target, name).
fn tags(index: &BuildIndex) -> Vec<(String, String)> {
    index
        .extra
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t.get("target")?.as_str()?.to_string(),
                t.get("name")?.as_str()?.to_string(),
            ))
        })
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
                        .filter(|(target, _)| *target == b.id)
                        .map(|(_, name)| name.clone())
                        .collect(),
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
    /// The build ids that coreos-assembler-style tags (`tags: [{name, target, ...}]` in
    /// builds.json) point at.
    pub fn tagged(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .index()
            .map(|i| tags(&i))
            .unwrap_or_default()
            .into_iter()
            .map(|(target, _)| target)
            .collect();
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

    /// Removes builds `ids`: first from builds.json (so that a kill leaves at worst a
    /// directory no record names, never a record without its directory), then their
    /// directories. `latest` keeps pointing at the newest build, which a plan never removes.
    pub fn remove_builds(&self, ids: &[String]) -> std::io::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut index = self.index().unwrap_or_default();
        index.builds.retain(|b| !ids.contains(&b.id));
        write_pretty(&self.root.join("builds.json"), &index)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
