//! The live ISO's kernel arguments: the string the live system boots with, the config's
//! `live/` templates with it substituted, and `kargs.json`, which tells coreos-installer and
//! nestos-installer where in those files the arguments sit so that `iso kargs modify` can
//! rewrite them in place.
//!
//! A template line holds `@@KERNEL-ARGS@@` followed by a literal tail, and a later line is a
//! run of `#` ended by ` NESTOS_KARG_EMBED_AREA` (or `COREOS_`). The embed area starts where
//! `@@KERNEL-ARGS@@` was and ends before the run's last `#`: the arguments, a newline, and
//! `#` padding fill it, and the marker line's remainder stays a comment for GRUB and isolinux.
//! Every templated file must give the same area length and the same arguments. This is the
//! first piece of the live artifacts (docs/plans/live.md, step 1); no node uses it yet.

use serde::Serialize;

/// Where the arguments go in a template.
pub const PLACEHOLDER: &str = "@@KERNEL-ARGS@@";

/// coreos-installer reads at most this many bytes per embed area.
pub const MAX_AREA: usize = 2048;

/// Keys of the metal image's arguments that the live system does not take: the first-boot and
/// platform flags come from the template's tail, the console from the template, and the root
/// is the live image's own (a `root=` would make systemd mount another `/sysroot`).
const DROPPED: &[&str] = &[
    "ignition.firstboot",
    "console",
    "ignition.platform.id",
    "ostree",
    "root",
    "rw",
    "rootflags",
    "rootfstype",
];

/// `kargs.json` at the ISO's `<variant>/kargs.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KargsJson {
    /// The arguments as built (what `iso kargs reset` restores).
    pub default: String,
    /// The templated files, sorted by path.
    pub files: Vec<KargsFile>,
    /// The length of every embed area, in bytes.
    pub size: usize,
}

/// One templated file in [`KargsJson`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KargsFile {
    /// Path on the ISO, relative to its root.
    pub path: String,
    /// Byte offset of the embed area in the file.
    pub offset: usize,
    /// What fills the area after the arguments.
    pub pad: char,
    /// What ends the arguments.
    pub end: char,
}

/// Why the live templates cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KargsError {
    /// The templates disagree on the area or its arguments.
    #[error(
        "live/{0} and live/{1} disagree on the kernel-argument embed area (length or arguments): \
         the templates must have the same tail after {PLACEHOLDER} and the same number of `#`"
    )]
    Mismatch(String, String),
    /// The area is larger than coreos-installer reads.
    #[error(
        "live/{0}: the embed area is {1} bytes, more than the {MAX_AREA} an installer reads: \
         shorten the marker line's run of `#`"
    )]
    Size(String, usize),
    /// A directory name longer than ISO 9660 level 1 keeps (8 characters): the installers look
    /// the file up by its primary-volume name, which would be cut.
    #[error(
        "live/{0}: the directory name {1:?} is longer than 8 characters, which an ISO 9660 \
         primary volume cuts, so the installers would not find the file: rename the directory"
    )]
    LongDirectory(String, String),
}

/// The live system's arguments: the metal image's `options` without [`DROPPED`] keys, then
/// `<variant>.liveiso=<volume id>`.
pub fn live_kargs(metal_options: &str, variant: &str, volume_id: &str) -> String {
    let mut args: Vec<&str> = metal_options
        .split_whitespace()
        .filter(|a| {
            let key = a.split_once('=').map_or(*a, |(k, _)| k);
            !DROPPED.contains(&key) && !key.starts_with("$ignition_firstboot")
        })
        .collect();
    let live = format!("{variant}.liveiso={volume_id}");
    args.push(&live);
    args.join(" ")
}

/// A file of the config's `live/` directory: its path there and its content.
pub type LiveFile = (String, Vec<u8>);

/// Substitutes `kargs` into each template of `files` (path under `live/`, content) that has
/// [`PLACEHOLDER`]; returns every file (templated or not) and the `kargs.json` describing
/// the templated ones that have an embed area, or `None` for it when none has. A template
/// without a marker line (s390x's `zipl.prm`) is substituted and has no area.
pub fn template(
    files: &[LiveFile],
    kargs: &str,
) -> Result<(Vec<LiveFile>, Option<KargsJson>), KargsError> {
    let mut out = Vec::with_capacity(files.len());
    // (path, offset, area length, default arguments)
    let mut areas: Vec<(String, usize, usize, String)> = Vec::new();
    for (path, bytes) in files {
        let Some(start) = find(bytes, PLACEHOLDER.as_bytes()) else {
            out.push((path.clone(), bytes.clone()));
            continue;
        };
        let mut new = Vec::with_capacity(bytes.len() + kargs.len());
        new.extend_from_slice(&bytes[..start]);
        new.extend_from_slice(kargs.as_bytes());
        new.extend_from_slice(&bytes[start + PLACEHOLDER.len()..]);
        let Some((marker_start, hashes)) = marker(&new[start..]) else {
            out.push((path.clone(), new));
            continue;
        };
        check_directories(path)?;
        // The area ends before the marker run's last `#`.
        let size = marker_start + hashes - 1;
        let default = String::from_utf8_lossy(&new[start..start + marker_start])
            .trim()
            .to_string();
        if size > MAX_AREA {
            return Err(KargsError::Size(path.clone(), size));
        }
        if let Some((first, _, s, d)) = areas.first()
            && (*s != size || *d != default)
        {
            return Err(KargsError::Mismatch(first.clone(), path.clone()));
        }
        areas.push((path.clone(), start, size, default));
        out.push((path.clone(), new));
    }
    let Some((_, _, size, default)) = areas.first().cloned() else {
        return Ok((out, None));
    };
    let mut files: Vec<KargsFile> = areas
        .into_iter()
        .map(|(path, offset, _, _)| KargsFile {
            path,
            offset,
            pad: '#',
            end: '\n',
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((
        out,
        Some(KargsJson {
            default,
            files,
            size,
        }),
    ))
}

/// The first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// In `text` (from the substituted arguments on), the start of the first line that is a run
/// of `#` then ` NESTOS_KARG_EMBED_AREA` or ` COREOS_KARG_EMBED_AREA`, and the run's length.
fn marker(text: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let hashes = line.iter().take_while(|&&b| b == b'#').count();
        let rest = &line[hashes..];
        let is_marker = hashes > 0
            && [&b" NESTOS_KARG_EMBED_AREA"[..], b" COREOS_KARG_EMBED_AREA"]
                .iter()
                .any(|m| {
                    rest.strip_prefix(*m)
                        .is_some_and(|r| r == b"\n" || r.is_empty())
                });
        if is_marker {
            return Some((line_start, hashes));
        }
        line_start += line.len();
    }
    None
}

/// Refuses a directory component over 8 characters (ISO 9660 level 1).
fn check_directories(path: &str) -> Result<(), KargsError> {
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop();
    match parts.into_iter().find(|d| d.len() > 8) {
        Some(d) => Err(KargsError::LongDirectory(path.to_string(), d.to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(tail: &str, hashes: usize, marker: &str) -> Vec<u8> {
        format!(
            "menu\n  linux /images/pxeboot/vmlinuz {PLACEHOLDER}{tail}\n{} {marker}\nend\n",
            "#".repeat(hashes)
        )
        .into_bytes()
    }

    #[test]
    fn live_kargs_drop_the_metal_root_and_firstboot_keys() {
        let k = live_kargs(
            "root=LABEL=root rw console=ttyS0,115200 ignition.platform.id=metal \
             $ignition_firstboot ostree=/ostree/boot.1/x mitigations=auto quiet",
            "nestos",
            "nestos-42.1",
        );
        assert_eq!(k, "mitigations=auto quiet nestos.liveiso=nestos-42.1");
    }

    #[test]
    fn templates_are_substituted_and_described_as_coreos_installer_reads_them() {
        let files = vec![
            (
                "isolinux/isolinux.cfg".to_string(),
                tpl(" ignition.firstboot", 100, "NESTOS_KARG_EMBED_AREA"),
            ),
            ("EFI/nestos/grub.cfg".to_string(), {
                let mut t = b"set timeout=5\n".to_vec();
                t.extend(tpl(" ignition.firstboot", 100, "NESTOS_KARG_EMBED_AREA"));
                t
            }),
            ("isolinux/boot.msg".to_string(), b"hello\n".to_vec()),
        ];
        let (out, json) = template(&files, "quiet nestos.liveiso=v").unwrap();
        let json = json.unwrap();
        assert_eq!(json.default, "quiet nestos.liveiso=v ignition.firstboot");
        assert_eq!(
            json.files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>(),
            ["EFI/nestos/grub.cfg", "isolinux/isolinux.cfg"]
        );
        assert_eq!(
            out[2], files[2],
            "a file without the placeholder is as it was"
        );
        // What an installer reads at each offset: the arguments, the end, then padding up to
        // the marker line's last `#`.
        for f in &json.files {
            let text = &out.iter().find(|(p, _)| *p == f.path).unwrap().1;
            let area = &text[f.offset..f.offset + json.size];
            let s = std::str::from_utf8(area).unwrap();
            assert_eq!(
                s.trim_end_matches('#').trim_end_matches('\n').trim(),
                json.default
            );
            assert_eq!(
                &text[f.offset + json.size..f.offset + json.size + 24],
                b"# NESTOS_KARG_EMBED_AREA"
            );
        }
        // The area: the arguments' line (placeholder replaced, tail, newline) and 99 `#`.
        assert_eq!(json.size, json.default.len() + 1 + 99);
    }

    #[test]
    fn bad_templates_are_refused_with_the_file_named() {
        let one = |t: Vec<u8>| vec![("isolinux/isolinux.cfg".to_string(), t)];
        // Without a marker line: substituted, no area.
        let (out, json) = template(&one(tpl("", 10, "OTHER_MARKER")), "a b").unwrap();
        assert_eq!(json, None);
        assert!(String::from_utf8_lossy(&out[0].1).contains("vmlinuz a b\n"));
        assert!(matches!(
            template(&one(tpl("", 3000, "COREOS_KARG_EMBED_AREA")), "a"),
            Err(KargsError::Size(_, size)) if size > MAX_AREA
        ));
        let two = vec![
            (
                "a/x.cfg".to_string(),
                tpl("", 100, "NESTOS_KARG_EMBED_AREA"),
            ),
            (
                "b/x.cfg".to_string(),
                tpl("", 101, "NESTOS_KARG_EMBED_AREA"),
            ),
        ];
        assert_eq!(
            template(&two, "a").unwrap_err(),
            KargsError::Mismatch("a/x.cfg".into(), "b/x.cfg".into())
        );
        assert_eq!(
            template(
                &[(
                    "EFI/openEuler/grub.cfg".to_string(),
                    tpl("", 100, "NESTOS_KARG_EMBED_AREA")
                )],
                "a"
            )
            .unwrap_err(),
            KargsError::LongDirectory("EFI/openEuler/grub.cfg".into(), "openEuler".into())
        );
        assert_eq!(template(&[], "a").unwrap().1, None);
    }
}
