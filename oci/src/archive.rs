//! Reading an OCI archive (a tar of an OCI image layout: `oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) for a push: the one image manifest, its config and layers, and where
//! each blob's bytes lie in the tar, so that a push sends them exactly (nothing is
//! recompressed: the manifest digest is the build's).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageManifest, MediaType};

use crate::hash::sha256_hex;

/// A blob in the archive: its digest, size, media type and where its bytes start in the tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// The media type the manifest gives it.
    pub media_type: String,
    /// The offset of its first byte in the archive file.
    pub offset: u64,
}

/// An OCI archive with one image, indexed.
#[derive(Clone, Debug)]
pub struct OciArchive {
    /// The archive file.
    pub path: PathBuf,
    /// The manifest's bytes, exactly as stored.
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of [`OciArchive::manifest`].
    pub manifest_digest: String,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// The config blob.
    pub config: Blob,
    /// The layer blobs, in the manifest's order.
    pub layers: Vec<Blob>,
}

/// Why an archive cannot be pushed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ArchiveError {
    /// The archive.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl OciArchive {
    /// Indexes the archive at `path`: reads `index.json` and the manifest it names (exactly
    /// one image manifest), and finds every blob the manifest lists.
    pub fn open(path: &Path) -> Result<OciArchive, ArchiveError> {
        let err = |message: String| ArchiveError {
            path: path.to_path_buf(),
            message,
        };
        let mut file = fs_err::File::open(path).map_err(|e| err(e.to_string()))?;
        // Blob path -> (offset, size); index.json read whole.
        let mut blobs: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut index_json = None;
        {
            let mut tar = tar::Archive::new(&mut file);
            let entries = tar
                .entries_with_seek()
                .map_err(|e| err(format!("not a tar archive: {e}")))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| err(format!("reading the tar: {e}")))?;
                let name = entry
                    .path()
                    .map_err(|e| err(format!("a tar entry's path: {e}")))?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .to_string();
                if name == "index.json" {
                    let mut b = Vec::new();
                    entry
                        .read_to_end(&mut b)
                        .map_err(|e| err(format!("reading index.json: {e}")))?;
                    index_json = Some(b);
                } else if let Some(hex) = name.strip_prefix("blobs/sha256/")
                    && entry.header().entry_type().is_file()
                {
                    blobs.insert(
                        format!("sha256:{hex}"),
                        (entry.raw_file_position(), entry.size()),
                    );
                }
            }
        }
        let index_json =
            index_json.ok_or_else(|| err("it has no index.json: not an OCI archive".into()))?;
        let index: ImageIndex =
            serde_json::from_slice(&index_json).map_err(|e| err(format!("index.json: {e}")))?;
        let [desc] = index.manifests().as_slice() else {
            return Err(err(format!(
                "index.json lists {} manifests; a build's archive has one",
                index.manifests().len()
            )));
        };
        if *desc.media_type() != MediaType::ImageManifest {
            return Err(err(format!(
                "index.json's manifest has media type {}, not an image manifest",
                desc.media_type()
            )));
        }
        let manifest_digest = desc.digest().to_string();
        let read_blob = |file: &mut fs_err::File, digest: &str| -> Result<Vec<u8>, ArchiveError> {
            let &(offset, size) = blobs
                .get(digest)
                .ok_or_else(|| err(format!("blob {digest} is missing")))?;
            let mut b = vec![0; size as usize];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut b))
                .map_err(|e| err(format!("reading blob {digest}: {e}")))?;
            Ok(b)
        };
        let manifest = read_blob(&mut file, &manifest_digest)?;
        if format!("sha256:{}", sha256_hex(&manifest)) != manifest_digest {
            return Err(err(format!(
                "the manifest's bytes do not hash to {manifest_digest}: the archive is damaged"
            )));
        }
        let parsed: ImageManifest = serde_json::from_slice(&manifest)
            .map_err(|e| err(format!("manifest {manifest_digest}: {e}")))?;
        let blob = |d: &oci_spec::image::Descriptor| -> Result<Blob, ArchiveError> {
            let digest = d.digest().to_string();
            let &(offset, size) = blobs
                .get(&digest)
                .ok_or_else(|| err(format!("blob {digest} (in the manifest) is missing")))?;
            if size != d.size() {
                return Err(err(format!(
                    "blob {digest} has {size} bytes, the manifest says {}",
                    d.size()
                )));
            }
            Ok(Blob {
                digest,
                size,
                media_type: d.media_type().to_string(),
                offset,
            })
        };
        Ok(OciArchive {
            path: path.to_path_buf(),
            manifest_media_type: desc.media_type().to_string(),
            config: blob(parsed.config())?,
            layers: parsed.layers().iter().map(blob).collect::<Result<_, _>>()?,
            manifest,
            manifest_digest,
        })
    }

    /// The config, then the layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// A reader of `blob`'s bytes.
    pub fn open_blob(&self, blob: &Blob) -> std::io::Result<impl Read + use<>> {
        let mut f = fs_err::File::open(&self.path)?;
        f.seek(SeekFrom::Start(blob.offset))?;
        Ok(f.take(blob.size))
    }
}
