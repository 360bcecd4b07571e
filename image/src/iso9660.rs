//! A reader of an ISO 9660 image's primary directory tree, as coreos-installer and
//! nestos-installer read it: only the Primary Volume Descriptor's tree (Rock Ridge and Joliet
//! are ignored), names upper-case 8.3 with `;1` and a trailing `.` removed, each file one
//! extent at `LBA * 2048`. The live node checks its own ISO with it (the embed areas must be
//! where `kargs.json` and `igninfo.json` say), and tests look files up the installers' way.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::ImageError;

/// ISO 9660's logical block size.
pub const BLOCK: u64 = 2048;

/// A file or directory of the primary tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsoEntry {
    /// Its first block.
    pub lba: u64,
    /// Its length in bytes.
    pub size: u64,
    /// Whether it is a directory.
    pub dir: bool,
}

impl IsoEntry {
    /// Where its data starts in the image.
    pub fn offset(&self) -> u64 {
        self.lba * BLOCK
    }
}

/// The primary volume: its id, its size and every entry by path (`IMAGES/PXEBOOT/VMLINUZ`).
#[derive(Clone, Debug)]
pub struct IsoTree {
    /// The volume id, trailing spaces removed.
    pub volume_id: String,
    /// `volume_space_size * 2048`: the image may not be shorter.
    pub volume_bytes: u64,
    /// Entries by upper-case path, without `;1` and a trailing `.`.
    pub entries: BTreeMap<String, IsoEntry>,
}

impl IsoTree {
    /// The entry at `path` looked up as the installers do (upper-cased, exact match).
    pub fn get(&self, path: &str) -> Option<&IsoEntry> {
        self.entries
            .get(&path.trim_start_matches('/').to_uppercase())
    }
}

fn bad(path: &Path, what: impl std::fmt::Display) -> ImageError {
    ImageError::msg(format!("{}: not an ISO 9660 image: {what}", path.display()))
}

/// Reads the primary tree of the image at `path`.
pub fn read_tree(path: &Path) -> Result<IsoTree, ImageError> {
    let mut f = fs_err::File::open(path)?;
    let len = f.metadata()?.len();
    let mut pvd = [0u8; BLOCK as usize];
    f.seek(SeekFrom::Start(16 * BLOCK))?;
    f.read_exact(&mut pvd)
        .map_err(|e| bad(path, format!("no volume descriptor: {e}")))?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return Err(bad(path, "block 16 is not a primary volume descriptor"));
    }
    let u32le = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as u64;
    let volume_id = String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string();
    let volume_bytes = u32le(&pvd, 80) * BLOCK;
    if volume_bytes > len {
        return Err(bad(
            path,
            format!("the volume is {volume_bytes} bytes, the file {len}: it is incomplete"),
        ));
    }
    let root = &pvd[156..190];
    let mut entries = BTreeMap::new();
    let mut todo = vec![(String::new(), u32le(root, 2), u32le(root, 10))];
    while let Some((prefix, lba, size)) = todo.pop() {
        if size > 64 << 20 {
            return Err(bad(path, format!("directory {prefix:?} of {size} bytes")));
        }
        let mut data = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(lba * BLOCK))?;
        f.read_exact(&mut data)
            .map_err(|e| bad(path, format!("directory {prefix:?}: {e}")))?;
        let mut pos = 0usize;
        while pos < data.len() {
            let rec_len = data[pos] as usize;
            if rec_len == 0 {
                // Records do not cross blocks: the rest of this block is padding.
                pos = (pos / BLOCK as usize + 1) * BLOCK as usize;
                continue;
            }
            let rec = data
                .get(pos..pos + rec_len)
                .filter(|r| r.len() >= 33)
                .ok_or_else(|| bad(path, format!("directory {prefix:?}: truncated record")))?;
            let name_len = rec[32] as usize;
            let raw = rec
                .get(33..33 + name_len)
                .ok_or_else(|| bad(path, format!("directory {prefix:?}: bad name length")))?;
            pos += rec_len;
            if raw == [0] || raw == [1] {
                continue;
            }
            let mut name = String::from_utf8_lossy(raw).into_owned();
            if let Some(i) = name.find(';') {
                name.truncate(i);
            }
            if name.ends_with('.') {
                name.pop();
            }
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let entry = IsoEntry {
                lba: u32le(rec, 2),
                size: u32le(rec, 10),
                dir: rec[25] & 2 != 0,
            };
            if entry.dir {
                todo.push((full.clone(), entry.lba, entry.size));
            }
            entries.insert(full, entry);
        }
    }
    Ok(IsoTree {
        volume_id,
        volume_bytes,
        entries,
    })
}
