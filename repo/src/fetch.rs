//! Fetching by URL: `file://` URLs and plain paths from the filesystem, `http://` and
//! `https://` with ureq (rustls). Downloads stream to disk through a hashing writer, never whole
//! in memory; mirrorlists and metalinks are expanded into base URLs.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_xml::events::Event;

use crate::checksum::{ChecksumKind, HashingWriter, is_too_long};
use crate::error::RepoError;

/// The most a `repomd.xml`, mirrorlist or metalink may be (they are a few KiB in practice).
pub(crate) const SMALL_FILE_LIMIT: u64 = 32 << 20;

/// Opens URLs. One per run: it holds a connection pool.
pub(crate) struct Fetcher {
    agent: ureq::Agent,
}

/// What [`Fetcher::download`] wrote.
#[derive(Debug)]
pub(crate) struct Downloaded {
    /// Bytes written.
    pub(crate) size: u64,
    /// Hex digest of them, of the requested kind.
    pub(crate) hex: String,
}

/// Why a download did not produce a file (the URL is added by the caller).
#[derive(Debug)]
pub(crate) enum DownloadError {
    /// The body is longer than the limit (`limit` bytes were accepted).
    TooLong,
    /// Anything else, as a message.
    Other(String),
}

impl Fetcher {
    pub(crate) fn new() -> Fetcher {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .user_agent(concat!("nosa/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// Opens `url` for reading.
    pub(crate) fn open(&self, url: &str) -> Result<Box<dyn Read + Send>, String> {
        match Scheme::of(url)? {
            Scheme::File(path) => fs_err::File::open(path)
                .map(|f| Box::new(BufReader::new(f)) as Box<dyn Read + Send>)
                .map_err(|e| e.to_string()),
            Scheme::Http => {
                let resp = self.agent.get(url).call().map_err(|e| match e {
                    ureq::Error::StatusCode(c) => format!("HTTP status {c}"),
                    e => e.to_string(),
                })?;
                Ok(Box::new(resp.into_body().into_reader()))
            }
        }
    }

    /// Reads a small file (`repomd.xml`, a mirrorlist) whole.
    pub(crate) fn get_bytes(&self, url: &str) -> Result<Vec<u8>, RepoError> {
        let fail = |reason: String| RepoError::Fetch {
            url: url.to_string(),
            reason,
        };
        let r = self.open(url).map_err(fail)?;
        let mut buf = Vec::new();
        r.take(SMALL_FILE_LIMIT + 1)
            .read_to_end(&mut buf)
            .map_err(|e| fail(e.to_string()))?;
        if buf.len() as u64 > SMALL_FILE_LIMIT {
            return Err(fail(format!("larger than {SMALL_FILE_LIMIT} bytes")));
        }
        Ok(buf)
    }

    /// Streams `url` into a new file `dest`, hashing with `kind`; fails past `limit` bytes.
    pub(crate) fn download(
        &self,
        url: &str,
        dest: &Path,
        kind: ChecksumKind,
        limit: u64,
    ) -> Result<Downloaded, DownloadError> {
        let mut r = self.open(url).map_err(DownloadError::Other)?;
        let file = fs_err::File::create(dest).map_err(|e| DownloadError::Other(e.to_string()))?;
        let mut w = HashingWriter::new(io::BufWriter::new(file), kind, limit);
        if let Err(e) = io::copy(&mut r, &mut w).and_then(|_| w.flush()) {
            return Err(if is_too_long(&e) {
                DownloadError::TooLong
            } else {
                DownloadError::Other(e.to_string())
            });
        }
        let (buf, hex, size) = w.finish();
        let file = buf
            .into_inner()
            .map_err(|e| DownloadError::Other(e.to_string()))?;
        file.sync_all()
            .map_err(|e| DownloadError::Other(e.to_string()))?;
        Ok(Downloaded { size, hex })
    }
}

enum Scheme {
    File(PathBuf),
    Http,
}

impl Scheme {
    fn of(url: &str) -> Result<Scheme, String> {
        if let Some(rest) = url.strip_prefix("file://") {
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            if !rest.starts_with('/') {
                return Err(format!("{url}: a file:// URL needs an absolute path"));
            }
            return Ok(Scheme::File(PathBuf::from(percent_decode(rest))));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Scheme::Http);
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(format!(
                "{url}: unsupported URL scheme `{scheme}` (supported: file, http, https, or a plain path)"
            ));
        }
        Ok(Scheme::File(PathBuf::from(url)))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((hi << 4) | lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// `base` joined with the relative `rel` (one `/` between them).
pub(crate) fn join(base: &str, rel: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

/// Base URLs from a mirrorlist: one URL per line, `#` comments and blank lines ignored.
pub(crate) fn parse_mirrorlist(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Base URLs from a metalink (`<url>` elements, in document order; a trailing
/// `repodata/repomd.xml` is removed, as the metalink names the file, not the repository).
pub(crate) fn parse_metalink(xml: &[u8], file: &str) -> Result<Vec<String>, RepoError> {
    let bad = |e: String| RepoError::Xml {
        file: file.to_string(),
        reason: e,
    };
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut in_url = false;
    let mut urls = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(e.to_string()))?
        {
            Event::Start(e) if e.local_name().as_ref() == b"url" => in_url = true,
            Event::End(e) if e.local_name().as_ref() == b"url" => in_url = false,
            Event::Text(t) if in_url => {
                let u = t.decode().map_err(|e| bad(e.to_string()))?;
                let u = u.trim();
                if u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file://")
                {
                    let base = u.strip_suffix("repodata/repomd.xml").unwrap_or(u);
                    urls.push(base.to_string());
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(join("http://a/b/", "repodata/x"), "http://a/b/repodata/x");
        assert_eq!(join("/srv/r", "Packages/p.rpm"), "/srv/r/Packages/p.rpm");
        assert!(
            matches!(Scheme::of("file:///a%20b"), Ok(Scheme::File(p)) if p == Path::new("/a b"))
        );
        assert!(matches!(Scheme::of("/srv/r"), Ok(Scheme::File(_))));
        assert!(Scheme::of("ftp://x/").is_err());
        assert!(Scheme::of("file://relative").is_err());
        assert_eq!(
            parse_mirrorlist("# c\nhttp://a/\n\n  http://b/ \n"),
            ["http://a/", "http://b/"]
        );
        let ml = br#"<?xml version="1.0"?><metalink><files><file name="repomd.xml"><resources>
            <url protocol="https" type="https" preference="100">https://m1/x86_64/repodata/repomd.xml</url>
            <url protocol="rsync" type="rsync">rsync://m2/x/repodata/repomd.xml</url>
            </resources></file></files></metalink>"#;
        assert_eq!(parse_metalink(ml, "m").unwrap(), ["https://m1/x86_64/"]);
    }
}
