//! The rule's output files: `manifest-lock.generated.<arch>.json` (coreos-assembler's lockfile
//! format) and `resolved.json` (what the download nodes need), both deterministic.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::resolve::{Resolution, ResolvedPackage};

/// `resolved.json`.
#[derive(Debug, Serialize)]
struct Resolved<'a> {
    arch: &'a str,
    packages: &'a [ResolvedPackage],
}

/// The bytes of `resolved.json`.
pub fn resolved_json(r: &Resolution) -> String {
    let mut s = serde_json::to_string_pretty(&Resolved {
        arch: &r.arch,
        packages: &r.packages,
    })
    .expect("plain data serializes");
    s.push('\n');
    s
}

/// The bytes of `manifest-lock.generated.<arch>.json`. `metadata.generated` is the newest
/// repository timestamp (not the wall clock, so the output is a function of the inputs);
/// `rpmmd_repos.<id>.generated` each repository's newest repomd timestamp.
pub fn lockfile_json(r: &Resolution) -> String {
    let mut packages: BTreeMap<&str, Value> = BTreeMap::new();
    // Several arches of one name (multilib): the basearch one wins, as one name is one entry.
    for p in &r.packages {
        let prefer = p.arch == r.arch || !packages.contains_key(p.name.as_str());
        if prefer {
            packages.insert(
                &p.name,
                json!({"evra": p.evra(), "metadata": {"sourcerpm": p.source_name}}),
            );
        }
    }
    let mut repos = serde_json::Map::new();
    for (id, ts) in &r.repos {
        let mut m = serde_json::Map::new();
        if let Some(ts) = ts {
            m.insert("generated".into(), Value::String(rfc3339(*ts)));
        }
        repos.insert(id.clone(), Value::Object(m));
    }
    let mut metadata = serde_json::Map::new();
    if let Some(newest) = r.repos.values().flatten().max() {
        metadata.insert("generated".into(), Value::String(rfc3339(*newest)));
    }
    metadata.insert("rpmmd_repos".into(), Value::Object(repos));
    let mut s = serde_json::to_string_pretty(&json!({
        "packages": packages,
        "metadata": metadata,
    }))
    .expect("plain data serializes");
    s.push('\n');
    s
}

pub use nosa_cache::time::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
