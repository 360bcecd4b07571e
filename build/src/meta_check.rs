//! meta.json checked before nosa writes it: coreos-assembler's v1 rules (the keys a build must
//! have, the only keys allowed at the top, each key's type and length, the shapes of
//! `images`' entries, of the container references and the cloud uploads), plus the few rules
//! nosa adds because it reads those keys back.
//!
//! The rules are written here as typed checks, one [`Kind`] per key, so nosa needs no schema
//! file at run time. Each [`Problem`] says which rule set demands it ([`Source`]): `V1` is
//! what coreos-assembler's schema demands (a test compares these with the schema itself when
//! it is present), `Nosa` is where nosa is stricter:
//!
//! - `ostree-commit`, `ostree-content-checksum` and `rpm-ostree-inputhash` are 64 lowercase
//!   hexadecimal digits (v1: any string of at least 64 characters): nosa compares them.
//! - every entry of `images` is an artifact (v1 checks only the names it lists), with `size`
//!   (v1: optional) a non-negative integer and `sha256` (v1: any string) 64 lowercase
//!   hexadecimal digits: nosa's own reader of meta.json, `nosa list` and `nosa compress`
//!   need them.

use std::fmt;

use serde_json::Value;

/// Which rules demand a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// coreos-assembler's v1 schema.
    V1,
    /// nosa, beyond v1 (see the module documentation).
    Nosa,
}

/// One thing wrong with a meta.json.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key, as a dotted path (`images.qemu.sha256`; an array item by its index,
    /// `amis.0.name`).
    pub key: String,
    /// What the key must hold.
    pub expected: String,
    /// What it holds (`nothing` when it is missing).
    pub found: String,
    /// How to fix it.
    pub fix: String,
    /// Whose rule it is.
    pub source: Source,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.key, self.expected, self.found
        )
    }
}

/// What a key holds.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A string of at least this many characters.
    Text(usize),
    /// A checksum: v1 asks for at least 64 characters, nosa for 64 lowercase hex digits.
    Checksum,
    /// An artifact's SHA-256: v1 asks for a string, nosa for 64 lowercase hex digits.
    Sha256,
    /// An artifact's size: v1 asks for a number, nosa for a non-negative integer.
    Size,
    /// A time: v1 asks for `YYYY-MM-DDT...Z`.
    Time,
    /// Any JSON number.
    Number,
    /// A number without a fractional part.
    Integer,
    /// `true` or `false`.
    Bool,
    /// An object with these fields; `others` says what its other fields may be.
    Object(&'static [Field], Others),
    /// An array of items of this kind.
    Array(&'static Kind),
    /// An item of v1's package diffs: a string must not be empty; anything else passes.
    PkgItem,
    /// Anything.
    Any,
}

/// The fields of an object beyond those it lists.
#[derive(Clone, Copy, Debug)]
enum Others {
    /// Anything.
    Any,
    /// None at all (v1's top level).
    None,
    /// v1 leaves them alone; nosa wants artifacts (`images`).
    NosaArtifacts,
}

/// A field of an object.
#[derive(Clone, Copy, Debug)]
struct Field {
    name: &'static str,
    kind: Kind,
    /// Who requires it, if anyone.
    required: Option<Source>,
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: None,
    }
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: Some(Source::V1),
    }
}

const ARTIFACT: Kind = Kind::Object(
    &[
        req("path", Kind::Text(0)),
        req("sha256", Kind::Sha256),
        Field {
            name: "size",
            kind: Kind::Size,
            required: Some(Source::Nosa),
        },
        opt("skip-compression", Kind::Bool),
        opt("uncompressed-sha256", Kind::Text(0)),
        opt("uncompressed-size", Kind::Integer),
    ],
    Others::Any,
);

/// A container image reference (`base-oscontainer`, `oscontainer`, ...).
const CONTAINER: Kind = Kind::Object(
    &[
        req("image", Kind::Text(0)),
        opt("digest", Kind::Text(0)),
        opt("comment", Kind::Text(0)),
        opt("tags", Kind::Array(&Kind::Text(0))),
    ],
    Others::Any,
);

/// Where a git source came from.
const GIT: Kind = Kind::Object(
    &[
        req("commit", Kind::Text(5)),
        req("origin", Kind::Text(1)),
        opt("branch", Kind::Text(3)),
        opt("dirty", Kind::Text(1)),
    ],
    Others::Any,
);

/// An image uploaded to a cloud.
const CLOUD: Kind = Kind::Object(
    &[
        req("url", Kind::Text(0)),
        opt("image", Kind::Text(0)),
        opt("object", Kind::Text(0)),
        opt("bucket", Kind::Text(0)),
        opt("region", Kind::Text(0)),
    ],
    Others::Any,
);

/// The artifact names v1 lists under `images` (`ostree`, the OCI archive, is required).
const IMAGES: Kind = Kind::Object(
    &[
        req("ostree", ARTIFACT),
        opt("oci-manifest", ARTIFACT),
        opt("qemu", ARTIFACT),
        opt("qemu-secex", ARTIFACT),
        opt("ignition-gpg-key", ARTIFACT),
        opt("metal", ARTIFACT),
        opt("metal4k", ARTIFACT),
        opt("dasd", ARTIFACT),
        opt("iso", ARTIFACT),
        opt("kernel", ARTIFACT),
        opt("initramfs", ARTIFACT),
        opt("live-kernel", ARTIFACT),
        opt("live-initramfs", ARTIFACT),
        opt("live-iso", ARTIFACT),
        opt("live-rootfs", ARTIFACT),
        opt("openstack", ARTIFACT),
        opt("nutanix", ARTIFACT),
        opt("virtualbox", ARTIFACT),
        opt("vmware", ARTIFACT),
        opt("vultr", ARTIFACT),
        opt("applehv", ARTIFACT),
        opt("hyperv", ARTIFACT),
        opt("aliyun", ARTIFACT),
        opt("aws", ARTIFACT),
        opt("azure", ARTIFACT),
        opt("azurestack", ARTIFACT),
        opt("digitalocean", ARTIFACT),
        opt("exoscale", ARTIFACT),
        opt("gcp", ARTIFACT),
        opt("ibmcloud", ARTIFACT),
        opt("kubevirt", ARTIFACT),
        opt("powervs", ARTIFACT),
        opt("extensions-container", ARTIFACT),
        opt("legacy-oscontainer", ARTIFACT),
    ],
    Others::NosaArtifacts,
);

/// Every key v1 allows at the top of meta.json.
const TOP: &[Field] = &[
    // What every build has (nosa writes these).
    req("buildid", Kind::Text(1)),
    req("name", Kind::Text(0)),
    req("ostree-commit", Kind::Checksum),
    req("ostree-content-checksum", Kind::Checksum),
    req("ostree-timestamp", Kind::Time),
    req("ostree-version", Kind::Text(1)),
    req("rpm-ostree-inputhash", Kind::Checksum),
    opt("ref", Kind::Text(1)),
    opt("coreos-assembler.basearch", Kind::Text(1)),
    opt("coreos-assembler.build-timestamp", Kind::Text(1)),
    opt("images", IMAGES),
    // Provenance.
    opt("build-url", Kind::Text(1)),
    opt("summary", Kind::Text(1)),
    opt("coreos-assembler.code-source", Kind::Text(1)),
    opt("coreos-assembler.config-dirty", Kind::Text(1)),
    opt("coreos-assembler.config-gitrev", Kind::Text(1)),
    opt("coreos-assembler.config-variant", Kind::Text(0)),
    opt("coreos-assembler.container-config-git", GIT),
    opt("coreos-assembler.container-image-git", GIT),
    opt("coreos-assembler.yumrepos-git", GIT),
    opt("coreos-assembler.delayed-meta-merge", Kind::Bool),
    opt("coreos-assembler.overrides-active", Kind::Bool),
    opt("coreos-assembler.meta-stamp", Kind::Number),
    opt("coreos-assembler.image-genver", Kind::Integer),
    opt("coreos-assembler.image-config-checksum", Kind::Text(64)),
    opt("coreos-assembler.image-input-checksum", Kind::Text(64)),
    opt("fedora-coreos.parent-version", Kind::Text(12)),
    opt("fedora-coreos.parent-commit", Kind::Text(64)),
    // rpm-ostree's commit statistics.
    opt("ostree-content-bytes-written", Kind::Integer),
    opt("ostree-n-cache-hits", Kind::Integer),
    opt("ostree-n-content-total", Kind::Integer),
    opt("ostree-n-content-written", Kind::Integer),
    opt("ostree-n-metadata-total", Kind::Integer),
    opt("ostree-n-metadata-written", Kind::Integer),
    // Package and advisory differences.
    opt("pkgdiff", Kind::Array(&Kind::PkgItem)),
    opt("parent-pkgdiff", Kind::Array(&Kind::PkgItem)),
    opt("advisories-diff", Kind::Array(&Kind::Any)),
    opt("parent-advisories-diff", Kind::Array(&Kind::Any)),
    // Containers.
    opt("base-oscontainer", CONTAINER),
    opt("oscontainer", CONTAINER),
    opt("extensions-container", CONTAINER),
    opt("kubevirt", CONTAINER),
    opt("release-payload", CONTAINER),
    opt(
        "extensions",
        Kind::Object(
            &[
                req("path", Kind::Text(0)),
                req("sha256", Kind::Text(0)),
                req("rpm-ostree-state", Kind::Text(64)),
                req("manifest", Kind::Object(&[], Others::Any)),
            ],
            Others::Any,
        ),
    ),
    // Uploads.
    opt(
        "s3",
        Kind::Object(
            &[
                opt("bucket", Kind::Text(0)),
                opt("key", Kind::Text(0)),
                opt("public-url", Kind::Text(0)),
            ],
            Others::Any,
        ),
    ),
    opt(
        "koji",
        Kind::Object(
            &[
                opt("build_id", Kind::Number),
                opt("token", Kind::Text(0)),
                opt("release", Kind::Text(0)),
            ],
            Others::Any,
        ),
    ),
    opt(
        "amis",
        Kind::Array(&Kind::Object(
            &[
                req("name", Kind::Text(0)),
                req("hvm", Kind::Text(0)),
                req("snapshot", Kind::Text(0)),
            ],
            Others::Any,
        )),
    ),
    opt(
        "aliyun",
        Kind::Array(&Kind::Object(
            &[req("name", Kind::Text(1)), req("id", Kind::Text(1))],
            Others::Any,
        )),
    ),
    opt("azure", CLOUD),
    opt("ibmcloud", Kind::Array(&CLOUD)),
    opt("powervs", Kind::Array(&CLOUD)),
    opt(
        "gcp",
        Kind::Object(
            &[
                req("image", Kind::Text(0)),
                req("url", Kind::Text(0)),
                opt("project", Kind::Text(0)),
                opt("family", Kind::Text(0)),
            ],
            Others::Any,
        ),
    ),
];

/// The keys v1 allows at the top of meta.json (some contain dots themselves:
/// `coreos-assembler.basearch`).
pub fn top_level_keys() -> impl Iterator<Item = &'static str> {
    TOP.iter().map(|f| f.name)
}

/// Everything wrong with `meta`, v1's problems and nosa's (see [`Source`]); empty when nosa
/// may write it.
pub fn check(meta: &Value) -> Vec<Problem> {
    let mut c = Checker::default();
    c.value("", meta, Kind::Object(TOP, Others::None), Source::V1);
    c.problems
}

/// Only the problems v1 itself finds (what coreos-assembler's schema says).
pub fn check_v1(meta: &Value) -> Vec<Problem> {
    check(meta)
        .into_iter()
        .filter(|p| p.source == Source::V1)
        .collect()
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A short description of a value for a message: its JSON, cut at 60 characters, and its
/// type.
pub(crate) fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let mut text = v.to_string();
    if text.chars().count() > 60 {
        text = text.chars().take(57).collect::<String>() + "...";
    }
    format!("{text} ({kind})")
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// v1's time: somewhere in the string `NNNN-NN-NNT`, then anything but a newline up to a
/// final `Z`.
fn is_v1_time(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(rest_end) = b.len().checked_sub(1).filter(|&e| b[e] == b'Z') else {
        return false;
    };
    let shape = |w: &[u8]| {
        w.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            _ => c.is_ascii_digit(),
        })
    };
    (0..b.len().saturating_sub(11)).any(|i| {
        i + 11 <= rest_end && shape(&b[i..i + 11]) && !b[i + 11..rest_end].contains(&b'\n')
    })
}

/// A value of `kind` that would pass, for a `--set` example.
fn example(kind: Kind) -> &'static str {
    match kind {
        Kind::Text(n) if n >= 12 => "<at least 64 characters>",
        Kind::Text(_) => "text",
        Kind::Checksum | Kind::Sha256 => "<64 lowercase hex digits>",
        Kind::Size | Kind::Integer => "42",
        Kind::Number => "1.5",
        Kind::Time => "2024-01-31T12:00:00Z",
        Kind::Bool => "true",
        Kind::Object(..) => "'{...}'",
        Kind::Array(_) => "'[...]'",
        Kind::PkgItem | Kind::Any => "...",
    }
}

impl Checker {
    fn push(&mut self, key: &str, expected: String, found: String, fix: String, source: Source) {
        self.problems.push(Problem {
            key: if key.is_empty() {
                "(top)".into()
            } else {
                key.into()
            },
            expected,
            found,
            fix,
            source,
        });
    }

    /// A value at `path` that is not what `kind` wants.
    fn wrong(&mut self, path: &str, v: &Value, kind: Kind, expected: String, source: Source) {
        let mut fix = format!("for example `nosa meta --set {path}={}`", example(kind));
        if matches!(kind, Kind::Text(_) | Kind::Time)
            && matches!(v, Value::Number(_) | Value::Bool(_) | Value::Null)
        {
            fix.push_str(&format!(
                "; a VALUE that parses as JSON is JSON: quote it to keep it a string, \
                 `nosa meta --set '{path}=\"{v}\"'`"
            ));
        }
        self.push(path, expected, describe(v), fix, source);
    }

    fn value(&mut self, path: &str, v: &Value, kind: Kind, source: Source) {
        match kind {
            Kind::Text(min) => match v.as_str() {
                Some(s) if s.chars().count() >= min => {}
                Some(_) => self.wrong(path, v, kind, describe_kind(kind), source),
                None => self.wrong(path, v, kind, "a string".into(), source),
            },
            Kind::Checksum => match v.as_str() {
                Some(s) if is_hex64(s) => {}
                Some(s) if s.chars().count() >= 64 => self.wrong(
                    path,
                    v,
                    kind,
                    "64 lowercase hexadecimal digits (a SHA-256)".into(),
                    Source::Nosa,
                ),
                _ => self.wrong(
                    path,
                    v,
                    kind,
                    "a checksum: 64 lowercase hexadecimal digits (v1: at least 64 characters)"
                        .into(),
                    source,
                ),
            },
            Kind::Sha256 => match v.as_str() {
                Some(s) if is_hex64(s) => {}
                Some(_) => self.wrong(
                    path,
                    v,
                    kind,
                    "64 lowercase hexadecimal digits, the file's SHA-256 (sha256sum)".into(),
                    Source::Nosa,
                ),
                None => self.wrong(path, v, kind, "a string, the SHA-256".into(), source),
            },
            Kind::Size => {
                if v.as_u64().is_some() {
                } else if v.is_number() {
                    self.wrong(
                        path,
                        v,
                        kind,
                        "a whole number of bytes, 0 or more".into(),
                        Source::Nosa,
                    )
                } else {
                    self.wrong(path, v, kind, "a number of bytes".into(), source)
                }
            }
            Kind::Time => {
                if !v.as_str().is_some_and(is_v1_time) {
                    self.wrong(
                        path,
                        v,
                        kind,
                        "a UTC time as YYYY-MM-DDThh:mm:ssZ".into(),
                        source,
                    )
                }
            }
            Kind::Number => {
                if !v.is_number() {
                    self.wrong(path, v, kind, "a number".into(), source)
                }
            }
            Kind::Integer => {
                if !is_integer(v) {
                    self.wrong(path, v, kind, "an integer".into(), source)
                }
            }
            Kind::Bool => {
                if !v.is_boolean() {
                    self.wrong(path, v, kind, "true or false".into(), source)
                }
            }
            Kind::PkgItem => {
                if v.as_str().is_some_and(str::is_empty) {
                    self.wrong(path, v, kind, "a non-empty string".into(), source)
                }
            }
            Kind::Any => {}
            Kind::Array(item) => match v.as_array() {
                Some(items) => {
                    for (i, it) in items.iter().enumerate() {
                        self.value(&join(path, &i.to_string()), it, *item, source);
                    }
                }
                None => self.wrong(path, v, kind, "an array".into(), source),
            },
            Kind::Object(fields, others) => match v.as_object() {
                Some(map) => self.object(path, map, fields, others, source),
                None => self.wrong(path, v, kind, "an object".into(), source),
            },
        }
    }

    fn object(
        &mut self,
        path: &str,
        map: &serde_json::Map<String, Value>,
        fields: &[Field],
        others: Others,
        source: Source,
    ) {
        for f in fields {
            let key = join(path, f.name);
            match (map.get(f.name), f.required) {
                (Some(v), _) => self.value(&key, v, f.kind, source),
                (None, Some(by)) => {
                    // A nosa requirement under a v1 requirement is still nosa's.
                    let by = if source == Source::Nosa { source } else { by };
                    let fix = if path.is_empty() {
                        format!("set it: `nosa meta --set {key}={}`", example(f.kind))
                    } else {
                        let needed: Vec<&str> = fields
                            .iter()
                            .filter(|f| f.required.is_some())
                            .map(|f| f.name)
                            .collect();
                        format!("give {path} every field it needs: {}", needed.join(", "))
                    };
                    self.push(&key, describe_kind(f.kind), "nothing".into(), fix, by)
                }
                (None, None) => {}
            }
        }
        for (name, v) in map {
            if fields.iter().any(|f| f.name == name) {
                continue;
            }
            let key = join(path, name);
            match others {
                Others::Any => {}
                Others::NosaArtifacts => self.value(&key, v, ARTIFACT, Source::Nosa),
                Others::None => {
                    let mut fix = "v1 allows no keys but its own here: remove it".to_string();
                    if let Some(near) = nearest(name, fields.iter().map(|f| f.name)) {
                        fix = format!("did you mean `{}`? {fix}", join(path, near));
                    }
                    self.push(
                        &key,
                        "no such key (not one of v1's)".into(),
                        describe(v),
                        fix,
                        source,
                    )
                }
            }
        }
    }
}

/// What a missing key should hold, for its message.
fn describe_kind(kind: Kind) -> String {
    match kind {
        Kind::Text(0) => "a string".into(),
        Kind::Text(1) => "a non-empty string".into(),
        Kind::Text(n) => format!("a string of at least {n} characters"),
        Kind::Checksum | Kind::Sha256 => "64 lowercase hexadecimal digits".into(),
        Kind::Size => "a whole number of bytes".into(),
        Kind::Time => "a UTC time as YYYY-MM-DDThh:mm:ssZ".into(),
        Kind::Number => "a number".into(),
        Kind::Integer => "an integer".into(),
        Kind::Bool => "true or false".into(),
        Kind::Object(fields, _) => {
            let needed: Vec<&str> = fields
                .iter()
                .filter(|f| f.required.is_some())
                .map(|f| f.name)
                .collect();
            if needed.is_empty() {
                "an object".into()
            } else {
                format!("an object with {}", needed.join(", "))
            }
        }
        Kind::Array(_) => "an array".into(),
        Kind::PkgItem | Kind::Any => "a value".into(),
    }
}

/// The name among `names` closest to `name` (at most a third of it edited), if any.
fn nearest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    names
        .map(|n| (edit_distance(name, n), n))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
