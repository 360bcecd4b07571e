//! The live templates of the real nestos-config and fedora-coreos-config trees (beside the
//! repository in `../shared/reference`, not part of the project) through
//! `nosa_image::live_kargs`: each tree's GRUB and isolinux templates agree on one embed area
//! that holds the live arguments and that coreos-installer can read (at most 2048 bytes).

use std::path::{Path, PathBuf};

use nosa_image::live_kargs::{MAX_AREA, live_kargs, template};

fn reference() -> PathBuf {
    let r = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/configs");
    assert!(
        r.is_dir(),
        "{} is missing: this test reads the public reference configs",
        r.display()
    );
    r
}

/// The templated files of a config's `live/` directory, the EFI vendor directory renamed to
/// `vendor` as the ISO will name it (8 characters at most).
fn templates(live: &Path, vendor: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(live).sort_by_file_name() {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(live).unwrap().to_str().unwrap();
        let rel = match rel.strip_prefix("EFI/") {
            Some(r) => format!("EFI/{vendor}/{}", r.split_once('/').unwrap().1),
            None => rel.to_string(),
        };
        files.push((rel, fs_err::read(e.path()).unwrap()));
    }
    files
}

#[test]
#[ignore = "needs ../shared/reference"]
fn reference_live_templates_give_one_embed_area() {
    let root = reference();
    for (config, variant) in [
        ("nestos-config-master", "nestos"),
        ("nestos-config-24.03-LTS", "nestos"),
        ("fedora-coreos-config-testing-devel", "coreos"),
    ] {
        let live = root.join(config).join("live");
        let kargs = live_kargs(
            "root=LABEL=root rw console=ttyS0,115200 ignition.platform.id=metal mitigations=auto",
            variant,
            "nestos-42.20261207.dev.0",
        );
        let (out, json) = template(&templates(&live, "vendor"), &kargs)
            .unwrap_or_else(|e| panic!("{config}: {e}"));
        let json = json.unwrap_or_else(|| panic!("{config}: no templated file"));
        assert!(
            json.files.len() >= 2,
            "{config}: GRUB and isolinux: {json:?}"
        );
        assert!(
            json.size <= MAX_AREA && json.size > json.default.len(),
            "{json:?}"
        );
        assert!(json.default.starts_with(&kargs), "{config}: {json:?}");
        for f in &json.files {
            let text = &out.iter().find(|(p, _)| *p == f.path).unwrap().1;
            let area = std::str::from_utf8(&text[f.offset..f.offset + json.size]).unwrap();
            assert_eq!(
                area.trim_end_matches('#').trim_end_matches('\n').trim(),
                json.default,
                "{config}: {}",
                f.path
            );
        }
    }
}

/// The NestOS templates' area is their 1098 bytes (the placeholder's 15 replaced by the
/// arguments), as nestos-assembler's Python computes it for the same files.
#[test]
#[ignore = "needs ../shared/reference"]
fn the_nestos_area_has_nestos_assemblers_length() {
    let live = reference().join("nestos-config-master/live");
    let kargs = "nestos.liveiso=v";
    let (_, json) = template(&templates(&live, "vendor"), kargs).unwrap();
    assert_eq!(json.unwrap().size, 1098 - 15 + kargs.len());
}
