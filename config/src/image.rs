//! `image.yaml`: disk image settings, flattened over its `include`s and nosa's built-in
//! defaults the way nestos-assembler does.
//!
//! Flattening (cosa's `flatten_image_yaml`): the including file wins for every key, its
//! includes fill in what it lacks, and `extra-kargs` is the concatenation of all files'
//! lists (including file first) with duplicates removed. The defaults below are applied
//! last, like cosa's `image-default.yaml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value as J, json};

use crate::error::{ConfigError, locate};
use crate::source::{Origin, Sources};
use crate::yaml::{self, Value};

/// Built-in defaults, written from nestos-assembler's `image-default.yaml`.
fn defaults() -> Map<String, J> {
    let J::Object(m) = json!({
        "bootfs": "ext4",
        "rootfs": "xfs",
        "rootfs-args": "",
        "composefs": false,
        "extra-kargs": [],
        "ostree-format": "oci-chunked-v1",
        "ostree-container-inject-openshift-cvo-labels": false,
        "deploy-via-container": false,
        "squashfs-compression": "zstd",
        "vmware-hw-version": 13,
        "vmware-os-type": "rhel7_64Guest",
        "vmware-secure-boot": true,
        "aws-imdsv2-only": true,
        "aws-volume-type": "gp3",
        "aws-x86-boot-mode": "uefi-preferred",
    }) else {
        unreachable!()
    };
    m
}

/// Expected types of the image.yaml keys nosa uses; other keys pass through unchecked.
const TYPES: &[(&str, &str)] = &[
    ("include", "str"),
    ("size", "int"),
    ("extra-kargs", "strlist"),
    ("ignition-network-kcmdline", "strlist"),
    ("compressor", "str"),
    ("rootfs", "str"),
    ("bootfs", "str"),
    ("rootfs-args", "str"),
    ("composefs", "bool"),
    ("ostree-format", "str"),
    ("ostree-remote", "str"),
    ("deploy-via-container", "bool"),
    ("container-imgref", "str"),
    ("squashfs-compression", "str"),
];

/// The flattened image.yaml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageConfig {
    /// Disk size in GiB (`size`).
    pub size: Option<u64>,
    /// Kernel arguments added to disk images, de-duplicated.
    #[serde(default)]
    pub extra_kargs: Vec<String>,
    /// First-boot network kargs for Ignition; `None` means the cosa default
    /// (`ip=auto rd.neednet=1`), `Some([])` means none.
    pub ignition_network_kcmdline: Option<Vec<String>>,
    /// Compressor for `compress` (`gzip`, `xz`, `zstd`).
    pub compressor: Option<String>,
    /// Root filesystem type.
    pub rootfs: String,
    /// Boot filesystem type.
    pub bootfs: String,
    /// Extra mkfs arguments for the root filesystem.
    pub rootfs_args: String,
    /// Whether composefs is enabled.
    pub composefs: bool,
    /// OCI export format.
    pub ostree_format: String,
    /// Remote name prefixed to the deployed ref.
    pub ostree_remote: Option<String>,
    /// Deploy via `ostree container image deploy`.
    pub deploy_via_container: bool,
    /// Target container reference for deploy-via-container.
    pub container_imgref: Option<String>,
    /// squashfs compression for live images.
    pub squashfs_compression: String,
    /// Every key, flattened (what `config show` prints under `image`).
    #[serde(skip)]
    pub json: Map<String, J>,
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "str" => matches!(v, Value::Str(_)),
        "int" => matches!(v, Value::Int(i) if *i >= 0) || matches!(v, Value::Uint(_)),
        "bool" => matches!(v, Value::Bool(_)),
        "strlist" => match v {
            Value::Seq(items) => items.iter().all(|i| matches!(i.value, Value::Str(_))),
            _ => false,
        },
        _ => true,
    }
}

fn type_name(ty: &str) -> &'static str {
    match ty {
        "str" => "a string",
        "int" => "a non-negative integer",
        "bool" => "a boolean",
        _ => "a list of strings",
    }
}

/// The configuration when there is no image.yaml: the defaults alone.
pub(crate) fn defaults_only() -> ImageConfig {
    let flat = defaults();
    let mut image: ImageConfig =
        serde_json::from_value(J::Object(flat.clone())).expect("defaults are well-typed");
    image.json = flat;
    image
}

/// Reads `path` (and its includes) and flattens it over the defaults.
pub(crate) fn load(path: &Path, sources: &mut Sources) -> Result<ImageConfig, ConfigError> {
    let mut flat = Map::new();
    let mut kargs: Vec<J> = Vec::new();
    let mut chain: Vec<PathBuf> = Vec::new();
    let mut next = Some((path.to_path_buf(), None::<Origin>));
    while let Some((path, from)) = next.take() {
        let canonical = match (fs_err::canonicalize(&path), from) {
            (Ok(c), _) => c,
            (Err(_), Some(origin)) => {
                let (src, span) = locate(sources, origin);
                return Err(ConfigError::IncludeNotFound {
                    path: sources.display_name(&path),
                    src,
                    span,
                });
            }
            (Err(e), None) => return Err(e.into()),
        };
        if let Some(origin) = from
            && chain.contains(&canonical)
        {
            let mut names: Vec<String> = chain.iter().map(|p| sources.display_name(p)).collect();
            names.push(sources.display_name(&canonical));
            let (src, span) = locate(sources, origin);
            return Err(ConfigError::IncludeLoop {
                chain: names.join(" -> "),
                src,
                span,
            });
        }
        chain.push(canonical.clone());
        let file = sources.read(&canonical)?;
        let node = yaml::parse(sources, file)?;
        let entries = match &node.value {
            Value::Map(e) => e.as_slice(),
            Value::Null => &[],
            other => {
                let (src, span) = locate(sources, node.origin(file));
                return Err(ConfigError::WrongType {
                    key: "image.yaml".into(),
                    expected: "a mapping".into(),
                    found: other.kind().into(),
                    src,
                    span,
                    help: None,
                });
            }
        };
        for (key, val) in entries {
            if let Some((_, ty)) = TYPES.iter().find(|(k, _)| *k == key.name)
                && !type_ok(ty, &val.value)
            {
                let (src, span) = locate(sources, val.origin(file));
                return Err(ConfigError::WrongType {
                    key: key.name.clone(),
                    expected: type_name(ty).into(),
                    found: val.value.kind().into(),
                    src,
                    span,
                    help: Some(
                        "see nestos-assembler's image-default.yaml for the image.yaml keys".into(),
                    ),
                });
            }
            match key.name.as_str() {
                "include" => {
                    let dir = canonical.parent().unwrap_or(Path::new("/"));
                    let target = dir.join(val.value.as_str().unwrap_or_default());
                    next = Some((target, Some(val.origin(file))));
                }
                "extra-kargs" => {
                    if let J::Array(items) = val.to_json() {
                        kargs.extend(items);
                    }
                }
                _ => {
                    flat.entry(key.name.clone())
                        .or_insert_with(|| val.to_json());
                }
            }
        }
    }
    for (k, v) in defaults() {
        flat.entry(k).or_insert(v);
    }
    let mut dedup: Vec<J> = Vec::new();
    for k in kargs {
        if !dedup.contains(&k) {
            dedup.push(k);
        }
    }
    flat.insert("extra-kargs".into(), J::Array(dedup));
    let mut image: ImageConfig = serde_json::from_value(J::Object(flat.clone())).map_err(|e| {
        ConfigError::Io(std::io::Error::other(format!(
            "{}: flattened image.yaml is invalid: {e}",
            path.display()
        )))
    })?;
    image.json = flat;
    Ok(image)
}
