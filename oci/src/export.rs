//! [`export_commit`]: an ostree commit written as an ostree-native OCI archive, reproducibly.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flate2::Compression;
use flate2::write::GzEncoder;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder, SCHEMA_VERSION,
};
use serde::Serialize;

use crate::OciError;
use crate::chunking::{Chunking, assign};
use crate::hash::{HashWriter, sha256_hex};
use crate::read;
use crate::tarstream::{OstreeTarWriter, collect_content};

/// Label: the exported commit's checksum.
pub const OSTREE_COMMIT_LABEL: &str = "ostree.commit";
/// Label: the diff id of the last layer that belongs to the ostree commit.
pub const DIFFID_LABEL: &str = "ostree.final-diffid";
/// Label: `true` when the commit is bootable.
pub const BOOTABLE_LABEL: &str = "ostree.bootable";
/// Label set to `1` on bootable images, as ostree-ext does.
pub const BOOTC_LABEL: &str = "containers.bootc";
/// Label: the image version.
pub const VERSION_LABEL: &str = "org.opencontainers.image.version";
/// Layer annotation: the components (packages) of a component layer, comma-separated.
pub const COMPONENTS_ANNOTATION: &str = "ostree.components";

/// What to export and where.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// The ostree repository (any mode).
    pub repo: PathBuf,
    /// A ref or a commit checksum in it.
    pub rev: String,
    /// The RPM architecture (`x86_64`, `aarch64`, ...); the image's is derived (`amd64`, ...).
    pub arch: String,
    /// The image name, for the file name (`<name>-<version>-ostree.<arch>.ociarchive`).
    pub name: String,
    /// The version: the file name and the `org.opencontainers.image.version` label. If the
    /// commit has a `version` metadata key, it must be equal.
    pub version: String,
    /// How content objects are spread over layers.
    pub chunking: Chunking,
    /// Extra labels (win over the derived ones, except `ostree.commit`).
    pub labels: BTreeMap<String, String>,
    /// Directory the archive is written into.
    pub out_dir: PathBuf,
    /// Directory for temporaries (layer blobs before they go into the archive).
    pub scratch: PathBuf,
    /// Component layers an earlier export wrote, by [`LayerFile::key`]: a layer of this
    /// export with the same key is that file, not compressed again. Empty for a cold export.
    pub reuse: BTreeMap<String, ReusableLayer>,
    /// Content object sizes an earlier export found, by checksum (speed only: an object's
    /// checksum covers its content, so it fixes its size). Objects not named here are read.
    pub known_sizes: BTreeMap<String, u64>,
}

/// A component layer blob from an earlier export, with what its record needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReusableLayer {
    /// `sha256:<hex>` of the gzip blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// The blob size.
    pub size: u64,
    /// Where the blob is (read only).
    pub path: PathBuf,
}

/// A component layer of an export and where its blob is: what a later export may reuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerFile {
    /// What the layer's bytes are a function of: the tar writer's format and each content
    /// object (checksum, so content and header) with the paths it is linked at.
    pub key: String,
    /// The layer, as a later export's [`ReusableLayer`].
    pub layer: ReusableLayer,
    /// Whether it came from [`ExportRequest::reuse`] (otherwise it was written in `scratch`).
    pub reused: bool,
}

/// Bump when a component layer's bytes change for the same objects and paths (tar layout,
/// compression): older [`LayerFile::key`]s then match nothing.
const LAYER_FORMAT: &[u8] = b"nosa-oci-layer-v1\0";

fn layer_key(objects: &crate::tarstream::ContentMap) -> String {
    let mut h = blake3::Hasher::new();
    h.update(LAYER_FORMAT);
    for (checksum, obj) in objects {
        h.update(checksum.as_bytes());
        h.update(&(obj.paths.len() as u64).to_le_bytes());
        for p in &obj.paths {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
    }
    h.finalize().to_hex().to_string()
}

/// One layer of the image, in manifest order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LayerRecord {
    /// `sha256:<hex>` of the gzip blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// The blob size.
    pub size: u64,
    /// The history `created_by`: the commit layer's description or the component name.
    pub name: String,
    /// The components in it (empty for the commit layer).
    pub components: Vec<String>,
    /// How many content objects it holds.
    pub objects: usize,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExportResult {
    /// The archive.
    pub path: PathBuf,
    /// The archive's file name.
    pub file_name: String,
    /// The exported commit.
    pub commit: String,
    /// `sha256:<hex>` of the manifest (what a registry shows as the image digest).
    pub manifest_digest: String,
    /// `sha256:<hex>` of the image config.
    pub config_digest: String,
    /// The layers, commit layer first.
    pub layers: Vec<LayerRecord>,
    /// The image labels (also the manifest annotations).
    pub labels: BTreeMap<String, String>,
    /// The component layers' blobs (valid until `scratch` is removed), for a later export.
    #[serde(skip)]
    pub layer_files: Vec<LayerFile>,
    /// The size of every content object of the commit, by checksum, for a later export's
    /// [`ExportRequest::known_sizes`].
    #[serde(skip)]
    pub object_sizes: BTreeMap<String, u64>,
}

/// `<name>-<version>-ostree.<arch>.ociarchive`, coreos-assembler's name.
pub fn ociarchive_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}-{version}-ostree.{arch}.ociarchive")
}

/// The OCI architecture of an RPM architecture.
pub fn oci_arch(arch: &str) -> Result<Arch, OciError> {
    Ok(match arch {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        "ppc64le" => Arch::PowerPC64le,
        "s390x" => Arch::s390x,
        "riscv64" => Arch::RISCV64,
        "loongarch64" => Arch::LoongArch64,
        other => return Err(OciError::Request(format!("unsupported arch {other:?}"))),
    })
}

/// Exports `req.rev` from `req.repo` as an ostree-native OCI archive (see `docs/oci.md` for the
/// format). The same commit and request give a byte-identical archive.
pub fn export_commit(req: &ExportRequest) -> Result<ExportResult, OciError> {
    let arch = oci_arch(&req.arch)?;
    for (what, v) in [("name", &req.name), ("version", &req.version)] {
        if v.is_empty() || v.contains(['/', '\0']) {
            return Err(OciError::Request(format!("invalid {what} {v:?}")));
        }
    }
    let (repo, commit) = read::open(&req.repo, &req.rev)?;
    if let Some(v) = &commit.version
        && *v != req.version
    {
        return Err(OciError::Request(format!(
            "commit {} has version {v:?}, the export asks for {:?}",
            commit.checksum, req.version
        )));
    }
    let content = collect_content(&repo, &commit.root_tree, &req.known_sizes)?;
    let object_sizes: BTreeMap<String, u64> =
        content.iter().map(|(c, o)| (c.clone(), o.size)).collect();
    let has_kernel = content.values().flat_map(|o| &o.paths).any(|p| {
        p.strip_prefix("usr/lib/modules/")
            .and_then(|r| r.split_once('/'))
            .is_some_and(|(_, f)| f == "vmlinuz")
    });
    let plan = assign(&req.chunking, &content)?;
    fs_err::create_dir_all(&req.scratch)?;

    let created = rfc3339(commit.timestamp);
    let description = if commit.subject.is_empty() {
        format!("ostree export of commit {}", commit.checksum)
    } else {
        commit.subject.clone()
    };

    // The commit layer: structure, metadata, and the content no component claimed.
    let mut blobs: Vec<(String, PathBuf)> = Vec::new();
    let mut layers = Vec::new();
    let commit_layer = write_layer(&req.scratch, 0, |w| {
        let mut t = OstreeTarWriter::new(&repo, w);
        t.commit_structure(&commit)?;
        t.content(plan.remainder.iter().map(|c| (c, &content[c])))?;
        t.finish()
    })?;
    blobs.push((commit_layer.0.digest.clone(), commit_layer.1));
    layers.push(LayerRecord {
        name: description.clone(),
        components: Vec::new(),
        objects: plan.remainder.len(),
        ..commit_layer.0
    });
    let mut layer_files = Vec::new();
    for (i, chunk) in plan.chunks.iter().enumerate() {
        let key = layer_key(&chunk.objects);
        let (rec, path, reused) = match req.reuse.get(&key) {
            Some(r) if r.path.is_file() => (
                LayerRecord {
                    digest: r.digest.clone(),
                    diff_id: r.diff_id.clone(),
                    size: r.size,
                    name: String::new(),
                    components: Vec::new(),
                    objects: 0,
                },
                r.path.clone(),
                true,
            ),
            _ => {
                let (rec, path) = write_layer(&req.scratch, i + 1, |w| {
                    let mut t = OstreeTarWriter::new(&repo, w);
                    t.repo_structure()?;
                    t.content(chunk.objects.iter())?;
                    t.finish()
                })?;
                (rec, path, false)
            }
        };
        layer_files.push(LayerFile {
            key,
            layer: ReusableLayer {
                digest: rec.digest.clone(),
                diff_id: rec.diff_id.clone(),
                size: rec.size,
                path: path.clone(),
            },
            reused,
        });
        blobs.push((rec.digest.clone(), path));
        layers.push(LayerRecord {
            name: chunk.name.clone(),
            components: chunk.components.clone(),
            objects: chunk.objects.len(),
            ..rec
        });
    }

    let mut labels = BTreeMap::new();
    if commit.bootable == Some(true) || (commit.bootable.is_none() && has_kernel) {
        labels.insert(BOOTABLE_LABEL.to_string(), "true".to_string());
        labels.insert(BOOTC_LABEL.to_string(), "1".to_string());
    } else if commit.bootable == Some(false) {
        labels.insert(BOOTABLE_LABEL.to_string(), "false".to_string());
    }
    if let Some(linux) = &commit.linux {
        labels.insert("ostree.linux".to_string(), linux.clone());
    }
    if let Some(h) = &commit.inputhash {
        labels.insert(read::INPUTHASH_KEY.to_string(), h.clone());
    }
    labels.insert(VERSION_LABEL.to_string(), req.version.clone());
    let last = layers.last().expect("the commit layer");
    labels.insert(DIFFID_LABEL.to_string(), last.diff_id.clone());
    labels.extend(req.labels.clone());
    labels.insert(OSTREE_COMMIT_LABEL.to_string(), commit.checksum.clone());
    let hash_labels: HashMap<String, String> = labels.clone().into_iter().collect();

    let oci = |e: oci_spec::OciSpecError| OciError::Oci(e.to_string());
    let history = layers
        .iter()
        .map(|l| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(l.name.clone())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(oci)?;
    let config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(arch.clone())
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .labels(hash_labels.clone())
                .build()
                .map_err(oci)?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
                .build()
                .map_err(oci)?,
        )
        .history(history)
        .build()
        .map_err(oci)?;
    let config_bytes = canonical_json(&config)?;
    let config_digest = format!("sha256:{}", sha256_hex(&config_bytes));
    let layer_descs = layers
        .iter()
        .map(|l| {
            let mut b = DescriptorBuilder::default()
                .media_type(MediaType::ImageLayerGzip)
                .digest(digest(&l.digest)?)
                .size(l.size);
            if !l.components.is_empty() {
                b = b.annotations(HashMap::from([(
                    COMPONENTS_ANNOTATION.to_string(),
                    l.components.join(","),
                )]));
            }
            b.build().map_err(oci)
        })
        .collect::<Result<Vec<Descriptor>, _>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            digest(&config_digest)?,
        ))
        .layers(layer_descs)
        .annotations(hash_labels)
        .build()
        .map_err(oci)?;
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest_bytes));
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![
            DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .digest(digest(&manifest_digest)?)
                .size(manifest_bytes.len() as u64)
                .platform(
                    PlatformBuilder::default()
                        .architecture(arch)
                        .os(Os::Linux)
                        .build()
                        .map_err(oci)?,
                )
                .build()
                .map_err(oci)?,
        ])
        .build()
        .map_err(oci)?;
    let index_bytes = canonical_json(&index)?;

    let file_name = ociarchive_name(&req.name, &req.version, &req.arch);
    fs_err::create_dir_all(&req.out_dir)?;
    let path = req.out_dir.join(&file_name);
    let mut small = vec![
        (config_digest.clone(), config_bytes),
        (manifest_digest.clone(), manifest_bytes),
    ];
    small.sort();
    write_archive(&path, commit.timestamp, &blobs, &small, &index_bytes)?;
    Ok(ExportResult {
        path,
        file_name,
        commit: commit.checksum,
        manifest_digest,
        config_digest,
        layers,
        labels,
        layer_files,
        object_sizes,
    })
}

fn digest(s: &str) -> Result<Digest, OciError> {
    Digest::from_str(s).map_err(|e| OciError::Oci(format!("{s}: {e}")))
}

type LayerSink = HashWriter<GzEncoder<HashWriter<fs_err::File>>>;

/// Writes one gzip layer blob to `scratch/layer-<n>.tar.gz`, returning its record (names
/// unset) and path.
fn write_layer(
    scratch: &Path,
    n: usize,
    body: impl FnOnce(LayerSink) -> Result<LayerSink, OciError>,
) -> Result<(LayerRecord, PathBuf), OciError> {
    let path = scratch.join(format!("layer-{n}.tar.gz"));
    let file = fs_err::File::create(&path)?;
    let sink = HashWriter::new(GzEncoder::new(
        HashWriter::new(file),
        Compression::default(),
    ));
    let sink = body(sink)?;
    let (gz, diff_id, _) = sink.finish();
    let compressed = gz.finish()?;
    let (mut file, digest, size) = compressed.finish();
    file.flush()?;
    Ok((
        LayerRecord {
            digest: format!("sha256:{digest}"),
            diff_id: format!("sha256:{diff_id}"),
            size,
            name: String::new(),
            components: Vec::new(),
            objects: 0,
        },
        path,
    ))
}

/// The archive: `oci-layout`, `index.json` and `blobs/sha256/*`, entries sorted, root-owned,
/// mtime = the commit timestamp.
fn write_archive(
    path: &Path,
    mtime: u64,
    layers: &[(String, PathBuf)],
    small: &[(String, Vec<u8>)],
    index: &[u8],
) -> Result<(), OciError> {
    let tmp = path.with_extension("ociarchive.tmp");
    let file = fs_err::File::create(&tmp)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_size(size);
        h
    };
    for d in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, d, std::io::empty())?;
    }
    enum Blob<'a> {
        File(&'a Path),
        Bytes(&'a Vec<u8>),
    }
    let mut all: Vec<(&str, Blob)> = layers
        .iter()
        .map(|(d, p)| (d.as_str(), Blob::File(p)))
        .chain(small.iter().map(|(d, b)| (d.as_str(), Blob::Bytes(b))))
        .collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    for (digest, blob) in all {
        let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        match blob {
            Blob::File(p) => {
                let f = fs_err::File::open(p)?;
                let mut h = header(tar::EntryType::Regular, 0o644, f.metadata()?.len());
                tar.append_data(&mut h, &name, std::io::BufReader::with_capacity(1 << 20, f))?;
            }
            Blob::Bytes(b) => {
                let mut h = header(tar::EntryType::Regular, 0o644, b.len() as u64);
                tar.append_data(&mut h, &name, b.as_slice())?;
            }
        }
    }
    let mut h = header(tar::EntryType::Regular, 0o644, index.len() as u64);
    tar.append_data(&mut h, "index.json", index)?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut h = header(tar::EntryType::Regular, 0o644, layout.len() as u64);
    tar.append_data(&mut h, "oci-layout", &layout[..])?;
    let mut w = tar.into_inner()?;
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

/// JSON with object keys sorted at every level and no whitespace: oci-spec keeps labels and
/// annotations in `HashMap`s, whose order is random per process.
pub(crate) fn canonical_json(v: &impl Serialize) -> Result<Vec<u8>, OciError> {
    fn emit(v: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, k)?;
                    out.push(b':');
                    emit(&m[k], out)?;
                }
                out.push(b'}');
            }
            serde_json::Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    emit(x, out)?;
                }
                out.push(b']');
            }
            other => serde_json::to_writer(&mut *out, other)?,
        }
        Ok(())
    }
    let value = serde_json::to_value(v).map_err(|e| OciError::Oci(e.to_string()))?;
    let mut out = Vec::new();
    emit(&value, &mut out).map_err(|e| OciError::Oci(e.to_string()))?;
    Ok(out)
}

pub(crate) use nosa_cache::time::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({"b": {"z": 1, "a": [ {"y": 2, "x": 1} ]}, "a": "s"});
        assert_eq!(
            String::from_utf8(canonical_json(&v).unwrap()).unwrap(),
            r#"{"a":"s","b":{"a":[{"x":1,"y":2}],"z":1}}"#
        );
    }

    #[test]
    fn archive_name() {
        assert_eq!(
            ociarchive_name("nestos", "1.2", "x86_64"),
            "nestos-1.2-ostree.x86_64.ociarchive"
        );
    }
}
