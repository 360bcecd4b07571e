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

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

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
