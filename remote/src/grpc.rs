//! REAPI v2 over gRPC: Capabilities, ContentAddressableStorage (FindMissingBlobs, batch
//! reads and writes), ByteStream for blobs over the batch limit, and ActionCache. Digests
//! are SHA-256, which every REAPI server offers; the store keeps each blob's SHA-256 beside
//! its BLAKE3 name, so nothing is hashed twice. Every call has a deadline, and none is
//! retried: the entry layer turns a failed server into a local build.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::google::bytestream::{self, byte_stream_client::ByteStreamClient};
use reapi::action_cache_client::ActionCacheClient;
use reapi::capabilities_client::CapabilitiesClient;
use reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use reapi::digest_function::Value as DigestFunction;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::{CasId, Failure, RemoteConfig, Transport};

/// A unary call's deadline.
const DEADLINE: Duration = Duration::from_secs(30);
/// The most one message carries, the protocol's customary limit; batches stay under it.
const MESSAGE_LIMIT: u64 = 4 << 20;
/// Room left in a batch for its digests and framing.
const BATCH_OVERHEAD: u64 = 64 << 10;
/// The most blobs one batch names (~100 bytes of framing each).
const BATCH_COUNT: usize = 500;
/// Bytes of a ByteStream message.
const CHUNK: usize = 1 << 20;
/// Digests one FindMissingBlobs names.
const FIND_COUNT: usize = 10_000;

/// What the server said of itself.
#[derive(Debug)]
struct Caps {
    batch_bytes: u64,
    update_enabled: bool,
}

/// A client of one REAPI server (one instance name).
pub struct GrpcTransport {
    rt: tokio::runtime::Runtime,
    pub(crate) channel: Channel,
    pub(crate) instance: String,
    auth: Option<MetadataValue<Ascii>>,
    caps: OnceLock<Result<Caps, String>>,
    uploads: AtomicU64,
}

impl GrpcTransport {
    /// A client for `cfg` (`grpc://host:port` or `grpcs://host:port`); connects on first use.
    pub fn new(cfg: &RemoteConfig, auth: Option<String>) -> Result<GrpcTransport, String> {
        let (tls, hostport) = match cfg.url.strip_prefix("grpcs://") {
            Some(r) => (true, r),
            None => (false, cfg.url.trim_start_matches("grpc://")),
        };
        let hostport = hostport.trim_end_matches('/');
        let uri = format!("{}://{hostport}", if tls { "https" } else { "http" });
        let mut ep = Endpoint::from_shared(uri)
            .map_err(|e| format!("{}: {e}", cfg.url))?
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("nosa/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| e.to_string())?;
        if tls {
            let mut t = ClientTlsConfig::new();
            t = match &cfg.tls_roots {
                Some(p) => {
                    let pem = fs_err::read(p).map_err(|e| format!("tls-roots: {e}"))?;
                    t.ca_certificate(tonic::transport::Certificate::from_pem(pem))
                }
                None => t.with_native_roots(),
            };
            ep = ep.tls_config(t).map_err(|e| format!("{}: {e}", cfg.url))?;
        } else if cfg.tls_roots.is_some() {
            return Err(format!(
                "{}: tls-roots is for grpcs:// remotes, and this one is grpc://",
                cfg.url
            ));
        }
        let auth = match auth {
            None => None,
            Some(a) => Some(MetadataValue::try_from(a.as_str()).map_err(|_| {
                "the remote cache's auth-env value is not a valid header value".to_string()
            })?),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nosa-grpc")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the gRPC client: {e}"))?;
        let channel = {
            let _in_runtime = rt.enter();
            ep.connect_lazy()
        };
        Ok(GrpcTransport {
            rt,
            channel,
            instance: cfg.instance.clone().unwrap_or_default(),
            auth,
            caps: OnceLock::new(),
            uploads: AtomicU64::new(0),
        })
    }

    pub(crate) fn request<T>(&self, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        if let Some(a) = &self.auth {
            r.metadata_mut().insert("authorization", a.clone());
        }
        r
    }

    /// `fut` to completion within `deadline`.
    pub(crate) fn run<T>(
        &self,
        deadline: Duration,
        fut: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        // The timer is made inside the runtime, which owns the clock.
        match self
            .rt
            .block_on(async move { tokio::time::timeout(deadline, fut).await })
        {
            Ok(r) => r,
            Err(_) => Err(Failure::Outage(format!(
                "no answer within {} s",
                deadline.as_secs()
            ))),
        }
    }

    /// A unary call to completion within [`DEADLINE`], its status mapped.
    pub(crate) fn unary<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Failure> {
        self.run(DEADLINE, async {
            call.await
                .map(tonic::Response::into_inner)
                .map_err(|s| status_failure(&s))
        })
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(2 * MESSAGE_LIMIT as usize)
            .max_encoding_message_size(2 * MESSAGE_LIMIT as usize)
    }

    fn caps(&self) -> Result<&Caps, Failure> {
        let caps = self.caps.get_or_init(|| {
            let req = self.request(reapi::GetCapabilitiesRequest {
                instance_name: self.instance.clone(),
            });
            let got =
                self.unary(CapabilitiesClient::new(self.channel.clone()).get_capabilities(req));
            match got {
                Ok(r) => caps_of(r),
                Err(Failure::Outage(why) | Failure::Other(why)) => Err(why),
                Err(Failure::NotFound) => Err(format!(
                    "the server has no instance {:?} (set [cache] instance)",
                    self.instance
                )),
            }
        });
        caps.as_ref().map_err(|why| Failure::Outage(why.clone()))
    }

    fn resource(&self, rest: String) -> String {
        if self.instance.is_empty() {
            rest
        } else {
            format!("{}/{rest}", self.instance)
        }
    }

    /// A name for an upload, unique in this process and across processes.
    fn upload_id(&self) -> String {
        let n = self.uploads.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let pid = std::process::id();
        // Shaped as a UUID (version 4, variant 1), which servers expect.
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (t >> 32) as u32,
            (t >> 16) as u16,
            (t as u16) & 0xfff,
            pid & 0xfff,
            (u64::from(pid) << 24 ^ n) & 0xffff_ffff_ffff
        )
    }
}

/// The server's capabilities, or why nosa cannot use it as a cache.
fn caps_of(c: reapi::ServerCapabilities) -> Result<Caps, String> {
    let Some(cache) = c.cache_capabilities else {
        return Err("the server offers no cache (no cache capabilities)".into());
    };
    let sha256 = DigestFunction::Sha256 as i32;
    if !cache.digest_functions.is_empty() && !cache.digest_functions.contains(&sha256) {
        let names: Vec<String> = cache
            .digest_functions
            .iter()
            .map(|&f| {
                DigestFunction::try_from(f)
                    .map(|v| v.as_str_name().to_string())
                    .unwrap_or_else(|_| f.to_string())
            })
            .collect();
        return Err(format!(
            "the server's digest functions are {}; nosa's remote cache speaks SHA256",
            names.join(", ")
        ));
    }
    let server = u64::try_from(cache.max_batch_total_size_bytes).unwrap_or(0);
    let limit = if server == 0 {
        MESSAGE_LIMIT
    } else {
        server.min(MESSAGE_LIMIT)
    };
    Ok(Caps {
        batch_bytes: limit.saturating_sub(BATCH_OVERHEAD).max(1),
        update_enabled: cache
            .action_cache_update_capabilities
            .is_some_and(|u| u.update_enabled),
    })
}

/// What a gRPC status means for nosa.
pub(crate) fn status_failure(s: &tonic::Status) -> Failure {
    use tonic::Code;
    match s.code() {
        Code::NotFound => Failure::NotFound,
        // This request or this entry is wrong; the server is fine.
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::DataLoss
        | Code::AlreadyExists => Failure::Other(format!("{:?}: {}", s.code(), s.message())),
        Code::Unauthenticated | Code::PermissionDenied => Failure::Outage(format!(
            "{:?}: {} (is the auth-env variable right?)",
            s.code(),
            s.message()
        )),
        c => Failure::Outage(format!("{c:?}: {}", s.message())),
    }
}

/// A `google.rpc.Status` of one blob in a batch.
pub(crate) fn blob_status(
    s: Option<&bazel_remote_apis::google::rpc::Status>,
) -> Result<(), Failure> {
    match s {
        None => Ok(()),
        Some(s) if s.code == 0 => Ok(()),
        Some(s) => Err(status_failure(&tonic::Status::new(
            tonic::Code::from_i32(s.code),
            s.message.clone(),
        ))),
    }
}

/// A transfer of `size` bytes gets the unary deadline plus a second per 4 MiB.
fn stream_deadline(size: u64) -> Duration {
    DEADLINE + Duration::from_secs(size / (4 << 20))
}

impl Transport for GrpcTransport {
    fn blob_name(&self, b: &CasId) -> String {
        format!("blobs/{}/{}", b.hash, b.size)
    }

    fn batch_limits(&self) -> (u64, usize) {
        match self.caps() {
            Ok(c) => (c.batch_bytes, BATCH_COUNT),
            // Any call finds the outage again; until then, the customary limit.
            Err(_) => (MESSAGE_LIMIT - BATCH_OVERHEAD, BATCH_COUNT),
        }
    }

    fn updates_allowed(&self) -> Result<bool, Failure> {
        Ok(self.caps()?.update_enabled)
    }

    fn get_action(&self, action: &CasId) -> Result<reapi::ActionResult, Failure> {
        self.caps()?;
        let req = self.request(reapi::GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.to_reapi()),
            ..Default::default()
        });
        self.unary(ActionCacheClient::new(self.channel.clone()).get_action_result(req))
    }

    fn put_action(&self, action: &CasId, result: &reapi::ActionResult) -> Result<(), Failure> {
        let req = self.request(reapi::UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.to_reapi()),
            action_result: Some(result.clone()),
            ..Default::default()
        });
        self.unary(ActionCacheClient::new(self.channel.clone()).update_action_result(req))
            .map(drop)
    }

    fn find_missing(&self, blobs: &[CasId]) -> Result<Vec<CasId>, Failure> {
        let mut missing = vec![];
        for chunk in blobs.chunks(FIND_COUNT) {
            let req = self.request(reapi::FindMissingBlobsRequest {
                instance_name: self.instance.clone(),
                blob_digests: chunk.iter().map(CasId::to_reapi).collect(),
                ..Default::default()
            });
            let got = self.unary(self.cas().find_missing_blobs(req))?;
            for d in &got.missing_blob_digests {
                missing.push(CasId::from_reapi(d).ok_or_else(|| {
                    Failure::Other(format!("the server names a blob {:?}", d.hash))
                })?);
            }
        }
        Ok(missing)
    }

    fn read_batch(&self, blobs: &[CasId]) -> Result<Vec<Vec<u8>>, Failure> {
        let req = self.request(reapi::BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests: blobs.iter().map(CasId::to_reapi).collect(),
            ..Default::default()
        });
        let got = self.unary(self.cas().batch_read_blobs(req))?;
        let mut by_hash: HashMap<String, Vec<u8>> = HashMap::new();
        for r in got.responses {
            blob_status(r.status.as_ref())?;
            if let Some(d) = r.digest {
                by_hash.insert(d.hash.to_ascii_lowercase(), r.data);
            }
        }
        blobs
            .iter()
            .map(|b| {
                by_hash.remove(&b.hash).ok_or_else(|| {
                    Failure::Other(format!("the server did not return {}", self.blob_name(b)))
                })
            })
            .collect()
    }

    fn read_stream(&self, b: &CasId, w: &mut dyn Write) -> Result<(), Failure> {
        let req = self.request(bytestream::ReadRequest {
            resource_name: self.resource(format!("blobs/{}/{}", b.hash, b.size)),
            read_offset: 0,
            read_limit: 0,
        });
        self.run(stream_deadline(b.size), async {
            let mut stream = ByteStreamClient::new(self.channel.clone())
                .max_decoding_message_size(2 * MESSAGE_LIMIT as usize)
                .read(req)
                .await
                .map_err(|s| status_failure(&s))?
                .into_inner();
            while let Some(m) = stream.message().await.map_err(|s| status_failure(&s))? {
                w.write_all(&m.data)
                    .map_err(|e| Failure::Other(e.to_string()))?;
            }
            Ok(())
        })
    }

    fn write_batch(&self, blobs: &[(CasId, Vec<u8>)]) -> Result<(), Failure> {
        let req = self.request(reapi::BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: blobs
                .iter()
                .map(|(id, data)| reapi::batch_update_blobs_request::Request {
                    digest: Some(id.to_reapi()),
                    data: data.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        let got = self.unary(self.cas().batch_update_blobs(req))?;
        got.responses
            .iter()
            .try_for_each(|r| blob_status(r.status.as_ref()))
    }

    fn write_file(&self, b: &CasId, path: &Path) -> Result<(), Failure> {
        let resource = self.resource(format!(
            "uploads/{}/blobs/{}/{}",
            self.upload_id(),
            b.hash,
            b.size
        ));
        let (tx, rx) = tokio::sync::mpsc::channel::<bytestream::WriteRequest>(4);
        let size = b.size;
        std::thread::scope(|scope| {
            // The file is read on its own thread and fed to the call as it goes.
            let reader = scope.spawn(move || -> std::io::Result<()> {
                let mut f = fs_err::File::open(path)?;
                let mut offset = 0u64;
                let mut first = true;
                loop {
                    let mut data = vec![0; CHUNK];
                    let mut n = 0;
                    while n < CHUNK {
                        match f.read(&mut data[n..])? {
                            0 => break,
                            k => n += k,
                        }
                    }
                    data.truncate(n);
                    let last = offset + n as u64 >= size || n == 0;
                    let req = bytestream::WriteRequest {
                        resource_name: if first {
                            resource.clone()
                        } else {
                            String::new()
                        },
                        write_offset: i64::try_from(offset).unwrap_or(i64::MAX),
                        finish_write: last,
                        data,
                    };
                    first = false;
                    offset += n as u64;
                    if tx.blocking_send(req).is_err() || last {
                        // The call ended (it failed, or the server had the blob already).
                        return Ok(());
                    }
                }
            });
            let req = self.request(tokio_stream::wrappers::ReceiverStream::new(rx));
            let sent = self.run(stream_deadline(size), async {
                ByteStreamClient::new(self.channel.clone())
                    .write(req)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| status_failure(&s))
            });
            let read = reader.join().expect("upload reader");
            read.map_err(|e| Failure::Other(format!("reading {}: {e}", path.display())))?;
            let got = sent?;
            if u64::try_from(got.committed_size).ok() != Some(size) {
                return Err(Failure::Other(format!(
                    "the server committed {} of {size} bytes of {}",
                    got.committed_size,
                    self.blob_name(b)
                )));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(functions: Vec<i32>, batch: i64, update: bool) -> reapi::ServerCapabilities {
        reapi::ServerCapabilities {
            cache_capabilities: Some(reapi::CacheCapabilities {
                digest_functions: functions,
                max_batch_total_size_bytes: batch,
                action_cache_update_capabilities: Some(reapi::ActionCacheUpdateCapabilities {
                    update_enabled: update,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn capabilities_pick_sha256_and_a_batch_under_the_message_limit() {
        let c = caps_of(caps(vec![DigestFunction::Sha256 as i32], 0, true)).unwrap();
        assert_eq!(c.batch_bytes, MESSAGE_LIMIT - BATCH_OVERHEAD);
        assert!(c.update_enabled);
        let c = caps_of(caps(vec![], 1 << 20, false)).unwrap();
        assert_eq!(c.batch_bytes, (1 << 20) - BATCH_OVERHEAD);
        assert!(!c.update_enabled);
        let e = caps_of(caps(vec![DigestFunction::Blake3 as i32], 0, true)).unwrap_err();
        assert!(e.contains("BLAKE3") && e.contains("SHA256"), "{e}");
        assert!(caps_of(reapi::ServerCapabilities::default()).is_err());
    }

    #[test]
    fn statuses_split_into_missing_outage_and_bad_entry() {
        assert!(matches!(
            status_failure(&tonic::Status::not_found("x")),
            Failure::NotFound
        ));
        assert!(matches!(
            status_failure(&tonic::Status::unavailable("x")),
            Failure::Outage(_)
        ));
        assert!(matches!(
            status_failure(&tonic::Status::data_loss("x")),
            Failure::Other(_)
        ));
    }
}
