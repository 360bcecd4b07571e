//! How content objects are spread over layers: one layer, or one layer per component
//! (package, overlay, the rpm database, the initramfs, unpackaged content), so that an
//! unchanged component keeps its layer digest across builds.
//!
//! The model is ostree-ext's chunking as rpm-ostree drives it (`compose
//! container-encapsulate`, `build-chunked-oci`): each content object belongs to one component,
//! the first (in sorted path order) that claims one of its paths; the initramfs is a component
//! of its own; what nothing claims is one "unpackaged" component; the commit layer keeps only
//! the commit, dirtree and dirmeta objects. ostree-ext then bin-packs components by size and
//! change frequency, using the previous build's manifest; nosa instead gives every component
//! its own layer, and only past `max_layers` puts the smallest into a few shared layers chosen
//! by a hash of the component name, so the layout does not depend on a previous build.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::OciError;
use crate::hash::sha256_hex;
use crate::tarstream::{ContentMap, ContentObject};

/// The component of content objects no map entry claims (rpm-ostree calls it
/// `rpmostree-unpackaged-content`): files written by scriptlets, postprocess and the compose.
pub const UNPACKAGED_COMPONENT: &str = "unpackaged";
/// The component of `usr/lib/modules/<kver>/initramfs.img`, generated during the compose (as
/// rpm-ostree, it wins over any map entry).
pub const INITRAMFS_COMPONENT: &str = "initramfs";
/// The component of `usr/lib/os-release` (and `usr/etc/os-release` when it is a file): the
/// commit rewrites it with each build's version (mutate-os-release), so it gets a layer of
/// its own instead of changing its package's layer in every build.
pub const OS_RELEASE_COMPONENT: &str = "os-release";
/// ostree-ext's default maximum number of layers.
pub const DEFAULT_MAX_LAYERS: usize = 64;

/// The chunking policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum Chunking {
    /// Everything in the commit layer.
    #[default]
    Single,
    /// One layer per component. `components` maps absolute paths in the commit
    /// (`/usr/bin/sh`, `/usr/etc/passwd`) to a component name (a package). A content object
    /// belongs to the component of its first mapped path (in sorted order); the initramfs to
    /// [`INITRAMFS_COMPONENT`]; os-release to [`OS_RELEASE_COMPONENT`]; an unmapped object to
    /// [`UNPACKAGED_COMPONENT`]. The commit
    /// layer holds the metadata objects only. With more components than `max_layers - 1`,
    /// the largest get their own layers and the others share a few layers (see
    /// `docs/oci.md`).
    Components {
        /// Path -> component.
        components: BTreeMap<String, String>,
        /// Maximum number of layers, the commit layer included (at least 1; 1 is `Single`).
        max_layers: usize,
    },
}

/// One component layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// The history `created_by`: the component, `a and b`, or `N components`.
    pub name: String,
    /// The components, sorted.
    pub components: Vec<String>,
    /// Content objects (sorted by checksum), each with the paths of these components only.
    pub objects: ContentMap,
}

/// Component layers (in manifest order) and what stays in the commit layer (sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub chunks: Vec<Chunk>,
    pub remainder: Vec<String>,
}

/// `usr/lib/modules/<kver>/initramfs.img`.
fn is_initramfs(path: &str) -> bool {
    path.strip_prefix("usr/lib/modules/")
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(_, f)| f == "initramfs.img")
}

/// The os-release files the commit stamps with the version.
fn is_os_release(path: &str) -> bool {
    matches!(path, "usr/lib/os-release" | "usr/etc/os-release")
}

/// Checks a component name: non-empty, no `,` (the annotation's separator), no control
/// characters.
pub(crate) fn check_component(name: &str) -> Result<(), OciError> {
    if name.is_empty() || name.contains(',') || name.chars().any(char::is_control) {
        return Err(OciError::Request(format!(
            "invalid component name {name:?}: it must be non-empty, without `,` or control characters"
        )));
    }
    Ok(())
}

fn layer_name(components: &[String]) -> String {
    match components.len() {
        1 => components[0].clone(),
        2..=5 => components.join(" and "),
        n => format!("{n} components"),
    }
}

pub(crate) fn assign(policy: &Chunking, content: &ContentMap) -> Result<Plan, OciError> {
    let (components, max_layers) = match policy {
        Chunking::Components {
            components,
            max_layers,
        } if *max_layers > 1 => (components, *max_layers),
        Chunking::Components { max_layers: 0, .. } => {
            return Err(OciError::Request("max_layers must be at least 1".into()));
        }
        _ => {
            return Ok(Plan {
                chunks: Vec::new(),
                remainder: content.keys().cloned().collect(),
            });
        }
    };
    for name in components.values() {
        check_component(name)?;
    }
    // component -> (total size, its objects with its paths only). An object whose paths
    // belong to several components is in each of their layers, so that a layer depends on its
    // component's files alone (identical files in two packages are one ostree object).
    let mut by_comp: BTreeMap<&str, (u64, ContentMap)> = BTreeMap::new();
    for (csum, obj) in content {
        for p in &obj.paths {
            let comp = if is_initramfs(p) {
                INITRAMFS_COMPONENT
            } else if is_os_release(p) {
                OS_RELEASE_COMPONENT
            } else {
                components
                    .get(&format!("/{p}"))
                    .map(String::as_str)
                    .unwrap_or(UNPACKAGED_COMPONENT)
            };
            let e = by_comp.entry(comp).or_default();
            let o = e.1.entry(csum.clone()).or_insert_with(|| ContentObject {
                size: obj.size,
                paths: Vec::new(),
            });
            if o.paths.is_empty() {
                e.0 += obj.size;
            }
            o.paths.push(p.clone());
        }
    }
    // Own layers for all when they fit; otherwise the largest (ties by name) get
    // `slots - bins` own layers and the rest share `bins` layers by name hash.
    let slots = max_layers - 1;
    let mut ranked: Vec<(&str, u64)> = by_comp.iter().map(|(c, (s, _))| (*c, *s)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let (own, bins) = if ranked.len() <= slots {
        (ranked.len(), 0)
    } else {
        let bins = (slots / 4).max(1);
        (slots - bins, bins)
    };
    let mut groups: BTreeMap<(usize, String), Vec<&str>> = BTreeMap::new();
    for (i, (comp, _)) in ranked.iter().enumerate() {
        if i < own {
            groups.insert((0, comp.to_string()), vec![comp]);
        } else {
            let h = sha256_hex(comp.as_bytes());
            let bin = u64::from_str_radix(&h[..15], 16).unwrap_or(0) % bins as u64;
            groups
                .entry((1, format!("{bin:04}")))
                .or_default()
                .push(comp);
        }
    }
    let mut chunks = Vec::new();
    for (_, mut comps) in groups {
        comps.sort();
        let mut objects = ContentMap::new();
        for c in &comps {
            for (csum, o) in &by_comp[c].1 {
                let e = objects
                    .entry(csum.clone())
                    .or_insert_with(|| ContentObject {
                        size: o.size,
                        paths: Vec::new(),
                    });
                e.paths.extend(o.paths.iter().cloned());
            }
        }
        let components: Vec<String> = comps.iter().map(|c| c.to_string()).collect();
        chunks.push(Chunk {
            name: layer_name(&components),
            components,
            objects,
        });
    }
    Ok(Plan {
        chunks,
        remainder: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> ContentMap {
        let mut m = ContentMap::new();
        for (c, size, paths) in [
            ("aa", 10, vec!["usr/bin/a"]),
            ("bb", 100, vec!["usr/bin/b", "usr/lib/b"]),
            ("cc", 5, vec!["usr/share/c"]),
            ("dd", 1, vec!["etc-none", "usr/share/c2"]),
            ("ee", 50, vec!["usr/lib/modules/6.1/initramfs.img"]),
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
                ("/usr/bin/b", "pb"),
                ("/usr/lib/b", "pb"),
                ("/usr/share/c", "pc"),
                ("/usr/share/c2", "pc"),
                ("/usr/lib/modules/6.1/initramfs.img", "kernel"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            max_layers: max,
        }
    }

    fn objects(c: &Chunk) -> Vec<(&str, Vec<&str>)> {
        c.objects
            .iter()
            .map(|(k, o)| (k.as_str(), o.paths.iter().map(String::as_str).collect()))
            .collect()
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.chunks.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn single_keeps_everything_in_the_commit_layer() {
        let p = assign(&Chunking::Single, &content()).unwrap();
        assert!(p.chunks.is_empty());
        assert_eq!(p.remainder, ["aa", "bb", "cc", "dd", "ee"]);
        let p = assign(&policy(1), &content()).unwrap();
        assert!(p.chunks.is_empty());
        assert!(assign(&policy(0), &content()).is_err());
    }

    #[test]
    fn one_layer_per_component_initramfs_and_unpackaged_included() {
        let p = assign(&policy(10), &content()).unwrap();
        assert_eq!(names(&p), ["initramfs", "pa", "pb", "pc", "unpackaged"]);
        assert_eq!(
            objects(&p.chunks[2]),
            [("bb", vec!["usr/bin/b", "usr/lib/b"])]
        );
        assert_eq!(
            objects(&p.chunks[0]),
            [("ee", vec!["usr/lib/modules/6.1/initramfs.img"])],
            "the initramfs wins over the map"
        );
        // dd is shared: in pc's layer with pc's path, in unpackaged with the other.
        assert_eq!(
            objects(&p.chunks[3]),
            [("cc", vec!["usr/share/c"]), ("dd", vec!["usr/share/c2"])]
        );
        assert_eq!(objects(&p.chunks[4]), [("dd", vec!["etc-none"])]);
        assert!(p.remainder.is_empty());
    }

    #[test]
    fn past_the_cap_the_smallest_share_layers() {
        // 4 slots, 5 components: 3 own layers (pb 100, initramfs 50, pa 10), 1 shared.
        let p = assign(&policy(5), &content()).unwrap();
        assert_eq!(names(&p), ["initramfs", "pa", "pb", "pc and unpackaged"]);
        assert_eq!(p.chunks[3].components, ["pc", "unpackaged"]);
        assert_eq!(
            objects(&p.chunks[3]),
            [
                ("cc", vec!["usr/share/c"]),
                ("dd", vec!["usr/share/c2", "etc-none"])
            ]
        );
        // 1 slot: everything in one shared layer.
        let p = assign(&policy(2), &content()).unwrap();
        assert_eq!(p.chunks.len(), 1);
        assert_eq!(
            p.chunks[0].name,
            "initramfs and pa and pb and pc and unpackaged"
        );
        assert_eq!(p.chunks[0].objects.len(), 5);
        assert_eq!(p.chunks[0].objects["dd"].paths.len(), 2);
        assert_eq!(layer_name(&vec!["a".to_string(); 6]), "6 components");
    }

    #[test]
    fn bad_component_names_are_refused() {
        let bad = Chunking::Components {
            components: BTreeMap::from([("/usr/bin/a".to_string(), "a,b".to_string())]),
            max_layers: 4,
        };
        let e = assign(&bad, &content()).unwrap_err().to_string();
        assert!(e.contains("\"a,b\""), "{e}");
    }
}
