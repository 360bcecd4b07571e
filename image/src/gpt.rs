//! A GUID partition table written by hand: protective MBR, primary and backup headers and
//! entry arrays, for 512- or 4096-byte logical blocks, with caller-chosen GUIDs.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::ImageError;

/// Number of partition entries (the usual 128 x 128 bytes = 16 KiB array).
const ENTRIES: u64 = 128;
/// Size of one partition entry.
const ENTRY_SIZE: u64 = 128;

/// A GUID in its text form, stored as the 16 bytes GPT wants (first three fields little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`.
    pub fn parse(s: &str) -> Result<Guid, ImageError> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 || s.len() != 36 {
            return Err(ImageError::msg(format!("not a GUID: {s}")));
        }
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| ImageError::msg(format!("not a GUID: {s}")))?;
        }
        Ok(Guid::from_be_bytes(b))
    }

    /// From the 16 bytes in text order (as a UUID is written).
    pub fn from_be_bytes(b: [u8; 16]) -> Guid {
        let mut g = b;
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
        Guid(g)
    }

    /// A version-4-shaped GUID derived from a seed and a purpose, so images are reproducible.
    pub fn derive(seed: &str, purpose: &str) -> Guid {
        Guid::from_be_bytes(derived_uuid_bytes(seed, purpose))
    }

    /// The text form, upper case.
    pub fn to_text(self) -> String {
        let mut b = self.0;
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        uuid_text(&b).to_uppercase()
    }
}

/// 16 bytes from blake3(seed, purpose), with the RFC 4122 version 4 and variant bits set.
pub(crate) fn derived_uuid_bytes(seed: &str, purpose: &str) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(b"nosa-image-guid-v1\0");
    h.update(seed.as_bytes());
    h.update(b"\0");
    h.update(purpose.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// Lower-case text form of 16 bytes in text order.
pub(crate) fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Well-known partition type GUIDs.
pub mod types {
    /// BIOS boot partition (`EF02`).
    pub const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
    /// EFI system partition (`EF00`).
    pub const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    /// Linux filesystem data (`8300`).
    pub const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
}

/// One partition, in logical blocks.
#[derive(Clone, Debug)]
pub struct GptPartition {
    /// Partition type GUID.
    pub type_guid: Guid,
    /// Unique partition GUID.
    pub unique_guid: Guid,
    /// First block.
    pub first_lba: u64,
    /// Last block (inclusive).
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: u64,
    /// Name (at most 36 UTF-16 code units).
    pub name: String,
}

/// A whole table.
#[derive(Clone, Debug)]
pub struct Gpt {
    /// Logical block size: 512 or 4096.
    pub block_size: u64,
    /// Disk size in bytes (a multiple of the block size).
    pub disk_size: u64,
    /// The disk GUID.
    pub disk_guid: Guid,
    /// The partitions, in table order.
    pub partitions: Vec<GptPartition>,
}

/// CRC-32 (IEEE 802.3, reflected), as GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

impl Gpt {
    /// Blocks taken by one entry array.
    pub fn entry_blocks(&self) -> u64 {
        (ENTRIES * ENTRY_SIZE).div_ceil(self.block_size)
    }

    /// The last block of the disk.
    pub fn last_lba(&self) -> u64 {
        self.disk_size / self.block_size - 1
    }

    /// First block a partition may use.
    pub fn first_usable(&self) -> u64 {
        2 + self.entry_blocks()
    }

    /// Last block a partition may use.
    pub fn last_usable(&self) -> u64 {
        self.last_lba() - 1 - self.entry_blocks()
    }

    fn entries(&self) -> Result<Vec<u8>, ImageError> {
        if self.partitions.len() as u64 > ENTRIES {
            return Err(ImageError::msg("too many partitions"));
        }
        let mut buf = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            if p.first_lba < self.first_usable()
                || p.last_lba > self.last_usable()
                || p.last_lba < p.first_lba
            {
                return Err(ImageError::msg(format!(
                    "partition {} ({}..{}) outside the usable blocks {}..{}",
                    i + 1,
                    p.first_lba,
                    p.last_lba,
                    self.first_usable(),
                    self.last_usable()
                )));
            }
            let e = &mut buf[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.0);
            e[16..32].copy_from_slice(&p.unique_guid.0);
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            let units: Vec<u16> = p.name.encode_utf16().collect();
            if units.len() > 36 {
                return Err(ImageError::msg(format!(
                    "partition name too long: {}",
                    p.name
                )));
            }
            for (j, u) in units.iter().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        Ok(buf)
    }

    fn header(&self, my_lba: u64, alt_lba: u64, entries_lba: u64, entries_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; self.block_size as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alt_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable().to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.0);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[0..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The protective MBR's partition table and signature (bytes 446..512 of block 0).
    pub fn protective_mbr_tail(&self) -> [u8; 66] {
        let mut t = [0u8; 66];
        let blocks = self.disk_size / self.block_size - 1;
        let size = u32::try_from(blocks).unwrap_or(u32::MAX);
        // status, CHS start (0/0/2), type 0xEE, CHS end (max), first LBA 1, size
        t[0] = 0x00;
        t[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
        t[4] = 0xee;
        t[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        t[8..12].copy_from_slice(&1u32.to_le_bytes());
        t[12..16].copy_from_slice(&size.to_le_bytes());
        t[64] = 0x55;
        t[65] = 0xaa;
        t
    }

    /// Writes the protective MBR tail, both headers and both entry arrays into `image`, which
    /// must already be `disk_size` bytes long. Boot code (bytes 0..440 of block 0) is left alone.
    pub fn write(&self, image: &Path) -> Result<(), ImageError> {
        if !self.disk_size.is_multiple_of(self.block_size) || !matches!(self.block_size, 512 | 4096)
        {
            return Err(ImageError::msg(format!(
                "bad disk geometry: {} bytes, block size {}",
                self.disk_size, self.block_size
            )));
        }
        let entries = self.entries()?;
        let ecrc = crc32(&entries);
        let last = self.last_lba();
        let backup_entries = last - self.entry_blocks();
        let primary = self.header(1, last, 2, ecrc);
        let backup = self.header(last, 1, backup_entries, ecrc);
        let mut f = fs_err::OpenOptions::new().write(true).open(image)?;
        let bs = self.block_size;
        let mut put = |off: u64, data: &[u8]| -> Result<(), ImageError> {
            f.seek(SeekFrom::Start(off))?;
            f.write_all(data)?;
            Ok(())
        };
        put(446, &self.protective_mbr_tail())?;
        put(bs, &primary)?;
        put(2 * bs, &entries)?;
        put(backup_entries * bs, &entries)?;
        put(last * bs, &backup)?;
        f.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn guid_round_trip_and_layout() {
        let g = Guid::parse(types::ESP).unwrap();
        assert_eq!(g.to_text(), types::ESP);
        // First field little-endian on disk.
        assert_eq!(&g.0[0..4], &[0x28, 0x73, 0x2a, 0xc1]);
        assert!(Guid::parse("nope").is_err());
    }

    #[test]
    fn derived_guids_are_stable_and_distinct() {
        let a = Guid::derive("seed", "root");
        assert_eq!(a, Guid::derive("seed", "root"));
        assert_ne!(a, Guid::derive("seed", "boot"));
        assert_eq!(&a.to_text()[14..15], "4");
    }
}
