//! Which kola tests a NestOS build runs: the built-in `nestos.basic` on every image (qemu with
//! BIOS, metal and metal4k with UEFI) and each external test of the config's `tests/kola/` on
//! the qemu image, as its kola metadata (read by `Config::load`) says; kola's name globs; the
//! denylist entries that apply.

use std::time::Duration;

use nosa_config::Config;
use nosa_image::ImageFormat;
use serde_json::Value as J;

use crate::rule::{BASIC_TEST, KolaKind};

/// The default guest memory, MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
/// kola's default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// One test to run on one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTest {
    /// The test's name.
    pub name: String,
    /// The image it boots.
    pub image: ImageFormat,
    /// What it runs (the external test's directory is still absolute here).
    pub kind: KolaKind,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Timeout.
    pub timeout: Duration,
    /// Why it cannot run, if it cannot (unsupported kola.json keys).
    pub unsupported: Option<String>,
}

/// kola.json keys that change nothing here (the platform is QEMU).
const IGNORED_KEYS: &[&str] = &[
    "tags",
    "description",
    "distros",
    "platforms",
    "architectures",
    "requiredTag",
];

fn applies(meta: &serde_json::Map<String, J>, key: &str, value: &str) -> bool {
    match meta.get(key).and_then(J::as_str) {
        None | Some("all") => true,
        Some(list) => {
            let items: Vec<&str> = list.split_whitespace().collect();
            let negated = items.iter().any(|i| i.starts_with('!'));
            if negated {
                !items.contains(&format!("!{value}").as_str())
            } else {
                items.contains(&value)
            }
        }
    }
}

/// The files of the applied overlay.d layers that a booted system must have, as absolute paths
/// (`/etc/...`, `/usr/...`; `/var` is created at boot by tmpfiles, which the fixture lacks).
fn overlay_files(c: &Config) -> Vec<String> {
    let mut out: Vec<String> = c
        .applied_overlays()
        .iter()
        .flat_map(|layer| &layer.files)
        .filter(|rel| rel.starts_with("etc/") || rel.starts_with("usr/"))
        .map(|rel| format!("/{rel}"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every test to run for `arch`: `nestos.basic` on each image, the external tests on qemu.
pub fn planned_tests(c: &Config, arch: &str) -> Vec<PlannedTest> {
    let files = overlay_files(c);
    let mut out: Vec<PlannedTest> = [ImageFormat::Qemu, ImageFormat::Metal, ImageFormat::Metal4k]
        .into_iter()
        .map(|image| PlannedTest {
            name: BASIC_TEST.into(),
            image,
            kind: KolaKind::Basic {
                files: files.clone(),
            },
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: DEFAULT_TIMEOUT,
            unsupported: None,
        })
        .collect();
    let Some(kola) = &c.kola else {
        return out;
    };
    for t in &kola.tests {
        let dir = t.path.parent().unwrap_or(&kola.dir);
        let exe = t
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut p = PlannedTest {
            name: t.name.clone(),
            image: ImageFormat::Qemu,
            kind: KolaKind::External {
                dir: dir.to_string_lossy().into_owned(),
                exe,
                // kola's default for external tests.
                exclusive: true,
            },
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: DEFAULT_TIMEOUT,
            unsupported: None,
        };
        match &t.meta {
            Err(e) => p.unsupported = Some(e.clone()),
            Ok(meta) => {
                if !applies(meta, "architectures", arch) || !applies(meta, "platforms", "qemu") {
                    continue;
                }
                if let Some(m) = meta.get("minMemory").and_then(J::as_u64) {
                    p.memory_mib = p.memory_mib.max(m);
                }
                if let Some(m) = meta.get("timeoutMin").and_then(J::as_u64) {
                    p.timeout = Duration::from_secs(m * 60);
                }
                if let (Some(e), KolaKind::External { exclusive, .. }) =
                    (meta.get("exclusive").and_then(J::as_bool), &mut p.kind)
                {
                    *exclusive = e;
                }
                let unknown: Vec<&str> = meta
                    .keys()
                    .map(String::as_str)
                    .filter(|k| {
                        !IGNORED_KEYS.contains(k)
                            && !["minMemory", "timeoutMin", "exclusive"].contains(k)
                    })
                    .collect();
                if !unknown.is_empty() {
                    p.unsupported = Some(format!(
                        "{}: kola.json keys nosa does not implement: {}",
                        t.path.display(),
                        unknown.join(", ")
                    ));
                }
            }
        }
        out.push(p);
    }
    out
}

/// Whether `name` matches kola's glob `pattern` (`*`, `?`).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    globset::Glob::new(pattern)
        .map(|g| g.compile_matcher().is_match(name))
        .unwrap_or(false)
}

/// The denylist entries (`kola-denylist.yaml`) that apply to `arch`: pattern and tracker.
/// Snoozed entries and those for other arches or streams are left out.
pub fn denylist(
    c: &Config,
    arch: &str,
    stream: Option<&str>,
    today: &str,
) -> Vec<(String, String)> {
    let Some(J::Array(items)) = &c.kola_denylist else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for it in items {
        let Some(pattern) = it.get("pattern").and_then(J::as_str) else {
            continue;
        };
        let in_list = |key: &str, v: Option<&str>| match it.get(key).and_then(J::as_array) {
            None => true,
            Some(list) => v.is_some_and(|v| list.iter().any(|x| x.as_str() == Some(v))),
        };
        if !in_list("arches", Some(arch)) || !in_list("streams", stream) {
            continue;
        }
        if let Some(snooze) = it.get("snooze").and_then(J::as_str)
            && today < snooze
        {
            continue;
        }
        let tracker = it
            .get("tracker")
            .and_then(J::as_str)
            .unwrap_or("")
            .to_string();
        out.push((pattern.to_string(), tracker));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kola_globs() {
        assert!(name_matches("ext.config.*", "ext.config.basic"));
        assert!(name_matches("*", "nestos.basic"));
        assert!(!name_matches("ext.*", "nestos.basic"));
    }

    #[test]
    fn architecture_lists() {
        let m: serde_json::Map<String, J> =
            serde_json::from_str(r#"{"architectures": "x86_64 aarch64"}"#).unwrap();
        assert!(applies(&m, "architectures", "x86_64"));
        assert!(!applies(&m, "architectures", "s390x"));
        let m: serde_json::Map<String, J> =
            serde_json::from_str(r#"{"architectures": "!s390x"}"#).unwrap();
        assert!(applies(&m, "architectures", "x86_64"));
        assert!(!applies(&m, "architectures", "s390x"));
    }
}
