//! Packed partition images: a filesystem image stored as its non-zero 4 KiB blocks and a
//! table of where they go, so that the store hashes and keeps tens of MiB for a 2 GiB root
//! filesystem instead of its logical size.
//!
//! Why: a blob's name is the BLAKE3 of its whole content, holes included, and BLAKE3 cannot
//! skip runs of zeros (each 1 KiB chunk's chaining value depends on its position). Storing
//! the example's 1.5 GiB sparse root image cost ~0.2 s of hashing per build (two cores), for
//! ~50 MB of non-zero blocks. The packed form depends only on the image's bytes (zero blocks
//! are left out whether or not the file system stored them as holes), so it is as
//! reproducible as the image.
//!
//! Layout: the data blocks, then the runs as `(offset, length)` pairs of little-endian u64,
//! then the trailer: the image's length, the number of runs, and [`MAGIC`].

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::ImageError;

/// The last eight bytes of a packed image.
pub const MAGIC: &[u8; 8] = b"NOSASPK1";

const BLOCK: u64 = 4096;
const TRAILER: u64 = 24;

/// Calls `f(offset, bytes)` for every `block`-byte block of the first `len` bytes of `file`
/// that holds a non-zero byte, in order (the last block may be shorter). Only the data
/// extents (`SEEK_DATA`/`SEEK_HOLE`) are read; an extent boundary inside a block widens to
/// the block, once (the bytes outside it read as zeros either way). `block` must divide
/// 1 MiB. The one scan behind packing, the qcow2 writer and copying the ESP into a disk.
pub(crate) fn each_nonzero_block(
    file: &fs_err::File,
    len: u64,
    block: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    const CHUNK: usize = 1 << 20;
    debug_assert!(block > 0 && (CHUNK as u64).is_multiple_of(block));
    let extents = nosa_cache::data_extents(file.file(), len)
        .map_err(|e| ImageError::msg(format!("{}: seeking data: {e}", file.path().display())))?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    for extent in extents {
        let mut at = (extent.start - extent.start % block).max(done);
        let end = extent.end.div_ceil(block).saturating_mul(block).min(len);
        done = done.max(end);
        while at < end {
            let n = (end - at).min(CHUNK as u64) as usize;
            file.file().read_exact_at(&mut buf[..n], at)?;
            for (i, bytes) in buf[..n].chunks(block as usize).enumerate() {
                if bytes.iter().any(|&b| b != 0) {
                    f(at + i as u64 * block, bytes)?;
                }
            }
            at += n as u64;
        }
    }
    Ok(())
}

/// Packs the image at `img` into `packed` (replaced); returns the number of data bytes kept.
pub fn pack(img: &Path, packed: &Path) -> Result<u64, ImageError> {
    let input = fs_err::File::open(img)?;
    let len = input.metadata()?.len();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, fs_err::File::create(packed)?);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut kept = 0u64;
    each_nonzero_block(&input, len, BLOCK, |off, block| {
        let blen = block.len() as u64;
        match runs.last_mut() {
            Some((o, l)) if *o + *l == off => *l += blen,
            _ => runs.push((off, blen)),
        }
        out.write_all(block)?;
        kept += blen;
        Ok(())
    })?;
    for (o, l) in &runs {
        out.write_all(&o.to_le_bytes())?;
        out.write_all(&l.to_le_bytes())?;
    }
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&(runs.len() as u64).to_le_bytes())?;
    out.write_all(MAGIC)?;
    out.into_inner()
        .map_err(|e| ImageError::msg(format!("{}: {}", packed.display(), e.error())))?;
    Ok(kept)
}

/// The image's length and its runs, checked to be in order, inside the image and to account
/// for exactly the data bytes before the table.
fn read_table(packed: &Path, f: &fs_err::File) -> Result<(u64, Vec<(u64, u64)>), ImageError> {
    let bad =
        |why: &str| ImageError::msg(format!("{}: not a packed image: {why}", packed.display()));
    let size = f.metadata()?.len();
    if size < TRAILER {
        return Err(bad("too short"));
    }
    let mut trailer = [0u8; TRAILER as usize];
    f.file().read_exact_at(&mut trailer, size - TRAILER)?;
    if &trailer[16..] != MAGIC {
        return Err(bad("no trailer"));
    }
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let len = u64_at(&trailer, 0);
    let n = u64_at(&trailer, 8);
    let table_len = n
        .checked_mul(16)
        .filter(|t| *t <= size - TRAILER)
        .ok_or_else(|| bad("run table larger than the file"))?;
    let mut table = vec![0u8; table_len as usize];
    let data_len = size - TRAILER - table_len;
    f.file().read_exact_at(&mut table, data_len)?;
    let mut runs = Vec::with_capacity(n as usize);
    let (mut end, mut total) = (0u64, 0u64);
    for pair in table.chunks(16) {
        let (o, l) = (u64_at(pair, 0), u64_at(pair, 8));
        let stop = o.checked_add(l).filter(|s| *s <= len);
        if o < end || l == 0 || stop.is_none() {
            return Err(bad("runs out of order or outside the image"));
        }
        end = o + l;
        total += l;
        runs.push((o, l));
    }
    if total != data_len {
        return Err(bad("the runs do not account for the data"));
    }
    Ok((len, runs))
}

/// The length of the image `packed` holds.
pub fn unpacked_len(packed: &Path) -> Result<u64, ImageError> {
    let f = fs_err::File::open(packed)?;
    Ok(read_table(packed, &f)?.0)
}

/// Writes the image `packed` holds into `dst` at `offset`, data blocks only (what lies between
/// them is left as it is: a fresh sparse file reads zeros there).
pub fn unpack_at(packed: &Path, dst: &fs_err::File, offset: u64) -> Result<(), ImageError> {
    let f = fs_err::File::open(packed)?;
    let (_, runs) = read_table(packed, &f)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut from = 0u64;
    for (o, l) in runs {
        let mut done = 0;
        while done < l {
            let n = (l - done).min(buf.len() as u64) as usize;
            f.file().read_exact_at(&mut buf[..n], from)?;
            dst.file().write_all_at(&buf[..n], offset + o + done)?;
            done += n as u64;
            from += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A sparse file of `len` bytes with `writes` (offset, byte, count) applied.
    fn image(dir: &Path, len: u64, writes: &[(u64, u8, usize)]) -> std::path::PathBuf {
        let p = dir.join("img");
        let f = fs_err::File::create(&p).unwrap();
        f.set_len(len).unwrap();
        for &(o, b, n) in writes {
            let o = o % len;
            let n = n.min((len - o) as usize);
            f.file().write_all_at(&vec![b; n], o).unwrap();
        }
        p
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Unpacking into a fresh sparse file at an offset gives back the image's bytes there,
        /// zeros written explicitly included, and keeps only non-zero blocks.
        #[test]
        fn unpack_gives_back_the_image(
            len in 1u64..(3 << 20),
            writes in proptest::collection::vec((0u64..(3 << 20), 0u8..3, 1usize..20_000), 0..12),
            offset in 0u64..3,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let img = image(dir.path(), len, &writes);
            let packed = dir.path().join("packed");
            let kept = pack(&img, &packed).unwrap();
            prop_assert_eq!(unpacked_len(&packed).unwrap(), len);
            let want = fs_err::read(&img).unwrap();
            let nonzero_blocks = want.chunks(BLOCK as usize).filter(|b| b.iter().any(|&x| x != 0));
            prop_assert_eq!(kept, nonzero_blocks.map(|b| b.len() as u64).sum::<u64>());
            let dst_path = dir.path().join("disk");
            let dst = fs_err::File::create(&dst_path).unwrap();
            let at = offset * BLOCK;
            dst.set_len(at + len + BLOCK).unwrap();
            unpack_at(&packed, &dst, at).unwrap();
            let got = fs_err::read(&dst_path).unwrap();
            prop_assert!(got[..at as usize].iter().all(|&b| b == 0));
            prop_assert!(got[(at + len) as usize..].iter().all(|&b| b == 0));
            prop_assert!(got[at as usize..(at + len) as usize] == want[..]);
        }
    }

    #[test]
    fn a_damaged_table_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), 1 << 20, &[(8192, 7, 100), (500_000, 9, 10)]);
        let packed = dir.path().join("packed");
        pack(&img, &packed).unwrap();
        let mut bytes = fs_err::read(&packed).unwrap();
        // The second run's offset moved before the first's end.
        let table = bytes.len() - TRAILER as usize - 32;
        bytes[table + 16..table + 24].copy_from_slice(&0u64.to_le_bytes());
        let bad = dir.path().join("bad");
        fs_err::write(&bad, &bytes).unwrap();
        let e = unpacked_len(&bad).unwrap_err().to_string();
        assert!(e.contains("out of order"), "{e}");
        fs_err::write(&bad, b"not a packed image at all").unwrap();
        assert!(
            unpacked_len(&bad)
                .unwrap_err()
                .to_string()
                .contains("no trailer")
        );
    }
}
