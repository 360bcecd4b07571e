//! Commit metadata: the values a commit's `a{sv}` may hold, encoded in sorted key order.

use std::collections::BTreeMap;

use ostree::glib::prelude::*;
use ostree::glib::{Variant, VariantTy};

use crate::CommitError;

/// A commit metadata value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaValue {
    /// `s`
    Str(String),
    /// `as`
    StrList(Vec<String>),
    /// `b`
    Bool(bool),
    /// `x`
    I64(i64),
    /// `t`
    U64(u64),
    /// `a(sssss)`: rpm-ostree's `rpmostree.rpmdb.pkglist` (name, epoch, version, release,
    /// arch; the epoch as a decimal string, `0` when unset).
    PkgList(Vec<PkgEntry>),
}

/// One `rpmostree.rpmdb.pkglist` entry: name, epoch, version, release, arch.
pub type PkgEntry = [String; 5];

/// `name-[epoch:]version-release.arch` split into a pkglist entry (epoch `0` when absent), as
/// rpm-ostree decomposes a NEVRA: arch after the last `.`, release after the last `-` before
/// it, version after the `-` before that; the name may hold dashes.
pub fn parse_nevra(nevra: &str) -> Option<PkgEntry> {
    let (nevr, arch) = nevra.rsplit_once('.')?;
    let (nev, release) = nevr.rsplit_once('-')?;
    let (name, ev) = nev.rsplit_once('-')?;
    let (epoch, version) = match ev.split_once(':') {
        Some((e, v)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse::<u64>().ok()?.to_string(), v)
        }
        Some(_) => return None,
        None => ("0".to_string(), ev),
    };
    if [name, version, release, arch].iter().any(|s| s.is_empty()) {
        return None;
    }
    Some([
        name.to_string(),
        epoch,
        version.to_string(),
        release.to_string(),
        arch.to_string(),
    ])
}

impl MetaValue {
    fn to_variant(&self) -> Variant {
        match self {
            MetaValue::Str(s) => s.to_variant(),
            MetaValue::StrList(v) => v.to_variant(),
            MetaValue::Bool(b) => b.to_variant(),
            MetaValue::I64(i) => i.to_variant(),
            MetaValue::U64(u) => u.to_variant(),
            MetaValue::PkgList(l) => {
                let ty = VariantTy::new("(sssss)").expect("valid type string");
                Variant::array_from_iter_with_type(
                    ty,
                    l.iter().map(|[n, e, v, r, a]| {
                        (n.as_str(), e.as_str(), v.as_str(), r.as_str(), a.as_str()).to_variant()
                    }),
                )
            }
        }
    }
}

/// The `a{sv}` of `metadata`, entries in key order (a `BTreeMap`), so the encoding and thus
/// the commit checksum do not depend on insertion or hash order.
pub(crate) fn to_variant(metadata: &BTreeMap<String, MetaValue>) -> Variant {
    let entries = metadata.iter().map(|(k, v)| {
        Variant::from_dict_entry(&k.to_variant(), &Variant::from_variant(&v.to_variant()))
    });
    let ty = VariantTy::new("{sv}").expect("valid type string");
    Variant::array_from_iter_with_type(ty, entries)
}

/// Metadata from a JSON object: strings, arrays of strings, booleans and integers.
pub fn metadata_from_json(json: &str) -> Result<BTreeMap<String, MetaValue>, CommitError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| CommitError::Metadata(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(CommitError::Metadata("not a JSON object".into()));
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let bad = |what: &str| CommitError::Metadata(format!("key {k:?}: {what}"));
        let m = match &v {
            serde_json::Value::String(s) => MetaValue::Str(s.clone()),
            serde_json::Value::Bool(b) => MetaValue::Bool(*b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => MetaValue::I64(i),
                (None, Some(u)) => MetaValue::U64(u),
                _ => return Err(bad("only integers are supported")),
            },
            serde_json::Value::Array(a) => MetaValue::StrList(
                a.iter()
                    .map(|e| e.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("arrays must hold strings only"))?,
            ),
            _ => return Err(bad("null and objects are not supported")),
        };
        out.insert(k, m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_map_to_variants_in_key_order() {
        let m = metadata_from_json(r#"{"z":1,"a":"x","l":["p","q"],"b":true}"#).unwrap();
        let v = to_variant(&m);
        assert_eq!(v.type_().as_str(), "a{sv}");
        assert_eq!(
            v.print(false).as_str(),
            "{'a': <'x'>, 'b': <true>, 'l': <['p', 'q']>, 'z': <int64 1>}"
        );
    }

    #[test]
    fn a_pkglist_is_a_sssss_array() {
        let l = MetaValue::PkgList(vec![
            parse_nevra("glibc-common-2.38-1.oe2403.x86_64").unwrap(),
            parse_nevra("shim-15:1.0-2.noarch").unwrap(),
        ]);
        let v = l.to_variant();
        assert_eq!(v.type_().as_str(), "a(sssss)");
        assert_eq!(
            v.print(false).as_str(),
            "[('glibc-common', '0', '2.38', '1.oe2403', 'x86_64'), \
             ('shim', '15', '1.0', '2', 'noarch')]"
        );
    }

    #[test]
    fn bad_nevras_are_refused() {
        for bad in ["x", "a-1.x86_64", "a-b:1-2.noarch", "-1-2.noarch"] {
            assert_eq!(parse_nevra(bad), None, "{bad}");
        }
    }

    #[test]
    fn unsupported_values_are_errors() {
        assert!(metadata_from_json(r#"{"a":null}"#).is_err());
        assert!(metadata_from_json(r#"{"a":1.5}"#).is_err());
        assert!(metadata_from_json(r#"{"a":[1]}"#).is_err());
        assert!(metadata_from_json(r#"[1]"#).is_err());
    }
}
