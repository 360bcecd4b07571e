//! rpm-md checksums (`<checksum type="sha256">hex</checksum>`): the types, a streaming hasher,
//! and a writer that hashes and counts what passes through it.

use std::fmt;
use std::io::{self, Write};

use nosa_engine::{KeyHash, KeyHasher};
use sha1::Digest as _;

use crate::error::RepoError;

/// A checksum algorithm named by rpm-md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumKind {
    /// `sha1` (old createrepo writes `sha`).
    Sha1,
    /// `sha224`.
    Sha224,
    /// `sha256`, what createrepo_c writes by default.
    Sha256,
    /// `sha384`.
    Sha384,
    /// `sha512`.
    Sha512,
}

impl ChecksumKind {
    /// Parses an rpm-md `type` attribute.
    pub fn parse(s: &str) -> Result<ChecksumKind, RepoError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "sha" | "sha1" => ChecksumKind::Sha1,
            "sha224" => ChecksumKind::Sha224,
            "sha256" => ChecksumKind::Sha256,
            "sha384" => ChecksumKind::Sha384,
            "sha512" => ChecksumKind::Sha512,
            _ => return Err(RepoError::UnsupportedChecksum(s.to_string())),
        })
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumKind::Sha1 => "sha1",
            ChecksumKind::Sha224 => "sha224",
            ChecksumKind::Sha256 => "sha256",
            ChecksumKind::Sha384 => "sha384",
            ChecksumKind::Sha512 => "sha512",
        }
    }

    /// A fresh hasher of this kind.
    pub fn hasher(self) -> Hasher {
        Hasher(match self {
            ChecksumKind::Sha1 => Inner::Sha1(sha1::Sha1::new()),
            ChecksumKind::Sha224 => Inner::Sha224(sha2::Sha224::new()),
            ChecksumKind::Sha256 => Inner::Sha256(sha2::Sha256::new()),
            ChecksumKind::Sha384 => Inner::Sha384(sha2::Sha384::new()),
            ChecksumKind::Sha512 => Inner::Sha512(sha2::Sha512::new()),
        })
    }
}

/// A checksum: algorithm and lowercase hex value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// The algorithm.
    pub kind: ChecksumKind,
    /// Lowercase hex.
    pub hex: String,
}

impl Checksum {
    /// A checksum from an rpm-md `type` attribute and hex text.
    pub fn parse(kind: &str, hex: &str) -> Result<Checksum, RepoError> {
        Ok(Checksum {
            kind: ChecksumKind::parse(kind)?,
            hex: hex.trim().to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.hex)
    }
}

impl KeyHash for Checksum {
    fn key_hash(&self, h: &mut KeyHasher) {
        h.tag(b'c');
        self.kind.name().key_hash(h);
        self.hex.key_hash(h);
    }
    fn preview(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.kind.name(),
            &self.hex[..self.hex.len().min(16)]
        ))
    }
}

enum Inner {
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

/// A streaming hasher of one [`ChecksumKind`].
pub struct Hasher(Inner);

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, b: &[u8]) {
        match &mut self.0 {
            Inner::Sha1(h) => h.update(b),
            Inner::Sha224(h) => h.update(b),
            Inner::Sha256(h) => h.update(b),
            Inner::Sha384(h) => h.update(b),
            Inner::Sha512(h) => h.update(b),
        }
    }

    /// The lowercase hex digest.
    pub fn finish_hex(self) -> String {
        let bytes: Vec<u8> = match self.0 {
            Inner::Sha1(h) => h.finalize().to_vec(),
            Inner::Sha224(h) => h.finalize().to_vec(),
            Inner::Sha256(h) => h.finalize().to_vec(),
            Inner::Sha384(h) => h.finalize().to_vec(),
            Inner::Sha512(h) => h.finalize().to_vec(),
        };
        let mut s = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// A writer that hashes and counts what it passes on to `inner`, and refuses to pass more than
/// `limit` bytes (so a hostile or broken server cannot fill the disk).
pub struct HashingWriter<W> {
    pub(crate) inner: W,
    hasher: Hasher,
    pub(crate) len: u64,
    limit: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes with `kind` what it passes on to `inner`, refusing past `limit` bytes.
    pub fn new(inner: W, kind: ChecksumKind, limit: u64) -> Self {
        HashingWriter {
            inner,
            hasher: kind.hasher(),
            len: 0,
            limit,
        }
    }

    /// The hex digest of what was written, and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, self.hasher.finish_hex(), self.len)
    }
}

/// The message of the error [`HashingWriter`] returns past its limit.
const TOO_LONG: &str = "longer than expected";

/// Whether `e` is [`HashingWriter`]'s "past the limit" error.
pub fn is_too_long(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::FileTooLarge && e.to_string() == TOO_LONG
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len + buf.len() as u64 > self.limit {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, TOO_LONG));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut h = ChecksumKind::Sha256.hasher();
        h.update(b"abc");
        assert_eq!(
            h.finish_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = ChecksumKind::parse("sha").unwrap().hasher();
        h.update(b"abc");
        assert_eq!(h.finish_hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(ChecksumKind::parse("md5").is_err());
    }

    #[test]
    fn writer_stops_at_limit() {
        let mut w = HashingWriter::new(Vec::new(), ChecksumKind::Sha1, 4);
        assert!(w.write_all(b"abcd").is_ok());
        assert!(w.write_all(b"e").is_err());
        let (v, _, n) = w.finish();
        assert_eq!((v.len(), n), (4, 4));
    }
}
