//! The docker transport: pushing an [`OciArchive`] to a registry with the `oci-client` crate
//! (reqwest + rustls with ring; `insecure` = plain HTTP). Each blob the registry lacks is
//! streamed from the archive file in one monolithic upload (its bytes as they are: nothing is
//! recompressed), then the manifest's exact bytes are put under the tag, and the digest the
//! registry reports for the tag is read back and checked against the archive's.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::AsyncSeekExt;

use crate::archive::OciArchive;
use crate::authfile::Credentials;
use crate::push::PushError;

/// What a registry push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegistryPush {
    /// The manifest digest the registry reports for the tag.
    pub digest: String,
    /// Blobs uploaded.
    pub sent: usize,
    /// Blobs the registry already had.
    pub present: usize,
}

/// Pushes `archive` to `registry`/`repository`:`tag`.
pub(crate) fn push(
    archive: &OciArchive,
    registry: &str,
    repository: &str,
    tag: &str,
    creds: Option<&Credentials>,
    insecure: bool,
) -> Result<RegistryPush, PushError> {
    // reqwest is built without a crypto provider of its own: rustls' ring is this process's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PushError::Io(std::io::Error::other(format!("a tokio runtime: {e}"))))?;
    let failed = |e: OciDistributionError| classify(e, registry, creds.is_some(), insecure);
    rt.block_on(async {
        let client = Client::new(ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: insecure,
            use_monolithic_push: true,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            ..ClientConfig::default()
        });
        let reference = Reference::with_tag(
            registry.to_string(),
            repository.to_string(),
            tag.to_string(),
        );
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        client
            .auth(&reference, &auth, RegistryOperation::Push)
            .await
            .map_err(failed)?;
        let (mut sent, mut present) = (0, 0);
        for blob in archive.blobs() {
            if client
                .blob_exists(&reference, &blob.digest)
                .await
                .map_err(failed)?
            {
                present += 1;
                continue;
            }
            let mut file = tokio::fs::File::open(&archive.path).await.map_err(|e| {
                PushError::Io(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", archive.path.display()),
                ))
            })?;
            file.seek(std::io::SeekFrom::Start(blob.offset))
                .await
                .map_err(PushError::Io)?;
            let body = tokio_util::io::ReaderStream::with_capacity(
                tokio::io::AsyncReadExt::take(file, blob.size),
                1 << 20,
            );
            let body =
                futures_util::StreamExt::map(body, |r| r.map_err(OciDistributionError::from));
            client
                .push_blob_stream(&reference, body, &blob.digest, Some(blob.size))
                .await
                .map_err(failed)?;
            sent += 1;
        }
        let content_type =
            archive
                .manifest_media_type
                .parse()
                .map_err(|_| PushError::Registry {
                    registry: registry.to_string(),
                    message: format!("media type {:?}", archive.manifest_media_type),
                })?;
        client
            .push_manifest_raw(&reference, archive.manifest.clone(), content_type)
            .await
            .map_err(failed)?;
        let digest = client
            .fetch_manifest_digest(&reference, &auth)
            .await
            .map_err(failed)?;
        if digest != archive.manifest_digest {
            return Err(PushError::Registry {
                registry: registry.to_string(),
                message: format!(
                    "the registry reports manifest {digest} for {repository}:{tag}, but the \
                     pushed manifest is {}",
                    archive.manifest_digest
                ),
            });
        }
        Ok(RegistryPush {
            digest,
            sent,
            present,
        })
    })
}

/// Whether a registry error is a refusal of (missing or wrong) credentials.
fn unauthorized(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => true,
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RequestError(r) => r
            .status()
            .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    }
}

/// The full chain of an error's messages (reqwest's own says only "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut at = e.source();
    while let Some(c) = at {
        s.push_str(": ");
        s.push_str(&c.to_string());
        at = c.source();
    }
    s
}

fn classify(
    e: OciDistributionError,
    registry: &str,
    with_credentials: bool,
    insecure: bool,
) -> PushError {
    if unauthorized(&e) {
        return PushError::Unauthorized {
            registry: registry.to_string(),
            with_credentials,
        };
    }
    let unreachable = matches!(&e, OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() || r.is_request());
    PushError::Registry {
        registry: registry.to_string(),
        message: if unreachable && !insecure {
            format!(
                "{} (if the registry serves plain HTTP, pass --insecure)",
                chain(&e)
            )
        } else {
            chain(&e)
        },
    }
}
