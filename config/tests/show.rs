//! `config show` output and resolved-config summaries of the example and the full fixture.

mod common;

use std::path::Path;

use nosa_config::{Arch, BuildDate, Config, LoadOptions};

use common::{WORKDIR, fixture, summary};
use nosa_testkit::workspace_root;

fn load(dir: &Path, arch: Arch) -> Config {
    let opts = LoadOptions {
        workdir: Some(WORKDIR.into()),
        ..LoadOptions::new(arch)
    };
    match Config::load(dir, &opts) {
        Ok(c) => c,
        Err(e) => panic!("{}", common::render(&e, dir)),
    }
}

/// One snapshot pair per (config, arch): the show JSON and the summary.
fn check(name: &str, dir: &Path, arch: Arch) -> Config {
    let config = load(dir, arch);
    insta::assert_json_snapshot!(format!("{name}-{arch}-show"), config.show_json());
    insta::assert_json_snapshot!(format!("{name}-{arch}-summary"), summary(&config));
    config
}

#[test]
fn example_x86_64() {
    let c = check("example", &workspace_root().join("examples"), Arch::X86_64);
    assert_eq!(c.treefile.ref_name.as_deref(), Some("nestos/x86_64/devel"));
    assert_eq!(c.overlays.len(), 2);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // What the image nodes declare: image.yaml and what it includes, nothing else read.
    let image: Vec<String> = c.image_files.iter().map(|p| common::rel(&c, p)).collect();
    assert_eq!(image, ["image.yaml", "image-base.yaml"]);
    let date = BuildDate::from_unix(1_709_251_200);
    assert_eq!(
        c.treefile.version_prefix(&date).unwrap().unwrap(),
        "24.03-LTS.20240301.dev"
    );
}

#[test]
fn show_yaml_round_trips() {
    let c = load(&workspace_root().join("examples"), Arch::X86_64);
    let yaml = c.show_yaml();
    let back: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, c.show_json(), "{yaml}");
}

#[test]
fn example_aarch64() {
    let c = check("example", &workspace_root().join("examples"), Arch::Aarch64);
    assert_eq!(c.treefile.ref_name.as_deref(), Some("nestos/aarch64/devel"));
}

#[test]
fn full_x86_64() {
    let c = check("full", &fixture("valid/full"), Arch::X86_64);
    let p = &c.treefile.packages;
    assert!(p.contains(&"grub2-pc".to_string()) && p.contains(&"x86-only".to_string()));
    assert!(
        !p.iter()
            .any(|p| p.contains("aa64") || p == "never" || p == "arm-only")
    );
    assert!(p.contains(&"podman >= 4.1".to_string()));
    // rpm-ostree's documented postprocess order: later sibling include first, own last.
    let scripts: Vec<&str> = c
        .treefile
        .postprocess
        .iter()
        .map(|s| s.script.as_str())
        .collect();
    assert_eq!(scripts, ["echo baz", "echo bar", "echo top"]);
    // Earlier sibling wins scalars; including file wins over includes.
    assert_eq!(c.treefile.recommends, Some(true));
    assert_eq!(
        c.treefile.ref_name.as_deref(),
        Some("example/x86_64/testing")
    );
    assert_eq!(c.image.size, Some(12));
    assert_eq!(c.image.extra_kargs, ["b", "a", "c"]);
}

#[test]
fn full_aarch64() {
    let c = check("full", &fixture("valid/full"), Arch::Aarch64);
    let p = &c.treefile.packages;
    assert!(
        p.contains(&"grub2-efi-aa64".to_string()) && p.contains(&"arm-inline-extra".to_string())
    );
    assert!(p.contains(&"arm-only".to_string()) && !p.contains(&"grub2-pc".to_string()));
}

#[test]
fn variant_and_missing_manifest() {
    let dir = fixture("valid/full");
    let opts = LoadOptions {
        variant: Some("nope".into()),
        ..LoadOptions::new(Arch::X86_64)
    };
    let err = Config::load(&dir, &opts).unwrap_err();
    assert!(
        err.to_string().starts_with("no manifest-nope.yaml in "),
        "{err}"
    );
}
