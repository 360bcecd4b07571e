//! How content objects are spread over layers: one layer, or one layer per component
//! (package), so that an unchanged package keeps its layer digest across builds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::OciError;
use crate::tarstream::ContentMap;

/// The chunking policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum Chunking {
    /// Everything in the commit layer.
    #[default]
    Single,
    /// One layer per component. `components` maps absolute paths (`/usr/bin/sh`) to a
    /// component name (a package). A content object belongs to the component of its first
    /// mapped path (in sorted order); unmapped objects stay in the commit layer. With more
    /// components than `max_layers - 1`, the largest get their own layers (ties by name) and
    /// the rest stay in the commit layer.
    Components {
        /// Path -> component.
        components: BTreeMap<String, String>,
        /// Maximum number of layers, the commit layer included (at least 1).
        max_layers: usize,
    },
}

/// One component layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub name: String,
    pub components: Vec<String>,
    /// Content checksums, sorted.
    pub objects: Vec<String>,
}

/// Component layers (sorted by name) and what stays in the commit layer (sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub chunks: Vec<Chunk>,
    pub remainder: Vec<String>,
}

pub(crate) fn assign(policy: &Chunking, content: &ContentMap) -> Result<Plan, OciError> {
    let (components, max_layers) = match policy {
        Chunking::Single => {
            return Ok(Plan {
                chunks: Vec::new(),
                remainder: content.keys().cloned().collect(),
            });
        }
        Chunking::Components {
            components,
            max_layers,
        } => (components, *max_layers),
    };
    if max_layers == 0 {
        return Err(OciError::Request("max_layers must be at least 1".into()));
    }
    // component -> (total size, objects)
    let mut by_comp: BTreeMap<&str, (u64, Vec<String>)> = BTreeMap::new();
    let mut remainder = Vec::new();
    for (csum, obj) in content {
        let mut paths: Vec<&String> = obj.paths.iter().collect();
        paths.sort();
        let comp = paths
            .iter()
            .find_map(|p| components.get(&format!("/{p}")).map(String::as_str));
        match comp {
            Some(c) => {
                let e = by_comp.entry(c).or_default();
                e.0 += obj.size;
                e.1.push(csum.clone());
            }
            None => remainder.push(csum.clone()),
        }
    }
    let mut ranked: Vec<(&str, u64)> = by_comp.iter().map(|(c, (s, _))| (*c, *s)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let keep: Vec<&str> = ranked
        .into_iter()
        .take(max_layers - 1)
        .map(|(c, _)| c)
        .collect();
    let mut chunks = Vec::new();
    for (comp, (_, objects)) in by_comp {
        if keep.contains(&comp) {
            chunks.push(Chunk {
                name: comp.to_string(),
                components: vec![comp.to_string()],
                objects,
            });
        } else {
            remainder.extend(objects);
        }
    }
    remainder.sort();
    Ok(Plan { chunks, remainder })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarstream::ContentObject;

    fn content() -> ContentMap {
        let mut m = ContentMap::new();
        for (c, size, paths) in [
            ("aa", 10, vec!["usr/bin/a"]),
            ("bb", 100, vec!["usr/bin/b", "usr/lib/b"]),
            ("cc", 5, vec!["usr/share/c"]),
            ("dd", 1, vec!["etc-none"]),
        ] {
            m.insert(
                c.into(),
                ContentObject {
                    size,
                    paths: paths.into_iter().map(String::from).collect(),
                },
            );
        }
        m
    }

    fn policy(max: usize) -> Chunking {
        Chunking::Components {
            components: [
                ("/usr/bin/a", "pa"),
                ("/usr/lib/b", "pb"),
                ("/usr/share/c", "pc"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            max_layers: max,
        }
    }

    #[test]
    fn single_keeps_everything_in_the_commit_layer() {
        let p = assign(&Chunking::Single, &content()).unwrap();
        assert!(p.chunks.is_empty());
        assert_eq!(p.remainder, ["aa", "bb", "cc", "dd"]);
    }

    #[test]
    fn one_layer_per_component() {
        let p = assign(&policy(10), &content()).unwrap();
        let names: Vec<_> = p.chunks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pa", "pb", "pc"]);
        assert_eq!(p.chunks[1].objects, ["bb"]);
        assert_eq!(p.remainder, ["dd"]);
    }

    #[test]
    fn the_largest_components_get_layers_when_capped() {
        let p = assign(&policy(3), &content()).unwrap();
        let names: Vec<_> = p.chunks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pa", "pb"]);
        assert_eq!(p.remainder, ["cc", "dd"]);
        assert!(assign(&policy(0), &content()).is_err());
    }
}
