//! Merged treefile layers: rpm-ostree's inheritance rules, with the origin of every value kept.
//!
//! `merge(dest, src)` is rpm-ostree's `treefile_merge`: list items of `src` come first,
//! `dest` wins scalars, maps merge entry by entry with `dest` winning. A file is merged as
//! `dest` over the merge of its includes, and includes are folded in order as
//! `acc = merge(acc, next)`, so the including file wins, an earlier sibling include wins
//! scalars over a later one, and a later sibling's list items (e.g. `postprocess`) come
//! before an earlier sibling's — exactly the order rpm-ostree documents for `postprocess`.

use std::collections::BTreeMap;

use serde_json::Value as J;

use crate::schema::{self, Merge};
use crate::source::{FileId, Origin};
use crate::yaml::{Key, Node, Value};

/// One key's merged value.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub value: J,
    /// Where the winning value (or, for lists, the last contribution) was written.
    pub origin: Origin,
    /// For lists: where each item came from.
    pub items: Vec<Origin>,
    pub merge: Merge,
}

/// A (partially) merged treefile: canonical key to entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    pub entries: BTreeMap<String, Entry>,
}

/// `packages` entries are split on whitespace unless wrapped in single quotes.
pub(crate) fn split_packages(s: &str) -> Vec<String> {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        return vec![t[1..t.len() - 1].to_string()];
    }
    t.split_whitespace().map(str::to_string).collect()
}

impl Layer {
    /// The layer of one document's own keys (loader keys excluded). `packages-<arch>` for
    /// `arch` is appended to `packages`; for other arches it is dropped.
    pub fn from_doc(file: FileId, entries: &[(Key, Node)], arch: &str) -> Layer {
        let mut layer = Layer::default();
        let mut arch_packages: Option<(Vec<J>, Vec<Origin>, Origin)> = None;
        for (key, node) in entries {
            let (merge, canonical) = match schema::lookup(&key.name) {
                Some((def, canonical)) => (def.merge, canonical),
                None => (Merge::Scalar, key.name.clone()),
            };
            if merge == Merge::Loader {
                continue;
            }
            let is_packages = canonical == "packages" || canonical.starts_with("packages-");
            let (value, items) = match (&node.value, merge) {
                (Value::Seq(seq), Merge::List) => {
                    let mut values = Vec::new();
                    let mut items = Vec::new();
                    for item in seq {
                        match (&item.value, is_packages) {
                            (Value::Str(s), true) => {
                                for p in split_packages(s) {
                                    values.push(J::String(p));
                                    items.push(item.origin(file));
                                }
                            }
                            _ => {
                                values.push(item.to_json());
                                items.push(item.origin(file));
                            }
                        }
                    }
                    (J::Array(values), items)
                }
                _ => (node.to_json(), Vec::new()),
            };
            if let Some(a) = canonical.strip_prefix("packages-") {
                if a == arch
                    && let J::Array(values) = value
                {
                    arch_packages = Some((values, items, node.origin(file)));
                }
                continue;
            }
            layer.entries.insert(
                canonical,
                Entry {
                    value,
                    origin: node.origin(file),
                    items,
                    merge,
                },
            );
        }
        if let Some((values, items, origin)) = arch_packages {
            let e = layer
                .entries
                .entry("packages".to_string())
                .or_insert_with(|| Entry {
                    value: J::Array(Vec::new()),
                    origin,
                    items: Vec::new(),
                    merge: Merge::List,
                });
            if let J::Array(a) = &mut e.value {
                a.extend(values);
            }
            e.items.extend(items);
        }
        layer
    }
}

/// rpm-ostree's `treefile_merge(dest, src)`; see the module docs.
pub(crate) fn merge(mut dest: Layer, src: Layer) -> Layer {
    for (key, s) in src.entries {
        let Some(d) = dest.entries.get_mut(&key) else {
            dest.entries.insert(key, s);
            continue;
        };
        match (d.merge, &mut d.value, s.value) {
            (Merge::List, J::Array(dv), J::Array(mut sv)) => {
                sv.append(dv);
                *dv = sv;
                let mut items = s.items;
                items.append(&mut d.items);
                d.items = items;
            }
            (Merge::Map, J::Object(dm), J::Object(sm)) => {
                for (k, v) in sm {
                    dm.entry(k).or_insert(v);
                }
            }
            _ => {}
        }
    }
    dest
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::SourceSpan;

    fn layer(file: FileId, pairs: &[(&str, J)]) -> Layer {
        let mut l = Layer::default();
        for (k, v) in pairs {
            let merge = schema::lookup(k).map_or(Merge::Scalar, |(d, _)| d.merge);
            let origin = Origin {
                file,
                span: SourceSpan::new(0.into(), 0),
            };
            let items = v.as_array().map_or(Vec::new(), |a| vec![origin; a.len()]);
            l.entries.insert(
                k.to_string(),
                Entry {
                    value: v.clone(),
                    origin,
                    items,
                    merge,
                },
            );
        }
        l
    }

    #[test]
    fn rpm_ostree_order() {
        use serde_json::json;
        let manifest = layer(0, &[("postprocess", json!(["foo"])), ("ref", json!("m"))]);
        let kernel = layer(1, &[("postprocess", json!(["bar"])), ("ref", json!("k"))]);
        let bootupd = layer(2, &[("postprocess", json!(["baz"])), ("ref", json!("b"))]);
        let acc = merge(merge(Layer::default(), kernel), bootupd);
        assert_eq!(acc.entries["ref"].value, json!("k"));
        let all = merge(manifest, acc);
        assert_eq!(
            all.entries["postprocess"].value,
            json!(["baz", "bar", "foo"])
        );
        assert_eq!(all.entries["ref"].value, json!("m"));
        let files: Vec<_> = all.entries["postprocess"]
            .items
            .iter()
            .map(|o| o.file)
            .collect();
        assert_eq!(files, [2, 1, 0]);
    }

    #[test]
    fn maps_merge_including_wins() {
        use serde_json::json;
        let outer = layer(0, &[("add-commit-metadata", json!({"a": 1}))]);
        let inner = layer(1, &[("add-commit-metadata", json!({"a": 2, "b": 3}))]);
        let m = merge(outer, inner);
        assert_eq!(
            m.entries["add-commit-metadata"].value,
            json!({"a": 1, "b": 3})
        );
    }

    #[test]
    fn splits_packages() {
        assert_eq!(split_packages(" a  b c "), ["a", "b", "c"]);
        assert_eq!(split_packages("'podman >= 4.1'"), ["podman >= 4.1"]);
    }
}
