//! Repository pins: the digest of each repo's `repomd.xml` as `nosa fetch` last saw it, kept in
//! `cache/pins/<arch>/<repo>.json`. A remote repository can change while nothing in the workdir
//! does; the pin enters the repo-sync node's key, so re-pinning (at `nosa fetch`) is what makes
//! a moved repository rebuild, and a build without network uses exactly what fetch saw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nosa_cache::Digest;
use serde::{Deserialize, Serialize};

/// One pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// blake3 of the repomd.xml seen.
    pub repomd: Digest,
    /// The baseurls it was seen at; a pin for other URLs does not apply.
    pub baseurl: Vec<String>,
}

/// All pins of a workdir.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    map: BTreeMap<(String, String), Pin>,
}

/// `<workdir>/cache/pins`.
pub(crate) fn dir(workdir: &Path) -> PathBuf {
    workdir.join("cache").join("pins")
}

impl Pins {
    /// Loads every pin under `<workdir>/cache/pins`; unreadable files are ignored (the repo is
    /// then unpinned and synced as it is).
    pub fn load(workdir: &Path) -> Pins {
        let mut map = BTreeMap::new();
        let Ok(arches) = fs_err::read_dir(dir(workdir)) else {
            return Pins { map };
        };
        for a in arches.flatten() {
            let arch = a.file_name().to_string_lossy().into_owned();
            let Ok(files) = fs_err::read_dir(a.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let Some(repo) = name.strip_suffix(".json") else {
                    continue;
                };
                if let Some(pin) = fs_err::read(f.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Pin>(&b).ok())
                {
                    map.insert((arch.clone(), repo.to_string()), pin);
                }
            }
        }
        Pins { map }
    }

    /// The pin of `repo` for `arch`, if one was recorded for these baseurls.
    pub fn get(&self, arch: &str, repo: &str, baseurl: &[String]) -> Option<Digest> {
        self.map
            .get(&(arch.to_string(), repo.to_string()))
            .filter(|p| p.baseurl == baseurl)
            .map(|p| p.repomd)
    }

    /// Records a pin (atomically). Returns whether it changed.
    pub fn save(workdir: &Path, arch: &str, repo: &str, pin: &Pin) -> std::io::Result<bool> {
        let d = dir(workdir).join(arch);
        fs_err::create_dir_all(&d)?;
        let path = d.join(format!("{repo}.json"));
        let old = fs_err::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Pin>(&b).ok());
        if old.as_ref() == Some(pin) {
            return Ok(false);
        }
        let bytes = serde_json::to_vec_pretty(pin).map_err(std::io::Error::other)?;
        nosa_cache::atomic::write_atomic(&d, &path, &bytes).map_err(std::io::Error::other)?;
        Ok(true)
    }
}
