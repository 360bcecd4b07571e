//! The `unpack` rule: one RPM's payload as a tree (files, directories, symlinks, hardlinks with
//! their modes), plus `meta.json` with what a tree cannot hold (owners, file capabilities,
//! ghost files, scriptlets) for the compose. Entries that would escape the tree, and device
//! nodes, are refused with an error naming the package and the path.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nosa_cache::EntryKind;
use nosa_engine::{Params, Portable, Rule, RunContext, RunError};
use rpm::{FileFlags, FileType};
use serde::Serialize;

/// Unpacks the RPM that its single dependency (an `rpm:` node) produced.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UnpackRule {
    nevra: String,
}

impl UnpackRule {
    /// The rule for package `nevra`.
    pub fn new(nevra: &str) -> Self {
        UnpackRule {
            nevra: nevra.to_string(),
        }
    }
}

/// A scriptlet: interpreter and body.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Script {
    /// Interpreter and arguments (`/bin/sh` when the header names none).
    pub program: Vec<String>,
    /// The script text.
    pub script: String,
}

/// `meta.json` of an unpacked package.
#[derive(Debug, Serialize, Default)]
pub struct UnpackMeta {
    /// name-epoch:version-release.arch as the header says.
    pub nevra: String,
    /// Package name.
    pub name: String,
    /// Paths (absolute in the OS) not owned by root:root, with `user:group`.
    pub owners: BTreeMap<String, String>,
    /// Paths with file capabilities (text form).
    pub caps: BTreeMap<String, String>,
    /// `%ghost` paths: owned but not in the payload.
    pub ghosts: Vec<String>,
    /// `%config` paths.
    pub config: Vec<String>,
    /// Hardlink groups: each group's paths share one inode.
    pub hardlinks: Vec<Vec<String>>,
    /// Scriptlets by phase (`pretrans`, `pre`, `post`, `posttrans`).
    pub scripts: BTreeMap<String, Script>,
}

impl Rule for UnpackRule {
    fn kind(&self) -> &str {
        "unpack"
    }

    fn version(&self) -> u32 {
        // 2: headers over rpm's limits refused before they are read.
        2
    }

    fn params(&self, p: &mut Params) {
        p.add("nevra", &self.nevra);
    }

    fn portable(&self) -> Option<Portable> {
        // nosa's own code on the package's blob: nothing of the host.
        Some(Portable {
            spec: serde_json::to_string(self).ok()?,
            tools: vec![],
        })
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let [dep] = ctx.deps else {
            return Err(RunError::msg("unpack needs exactly one rpm dependency"));
        };
        let tree = ctx.dep_tree(dep)?;
        let rpm_blob = tree
            .entries
            .iter()
            .find_map(|e| match &e.kind {
                EntryKind::File { digest, .. } if e.path.ends_with(".rpm") => Some(*digest),
                _ => None,
            })
            .ok_or_else(|| RunError::msg(format!("{} produced no .rpm file", dep.id)))?;
        let path = ctx.store().blob_path(&rpm_blob);
        let meta = unpack(&path, &ctx.out.join("root"), &self.nevra)?;
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| RunError::msg(e.to_string()))?;
        fs_err::write(ctx.out.join("meta.json"), json)?;
        Ok(())
    }
}

fn err(nevra: &str, path: &str, what: impl std::fmt::Display) -> RunError {
    RunError::msg(format!("package {nevra}: {path}: {what}"))
}

/// The tree-relative path of an RPM entry, refusing anything that would leave the tree.
fn safe_rel(nevra: &str, abs: &Path) -> Result<PathBuf, RunError> {
    let shown = abs.display().to_string();
    let mut rel = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => rel.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(err(nevra, &shown, "path escapes the tree (`..`)"));
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(err(nevra, &shown, "empty path"));
    }
    Ok(rel)
}

/// Creates the parent directories of `rel` under `root`, refusing to go through a symlink (a
/// package could otherwise plant `/x -> /etc` and then write `/x/passwd` outside the tree).
fn ensure_parents(root: &Path, rel: &Path, nevra: &str) -> Result<PathBuf, RunError> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match cur.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(err(
                        nevra,
                        &format!("/{}", rel.display()),
                        format!(
                            "parent /{} is not a directory (a symlink would let the entry escape the tree)",
                            cur.strip_prefix(root).unwrap_or(&cur).display()
                        ),
                    ));
                }
                Err(_) => fs_err::create_dir(&cur)?,
            }
        }
    }
    Ok(root.join(rel))
}

/// rpm's own limits on a header (`hdrchkTags`, `hdrchkData`): a header beyond them is hostile
/// or broken, and reading it would allocate what it claims.
const HEADER_MAX_ENTRIES: u32 = 0xffff;
const HEADER_MAX_DATA: u32 = 0x0fff_ffff;

/// Checks the lead and the two headers' sizes of the package `bytes` before anything reads
/// them: an index or data area over rpm's limits, or a file that ends inside a header, is
/// refused by name.
fn check_headers(bytes: &[u8], nevra: &str) -> Result<(), RunError> {
    let len = bytes.len() as u64;
    let Some(lead) = bytes.get(..96) else {
        return Err(err(
            nevra,
            "lead",
            "the file is shorter than an RPM lead (96 bytes)",
        ));
    };
    if lead[..4] != [0xed, 0xab, 0xee, 0xdb] {
        return Err(err(nevra, "lead", "not an RPM (no lead magic)"));
    }
    let mut at = 96u64;
    for (which, pad) in [("signature header", true), ("header", false)] {
        let intro = usize::try_from(at)
            .ok()
            .and_then(|a| bytes.get(a..a.checked_add(16)?))
            .ok_or_else(|| err(nevra, which, "the file ends inside it (truncated)"))?;
        if intro[..4] != [0x8e, 0xad, 0xe8, 0x01] {
            return Err(err(nevra, which, "no header magic"));
        }
        let il = u32::from_be_bytes(intro[8..12].try_into().expect("4 bytes"));
        let dl = u32::from_be_bytes(intro[12..16].try_into().expect("4 bytes"));
        if il == 0 || il > HEADER_MAX_ENTRIES {
            return Err(err(
                nevra,
                which,
                format!(
                    "{il} index entries, over rpm's limit of {HEADER_MAX_ENTRIES} (a hostile or broken package)"
                ),
            ));
        }
        if dl > HEADER_MAX_DATA {
            return Err(err(
                nevra,
                which,
                format!(
                    "{dl} bytes of data, over rpm's limit of {HEADER_MAX_DATA} (a hostile or broken package)"
                ),
            ));
        }
        let end = at + 16 + u64::from(il) * 16 + u64::from(dl);
        if end > len {
            return Err(err(
                nevra,
                which,
                format!("it claims {end} bytes, the file has {len} (truncated)"),
            ));
        }
        check_entries(&bytes[at as usize..end as usize], il, dl, which, nevra)?;
        // The signature header is padded to 8 bytes; a file that ends in the padding ends
        // inside the next header, which says so.
        at = if pad { end.div_ceil(8) * 8 } else { end };
    }
    Ok(())
}

/// Checks each index entry of a header (`h`: from its magic to the end of its data) as rpm does before it trusts one: a
/// known type, a count within reason, and data that lies inside the data area (strings
/// NUL-terminated there). The rpm crate indexes the data area with these numbers unchecked.
fn check_entries(h: &[u8], il: u32, dl: u32, which: &str, nevra: &str) -> Result<(), RunError> {
    let data = &h[16 + il as usize * 16..];
    debug_assert_eq!(data.len(), dl as usize);
    let be = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    for i in 0..il as usize {
        let e = 16 + i * 16;
        let (tag, ty, offset, count) = (be(h, e), be(h, e + 4), be(h, e + 8), be(h, e + 12));
        let bad = |what: String| {
            err(
                nevra,
                which,
                format!("index entry {i} (tag {tag}): {what} (a hostile or broken package)"),
            )
        };
        if count == 0 || count > HEADER_MAX_DATA {
            return Err(bad(format!("count {count}")));
        }
        let start = offset as usize;
        if start > data.len() {
            return Err(bad(format!("offset {offset} past the {dl}-byte data area")));
        }
        let size = match ty {
            0 => 0,
            1 | 2 | 7 => 1,
            3 => 2,
            4 => 4,
            5 => 8,
            // Strings: `count` NUL-terminated strings inside the data area.
            6 | 8 | 9 => {
                let nuls = data[start..]
                    .iter()
                    .filter(|&&b| b == 0)
                    .take(count as usize)
                    .count();
                if nuls < count as usize {
                    return Err(bad(format!(
                        "{count} strings at offset {offset} run past the data area"
                    )));
                }
                continue;
            }
            t => return Err(bad(format!("unknown type {t}"))),
        };
        if start + count as usize * size > data.len() {
            return Err(bad(format!(
                "{count} values of {size} bytes at offset {offset} run past the {dl}-byte data area"
            )));
        }
    }
    Ok(())
}

/// The package `bytes` (of package `nevra`, for messages) as the rpm crate reads it, once its
/// headers are within rpm's limits.
pub fn read_package(bytes: &[u8], nevra: &str) -> Result<rpm::Package, RunError> {
    check_headers(bytes, nevra)?;
    rpm::Package::parse(&mut std::io::Cursor::new(bytes)).map_err(|e| err(nevra, "payload", e))
}

/// Unpacks the package at `rpm_path` under `root`.
pub fn unpack(rpm_path: &Path, root: &Path, nevra: &str) -> Result<UnpackMeta, RunError> {
    let pkg = read_package(&fs_err::read(rpm_path)?, nevra)?;
    let md = &pkg.metadata;
    let mut meta = UnpackMeta {
        nevra: md
            .get_nevra()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| nevra.to_string()),
        name: md.get_name().unwrap_or_default().to_string(),
        ..Default::default()
    };
    for (phase, s) in [
        ("pretrans", md.get_pre_trans_script()),
        ("pre", md.get_pre_install_script()),
        ("post", md.get_post_install_script()),
        ("posttrans", md.get_post_trans_script()),
    ] {
        if let Ok(s) = s {
            meta.scripts.insert(
                phase.into(),
                Script {
                    program: s.program.unwrap_or_else(|| vec!["/bin/sh".into()]),
                    script: s.script,
                },
            );
        }
    }
    fs_err::create_dir_all(root)?;
    // Hardlink members without payload content are linked once their content is written.
    let mut pending: Vec<(PathBuf, String)> = Vec::new();
    let mut by_digest: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let files = pkg.files().map_err(|e| err(nevra, "payload", e))?;
    for f in files {
        let f = f.map_err(|e| err(nevra, "payload", e))?;
        let e = &f.metadata;
        let abs = e.path();
        let shown = abs.display().to_string();
        let rel = safe_rel(nevra, &abs)?;
        if e.flags().contains(FileFlags::GHOST) {
            meta.ghosts.push(shown);
            continue;
        }
        if e.flags().contains(FileFlags::CONFIG) {
            meta.config.push(shown.clone());
        }
        if e.user() != "root" || e.group() != "root" {
            meta.owners
                .insert(shown.clone(), format!("{}:{}", e.user(), e.group()));
        }
        if let Some(c) = e.caps().filter(|c| !c.is_empty()) {
            meta.caps.insert(shown.clone(), c.to_string());
        }
        let mode = u32::from(e.permissions());
        let target = ensure_parents(root, &rel, nevra)?;
        match e.file_type() {
            FileType::Dir => {
                match target.symlink_metadata() {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(err(nevra, &shown, "a directory replaces a file")),
                    Err(_) => fs_err::create_dir(&target)?,
                }
                dir_modes.push((target, mode));
            }
            FileType::SymbolicLink => {
                if target.symlink_metadata().is_ok() {
                    return Err(err(nevra, &shown, "listed twice"));
                }
                let link = e.linkto().unwrap_or_default();
                std::os::unix::fs::symlink(link, &target).map_err(|io| err(nevra, &shown, io))?;
            }
            FileType::Regular => {
                let key = e
                    .digest()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| shown.clone());
                match f.content() {
                    Some(content) if !content.is_empty() || e.size() == 0 => {
                        if target.symlink_metadata().is_ok() {
                            return Err(err(nevra, &shown, "listed twice"));
                        }
                        fs_err::write(&target, content)?;
                        fs_err::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
                        by_digest.entry(key).or_insert(target);
                    }
                    _ => pending.push((target, key)),
                }
            }
            other => {
                return Err(err(
                    nevra,
                    &shown,
                    format!(
                        "{other:?} entries are not allowed in an OS tree (device nodes belong in /dev at runtime)"
                    ),
                ));
            }
        }
    }
    let mut groups: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (target, key) in pending {
        let Some(first) = by_digest.get(&key) else {
            return Err(err(
                nevra,
                &format!(
                    "/{}",
                    target.strip_prefix(root).unwrap_or(&target).display()
                ),
                "regular file without content and no hardlink partner",
            ));
        };
        fs_err::hard_link(first, &target)?;
        let name = |p: &Path| format!("/{}", p.strip_prefix(root).unwrap_or(p).display());
        groups
            .entry(first.clone())
            .or_insert_with(|| vec![name(first)])
            .push(name(&target));
    }
    meta.hardlinks = groups.into_values().collect();
    // Directory modes last, so that read-only directories could be filled first.
    for (d, mode) in dir_modes {
        fs_err::set_permissions(&d, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(meta)
}
