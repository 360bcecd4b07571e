//! Bazel's HTTP cache layout (`/ac/<sha256>`, `/cas/<sha256>`; GET, HEAD, PUT), as nginx
//! with WebDAV PUT, bazel-remote and object-store proxies serve it. Any HTTP status but 404
//! is an outage: the same refusal or failure would meet every request that follows.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use prost::Message as _;

use crate::{CasId, Failure, Transport, in_lanes};

/// The largest action result read.
const AC_LIMIT: u64 = 16 << 20;

/// A client of one HTTP cache.
pub struct HttpTransport {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl HttpTransport {
    /// A client for the cache at `base` (`http://host:port/prefix`), sending `auth` as the
    /// `Authorization` header.
    pub fn new(base: &str, auth: Option<String>) -> HttpTransport {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(30)))
            .timeout_per_write(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .user_agent(concat!("nosa/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpTransport {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_config(config),
            auth,
        }
    }

    fn url(&self, kind: &str, sha256: &str) -> String {
        format!("{}/{kind}/{sha256}", self.base)
    }

    fn classify(e: ureq::Error) -> Failure {
        match e {
            ureq::Error::StatusCode(404) => Failure::NotFound,
            ureq::Error::StatusCode(c @ (401 | 403)) => Failure::Outage(format!(
                "HTTP status {c}: access refused (is the auth-env variable right?)"
            )),
            ureq::Error::StatusCode(c) => Failure::Outage(format!("HTTP status {c}")),
            ureq::Error::Io(e) => Failure::Outage(e.to_string()),
            e @ (ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed) => Failure::Outage(e.to_string()),
            e => Failure::Other(e.to_string()),
        }
    }

    fn with_auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    fn get(&self, kind: &str, name: &str) -> Result<ureq::Body, Failure> {
        Ok(self
            .with_auth(self.agent.get(self.url(kind, name)))
            .call()
            .map_err(Self::classify)?
            .into_body())
    }

    /// At most `limit` bytes of `kind/name`; more is an error of the content.
    fn get_bytes(&self, kind: &str, name: &str, limit: u64) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        self.get(kind, name)?
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| Failure::Outage(e.to_string()))?;
        Ok(out)
    }

    fn put(&self, kind: &str, sha256: &str, body: &[u8]) -> Result<(), Failure> {
        self.with_auth(self.agent.put(self.url(kind, sha256)))
            .send(body)
            .map_err(Self::classify)?;
        Ok(())
    }

    fn exists(&self, sha256: &str) -> Result<bool, Failure> {
        match self
            .with_auth(self.agent.head(self.url("cas", sha256)))
            .call()
        {
            Ok(_) => Ok(true),
            Err(e) => match Self::classify(e) {
                Failure::NotFound => Ok(false),
                f => Err(f),
            },
        }
    }
}

impl Transport for HttpTransport {
    fn blob_name(&self, b: &CasId) -> String {
        format!("cas/{}", b.hash)
    }

    fn batch_limits(&self) -> (u64, usize) {
        // One request a blob: a "batch" is one small blob read into memory.
        (1 << 20, 1)
    }

    fn updates_allowed(&self) -> Result<bool, Failure> {
        // Found out by the first PUT.
        Ok(true)
    }

    fn get_action(&self, action: &CasId) -> Result<reapi::ActionResult, Failure> {
        let bytes = self.get_bytes("ac", &action.hash, AC_LIMIT)?;
        reapi::ActionResult::decode(bytes.as_slice())
            .map_err(|e| Failure::Other(format!("ac/{} is not an ActionResult: {e}", action.hash)))
    }

    fn put_action(&self, action: &CasId, result: &reapi::ActionResult) -> Result<(), Failure> {
        self.put("ac", &action.hash, &result.encode_to_vec())
    }

    fn find_missing(&self, blobs: &[CasId]) -> Result<Vec<CasId>, Failure> {
        let missing = Mutex::new(vec![]);
        in_lanes(blobs, |b| {
            if !self.exists(&b.hash)? {
                missing.lock().expect("missing").push(b.clone());
            }
            Ok(())
        })?;
        Ok(missing.into_inner().expect("missing"))
    }

    fn read_batch(&self, blobs: &[CasId]) -> Result<Vec<Vec<u8>>, Failure> {
        blobs
            .iter()
            .map(|b| self.get_bytes("cas", &b.hash, b.size))
            .collect()
    }

    fn read_stream(&self, b: &CasId, w: &mut dyn Write) -> Result<(), Failure> {
        let mut body = self.get("cas", &b.hash)?.into_reader();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Outage(e.to_string())),
            };
            w.write_all(&buf[..n])
                .map_err(|e| Failure::Other(e.to_string()))?;
        }
    }

    fn write_batch(&self, blobs: &[(CasId, Vec<u8>)]) -> Result<(), Failure> {
        blobs
            .iter()
            .try_for_each(|(id, bytes)| self.put("cas", &id.hash, bytes))
    }

    fn write_file(&self, b: &CasId, path: &Path) -> Result<(), Failure> {
        let f = fs_err::File::open(path).map_err(|e| Failure::Other(e.to_string()))?;
        self.with_auth(self.agent.put(self.url("cas", &b.hash)))
            .send(f.file())
            .map_err(Self::classify)?;
        Ok(())
    }
}
