//! Benchmarks for the disk images, measured in one run:
//! 1. cold image build time per format (qemu, metal, metal4k, openstack): the example is
//!    composed and committed once, then each round changes one image.yaml karg (so every
//!    image-fs and image node reruns and no compose node does) and builds the four images
//!    with `-j 1`; each node's own run time comes from the `--json` summary (metal and
//!    metal4k share one image-fs node);
//! 2. the qcow2 step (`nosa_image::raw_to_qcow2`: `qemu-img convert` plus `qemu-img check`)
//!    vs a bare `qemu-img convert -f raw -O qcow2` of the same raw image, interleaved.
//!
//! Needs root, the fixture distro (`cargo xtask fixture-distro`) and the image tools
//! (`scripts/install-deps.sh image`). Run: `cargo bench --bench images`
//! (`NOSA_BENCH_RUNS=N` rounds, default 3).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn nosa_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let stdout = common::nosa_ok(dir, args);
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("--json summary")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const FORMATS: &[&str] = &["qemu", "metal", "metal4k", "openstack"];

fn main() {
    let runs: usize = std::env::var("NOSA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let root = common::work_dir("images");
    let (w, cfg) = common::example_workdir(&root, "example");
    eprintln!("composing and committing the example once...");
    let _ = Command::new(common::nosa())
        .args(["build"])
        .current_dir(&w)
        .output()
        .unwrap();

    // 1. Cold image builds, per format.
    let image_yaml = cfg.join("image.yaml");
    let original = fs_err::read_to_string(&image_yaml).unwrap();
    let mut times: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for round in 0..runs {
        let changed = original.replace(
            "  - console=ttyS0,115200n8\n",
            &format!("  - console=ttyS0,115200n8\n  - nosa.bench={round}\n"),
        );
        assert_ne!(
            changed, original,
            "image.yaml has the console karg to extend"
        );
        fs_err::write(&image_yaml, changed).unwrap();
        let mut args = vec!["build", "--json", "-j", "1"];
        args.extend(FORMATS);
        let summary = nosa_json(&w, &args);
        let nodes = summary["nodes"].as_array().unwrap();
        for n in nodes {
            let id = n["id"].as_str().unwrap();
            assert!(
                n["status"] != "ran" || id.starts_with("image:") || id.starts_with("image-fs:"),
                "only image nodes rerun, not {id}"
            );
            if n["status"] == "ran" {
                times
                    .entry(id.to_string())
                    .or_default()
                    .push(Duration::from_millis(n["ms"].as_u64().unwrap()));
            }
        }
        for f in FORMATS {
            let id = format!("image:x86_64:{f}");
            assert!(
                times.get(&id).is_some_and(|t| t.len() == round + 1),
                "{id} ran"
            );
        }
    }
    fs_err::write(&image_yaml, &original).unwrap();
    println!("cold image build, median of {runs} (node run times, -j 1):");
    println!("  (image-fs: deploy + partition contents, once per platform; image: assembly)");
    for f in FORMATS {
        let platform = if f.starts_with("metal") { "metal" } else { f };
        let fs = median(times[&format!("image-fs:x86_64:{platform}")].clone());
        let img = median(times[&format!("image:x86_64:{f}")].clone());
        println!(
            "  {f:<10} image-fs:{platform:<10} {:>6.2} s + image {:>6.2} s = {:>6.2} s",
            fs.as_secs_f64(),
            img.as_secs_f64(),
            (fs + img).as_secs_f64()
        );
    }

    // 2. The qcow2 step vs qemu-img convert, on the metal image (a raw disk of the same
    //    size and content the qemu image is converted from).
    let meta: serde_json::Value =
        serde_json::from_slice(&fs_err::read(w.join("builds/latest/x86_64/meta.json")).unwrap())
            .unwrap();
    let raw = w
        .join("builds/latest/x86_64")
        .join(meta["images"]["metal"]["path"].as_str().unwrap());
    let scratch = root.join("qcow2");
    fs_err::create_dir_all(&scratch).unwrap();
    let mut ours = Vec::new();
    let mut reference = Vec::new();
    for i in 0..runs.max(3) {
        let a = scratch.join(format!("nosa-{i}.qcow2"));
        let t = Instant::now();
        nosa_image::raw_to_qcow2(&raw, &a).unwrap();
        ours.push(t.elapsed());
        let b = scratch.join(format!("ref-{i}.qcow2"));
        let t = Instant::now();
        let st = Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&b)
            .status()
            .expect("qemu-img (Debian package qemu-utils)");
        reference.push(t.elapsed());
        assert!(st.success());
        let _ = fs_err::remove_file(&a);
        let _ = fs_err::remove_file(&b);
    }
    let (o, r) = (median(ours), median(reference));
    println!(
        "qcow2 step: nosa {:.2} s, qemu-img convert {:.2} s, ratio {:.2}x (raw image {} MiB)",
        o.as_secs_f64(),
        r.as_secs_f64(),
        o.as_secs_f64() / r.as_secs_f64(),
        fs_err::metadata(&raw).unwrap().len() >> 20
    );
}
