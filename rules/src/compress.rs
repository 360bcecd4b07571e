//! `compress:<arch>:<image>:<codec>` and `uncompress:<arch>:<image>:<codec>`: one build
//! artifact compressed (gzip, xz or zstd; xz and zstd on every core) or decompressed, for
//! `nosa compress` and `nosa uncompress`.
//!
//! **Key.** The input's content digest (BLAKE3), the codec and, for compression, the level.
//! Nothing else: the same image compressed the same way is one cache entry, whichever build
//! holds it, and an interrupted `nosa compress` finds the nodes that finished cached.
//!
//! **The input** is a file outside the workdir's declared inputs (an image under builds/, or
//! the store's blob of it), named by `source`, which is not in the key. The rule reads it
//! hashing as it goes and fails unless what it read has the digest the key names: a key
//! never covers bytes other than the ones it says.
//!
//! **Output.** One file, `artifact.<ext>` (compress) or `artifact` (uncompress). A compressed
//! file is decompressed again before the run succeeds and must give the input's digest back.
//! A decompressed file is written sparse (all-zero 4 KiB blocks are left as holes): a raw disk
//! image is mostly zeros.
//!
//! **Deterministic output.** gzip: flate2's header has no name and mtime 0. xz: liblzma's
//! multithreaded encoder cuts the input into blocks whose size follows from the preset, not
//! from the number of threads. zstd: with one worker or more the frame does not depend on
//! their number. So the thread count (the host's cores) stays out of the key.

use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use nosa_cache::Digest;
use nosa_engine::{Params, Rule, RunContext, RunError};

/// A compression format of `nosa compress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// gzip (`.gz`), one member, flate2.
    Gzip,
    /// xz (`.xz`), liblzma's multithreaded encoder, CRC64 check.
    Xz,
    /// zstd (`.zst`), multithreaded, with a content checksum.
    Zstd,
}

impl Codec {
    /// Every codec, in the order of `--compressor`'s values.
    pub const ALL: [Codec; 3] = [Codec::Gzip, Codec::Xz, Codec::Zstd];

    /// `gzip`, `xz` or `zstd` (coreos-assembler's `--compressor` values, image.yaml's
    /// `compressor`).
    pub fn parse(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The name `--compressor` takes.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
        }
    }

    /// The file name extension, without the dot (coreos-assembler's: `gz`, `xz`, `zst`).
    pub fn ext(self) -> &'static str {
        match self {
            Codec::Gzip => "gz",
            Codec::Xz => "xz",
            Codec::Zstd => "zst",
        }
    }

    /// The codec a file name's extension says, if any.
    pub fn of_path(path: &str) -> Option<Codec> {
        let (_, ext) = path.rsplit_once('.')?;
        Codec::ALL.into_iter().find(|c| c.ext() == ext)
    }

    /// The level: the fastest with `fast`; otherwise gzip's own default 6 (what
    /// coreos-assembler's `gzip -c` uses), xz 9 (coreos-assembler's `xz -9`) and zstd 10
    /// (most of 19's ratio at a fraction of its time).
    pub fn level(self, fast: bool) -> u32 {
        match (self, fast) {
            (Codec::Gzip, false) => 6,
            (Codec::Xz, false) => 9,
            (Codec::Zstd, false) => 10,
            (Codec::Gzip | Codec::Zstd, true) => 1,
            (Codec::Xz, true) => 0,
        }
    }
}

/// The name of the compressed file in a compress node's output.
pub fn compressed_name(codec: Codec) -> String {
    format!("artifact.{}", codec.ext())
}

/// The name of the file in an uncompress node's output.
pub const UNCOMPRESSED_NAME: &str = "artifact";

/// Threads for one node's encoder: every core (nodes of other artifacts run beside it; the
/// kernel shares the cores, and xz and zstd give the same bytes whatever the count).
fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// `compress:<arch>:<image>:<codec>`: `source` (whose content has digest `input`)
/// compressed with `codec` at `level`.
#[derive(Clone, Debug)]
pub struct CompressRule {
    /// BLAKE3 of the file to compress: the key.
    pub input: Digest,
    /// Where to read it (not in the key; checked against `input`).
    pub source: PathBuf,
    /// The format.
    pub codec: Codec,
    /// The level ([`Codec::level`]).
    pub level: u32,
}

impl Rule for CompressRule {
    fn kind(&self) -> &str {
        "compress"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("input", &self.input);
        p.add("codec", self.codec.name());
        p.add("level", &self.level);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let out = ctx.out.join(compressed_name(self.codec));
        let mut src = Hashing::new(fs_err::File::open(&self.source)?);
        let dst = BufWriter::with_capacity(1 << 20, fs_err::File::create(&out)?);
        let mut enc = Encoder::new(self.codec, self.level, dst)?;
        let read = pump(&mut src, &mut enc)?;
        enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        src.check(self.input, &self.source)?;
        // Decompressed again, it must be the input.
        let mut back = blake3::Hasher::new();
        let n = pump(
            &mut decoder(self.codec, fs_err::File::open(&out)?)?,
            &mut back,
        )?;
        let again: Digest = back.finalize().into();
        if again != self.input || n != read {
            return Err(RunError::msg(format!(
                "{} decompressed again gives {n} bytes with blake3 {}, not the input's {read} bytes with {}",
                out.display(),
                again.short(),
                self.input.short()
            )));
        }
        let size = fs_err::metadata(&out)?.len();
        writeln!(
            ctx.log,
            "{} level {} ({} threads): {read} -> {size} bytes; decompressed again: same blake3",
            self.codec.name(),
            self.level,
            threads()
        )?;
        Ok(())
    }
}

/// `uncompress:<arch>:<image>:<codec>`: `source` (whose content has digest `input`)
/// decompressed from `codec`.
#[derive(Clone, Debug)]
pub struct UncompressRule {
    /// BLAKE3 of the compressed file: the key.
    pub input: Digest,
    /// Where to read it (not in the key; checked against `input`).
    pub source: PathBuf,
    /// The format.
    pub codec: Codec,
}

impl Rule for UncompressRule {
    fn kind(&self) -> &str {
        "uncompress"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("input", &self.input);
        p.add("codec", self.codec.name());
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let out = ctx.out.join(UNCOMPRESSED_NAME);
        let mut src = Hashing::new(fs_err::File::open(&self.source)?);
        let mut sparse = Sparse::new(fs_err::File::create(&out)?);
        let n = {
            let mut dec = decoder(self.codec, &mut src)?;
            pump(&mut dec, &mut sparse)?
        };
        sparse.finish()?;
        // Whatever the decoder left unread (trailing bytes) is part of the input too.
        pump(&mut src, &mut io::sink())?;
        src.check(self.input, &self.source)?;
        writeln!(ctx.log, "{}: {} -> {n} bytes", self.codec.name(), src.n)?;
        Ok(())
    }
}

/// Copies `r` into `w` through a 1 MiB buffer; returns the bytes copied.
fn pump(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    n: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: blake3::Hasher::new(),
            n: 0,
        }
    }

    /// Fails unless what was read has digest `want`.
    fn check(&self, want: Digest, path: &std::path::Path) -> Result<(), RunError> {
        let got: Digest = self.hasher.finalize().into();
        if got == want {
            return Ok(());
        }
        Err(RunError::msg(format!(
            "{} has blake3 {} ({} bytes), not {} as the node's key says: it changed after nosa hashed it",
            path.display(),
            got.short(),
            self.n,
            want.short()
        )))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

/// One codec's encoder over `W`.
enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(codec: Codec, level: u32, w: W) -> io::Result<Self> {
        Ok(match codec {
            Codec::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::new(level),
            )),
            Codec::Xz => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .preset(level)
                    .check(liblzma::stream::Check::Crc64)
                    .threads(threads())
                    .encoder()
                    .map_err(io::Error::other)?;
                Encoder::Xz(liblzma::write::XzEncoder::new_stream(w, stream))
            }
            Codec::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, level as i32)?;
                e.include_checksum(true)?;
                e.multithread(threads())?;
                Encoder::Zstd(e)
            }
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// A decoder of `codec` over `r`, reading every member, stream or frame in it.
pub fn decoder<'a, R: Read + 'a>(codec: Codec, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            r,
        ))),
        Codec::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// A file written sparse: all-zero 4 KiB blocks are skipped (holes), runs of the others
/// written at once; [`Sparse::finish`] sets the length.
struct Sparse {
    file: fs_err::File,
    buf: Vec<u8>,
    /// The file offset `buf` starts at.
    pos: u64,
}

const SPARSE_BLOCK: usize = 4096;
const SPARSE_CHUNK: usize = 1 << 20;

impl Sparse {
    fn new(file: fs_err::File) -> Sparse {
        Sparse {
            file,
            buf: Vec::with_capacity(SPARSE_CHUNK),
            pos: 0,
        }
    }

    /// Writes the buffer's non-zero blocks at their offsets.
    fn drain(&mut self) -> io::Result<()> {
        let blocks: Vec<&[u8]> = self.buf.chunks(SPARSE_BLOCK).collect();
        let mut at = 0usize;
        let mut i = 0;
        while i < blocks.len() {
            if blocks[i].iter().all(|&b| b == 0) {
                at += blocks[i].len();
                i += 1;
                continue;
            }
            let start = at;
            while i < blocks.len() && !blocks[i].iter().all(|&b| b == 0) {
                at += blocks[i].len();
                i += 1;
            }
            self.file.seek(SeekFrom::Start(self.pos + start as u64))?;
            self.file.write_all(&self.buf[start..at])?;
        }
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.drain()?;
        self.file.set_len(self.pos)?;
        self.file.sync_all()
    }
}

impl Write for Sparse {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let k = (SPARSE_CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..k]);
        if self.buf.len() == SPARSE_CHUNK {
            self.drain()?;
        }
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nosa_cache::{EntryKind, Store};
    use nosa_engine::{BuildOptions, BuildReport, Engine, GraphBuilder, Rule, Status};

    use super::*;

    /// A disk-image-like input: a sparse stretch of zeros, text, random-ish bytes, zeros.
    fn sample(dir: &std::path::Path) -> (PathBuf, Digest) {
        let p = dir.join("disk.raw");
        let mut bytes = vec![0u8; 3 << 20];
        for (i, b) in bytes[1 << 20..(1 << 20) + 300_000].iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
        }
        bytes[2 << 20..(2 << 20) + 20].copy_from_slice(b"nestos compress test");
        fs_err::write(&p, &bytes).unwrap();
        (p.clone(), nosa_cache::hash_file(&p).unwrap())
    }

    fn engine(dir: &std::path::Path) -> Engine {
        Engine::new(dir, Store::open(dir.join("cache/store")).unwrap())
    }

    /// Builds one node; returns the report and its output's one file (blob path, digest).
    fn build_one(
        e: &Engine,
        id: &str,
        rule: Arc<dyn Rule>,
    ) -> (BuildReport, Option<(PathBuf, Digest)>) {
        let mut g = GraphBuilder::new();
        g.add(id, rule, Vec::new());
        let g = g.build().unwrap();
        let r = e
            .build(
                &g,
                &[0],
                &BuildOptions::default(),
                &mut |_: &nosa_engine::Event<'_>| {},
            )
            .unwrap();
        let out = (r.nodes[0].status != Status::Failed).then(|| {
            let good = e.state().nodes[id].good.unwrap();
            let tree = e.store().get_tree(&good.tree).unwrap();
            assert_eq!(tree.entries.len(), 1, "{tree:?}");
            let EntryKind::File { digest, .. } = tree.entries[0].kind else {
                panic!("not a file: {tree:?}")
            };
            (e.store().blob_path(&digest), digest)
        });
        (r, out)
    }

    #[test]
    fn codecs_by_name_and_extension() {
        for c in Codec::ALL {
            assert_eq!(Codec::parse(c.name()), Some(c));
            assert_eq!(Codec::of_path(&format!("a.qcow2.{}", c.ext())), Some(c));
            assert!(c.level(true) < c.level(false));
        }
        assert_eq!(Codec::parse("bzip2"), None);
        assert_eq!(Codec::of_path("nestos-qemu.x86_64.qcow2"), None);
        assert_eq!(
            Codec::ALL.map(Codec::ext),
            ["gz", "xz", "zst"],
            "coreos-assembler's names"
        );
    }

    #[test]
    fn each_codec_round_trips_through_the_engine_and_is_cached_the_second_time() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, input) = sample(tmp.path());
        let e = engine(tmp.path());
        for codec in Codec::ALL {
            for fast in [true, false] {
                let level = codec.level(fast);
                let rule = Arc::new(CompressRule {
                    input,
                    source: src.clone(),
                    codec,
                    level,
                });
                let id = format!("compress:x86_64:raw:{}", codec.name());
                let (r, out) = build_one(&e, &id, rule.clone());
                assert_eq!(r.nodes[0].status, Status::Ran, "{codec:?} {fast}: {r:?}");
                let (blob, compressed) = out.unwrap();
                let size = fs_err::metadata(&blob).unwrap().len();
                assert!(size < 400_000, "{codec:?} level {level}: {size} bytes");

                // The host's own tool reads it (not only our decoder).
                let tool = match codec {
                    Codec::Gzip => "gzip",
                    Codec::Xz => "xz",
                    Codec::Zstd => "zstd",
                };
                let cat = std::process::Command::new(tool)
                    .args(["-dc", blob.to_str().unwrap()])
                    .output()
                    .unwrap_or_else(|e| panic!("{tool} (Debian package {tool}): {e}"));
                assert!(cat.status.success(), "{tool} -dc failed");
                assert_eq!(cat.stdout, fs_err::read(&src).unwrap(), "{tool} -dc");

                let (again, _) = build_one(&e, &id, rule);
                assert_eq!(again.nodes[0].status, Status::Cached, "same key: cached");

                let un = Arc::new(UncompressRule {
                    input: compressed,
                    source: blob,
                    codec,
                });
                let uid = format!("uncompress:x86_64:raw:{}", codec.name());
                let (r, out) = build_one(&e, &uid, un);
                assert!(
                    matches!(r.nodes[0].status, Status::Ran | Status::Cached),
                    "{r:?}"
                );
                let (back, digest) = out.unwrap();
                assert_eq!(digest, input, "{codec:?}: decompressed = the input");
                assert_eq!(fs_err::read(&back).unwrap(), fs_err::read(&src).unwrap());
            }
        }
    }

    #[test]
    fn the_level_and_the_codec_are_in_the_key_and_the_source_path_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, input) = sample(tmp.path());
        let copy = tmp.path().join("elsewhere.raw");
        fs_err::copy(&src, &copy).unwrap();
        let e = engine(tmp.path());
        let rule = |source: &PathBuf, codec, level| {
            Arc::new(CompressRule {
                input,
                source: source.clone(),
                codec,
                level,
            })
        };
        let id = "compress:x86_64:raw:zstd";
        let (r, _) = build_one(&e, id, rule(&src, Codec::Zstd, 1));
        assert_eq!(r.nodes[0].status, Status::Ran);
        let (r, _) = build_one(&e, id, rule(&copy, Codec::Zstd, 1));
        assert_eq!(r.nodes[0].status, Status::Cached, "same content elsewhere");
        let (r, _) = build_one(&e, id, rule(&src, Codec::Zstd, 2));
        assert_eq!(r.nodes[0].status, Status::Ran, "another level");
        let (r, _) = build_one(&e, id, rule(&src, Codec::Xz, 1));
        assert_eq!(r.nodes[0].status, Status::Ran, "another codec");
    }

    #[test]
    fn a_source_that_is_not_what_the_key_says_fails_the_node() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, input) = sample(tmp.path());
        let e = engine(tmp.path());
        // The file changed after it was hashed.
        fs_err::write(&src, b"something else").unwrap();
        let (r, out) = build_one(
            &e,
            "compress:x86_64:raw:gzip",
            Arc::new(CompressRule {
                input,
                source: src.clone(),
                codec: Codec::Gzip,
                level: 1,
            }),
        );
        assert_eq!(r.nodes[0].status, Status::Failed);
        assert!(out.is_none());
        let err = r.nodes[0].error.as_deref().unwrap();
        assert!(err.contains("not") && err.contains(&input.short()), "{err}");

        let (r, _) = build_one(
            &e,
            "uncompress:x86_64:raw:gzip",
            Arc::new(UncompressRule {
                input,
                source: src,
                codec: Codec::Gzip,
            }),
        );
        assert_eq!(
            r.nodes[0].status,
            Status::Failed,
            "not gzip, and not the digest"
        );
    }

    #[test]
    fn decompressed_zeros_are_holes() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("sparse");
        let mut w = Sparse::new(fs_err::File::create(&p).unwrap());
        let mut data = vec![0u8; 8 << 20];
        data[5 << 20] = 1;
        data[(8 << 20) - 1] = 2;
        // In odd pieces, across the chunk boundaries.
        for piece in data.chunks(123_457) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(fs_err::read(&p).unwrap(), data);
        let m = fs_err::metadata(&p).unwrap();
        assert_eq!(m.len(), 8 << 20);
        assert!(
            m.blocks() * 512 <= 64 << 10,
            "{} blocks allocated",
            m.blocks()
        );
    }
}
