//! Pushing a build's OCI archive to a containers transport (`nosa push-container`).
//!
//! | transport | how | destination |
//! |---|---|---|
//! | `docker` | native, `oci-client` (registry.rs) | `HOST[:PORT]/REPO[:TAG]` |
//! | `dir` | native: skopeo's `dir:` layout (`version`, `manifest.json`, blobs by hex) | a directory |
//! | `oci-archive` | native: a new archive with the same blobs, the tag as `ref.name` | `PATH[:TAG]` |
//! | `docker-archive`, `containers-storage`, `docker-daemon` | `skopeo copy` | skopeo's syntax |
//!
//! The native transports copy the blobs' bytes as they are and check each against its digest,
//! so the manifest digest is the build's. A missing tag is `default_tag` (`<buildid>-<arch>`).
//! skopeo converts the manifest for docker-archive and docker-daemon (docker schema 2), so
//! there the digest is skopeo's, read from its `--digestfile`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use miette::Diagnostic;

use crate::archive::{ArchiveError, OciArchive};
use crate::authfile::{self, AuthfileError};
use crate::hash::HashWriter;
use crate::reference::{ImageRef, REFERENCE_FORM, RefError};

/// A containers transport (containers-transports(5)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A registry.
    Docker,
    /// A directory in skopeo's `dir:` layout.
    Dir,
    /// A `docker save` tar (skopeo).
    DockerArchive,
    /// podman's/buildah's local storage (skopeo).
    ContainersStorage,
    /// A docker daemon (skopeo).
    DockerDaemon,
    /// An OCI archive.
    OciArchive,
}

impl Transport {
    /// Every transport, by its name.
    pub const ALL: [(&str, Transport); 6] = [
        ("docker", Transport::Docker),
        ("dir", Transport::Dir),
        ("docker-archive", Transport::DockerArchive),
        ("containers-storage", Transport::ContainersStorage),
        ("docker-daemon", Transport::DockerDaemon),
        ("oci-archive", Transport::OciArchive),
    ];

    /// The transport named `name`.
    pub fn from_name(name: &str) -> Option<Transport> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// Its name, as skopeo writes it.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .expect("every transport is named")
    }

    /// Whether the push runs skopeo.
    pub fn uses_skopeo(self) -> bool {
        matches!(
            self,
            Transport::DockerArchive | Transport::ContainersStorage | Transport::DockerDaemon
        )
    }
}

/// What to push where.
#[derive(Clone, Debug)]
pub struct PushRequest<'a> {
    /// The build's OCI archive.
    pub archive: &'a Path,
    /// Where to.
    pub transport: Transport,
    /// The destination as given (see the module's table).
    pub image: &'a str,
    /// The tag when `image` names none (`<buildid>-<arch>`).
    pub default_tag: &'a str,
    /// containers-auth.json credentials (docker transport).
    pub authfile: Option<&'a Path>,
    /// Plain HTTP (docker transport; skopeo's `--dest-tls-verify=false`).
    pub insecure: bool,
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The destination in skopeo's syntax (`docker://127.0.0.1:5000/nestos:v1`).
    pub destination: String,
    /// For the docker transport, `registry/repository` (meta.json's `base-oscontainer.image`).
    pub image: Option<String>,
    /// The manifest digest at the destination (`sha256:...`).
    pub digest: String,
    /// Blobs written and blobs the destination already had; `None` when skopeo copied.
    pub blobs: Option<(usize, usize)>,
}

/// Why a push failed. [`PushError::is_usage`] tells a mistake in the arguments (exit 2) from
/// a failure of the push.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum PushError {
    /// The destination is not a reference of the transport's form.
    #[error(transparent)]
    #[diagnostic(help("write it as {REFERENCE_FORM}"))]
    Reference(RefError),
    /// `--transport` names no transport.
    #[error("{0:?} is not a transport")]
    #[diagnostic(help(
        "use docker, dir, docker-archive, containers-storage, docker-daemon or oci-archive"
    ))]
    Transport(String),
    /// A destination path that cannot be used.
    #[error("{0}")]
    #[diagnostic(help("{1}"))]
    Destination(String, String),
    /// The authfile is missing, malformed or has no entry for the registry.
    #[error(transparent)]
    #[diagnostic(help(
        "--authfile takes containers-auth.json: {{\"auths\": {{\"HOST[:PORT]\": {{\"auth\": \"<base64 of user:password>\"}}}}}}"
    ))]
    Authfile(AuthfileError),
    /// The registry refused the push for want of (right) credentials.
    #[error("{registry} refused the push: {}", if *with_credentials { "it did not accept the authfile's credentials" } else { "it wants credentials" })]
    #[diagnostic(help(
        "{}",
        if *with_credentials {
            "check the authfile's entry for this registry (its \"auth\" is base64 of user:password)"
        } else {
            "pass --authfile FILE, a containers-auth.json with an entry for this registry"
        }
    ))]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// Whether credentials were sent.
        with_credentials: bool,
    },
    /// The registry failed otherwise.
    #[error("pushing to {registry}: {message}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What happened.
        message: String,
    },
    /// The archive cannot be read.
    #[error(transparent)]
    Archive(ArchiveError),
    /// skopeo is missing or failed.
    #[error("skopeo: {0}")]
    #[diagnostic(help("{1}"))]
    Skopeo(String, String),
    /// Writing the destination failed.
    #[error(transparent)]
    Io(std::io::Error),
}

impl PushError {
    /// Whether the fix is in the command line (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PushError::Reference(_)
                | PushError::Transport(_)
                | PushError::Destination(..)
                | PushError::Authfile(_)
        )
    }
}

/// Pushes the archive (see the module's table).
pub fn push(req: &PushRequest) -> Result<Pushed, PushError> {
    // The destination and the credentials are checked before the archive is read.
    match req.transport {
        Transport::Docker => {
            let r = ImageRef::parse(req.image).map_err(PushError::Reference)?;
            let creds = req
                .authfile
                .map(|f| authfile::credentials(f, &r.registry, &r.repository))
                .transpose()
                .map_err(PushError::Authfile)?;
            let archive = OciArchive::open(req.archive).map_err(PushError::Archive)?;
            let tag = r.tag_or(req.default_tag);
            let done = crate::registry::push(
                &archive,
                &r.registry,
                &r.repository,
                tag,
                creds.as_ref(),
                req.insecure,
            )?;
            Ok(Pushed {
                destination: format!("docker://{}:{tag}", r.name()),
                image: Some(r.name()),
                digest: done.digest,
                blobs: Some((done.sent, done.present)),
            })
        }
        Transport::Dir => {
            let dir = Path::new(req.image);
            check_dir_destination(dir)?;
            let archive = OciArchive::open(req.archive).map_err(PushError::Archive)?;
            let sent = write_dir(&archive, dir)?;
            Ok(Pushed {
                destination: format!("dir:{}", req.image),
                image: None,
                digest: archive.manifest_digest.clone(),
                blobs: Some((sent, 0)),
            })
        }
        Transport::OciArchive => {
            let (path, tag) = match req.image.split_once(':') {
                Some((p, t)) => (p, t),
                None => (req.image, req.default_tag),
            };
            if path.is_empty() || tag.is_empty() {
                return Err(PushError::Destination(
                    format!("{:?} is not an oci-archive destination", req.image),
                    "write it as PATH[:TAG] (PATH without ':')".into(),
                ));
            }
            let archive = OciArchive::open(req.archive).map_err(PushError::Archive)?;
            write_oci_archive(&archive, Path::new(path), tag)?;
            Ok(Pushed {
                destination: format!("oci-archive:{path}:{tag}"),
                image: None,
                digest: archive.manifest_digest.clone(),
                blobs: Some((archive.layers.len() + 2, 0)),
            })
        }
        Transport::DockerArchive | Transport::ContainersStorage | Transport::DockerDaemon => {
            let dest = if req.transport == Transport::DockerArchive {
                req.image.to_string()
            } else {
                // containers-storage may name its store first: `[driver@root+runroot]NAME`.
                let (store, name) =
                    match req.image.strip_prefix('[').and_then(|r| r.split_once(']')) {
                        Some((spec, name)) if req.transport == Transport::ContainersStorage => {
                            (format!("[{spec}]"), name)
                        }
                        _ => (String::new(), req.image),
                    };
                let r = ImageRef::parse_local(name).map_err(PushError::Reference)?;
                format!("{store}{}:{}", r.name(), r.tag_or(req.default_tag))
            };
            let destination = format!("{}:{dest}", req.transport.name());
            let digest = skopeo_copy(req, &destination)?;
            Ok(Pushed {
                destination,
                image: None,
                digest,
                blobs: None,
            })
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PushError + '_ {
    move |e| {
        PushError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    }
}

/// skopeo's `dir:` marker file.
const DIR_VERSION: &str = "Directory Transport Version: 1.1\n";

/// A dir destination must be absent, empty, or an image directory already (with `version`).
fn check_dir_destination(dir: &Path) -> Result<(), PushError> {
    if dir.as_os_str().is_empty() {
        return Err(PushError::Destination(
            "the dir destination is empty".into(),
            "give a directory path".into(),
        ));
    }
    match fs_err::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PushError::Destination(
            format!("cannot use {} as a dir destination: {e}", dir.display()),
            "give a directory path (it is made if missing)".into(),
        )),
        Ok(mut rd) => {
            if rd.next().is_none() || dir.join("version").is_file() {
                Ok(())
            } else {
                Err(PushError::Destination(
                    format!(
                        "{} is not empty and is not an image directory (no `version` file)",
                        dir.display()
                    ),
                    "give an empty or new directory".into(),
                ))
            }
        }
    }
}

/// Copies `blob`'s bytes into `out`, checking them against its digest.
fn copy_blob(
    archive: &OciArchive,
    blob: &crate::archive::Blob,
    out: impl Write,
) -> Result<(), PushError> {
    let mut w = HashWriter::new(out);
    let mut r = archive.open_blob(blob).map_err(io(&archive.path))?;
    std::io::copy(&mut r, &mut w).map_err(io(&archive.path))?;
    let (mut out, hex, len) = w.finish();
    out.flush().map_err(PushError::Io)?;
    check_blob(archive, blob, (hex, len))
}

/// Reads through `inner`, hashing (sha256) and counting what passes.
struct HashReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    len: u64,
}

impl<R: Read> HashReader<R> {
    fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: sha2::Digest::new(),
            len: 0,
        }
    }

    /// The hex sha256 and the byte count of what was read.
    fn finish(self) -> (String, u64) {
        (
            crate::hash::hex(&sha2::Digest::finalize(self.hasher)),
            self.len,
        )
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Fails when a blob's bytes (hex sha256, length) are not what its descriptor says.
fn check_blob(
    archive: &OciArchive,
    blob: &crate::archive::Blob,
    (hex, len): (String, u64),
) -> Result<(), PushError> {
    if format!("sha256:{hex}") != blob.digest || len != blob.size {
        return Err(PushError::Archive(ArchiveError {
            path: archive.path.clone(),
            message: format!(
                "blob {} holds {len} bytes hashing to sha256:{hex}: the archive is damaged",
                blob.digest
            ),
        }));
    }
    Ok(())
}

/// Writes skopeo's `dir:` layout; returns the number of blobs written.
fn write_dir(archive: &OciArchive, dir: &Path) -> Result<usize, PushError> {
    fs_err::create_dir_all(dir).map_err(PushError::Io)?;
    for blob in archive.blobs() {
        let hex = blob.digest.trim_start_matches("sha256:");
        let p = dir.join(hex);
        let tmp = dir.join(format!(".{hex}.tmp"));
        let f = fs_err::File::create(&tmp).map_err(PushError::Io)?;
        copy_blob(archive, blob, std::io::BufWriter::new(f))?;
        fs_err::rename(&tmp, &p).map_err(PushError::Io)?;
    }
    fs_err::write(dir.join("manifest.json"), &archive.manifest).map_err(PushError::Io)?;
    fs_err::write(dir.join("version"), DIR_VERSION).map_err(PushError::Io)?;
    Ok(archive.layers.len() + 1)
}

/// Writes a new OCI archive at `path` with the same blobs and an index.json that names the
/// manifest with `org.opencontainers.image.ref.name` = `tag`; replaced atomically.
fn write_oci_archive(archive: &OciArchive, path: &Path, tag: &str) -> Result<(), PushError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        PushError::Destination(
            format!("{} names no file", path.display()),
            "write it as PATH[:TAG]".into(),
        )
    })?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let file = fs_err::File::create(&tmp).map_err(PushError::Io)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let wrote = |r: std::io::Result<()>| r.map_err(io(&tmp));
    for d in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        wrote(tar.append_data(&mut h, d, std::io::empty()))?;
    }
    let mut blobs: Vec<(String, Option<&crate::archive::Blob>)> = archive
        .blobs()
        .map(|b| (b.digest.clone(), Some(b)))
        .collect();
    blobs.push((archive.manifest_digest.clone(), None));
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    blobs.dedup_by(|a, b| a.0 == b.0);
    for (digest, blob) in blobs {
        let p = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        match blob {
            Some(b) => {
                let mut r = HashReader::new(archive.open_blob(b).map_err(io(&archive.path))?);
                let mut h = header(tar::EntryType::Regular, 0o644, b.size);
                wrote(tar.append_data(&mut h, &p, &mut r))?;
                check_blob(archive, b, r.finish())?;
            }
            None => {
                let mut h = header(
                    tar::EntryType::Regular,
                    0o644,
                    archive.manifest.len() as u64,
                );
                wrote(tar.append_data(&mut h, &p, archive.manifest.as_slice()))?;
            }
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": archive.manifest_media_type,
            "digest": archive.manifest_digest,
            "size": archive.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    let index = serde_json::to_vec(&index).expect("JSON");
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut h = header(tar::EntryType::Regular, 0o644, index.len() as u64);
    wrote(tar.append_data(&mut h, "index.json", index.as_slice()))?;
    let mut h = header(tar::EntryType::Regular, 0o644, layout.len() as u64);
    wrote(tar.append_data(&mut h, "oci-layout", &layout[..]))?;
    let w = tar.into_inner().map_err(io(&tmp))?;
    let f = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
    f.sync_all().map_err(io(&tmp))?;
    fs_err::rename(&tmp, path).map_err(PushError::Io)
}

/// `skopeo copy oci-archive:<archive> <destination>`; returns the digest skopeo wrote.
fn skopeo_copy(req: &PushRequest, destination: &str) -> Result<String, PushError> {
    let tmp = tempfile::tempdir().map_err(PushError::Io)?;
    let digestfile = tmp.path().join("digest");
    let mut cmd = std::process::Command::new("skopeo");
    cmd.arg("copy")
        .arg("--digestfile")
        .arg(&digestfile)
        .arg(format!("oci-archive:{}", req.archive.display()))
        .arg(destination)
        .stdin(std::process::Stdio::null());
    let out = cmd.output().map_err(|e| {
        PushError::Skopeo(
            format!("cannot run skopeo: {e}"),
            format!(
                "the {} transport runs skopeo: install it (Debian package skopeo)",
                req.transport.name()
            ),
        )
    })?;
    if !out.status.success() {
        return Err(PushError::Skopeo(
            format!(
                "copy to {destination} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "see skopeo's message above; containers-transports(5) describes the destination".into(),
        ));
    }
    let digest = fs_err::read_to_string(&digestfile).map_err(PushError::Io)?;
    Ok(digest.trim().to_string())
}
