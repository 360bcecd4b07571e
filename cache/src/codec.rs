//! A compact, checksummed binary encoding for nosa's own state files (build state, parsed build
//! file cache): a magic tag, LEB128 integers, length-prefixed bytes, and a blake3 of everything
//! before it at the end, so that a torn or foreign file is rejected as a whole, never half-read.

use crate::Digest;

/// Builds an encoded file.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A file that starts with `magic` (which names the format and its version).
    pub fn new(magic: &[u8; 8], capacity: usize) -> Writer {
        let mut buf = Vec::with_capacity(capacity + 48);
        buf.extend_from_slice(magic);
        Writer { buf }
    }

    /// An unsigned integer (LEB128).
    pub fn u64(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// A string.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// A digest (32 raw bytes).
    pub fn digest(&mut self, d: &Digest) {
        self.buf.extend_from_slice(&d.0);
    }

    /// The encoded file, with its checksum appended.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = blake3::hash(&self.buf);
        self.buf.extend_from_slice(sum.as_bytes());
        self.buf
    }
}

/// Reads a file made by [`Writer`]. Every read returns `None` on malformed input.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Opens `file` if it starts with `magic` and its checksum matches.
    pub fn open(file: &'a [u8], magic: &[u8; 8]) -> Option<Reader<'a>> {
        let body_len = file.len().checked_sub(32)?;
        let (body, sum) = file.split_at(body_len);
        let rest = body.strip_prefix(magic.as_slice())?;
        (blake3::hash(body).as_bytes() == sum).then_some(Reader { rest })
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Some(a)
    }

    /// An unsigned integer.
    pub fn u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// An unsigned integer that must fit `usize` (a length or count).
    pub fn count(&mut self) -> Option<usize> {
        usize::try_from(self.u64()?).ok()
    }

    /// A boolean.
    pub fn bool(&mut self) -> Option<bool> {
        match self.take(1)?[0] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }

    /// A string.
    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// A digest.
    pub fn digest(&mut self) -> Option<Digest> {
        Some(Digest(self.take(32)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_rejected() {
        let mut w = Writer::new(b"nosatest", 0);
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            w.u64(v);
        }
        w.str("héllo");
        w.bool(true);
        w.digest(&Digest::of(b"x"));
        let file = w.finish();
        let mut r = Reader::open(&file, b"nosatest").unwrap();
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(r.u64(), Some(v));
        }
        assert_eq!(r.str(), Some("héllo"));
        assert_eq!(r.bool(), Some(true));
        assert_eq!(r.digest(), Some(Digest::of(b"x")));
        assert!(r.is_empty());
        assert_eq!(r.u64(), None);

        assert!(Reader::open(&file, b"nosaxxxx").is_none(), "other format");
        for cut in [0, 8, 20, file.len() - 1] {
            assert!(
                Reader::open(&file[..cut], b"nosatest").is_none(),
                "torn at {cut}"
            );
        }
        let mut flipped = file.clone();
        flipped[10] ^= 1;
        assert!(Reader::open(&flipped, b"nosatest").is_none(), "bit flip");
    }
}
