//! Architecture invariants checked from `cargo metadata`: the engine and the cache know nothing
//! about OS images, so neither may depend (even transitively) on the rules, the NestOS config
//! or any OS-image crate.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

/// Crates the generic layers must never reach.
const FORBIDDEN: &[&str] = &[
    "nosa-rules",
    "nosa-config",
    "serde-saphyr",
    "ostree",
    "ostree-sys",
    "rpm",
    "libsolv-sys",
    "resolvo",
    "gpt",
    "fatfs",
    "ocidir",
    "oci-spec",
    "imago",
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

#[test]
fn engine_and_cache_know_nothing_about_os_images() {
    let meta = metadata();
    for layer in ["nosa-engine", "nosa-cache"] {
        let deps = closure(&meta, layer);
        assert!(
            deps.contains("blake3"),
            "{layer}: the closure was computed ({deps:?})"
        );
        let bad: Vec<&&str> = FORBIDDEN.iter().filter(|f| deps.contains(**f)).collect();
        assert!(bad.is_empty(), "{layer} must not depend on {bad:?}");
    }
    assert!(
        !closure(&meta, "nosa-cache").contains("nosa-engine"),
        "the cache sits below the engine"
    );
}
