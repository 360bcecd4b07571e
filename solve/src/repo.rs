//! A synced repository as the resolve rule reads it: `repo.json`, `repomd.xml` and the
//! metadata files that `repomd.xml` names, from a dependency's output tree or a directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use crate::error::ResolveError;

/// `repo.json`: the repository definition the repo-sync node used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// The `.repo` section name.
    pub id: String,
    /// The basearch it was synced for.
    #[serde(default)]
    pub arch: String,
    /// Every baseurl (the first is where downloads go).
    #[serde(default)]
    pub baseurl: Vec<String>,
    /// dnf priority: lower wins (default 99).
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// dnf cost: lower wins among equal priorities (default 1000).
    #[serde(default = "default_cost")]
    pub cost: i64,
    /// `exclude`/`excludepkgs` globs.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `includepkgs` globs (empty: everything).
    #[serde(default)]
    pub includepkgs: Vec<String>,
}

fn default_priority() -> i64 {
    99
}

fn default_cost() -> i64 {
    1000
}

/// One metadata file named by `repomd.xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataFile {
    /// `location href`, e.g. `repodata/<sum>-primary.xml.gz` (its suffix names the compression).
    pub href: String,
    /// Where the bytes are on this machine.
    pub path: PathBuf,
}

/// A repository ready to load.
#[derive(Debug, Clone)]
pub struct RepoData {
    /// `repo.json`.
    pub config: RepoConfig,
    /// `primary`.
    pub primary: MetadataFile,
    /// `filelists`, when the repository has one (file dependencies need it).
    pub filelists: Option<MetadataFile>,
    /// The newest `<timestamp>` in `repomd.xml` (what dnf reports as the metadata's age).
    pub generated: Option<u64>,
}

/// What `repomd.xml` says: data type -> location href; the newest timestamp.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repomd {
    pub locations: BTreeMap<String, String>,
    pub timestamp: Option<u64>,
}

/// Parses `repomd.xml`.
pub fn parse_repomd(xml: &str) -> Result<Repomd, String> {
    let mut r = Reader::from_str(xml);
    let mut out = Repomd::default();
    let mut data_type: Option<String> = None;
    let mut in_timestamp = false;
    loop {
        match r.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name();
                match name.as_ref() {
                    b"data" => {
                        data_type = attr(&e, b"type")?;
                    }
                    b"location" => {
                        if let (Some(t), Some(href)) = (&data_type, attr(&e, b"href")?) {
                            out.locations.insert(t.clone(), href);
                        }
                    }
                    b"timestamp" => in_timestamp = data_type.is_some(),
                    _ => {}
                }
            }
            Event::Text(t) if in_timestamp => {
                let text = t.decode().map_err(|e| e.to_string())?;
                if let Ok(v) = text.trim().parse::<u64>() {
                    out.timestamp = Some(out.timestamp.map_or(v, |o| o.max(v)));
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"data" => data_type = None,
                b"timestamp" => in_timestamp = false,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

fn attr(e: &quick_xml::events::BytesStart<'_>, key: &[u8]) -> Result<Option<String>, String> {
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        if a.key.local_name().as_ref() == key {
            return Ok(Some(
                a.unescape_value().map_err(|e| e.to_string())?.into_owned(),
            ));
        }
    }
    Ok(None)
}

impl RepoData {
    /// Reads a repository whose files are found through `lookup` (tree path -> local path).
    /// `what` names the source in errors (the dependency's node id or the directory).
    pub fn load(
        what: &str,
        lookup: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<RepoData, ResolveError> {
        let bad = |msg: String| ResolveError::BadRepo {
            what: what.to_string(),
            msg,
        };
        let read = |p: &str| -> Result<String, ResolveError> {
            let path = lookup(p).ok_or_else(|| bad(format!("no {p}")))?;
            Ok(fs_err::read_to_string(path)?)
        };
        let config: RepoConfig = serde_json::from_str(&read("repo.json")?)
            .map_err(|e| bad(format!("repo.json: {e}")))?;
        let repomd =
            parse_repomd(&read("repomd.xml")?).map_err(|e| bad(format!("repomd.xml: {e}")))?;
        let file = |t: &str| -> Result<Option<MetadataFile>, ResolveError> {
            let Some(href) = repomd.locations.get(t) else {
                return Ok(None);
            };
            let path = lookup(href).ok_or_else(|| {
                bad(format!(
                    "repomd.xml names {href} ({t}), which is not in the tree"
                ))
            })?;
            Ok(Some(MetadataFile {
                href: href.clone(),
                path,
            }))
        };
        let primary = file("primary")?.ok_or_else(|| bad("repomd.xml has no primary".into()))?;
        let filelists = file("filelists")?;
        Ok(RepoData {
            config,
            primary,
            filelists,
            generated: repomd.timestamp,
        })
    }

    /// Reads a repository laid out in a directory (`repo.json`, `repomd.xml`, `repodata/`).
    pub fn from_dir(dir: &Path) -> Result<RepoData, ResolveError> {
        RepoData::load(&dir.display().to_string(), |p| {
            let full = dir.join(p);
            full.is_file().then_some(full)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repomd_locations_and_newest_timestamp() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="primary"><location href="repodata/a-primary.xml.gz"/><timestamp>1700000001</timestamp></data>
  <data type="filelists"><location href="repodata/b-filelists.xml.zst"/><timestamp>1700000005</timestamp></data>
</repomd>"#;
        let r = parse_repomd(xml).unwrap();
        assert_eq!(r.locations["primary"], "repodata/a-primary.xml.gz");
        assert_eq!(r.locations["filelists"], "repodata/b-filelists.xml.zst");
        assert_eq!(r.timestamp, Some(1700000005));
    }
}
