//! Up-to-date check for fixtures/out: a blake3 digest of the generator binary, the package list and file sources, the arch and the resolved .debs.
//!
//! What enters the digest: the bytes of the running xtask executable (so any
//! code change rebuilds), every file under fixtures/distro/ (path and
//! content), the target arch, the package selection, and for each Debian
//! package its name, version, arch and .deb size (Debian never reuses a
//! version, so that identifies the content). What is left out: mtimes, the
//! output directory's path, the host's createrepo_c/depmod versions (a
//! different host may produce different repodata; `--force` rebuilds).

use std::path::Path;

use crate::Result;
use crate::deb::Deb;

/// Bumped when the output layout changes in a way the binary hash would miss.
const STAMP_FORMAT: &str = "nosa-fixture-distro-stamp/1";

/// Digest of every input of a generation.
pub fn inputs_digest(spec_dir: &Path, arch: &str, selection: &str, debs: &[Deb]) -> Result<String> {
    let mut h = blake3::Hasher::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("format", STAMP_FORMAT.as_bytes());
    let exe = std::env::current_exe()?;
    let exe_digest = blake3::hash(&fs_err::read(&exe)?);
    field("generator", exe_digest.as_bytes());
    field("arch", arch.as_bytes());
    field("selection", selection.as_bytes());
    for entry in walkdir::WalkDir::new(spec_dir).sort_by_file_name() {
        let entry = entry?;
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(spec_dir)?
                .to_string_lossy()
                .into_owned();
            field("file", rel.as_bytes());
            field("content", &fs_err::read(entry.path())?);
        }
    }
    for d in debs {
        field(
            "deb",
            format!("{} {} {} {}", d.name, d.version, d.arch, d.size()?).as_bytes(),
        );
    }
    Ok(h.finalize().to_hex().to_string())
}

/// The digest recorded by the last complete generation in `out`, if any.
pub fn read(out: &Path) -> Option<String> {
    fs_err::read_to_string(out.join("stamp"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Records `digest`; written last, after the repository is in place.
pub fn write(out: &Path, digest: &str) -> Result<()> {
    fs_err::write(out.join("stamp"), format!("{digest}\n"))?;
    Ok(())
}
