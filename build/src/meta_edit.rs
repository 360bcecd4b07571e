//! `nosa meta`'s reading and editing of a build's meta.json: dotted keys (`images.qemu.sha256`,
//! and keys that hold dots themselves, `coreos-assembler.basearch`), `KEY=VALUE` assignments,
//! and an edit that is checked against the v1 rules ([`crate::meta_check`]) before anything
//! is written.

use serde_json::{Map, Value};

use crate::builds::BuildsDir;
use crate::meta_check::{self, Problem};

/// Splits a dotted `key` into the keys it names in `doc`: at each object, the longest run of
/// dot-separated parts that is a key there (at the top also a key v1 defines, present or
/// not), else a single part. `coreos-assembler.basearch` is one key, `images.qemu.path` three.
pub fn split_key(doc: &Value, key: &str) -> Vec<String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut out = Vec::new();
    let mut at = Some(doc);
    let mut i = 0;
    while i < parts.len() {
        let obj = at.and_then(Value::as_object);
        let top = out.is_empty();
        let take = (i + 1..=parts.len())
            .rev()
            .find(|&j| {
                let k = parts[i..j].join(".");
                obj.is_some_and(|o| o.contains_key(&k))
                    || (top && meta_check::top_level_keys().any(|t| t == k))
            })
            .unwrap_or(i + 1);
        let k = parts[i..take].join(".");
        at = at.and_then(|v| child(v, &k));
        out.push(k);
        i = take;
    }
    out
}

/// The member `k` of an object, or the item at index `k` of an array.
fn child<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    match v {
        Value::Object(o) => o.get(k),
        Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => None,
    }
}

/// The value at the dotted `key`, if there is one.
pub fn get<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    split_key(doc, key).iter().try_fold(doc, |v, k| child(v, k))
}

/// What a `--get` prints: a string as it is, anything else as JSON (objects and arrays
/// indented).
pub fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => {
            serde_json::to_string_pretty(v).expect("a JSON value serializes")
        }
        v => v.to_string(),
    }
}

/// `VALUE` of `--set KEY=VALUE`: JSON when it parses as JSON, else the text as a string.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Why a `--set` could not be applied.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The argument has no `=`, or nothing before it.
    #[error("{0:?} is not KEY=VALUE (for example `--set summary=\"my build\"`)")]
    NotAnAssignment(String),
    /// A key on the way is something other than an object.
    #[error("cannot set {key}: {parent} holds {found}, not an object")]
    NotAnObject {
        /// The key being set.
        key: String,
        /// The key on its way that is no object.
        parent: String,
        /// What that key holds.
        found: String,
    },
}

/// Splits `KEY=VALUE` (the first `=`), the value parsed by [`parse_value`].
pub fn parse_assignment(arg: &str) -> Result<(String, Value), SetError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), parse_value(v))),
        _ => Err(SetError::NotAnAssignment(arg.to_string())),
    }
}

/// Sets the dotted `key` of `doc` to `value`, making the objects on its way that are missing.
/// A refused set changes nothing (objects are only made below the last existing key).
pub fn set(doc: &mut Value, key: &str, value: Value) -> Result<(), SetError> {
    let keys = split_key(doc, key);
    let not_object = |n: usize, v: &Value| SetError::NotAnObject {
        key: key.to_string(),
        parent: if n == 0 {
            "the file".to_string()
        } else {
            keys[..n].join(".")
        },
        found: meta_check::describe(v),
    };
    let mut at = doc;
    for (n, k) in keys.iter().enumerate() {
        let o = match at {
            Value::Object(o) => o,
            other => return Err(not_object(n, other)),
        };
        if n + 1 == keys.len() {
            o.insert(k.clone(), value);
            return Ok(());
        }
        at = o
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    unreachable!("split_key gives one key at least")
}

/// The keys `nosa build` writes again when it records the same build id (an unchanged
/// rebuild keeps the id): a `--set` of one of them lasts until then. `images` entries of the
/// artifacts a build places are rewritten too.
const REWRITTEN: &[&str] = &[
    "buildid",
    "name",
    "ref",
    "coreos-assembler.basearch",
    "coreos-assembler.build-timestamp",
    "ostree-commit",
    "ostree-content-checksum",
    "ostree-timestamp",
    "ostree-version",
    "rpm-ostree-inputhash",
];

/// Whether `nosa build` rewrites the (already split) key when it records the build again.
pub fn rewritten_by_build(keys: &[String]) -> bool {
    match keys {
        [top, ..] if REWRITTEN.contains(&top.as_str()) => true,
        [images, ..] => images == "images",
        [] => false,
    }
}

/// Why `nosa meta --set` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// A bad `--set` argument.
    #[error(transparent)]
    Set(#[from] SetError),
    /// The result breaks the v1 rules (or nosa's): every problem.
    #[error("meta.json would not be valid, so nothing was written")]
    Invalid(Vec<Problem>),
    /// The file is unreadable or not JSON.
    #[error("{0}")]
    Read(String),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What an applied edit did.
#[derive(Debug)]
pub struct Edited {
    /// Each key set (split) with its value, in order.
    pub set: Vec<(Vec<String>, Value)>,
}

/// Applies `assignments` (`KEY=VALUE`, in order) to build `id`'s meta.json for `arch`,
/// checks the result with [`meta_check::check`] and writes it atomically; nothing is
/// written when any assignment or check fails.
pub fn edit(
    builds: &BuildsDir,
    id: &str,
    arch: &str,
    assignments: &[String],
) -> Result<Edited, EditError> {
    let mut doc = builds.meta_value(id, arch).map_err(EditError::Read)?;
    let mut done = Vec::new();
    for a in assignments {
        let (key, value) = parse_assignment(a)?;
        let keys = split_key(&doc, &key);
        set(&mut doc, &key, value.clone())?;
        done.push((keys, value));
    }
    let problems = meta_check::check(&doc);
    if !problems.is_empty() {
        return Err(EditError::Invalid(problems));
    }
    builds.write_meta_value(id, arch, &doc)?;
    Ok(Edited { set: done })
}

/// The build and arch a lifecycle command acts on: `build`, else the latest; `arch`, else
/// `prefer` when the build has it, else the build's first arch (as builds.json lists them).
pub fn select(
    builds: &BuildsDir,
    build: Option<&str>,
    arch: Option<&str>,
    prefer: Option<&str>,
) -> Result<(String, String), crate::Error> {
    let index = builds.index().ok_or_else(|| {
        crate::Error::usage(
            "there are no builds (builds/builds.json is missing or unreadable)",
            "`nosa build` makes one",
        )
    })?;
    let known: Vec<&str> = index.builds.iter().map(|b| b.id.as_str()).collect();
    let entry = match build {
        Some(id) => index.builds.iter().find(|b| b.id == id),
        None => index.builds.first(),
    }
    .ok_or_else(|| {
        crate::Error::usage(
            match build {
                Some(id) => format!("no build {id} in builds/builds.json"),
                None => "builds/builds.json lists no builds".to_string(),
            },
            format!(
                "the builds are: {} (`nosa list` shows them)",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )
    })?;
    let has = |a: &str| entry.arches.iter().any(|x| x == a);
    let chosen = match (arch, prefer) {
        (Some(a), _) if has(a) => a.to_string(),
        (Some(a), _) => {
            return Err(crate::Error::usage(
                format!("build {} has no arch {a}", entry.id),
                format!("its arches: {}", entry.arches.join(", ")),
            ));
        }
        (None, Some(p)) if has(p) => p.to_string(),
        (None, _) => entry.arches.first().cloned().ok_or_else(|| {
            crate::Error::usage(
                format!("build {} lists no arch in builds/builds.json", entry.id),
                "`nosa build` records it again",
            )
        })?,
    };
    Ok((entry.id.clone(), chosen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "buildid": "1.0",
            "coreos-assembler.basearch": "x86_64",
            "images": {"qemu": {"path": "q.qcow2", "sha256": "ab", "size": 3}},
            "amis": [{"name": "eu"}],
            "a.b": {"c": 1}
        })
    }

    #[test]
    fn dotted_keys_prefer_the_longest_key_there() {
        let d = doc();
        assert_eq!(
            split_key(&d, "images.qemu.sha256"),
            ["images", "qemu", "sha256"]
        );
        assert_eq!(
            split_key(&d, "coreos-assembler.basearch"),
            ["coreos-assembler.basearch"]
        );
        assert_eq!(split_key(&d, "a.b.c"), ["a.b", "c"]);
        // Not there yet, but a v1 key: one key, not two objects.
        assert_eq!(
            split_key(&d, "coreos-assembler.config-gitrev"),
            ["coreos-assembler.config-gitrev"]
        );
        assert_eq!(split_key(&d, "x.y"), ["x", "y"]);
        assert_eq!(get(&d, "images.qemu.sha256"), Some(&json!("ab")));
        assert_eq!(get(&d, "coreos-assembler.basearch"), Some(&json!("x86_64")));
        assert_eq!(get(&d, "a.b.c"), Some(&json!(1)));
        assert_eq!(get(&d, "amis.0.name"), Some(&json!("eu")));
        assert_eq!(get(&d, "amis.1.name"), None);
        assert_eq!(get(&d, "images.metal.path"), None);
        assert_eq!(get(&d, "buildid.x"), None);
    }

    #[test]
    fn render_prints_strings_raw_and_the_rest_as_json() {
        assert_eq!(render(&json!("a b")), "a b");
        assert_eq!(render(&json!(3)), "3");
        assert_eq!(render(&json!(true)), "true");
        assert_eq!(render(&json!({"a": 1})), "{\n  \"a\": 1\n}");
    }

    #[test]
    fn values_are_json_when_they_parse_else_strings() {
        assert_eq!(parse_value("3"), json!(3));
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value("\"3\""), json!("3"));
        assert_eq!(parse_value("{\"a\": [1]}"), json!({"a": [1]}));
        assert_eq!(parse_value("my build"), json!("my build"));
        assert_eq!(parse_value(""), json!(""));
        assert_eq!(
            parse_assignment("summary=a=b"),
            Ok(("summary".into(), json!("a=b")))
        );
        assert!(parse_assignment("summary").is_err());
        assert!(parse_assignment("=x").is_err());
    }

    #[test]
    fn set_makes_objects_on_the_way_and_refuses_to_go_through_values() {
        let mut d = doc();
        set(&mut d, "images.qemu.skip-compression", json!(true)).unwrap();
        assert_eq!(d["images"]["qemu"]["skip-compression"], json!(true));
        set(&mut d, "s3.bucket", json!("b")).unwrap();
        assert_eq!(d["s3"], json!({"bucket": "b"}));
        set(&mut d, "coreos-assembler.config-gitrev", json!("abc")).unwrap();
        assert_eq!(d["coreos-assembler.config-gitrev"], json!("abc"));
        assert!(d.get("coreos-assembler").is_none());
        set(&mut d, "a.b.c", json!(2)).unwrap();
        assert_eq!(d["a.b"]["c"], json!(2));
        let before = d.clone();
        assert_eq!(
            set(&mut d, "buildid.x", json!(1)),
            Err(SetError::NotAnObject {
                key: "buildid.x".into(),
                parent: "buildid".into(),
                found: "\"1.0\" (a string)".into()
            })
        );
        assert_eq!(d, before, "a refused set changes nothing");
    }

    #[test]
    fn keys_a_build_rewrites_are_known() {
        let d = doc();
        let rewritten = |k: &str| rewritten_by_build(&split_key(&d, k));
        assert!(rewritten("ostree-commit"));
        assert!(rewritten("coreos-assembler.basearch"));
        assert!(rewritten("images.qemu.sha256"));
        assert!(!rewritten("summary"));
        assert!(!rewritten("coreos-assembler.config-gitrev"));
    }

    #[test]
    fn an_invalid_edit_writes_nothing_and_a_valid_one_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildsDir::of(dir.path());
        let path = b.arch_dir("1.0", "x86_64").join("meta.json");
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        let sum = "a".repeat(64);
        let original = serde_json::to_vec_pretty(&json!({
            "buildid": "1.0", "name": "nestos", "ostree-commit": sum,
            "ostree-content-checksum": sum, "ostree-timestamp": "2024-01-01T00:00:00Z",
            "ostree-version": "1.0", "rpm-ostree-inputhash": sum,
            "images": {"ostree": {"path": "o", "sha256": sum, "size": 1, "x-other": [1]}}
        }))
        .unwrap();
        fs_err::write(&path, &original).unwrap();
        let err = edit(
            &b,
            "1.0",
            "x86_64",
            &["summary=fine".into(), "ostree-commit=abc".into()],
        )
        .unwrap_err();
        match err {
            EditError::Invalid(p) => {
                assert_eq!(p.len(), 1, "{p:?}");
                assert_eq!(p[0].key, "ostree-commit");
            }
            e => panic!("{e}"),
        }
        assert_eq!(fs_err::read(&path).unwrap(), original, "file untouched");
        edit(&b, "1.0", "x86_64", &["summary=fine".into()]).unwrap();
        let v: Value = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
        assert_eq!(v["summary"], "fine");
        assert_eq!(v["images"]["ostree"]["x-other"], json!([1]));
        assert!(meta_check::check(&v).is_empty());
    }
}
