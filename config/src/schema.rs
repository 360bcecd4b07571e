//! The treefile keys nosa knows: their types, how they merge across includes, and whether
//! nosa implements them. Type checking of the raw tree happens here.

use crate::yaml::{Node, Value};

/// The type a key's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Bool,
    Int,
    /// A string or a number (`releasever`, `edition`).
    StrOrNum,
    StrList,
    /// A list of lists of strings (`remove-from-packages`, `add-files`).
    StrListList,
    /// A mapping with arbitrary values.
    Map,
    /// A mapping of scalars (`variables`).
    ScalarMap,
    /// A string or a list of strings (`include`).
    Include,
    /// A mapping of arch name to include (`arch-include`).
    ArchInclude,
    /// A list of `{if, include}` (`conditional-include`).
    CondInclude,
    Any,
}

impl Kind {
    pub fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "a boolean",
            Kind::Int => "an integer",
            Kind::StrOrNum => "a string or a number",
            Kind::StrList => "a list of strings",
            Kind::StrListList => "a list of lists of strings",
            Kind::Map => "a mapping",
            Kind::ScalarMap => "a mapping of booleans, numbers and strings",
            Kind::Include => "a string or a list of strings",
            Kind::ArchInclude => "a mapping from architecture to include",
            Kind::CondInclude => "a list of {if, include} mappings",
            Kind::Any => "any value",
        }
    }
}

/// How values of a key combine across includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merge {
    /// The including file wins.
    Scalar,
    /// Included items come first.
    List,
    /// Merged per entry; the including file wins per entry.
    Map,
    /// Consumed by the include loader, not part of the merged treefile.
    Loader,
}

/// Whether nosa acts on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    Yes,
    /// A valid rpm-ostree key nosa does not act on yet: warned about, kept in `config show`.
    NotYet,
    /// An obsolete key: warned about with the reason, kept in `config show`.
    Obsolete(&'static str),
}

/// One known treefile key.
#[derive(Debug)]
pub(crate) struct KeyDef {
    pub name: &'static str,
    pub kind: Kind,
    pub merge: Merge,
    pub support: Support,
}

const fn k(name: &'static str, kind: Kind, merge: Merge, support: Support) -> KeyDef {
    KeyDef {
        name,
        kind,
        merge,
        support,
    }
}

use Kind::*;
use Merge::{List, Loader, Scalar};
use Support::{NotYet, Obsolete, Yes};

/// Every key of rpm-ostree's treefile reference, in its order.
pub(crate) const TREEFILE_KEYS: &[KeyDef] = &[
    k("edition", StrOrNum, Scalar, NotYet),
    k("ref", Str, Scalar, Yes),
    k("metadata", Map, Merge::Map, Yes),
    k("gpg-key", Str, Scalar, NotYet),
    k("repos", StrList, List, Yes),
    k("selinux", Bool, Scalar, NotYet),
    k("ignore-devices", Bool, Scalar, NotYet),
    k("ima", Bool, Scalar, NotYet),
    k("boot-location", Str, Scalar, Yes),
    k("etc-group-members", StrList, List, Yes),
    k("install-langs", StrList, List, NotYet),
    k("mutate-os-release", Str, Scalar, Yes),
    k("documentation", Bool, Scalar, NotYet),
    k("packages", StrList, List, Yes),
    k("exclude-packages", StrList, List, Yes),
    k("repo-packages", Any, List, NotYet),
    k("ostree-layers", StrList, List, Yes),
    k("ostree-override-layers", StrList, List, NotYet),
    k("container-cmd", StrList, Scalar, Yes),
    k(
        "bootstrap_packages",
        StrList,
        List,
        Obsolete("deprecated by rpm-ostree; use `packages`"),
    ),
    k("recommends", Bool, Scalar, Yes),
    k("units", StrList, List, NotYet),
    k("default-target", Str, Scalar, Yes),
    k("initramfs-args", StrList, List, Yes),
    k("rpmdb", Str, Scalar, Yes),
    k("rpmdb-normalize", Bool, Scalar, NotYet),
    k("selinux-label-version", Int, Scalar, NotYet),
    k("cliwrap", Bool, Scalar, NotYet),
    k("cliwrap-binaries", StrList, List, NotYet),
    k("readonly-executables", Bool, Scalar, NotYet),
    k("remove-files", StrList, List, Yes),
    k("remove-from-packages", StrListList, List, Yes),
    k("preserve-passwd", Bool, Scalar, NotYet),
    k("check-passwd", Map, Scalar, Yes),
    k("check-groups", Map, Scalar, Yes),
    k("ignore-removed-users", StrList, List, Yes),
    k("ignore-removed-groups", StrList, List, Yes),
    k("releasever", StrOrNum, Scalar, Yes),
    k("automatic-version-prefix", Str, Scalar, Yes),
    k("automatic-version-suffix", Str, Scalar, Yes),
    k("add-commit-metadata", Map, Merge::Map, Yes),
    k("postprocess-script", Str, Scalar, Yes),
    k("postprocess", StrList, List, Yes),
    k("include", Include, Loader, Yes),
    k("arch-include", ArchInclude, Loader, Yes),
    k("conditional-include", CondInclude, Loader, Yes),
    k("container", Bool, Scalar, NotYet),
    k("add-files", StrListList, List, NotYet),
    k("tmp-is-dir", Bool, Scalar, Yes),
    k("machineid-compat", Bool, Scalar, Yes),
    k("platform-module", Str, Scalar, NotYet),
    k("variables", ScalarMap, Merge::Map, Yes),
    k("repo-metadata", Str, Scalar, NotYet),
    k("advisories-metadata", Str, Scalar, NotYet),
    k("lockfile-repos", StrList, List, Yes),
    k("repovars", ScalarMap, Merge::Map, Yes),
    k("sysusers", Str, Scalar, NotYet),
    k("opt-usrlocal", Str, Scalar, NotYet),
    k("no-initramfs", Bool, Scalar, NotYet),
    k("modules", Any, Scalar, NotYet),
    k(
        "rojig",
        Any,
        Scalar,
        Obsolete("rojig support was removed from rpm-ostree; nosa ignores it"),
    ),
];

/// Underscore spellings rpm-ostree accepts.
const ALIASES: &[(&str, &str)] = &[
    ("boot_location", "boot-location"),
    ("default_target", "default-target"),
    ("automatic_version_prefix", "automatic-version-prefix"),
    ("gpg_key", "gpg-key"),
];

/// `packages-<arch>` (arch-specific packages).
pub(crate) const PACKAGES_ARCH: KeyDef = k("packages-$basearch", StrList, List, Yes);

/// Architectures rpm-ostree accepts in `packages-<arch>` and `arch-include`.
pub(crate) const BASEARCHES: &[&str] = &[
    "x86_64",
    "aarch64",
    "ppc64le",
    "s390x",
    "riscv64",
    "armhfp",
    "i686",
    "loongarch64",
];

/// The definition and canonical name of `name`, if it is a treefile key.
pub(crate) fn lookup(name: &str) -> Option<(&'static KeyDef, String)> {
    if let Some(arch) = name.strip_prefix("packages-")
        && BASEARCHES.contains(&arch)
    {
        return Some((&PACKAGES_ARCH, name.to_string()));
    }
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, c)| *c);
    TREEFILE_KEYS
        .iter()
        .find(|d| d.name == canonical)
        .map(|d| (d, canonical.to_string()))
}

/// The closest known key to `name`, for "did you mean" hints.
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    TREEFILE_KEYS
        .iter()
        .map(|d| (edit_distance(name, d.name), d.name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A type mismatch: the offending node and what was expected there.
#[derive(Debug)]
pub(crate) struct Mismatch<'a> {
    pub node: &'a Node,
    pub expected: &'static str,
    /// Path below the key, e.g. `[2]` or `[0].if`.
    pub path: String,
}

fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Bool(_) | Value::Int(_) | Value::Uint(_) | Value::Float(_) | Value::Str(_)
    )
}

fn mismatch<'a>(node: &'a Node, expected: &'static str, path: String) -> Mismatch<'a> {
    Mismatch {
        node,
        expected,
        path,
    }
}

fn str_list<'a>(node: &'a Node, expected: &'static str, path: &str) -> Result<(), Mismatch<'a>> {
    let Value::Seq(items) = &node.value else {
        return Err(mismatch(node, expected, path.to_string()));
    };
    for (i, item) in items.iter().enumerate() {
        if !matches!(item.value, Value::Str(_)) {
            return Err(mismatch(item, "a string", format!("{path}[{i}]")));
        }
    }
    Ok(())
}

/// Checks that `node` has type `kind`.
pub(crate) fn check(kind: Kind, node: &Node) -> Result<(), Mismatch<'_>> {
    let v = &node.value;
    let ok = match kind {
        Kind::Any => true,
        Kind::Str => matches!(v, Value::Str(_)),
        Kind::Bool => matches!(v, Value::Bool(_)),
        Kind::Int => matches!(v, Value::Int(_) | Value::Uint(_)),
        Kind::StrOrNum => matches!(
            v,
            Value::Str(_) | Value::Int(_) | Value::Uint(_) | Value::Float(_)
        ),
        Kind::StrList => return str_list(node, kind.expected(), ""),
        Kind::StrListList => {
            let Value::Seq(items) = v else {
                return Err(mismatch(node, kind.expected(), String::new()));
            };
            for (i, item) in items.iter().enumerate() {
                str_list(item, "a list of strings", &format!("[{i}]"))?;
            }
            true
        }
        Kind::Map => matches!(v, Value::Map(_)),
        Kind::ScalarMap => {
            let Value::Map(entries) = v else {
                return Err(mismatch(node, kind.expected(), String::new()));
            };
            for (key, val) in entries {
                if !is_scalar(&val.value) {
                    return Err(mismatch(
                        val,
                        "a boolean, a number or a string",
                        format!(".{}", key.name),
                    ));
                }
            }
            true
        }
        Kind::Include => match v {
            Value::Str(_) => true,
            Value::Seq(_) => return str_list(node, kind.expected(), ""),
            _ => false,
        },
        Kind::ArchInclude => {
            let Value::Map(entries) = v else {
                return Err(mismatch(node, kind.expected(), String::new()));
            };
            for (key, val) in entries {
                check(Kind::Include, val).map_err(|mut m| {
                    m.path = format!(".{}{}", key.name, m.path);
                    m
                })?;
            }
            true
        }
        Kind::CondInclude => {
            let Value::Seq(items) = v else {
                return Err(mismatch(node, kind.expected(), String::new()));
            };
            for (i, item) in items.iter().enumerate() {
                let Value::Map(entries) = &item.value else {
                    return Err(mismatch(item, "an {if, include} mapping", format!("[{i}]")));
                };
                for (key, val) in entries {
                    let path = format!("[{i}].{}", key.name);
                    match key.name.as_str() {
                        "if" => match &val.value {
                            Value::Str(_) => {}
                            Value::Seq(_) => str_list(val, "a string or a list of strings", &path)?,
                            _ => return Err(mismatch(val, "a string or a list of strings", path)),
                        },
                        "include" if !matches!(val.value, Value::Map(_)) => {
                            check(Kind::Include, val).map_err(|mut m| {
                                m.path = format!("{path}{}", m.path);
                                m.expected = "a string, a list of strings or a mapping";
                                m
                            })?;
                        }
                        // Inline treefiles are checked when loaded; unknown keys are
                        // reported by the loader, with the key's span.
                        _ => {}
                    }
                }
            }
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(mismatch(node, kind.expected(), String::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_aliases_and_arch_packages() {
        assert_eq!(lookup("boot_location").unwrap().1, "boot-location");
        assert_eq!(
            lookup("packages-aarch64").unwrap().0.name,
            "packages-$basearch"
        );
        assert!(lookup("packages-sparc").is_none());
        assert!(lookup("pakages").is_none());
        assert_eq!(suggest("pakages"), Some("packages"));
    }
}
