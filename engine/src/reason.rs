//! Why a node runs, as typed data: the difference between the key components of its last
//! successful run and of now, rendered for people and as JSON.

use std::collections::BTreeMap;
use std::fmt;

use nosa_cache::Digest;

use crate::key::{Component, ComponentKind};
use serde::{Deserialize, Serialize};

/// One reason a node ran (or would run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// No successful run of this node is known.
    NeverBuilt,
    /// The user asked for a rebuild.
    Forced,
    /// The rule's kind or version changed.
    RuleVersionChanged {
        /// Old `kind vN`.
        old: String,
        /// New `kind vN`.
        new: String,
    },
    /// A parameter changed.
    ParamChanged {
        /// Parameter name.
        name: String,
        /// Old value (preview or digest), if it existed.
        old: Option<String>,
        /// New value (preview or digest), if it exists.
        new: Option<String>,
    },
    /// A declared input file changed, appeared or disappeared.
    InputChanged {
        /// Workdir-relative path.
        name: String,
        /// Old content digest.
        old: Option<Digest>,
        /// New content digest.
        new: Option<Digest>,
    },
    /// A dependency produced a different output (or was added or removed).
    DependencyChanged {
        /// The dependency's node id.
        #[serde(rename = "name")]
        node: String,
        /// Its old output digest.
        old: Option<Digest>,
        /// Its new output digest.
        new: Option<Digest>,
    },
    /// A dependency will run first; whether this node then runs depends on its output
    /// (plan only: the output is not known yet).
    DependencyWillRun {
        /// The dependency's node id.
        #[serde(rename = "name")]
        node: String,
    },
    /// The key is unchanged but its cached output is gone (pruned or damaged).
    CacheEntryMissing,
    /// The remote cache was asked and could not give the result.
    RemoteMiss {
        /// The remote, as configured.
        remote: String,
        /// Why its entry could not be used, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unusable: Option<String>,
    },
}

impl Reason {
    /// Whether this is a root cause (not caused by a dependency).
    pub fn is_root(&self) -> bool {
        !matches!(
            self,
            Reason::DependencyChanged { .. } | Reason::DependencyWillRun { .. }
        )
    }

    /// The dependency this reason points at, if any.
    pub fn dependency(&self) -> Option<&str> {
        match self {
            Reason::DependencyChanged { node, .. } | Reason::DependencyWillRun { node } => {
                Some(node)
            }
            _ => None,
        }
    }
}

fn short(d: &Option<Digest>) -> String {
    d.map(|d| d.short()).unwrap_or_else(|| "none".into())
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverBuilt => write!(f, "never built"),
            Reason::Forced => write!(f, "rebuild forced"),
            Reason::RuleVersionChanged { old, new } => {
                write!(f, "rule version changed ({old} -> {new})")
            }
            Reason::ParamChanged { name, old, new } => match (old, new) {
                (None, Some(n)) => write!(f, "parameter {name} added ({n})"),
                (Some(o), None) => write!(f, "parameter {name} removed (was {o})"),
                (o, n) => write!(
                    f,
                    "parameter {name} changed ({} -> {})",
                    o.as_deref().unwrap_or("none"),
                    n.as_deref().unwrap_or("none")
                ),
            },
            Reason::InputChanged { name, old, new } => match (old, new) {
                (None, Some(_)) => write!(f, "file {name} added"),
                (Some(_), None) => write!(f, "file {name} removed"),
                _ => write!(
                    f,
                    "file {name} changed (blake3 {} -> {})",
                    short(old),
                    short(new)
                ),
            },
            Reason::DependencyChanged { node, old, new } => match (old, new) {
                (None, Some(_)) => write!(f, "dependency {node} added"),
                (Some(_), None) => write!(f, "dependency {node} removed"),
                _ => write!(
                    f,
                    "dependency {node} output changed ({} -> {})",
                    short(old),
                    short(new)
                ),
            },
            Reason::DependencyWillRun { node } => write!(f, "dependency {node} will run"),
            Reason::CacheEntryMissing => write!(f, "cached output missing from the store"),
            Reason::RemoteMiss {
                remote,
                unusable: None,
            } => write!(f, "not in the remote cache {remote}"),
            Reason::RemoteMiss {
                remote,
                unusable: Some(why),
            } => write!(f, "the remote cache {remote} had an unusable entry: {why}"),
        }
    }
}

/// The reasons that turn component list `old` into `new` (both sorted or not).
pub fn diff(old: &[Component], new: &[Component]) -> Vec<Reason> {
    let index = |cs: &[Component]| -> BTreeMap<(ComponentKind, String), Component> {
        cs.iter()
            .map(|c| ((c.kind, c.name.clone()), c.clone()))
            .collect()
    };
    let (o, n) = (index(old), index(new));
    let mut keys: Vec<&(ComponentKind, String)> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    let mut rule_old = None;
    let mut rule_new = None;
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a.map(|c| c.digest) == b.map(|c| c.digest) {
            continue;
        }
        let name = k.1.clone();
        match k.0 {
            ComponentKind::Rule => {
                if let Some(a) = a {
                    rule_old = a.preview.clone().or(Some(a.name.clone()));
                }
                if let Some(b) = b {
                    rule_new = b.preview.clone().or(Some(b.name.clone()));
                }
            }
            ComponentKind::Param => out.push(Reason::ParamChanged {
                name,
                old: a.map(|c| c.preview.clone().unwrap_or_else(|| c.digest.short())),
                new: b.map(|c| c.preview.clone().unwrap_or_else(|| c.digest.short())),
            }),
            ComponentKind::Input => out.push(Reason::InputChanged {
                name,
                old: a.map(|c| c.digest),
                new: b.map(|c| c.digest),
            }),
            ComponentKind::Dep => out.push(Reason::DependencyChanged {
                node: name,
                old: a.map(|c| c.digest),
                new: b.map(|c| c.digest),
            }),
        }
    }
    if rule_old.is_some() || rule_new.is_some() {
        out.insert(
            0,
            Reason::RuleVersionChanged {
                old: rule_old.unwrap_or_else(|| "none".into()),
                new: rule_new.unwrap_or_else(|| "none".into()),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::rule_component;

    fn input(name: &str, content: &str) -> Component {
        Component {
            kind: ComponentKind::Input,
            name: name.into(),
            digest: Digest::of(content.as_bytes()),
            preview: None,
        }
    }

    #[test]
    fn diff_names_each_change() {
        let old = vec![rule_component("step", 1), input("a", "1"), input("b", "1")];
        let new = vec![rule_component("step", 2), input("a", "2"), input("c", "1")];
        let r = diff(&old, &new);
        let text: Vec<String> = r.iter().map(ToString::to_string).collect();
        assert_eq!(text[0], "rule version changed (step v1 -> step v2)");
        assert!(
            text[1].starts_with("file a changed (blake3 "),
            "{}",
            text[1]
        );
        assert_eq!(text[2], "file b removed");
        assert_eq!(text[3], "file c added");
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn json_shape() {
        let r = Reason::InputChanged {
            name: "in/b.txt".into(),
            old: Some(Digest::of(b"1")),
            new: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "input-changed");
        assert_eq!(v["name"], "in/b.txt");
        assert!(v["old"].is_string());
        assert!(v["new"].is_null());
    }
}
