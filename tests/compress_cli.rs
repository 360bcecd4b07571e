//! `nosa compress` and `nosa uncompress` end to end: the example OS's qemu image built once,
//! then compressed (gzip by default, zstd and xz at their fastest), checked with the host's
//! own gzip/zstd/xz, cached when compressed again, decompressed byte for byte, recorded in
//! meta.json in coreos-assembler's v1 form, kept by a `nosa build qemu` of the same build,
//! an interrupted run's leftover removed; and the usage errors (exit 2).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{example_workdir, fixture_workdir, nosa, ok, summary, v1_meta_errors};

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(p).unwrap()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sha256(p: &Path) -> String {
    nosa_cache::sha256_file(p).unwrap().0
}

/// The build's arch directory and its meta.json, checked against v1.
struct Build {
    dir: PathBuf,
}

impl Build {
    fn meta(&self) -> serde_json::Value {
        let meta = json(&self.dir.join("meta.json"));
        let errors = v1_meta_errors(&meta);
        assert!(
            errors.is_empty(),
            "meta.json against v1: {errors:#?}\n{meta:#}"
        );
        meta
    }

    fn qemu(&self) -> serde_json::Value {
        self.meta()["images"]["qemu"].clone()
    }

    fn file(&self, entry: &serde_json::Value) -> PathBuf {
        self.dir.join(entry["path"].as_str().unwrap())
    }

    /// The qcow2 files and compressed ones in the directory.
    fn images(&self) -> Vec<String> {
        let mut v: Vec<String> = fs_err::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".qcow2"))
            .collect();
        v.sort();
        v
    }
}

/// `tool -dc file`'s output's SHA-256 (the host's own decompressor).
fn tool_sha256(tool: &str, file: &Path) -> String {
    use sha2::Digest as _;
    let out = std::process::Command::new(tool)
        .args(["-dc", file.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("{tool} (Debian package {tool}): {e}"));
    assert!(out.status.success(), "{tool} -dc {}", file.display());
    sha2::Sha256::digest(&out.stdout)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn compress_and_uncompress_a_built_qemu_image() {
    let (_tmp, w) = fixture_workdir();
    ok(nosa(&w, &["build", "qemu"]), "nosa build qemu");
    let id = json(&w.join("builds/builds.json"))["builds"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = Build {
        dir: w.join("builds").join(&id).join("x86_64"),
    };
    let built = b.qemu();
    let qcow2 = built["path"].as_str().unwrap().to_string();
    let sha0 = built["sha256"].as_str().unwrap().to_string();
    let size0 = built["size"].as_u64().unwrap();
    assert_eq!(sha256(&b.dir.join(&qcow2)), sha0);
    let ostree0 = b.meta()["images"]["ostree"].clone();

    // Compress with the default: gzip (the example's image.yaml names no compressor).
    let out = ok(nosa(&w, &["compress", "--json"]), "compress");
    assert_eq!(
        summary(&out).into_iter().collect::<Vec<_>>(),
        [("compress:x86_64:qemu:gzip".to_string(), "ran".to_string())]
    );
    let err = stderr(&out);
    assert!(err.contains("ostree: not compressed"), "{err}");
    let gz = b.qemu();
    assert_eq!(gz["path"], format!("{qcow2}.gz"));
    assert_eq!(gz["uncompressed-sha256"], sha0.as_str());
    assert_eq!(gz["uncompressed-size"], size0);
    assert_eq!(gz["sha256"], sha256(&b.file(&gz)).as_str());
    assert_eq!(gz["size"], fs_err::metadata(b.file(&gz)).unwrap().len());
    assert!(gz["size"].as_u64().unwrap() < size0, "{gz}");
    assert_eq!(b.images(), [format!("{qcow2}.gz")], "the original is gone");
    assert_eq!(
        tool_sha256("gzip", &b.file(&gz)),
        sha0,
        "gzip -dc gives the image"
    );
    assert_eq!(
        b.meta()["images"]["ostree"],
        ostree0,
        "the OCI archive is left"
    );

    // Again: nothing to do, nothing runs, nothing changes.
    let meta_gz = fs_err::read(b.dir.join("meta.json")).unwrap();
    let out = ok(nosa(&w, &["compress", "--json"]), "compress again");
    assert!(summary(&out).is_empty(), "{}", stderr(&out));
    assert!(stderr(&out).contains("qemu: already compressed"));
    assert_eq!(fs_err::read(b.dir.join("meta.json")).unwrap(), meta_gz);

    // A kill between meta.json and the removal leaves the original: the next run removes it.
    fs_err::copy(b.file(&gz), b.dir.join("probe.gz")).unwrap();
    let unzipped = std::process::Command::new("gzip")
        .args(["-dc", b.dir.join("probe.gz").to_str().unwrap()])
        .output()
        .unwrap();
    fs_err::remove_file(b.dir.join("probe.gz")).unwrap();
    fs_err::write(b.dir.join(&qcow2), &unzipped.stdout).unwrap();
    let out = ok(nosa(&w, &["compress"]), "compress after a kill");
    assert!(
        stderr(&out).contains("removed the original"),
        "{}",
        stderr(&out)
    );
    assert_eq!(b.images(), [format!("{qcow2}.gz")]);

    // `nosa build qemu` of the same build keeps the compressed entry (no copy left beside it).
    let out = ok(nosa(&w, &["build", "qemu", "--json"]), "build qemu again");
    assert!(stderr(&out).contains("unchanged"), "{}", stderr(&out));
    assert_eq!(b.qemu(), gz, "the compressed entry stays");
    assert_eq!(b.images(), [format!("{qcow2}.gz")]);

    // Uncompress: the image as built, byte for byte; meta.json's entry as it was.
    let out = ok(nosa(&w, &["uncompress", "--json"]), "uncompress");
    assert_eq!(summary(&out)["uncompress:x86_64:qemu:gzip"], "ran");
    assert_eq!(
        b.qemu(),
        built,
        "path, sha256, size back; uncompressed-* gone"
    );
    assert_eq!(sha256(&b.dir.join(&qcow2)), sha0);
    assert_eq!(b.images(), std::slice::from_ref(&qcow2));

    // A prune keeps the build, so it keeps its compress and uncompress nodes' outputs.
    ok(nosa(&w, &["prune"]), "prune");
    // Compress again: the node is cached (same image, codec, level) and nothing runs.
    let out = ok(nosa(&w, &["compress", "--json"]), "compress, cached");
    assert_eq!(summary(&out)["compress:x86_64:qemu:gzip"], "cached");
    let s = out.stdout.clone();
    let last = String::from_utf8_lossy(&s)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(
        (v["ran"].as_u64(), v["cached"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(b.qemu(), gz);
    let out = ok(nosa(&w, &["uncompress", "--json"]), "uncompress, cached");
    assert_eq!(summary(&out)["uncompress:x86_64:qemu:gzip"], "cached");
    assert_eq!(b.qemu(), built);
    assert_eq!(sha256(&b.dir.join(&qcow2)), sha0);

    // zstd and xz at their fastest, one artifact asked for by name.
    for (codec, ext) in [("zstd", "zst"), ("xz", "xz")] {
        let out = ok(
            nosa(
                &w,
                &[
                    "compress",
                    "--compressor",
                    codec,
                    "--fast",
                    "--artifact",
                    "qemu",
                    "--json",
                ],
            ),
            codec,
        );
        assert_eq!(
            summary(&out)[&format!("compress:x86_64:qemu:{codec}")],
            "ran"
        );
        let c = b.qemu();
        assert_eq!(c["path"], format!("{qcow2}.{ext}"));
        assert_eq!(c["uncompressed-sha256"], sha0.as_str());
        assert_eq!(c["sha256"], sha256(&b.file(&c)).as_str());
        assert_eq!(tool_sha256(codec, &b.file(&c)), sha0, "{codec} -dc");
        assert_eq!(b.images(), [format!("{qcow2}.{ext}")]);
        let out = ok(
            nosa(&w, &["uncompress", "--artifact", "qemu", "--json"]),
            "uncompress",
        );
        assert_eq!(
            summary(&out)[&format!("uncompress:x86_64:qemu:{codec}")],
            "ran"
        );
        assert_eq!(b.qemu(), built);
        assert_eq!(sha256(&b.dir.join(&qcow2)), sha0, "{codec}: byte-identical");
    }

    // Usage errors: exit 2, naming what there is.
    let out = nosa(&w, &["compress", "--artifact", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no artifact nope") && err.contains("ostree, qemu"),
        "{err}"
    );
    let out = nosa(&w, &["uncompress", "--build", "9.9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&id), "{}", stderr(&out));
    assert_eq!(b.qemu(), built, "nothing changed");
}

#[test]
fn without_a_build_compress_says_so() {
    let (_tmp, w) = example_workdir();
    for cmd in ["compress", "uncompress"] {
        let out = nosa(&w, &[cmd]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("there are no builds") && err.contains("nosa build"),
            "{err}"
        );
    }
}

#[test]
fn help_has_an_example() {
    for cmd in ["compress", "uncompress"] {
        let out = std::process::Command::new(common::nosa_bin())
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("Example: `nosa {cmd}")), "{text}");
    }
}
