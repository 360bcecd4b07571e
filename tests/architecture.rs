//! Architecture invariants checked from `cargo metadata`: the engine and the cache know nothing
//! about OS images: what each may depend on (even transitively) is an allow-list, and neither
//! reaches a workspace domain crate.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

/// Everything nosa-cache may depend on (normal dependencies, transitively, as `cargo metadata`
/// resolves the workspace). A new crate here must know nothing of OS images (no ostree, RPM,
/// disk, OCI or config formats): add it only then.
const CACHE_ALLOWED: &[&str] = &[
    "arrayvec",
    "bitflags",
    "blake3",
    // SHA-256 of blobs (Store::sha256_of), the name builds/ and remote caches use.
    "block-buffer",
    "cfg-if",
    "constant_time_eq",
    // const-oid, getrandom, rand_core, subtle, zeroize(_derive): features of the digest crates
    // that the fixture generator's OpenPGP signer (xtask) turns on in the shared build.
    "const-oid",
    "cpufeatures",
    "crossbeam-deque",
    "crossbeam-epoch",
    "crossbeam-utils",
    "crypto-common",
    "digest",
    "either",
    "errno",
    "fs-err",
    "generic-array",
    "getrandom",
    "itoa",
    "libc",
    "linux-raw-sys",
    "memchr",
    "memmap2",
    "proc-macro2",
    "quote",
    "rand_core",
    "rayon",
    "rayon-core",
    "rustix",
    "same-file",
    "serde",
    "serde_core",
    "serde_derive",
    "serde_json",
    "sha2",
    "subtle",
    "syn",
    "thiserror",
    "thiserror-impl",
    "typenum",
    "unicode-ident",
    "walkdir",
    "zeroize",
    "zeroize_derive",
    "zmij",
];

/// What nosa-engine may depend on beyond [`CACHE_ALLOWED`] (the graph, globs, diagnostics and
/// what they pull in; miette's terminal crates come from the workspace's `fancy` feature).
const ENGINE_ALLOWED: &[&str] = &[
    "nosa-cache",
    "addr2line",
    "adler2",
    "aho-corasick",
    "backtrace",
    "backtrace-ext",
    "bitflags",
    "bstr",
    "equivalent",
    "errno",
    "fixedbitset",
    "foldhash",
    "gimli",
    "globset",
    "hashbrown",
    "indexmap",
    "is_ci",
    "linux-raw-sys",
    "log",
    "miette",
    "miette-derive",
    "miniz_oxide",
    "object",
    "owo-colors",
    "petgraph",
    "regex-automata",
    "regex-syntax",
    "rustc-demangle",
    "rustix",
    "supports-color",
    "supports-hyperlinks",
    "supports-unicode",
    "terminal_size",
    "textwrap",
    "unicode-linebreak",
    "unicode-width",
];

/// The host target triple, from `rustc -vV`.
fn host() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV prints the host")
        .to_string()
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--filter-platform"])
        .arg(host())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Names of every crate `root` depends on through normal (non-dev) dependencies.
fn closure(meta: &serde_json::Value, root: &str) -> BTreeSet<String> {
    let name_of: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let start = name_of
        .iter()
        .find(|(_, n)| **n == root)
        .map(|(id, _)| *id)
        .expect("root crate in metadata");
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        for d in nodes[id]["deps"].as_array().unwrap() {
            let normal = d["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let dep = d["pkg"].as_str().unwrap();
            if normal && seen.insert(name_of[dep].to_string()) {
                stack.push(dep);
            }
        }
    }
    seen
}

/// Names of the workspace's own packages.
fn workspace_members(meta: &serde_json::Value) -> BTreeSet<String> {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn engine_and_cache_know_nothing_about_os_images() {
    let meta = metadata();
    let members = workspace_members(&meta);
    assert!(members.contains("nosa-build"), "{members:?}");
    for (layer, allowed) in [
        ("nosa-cache", CACHE_ALLOWED.to_vec()),
        ("nosa-engine", [CACHE_ALLOWED, ENGINE_ALLOWED].concat()),
    ] {
        let deps = closure(&meta, layer);
        assert!(
            deps.contains("blake3"),
            "{layer}: the closure was computed ({deps:?})"
        );
        let new: Vec<&String> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            new.is_empty(),
            "{layer} now depends on {new:?}, which the allow-list in tests/architecture.rs does \
             not name: add a crate there only if it knows nothing of OS images"
        );
        let domain: Vec<&String> = deps
            .iter()
            .filter(|d| members.contains(*d) && !(layer == "nosa-engine" && *d == "nosa-cache"))
            .collect();
        assert!(domain.is_empty(), "{layer} must not depend on {domain:?}");
    }
    assert!(
        !closure(&meta, "nosa-cache").contains("nosa-engine"),
        "the cache sits below the engine"
    );
}

#[test]
fn the_testkit_is_a_dev_dependency_only_and_image_does_not_boot() {
    let meta = metadata();
    let members = workspace_members(&meta);
    assert!(members.contains("nosa-testkit"), "{members:?}");
    for m in &members {
        let deps = closure(&meta, m);
        assert!(
            !deps.contains("nosa-testkit"),
            "{m} depends on nosa-testkit outside [dev-dependencies]: test helpers must not \
             reach a library or the binary"
        );
    }
    // Disks are image's; booting them is nosa-kola's, which sits above it.
    assert!(!closure(&meta, "nosa-image").contains("nosa-kola"));
    assert!(closure(&meta, "nosa-kola").contains("nosa-image"));
}

#[test]
fn the_front_program_loads_neither_libostree_nor_libsolv() {
    // The witnessed no-op is fast because `nosa` does not load the C libraries `nosa-core`
    // needs (docs/cli.md, "Two programs"); a use of them from src/front.rs would undo it.
    let front = env!("CARGO_BIN_EXE_nosa");
    let out = Command::new("ldd")
        .arg(front)
        .output()
        .expect("ldd (Debian's libc-bin)");
    assert!(out.status.success(), "ldd {front}");
    let libs = String::from_utf8_lossy(&out.stdout);
    for lib in ["libostree", "libsolv", "libglib", "librpm"] {
        assert!(!libs.contains(lib), "nosa links {lib}:\n{libs}");
    }
    let core = Command::new("ldd")
        .arg(std::path::Path::new(front).with_file_name("nosa-core"))
        .output()
        .expect("ldd");
    assert!(
        String::from_utf8_lossy(&core.stdout).contains("libostree"),
        "nosa-core is the program that links libostree"
    );
}
