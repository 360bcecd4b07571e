//! A synced repository as the resolve rule reads it: `repo.json`, `repomd.xml` and the
//! metadata files that `repomd.xml` names, from a dependency's output tree or a directory.

use std::path::{Path, PathBuf};

use crate::error::ResolveError;

/// `repo.json`: the repository definition the repo-sync node used (nosa-repo's type).
pub type RepoConfig = nosa_repo::RepoJson;

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
        let read = |p: &str| -> Result<Vec<u8>, ResolveError> {
            let path = lookup(p).ok_or_else(|| bad(format!("no {p}")))?;
            Ok(fs_err::read(path)?)
        };
        let config: RepoConfig = serde_json::from_slice(&read("repo.json")?)
            .map_err(|e| bad(format!("repo.json: {e}")))?;
        let repomd = nosa_repo::parse_repomd(&read("repomd.xml")?, "repomd.xml")
            .map_err(|e| bad(e.to_string()))?;
        let file = |t: &str| -> Result<Option<MetadataFile>, ResolveError> {
            let Some(href) = repomd.get(t).map(|d| &d.href) else {
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
            generated: repomd.newest_timestamp(),
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
    #[test]
    fn repomd_locations_and_newest_timestamp() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="primary"><checksum type="sha256">aa</checksum><location href="repodata/a-primary.xml.gz"/><timestamp>1700000001</timestamp></data>
  <data type="filelists"><checksum type="sha256">bb</checksum><location href="repodata/b-filelists.xml.zst"/><timestamp>1700000005</timestamp></data>
</repomd>"#;
        let r = nosa_repo::parse_repomd(xml, "repomd.xml").unwrap();
        assert_eq!(r.get("primary").unwrap().href, "repodata/a-primary.xml.gz");
        assert_eq!(
            r.get("filelists").unwrap().href,
            "repodata/b-filelists.xml.zst"
        );
        assert_eq!(r.newest_timestamp(), Some(1700000005));
    }
}
