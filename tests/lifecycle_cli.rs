//! `nosa meta`, `nosa runc` and `nosa shell` end to end on one build of the example (the
//! fixture distro): meta's reads, a valid edit kept and an invalid one refused with the file
//! untouched, the build's tree under bubblewrap (its os-release, exit statuses, /usr
//! read-only), the shell's environment. Also: nosa's meta.json check and coreos-assembler's
//! v1 schema agree on a set of valid and invalid documents.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fixture_workdir, nosa, nosa_bin, schema_valid, v1_schema};
use nosa_build::meta_check;
use serde_json::{Value, json};

fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&fs_err::read(p).unwrap()).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn sum(c: char) -> String {
    c.to_string().repeat(64)
}

/// A meta.json as nosa writes it.
fn base() -> Value {
    json!({
        "buildid": "24.03.20240101.dev.0",
        "name": "nestos",
        "ref": "nestos/x86_64/devel",
        "coreos-assembler.basearch": "x86_64",
        "coreos-assembler.build-timestamp": "2024-01-01T00:00:00Z",
        "ostree-commit": sum('a'),
        "ostree-content-checksum": sum('b'),
        "ostree-timestamp": "2024-01-01T00:00:00Z",
        "ostree-version": "24.03.20240101.dev.0",
        "rpm-ostree-inputhash": sum('c'),
        "images": {"ostree": {"path": "x.ociarchive", "sha256": sum('d'), "size": 10}}
    })
}

type Case = (&'static str, Box<dyn Fn(&mut Value)>, bool, bool);

/// `base()` edited: (what, edit, valid for v1, valid for nosa).
fn cases() -> Vec<Case> {
    fn put(key: &'static str, v: Value) -> Box<dyn Fn(&mut Value)> {
        Box::new(move |d| {
            let mut at = &mut *d;
            let parts: Vec<&str> = key.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                at = &mut at[*p];
            }
            at[parts[parts.len() - 1]] = v.clone();
        })
    }
    fn remove(key: &'static str) -> Box<dyn Fn(&mut Value)> {
        Box::new(move |d| {
            d.as_object_mut().unwrap().remove(key);
        })
    }
    vec![
        ("as nosa writes it", Box::new(|_| {}), true, true),
        ("a summary", put("summary", json!("nightly")), true, true),
        (
            "a number as summary",
            put("summary", json!(3)),
            false,
            false,
        ),
        ("an empty summary", put("summary", json!("")), false, false),
        ("an unknown key", put("nosa-note", json!("x")), false, false),
        (
            "exoscale (listed, undefined)",
            put("exoscale", json!({})),
            false,
            false,
        ),
        ("no buildid", remove("buildid"), false, false),
        (
            "no ostree-timestamp",
            remove("ostree-timestamp"),
            false,
            false,
        ),
        ("no ref", remove("ref"), true, true),
        ("no images", remove("images"), true, true),
        ("an empty buildid", put("buildid", json!("")), false, false),
        ("an empty name", put("name", json!("")), true, true),
        (
            "a short commit",
            put("ostree-commit", json!("abc")),
            false,
            false,
        ),
        (
            "an uppercase commit",
            put("ostree-commit", json!(sum('A'))),
            true,
            false,
        ),
        (
            "a 65-character commit",
            put("ostree-commit", json!(format!("{}0", sum('a')))),
            true,
            false,
        ),
        (
            "a time without T",
            put("ostree-timestamp", json!("2024-01-01 00:00:00Z")),
            false,
            false,
        ),
        (
            "a time with text before",
            put("ostree-timestamp", json!("x2024-01-01TZ")),
            true,
            true,
        ),
        (
            "a time not ending in Z",
            put("ostree-timestamp", json!("2024-01-01T00:00:00+01:00")),
            false,
            false,
        ),
        (
            "genver 2",
            put("coreos-assembler.image-genver", json!(2)),
            true,
            true,
        ),
        (
            "genver 2.5",
            put("coreos-assembler.image-genver", json!(2.5)),
            false,
            false,
        ),
        (
            "genver \"2\"",
            put("coreos-assembler.image-genver", json!("2")),
            false,
            false,
        ),
        (
            "meta-stamp 1.5",
            put("coreos-assembler.meta-stamp", json!(1.5)),
            true,
            true,
        ),
        (
            "overrides-active \"yes\"",
            put("coreos-assembler.overrides-active", json!("yes")),
            false,
            false,
        ),
        (
            "a short parent-version",
            put("fedora-coreos.parent-version", json!("1.2")),
            false,
            false,
        ),
        (
            "a git source",
            put(
                "coreos-assembler.container-config-git",
                json!({"commit": "abcdef", "origin": "o"}),
            ),
            true,
            true,
        ),
        (
            "a git source without origin",
            put(
                "coreos-assembler.container-config-git",
                json!({"commit": "abcdef"}),
            ),
            false,
            false,
        ),
        (
            "a short git commit",
            put(
                "coreos-assembler.yumrepos-git",
                json!({"commit": "ab", "origin": "o"}),
            ),
            false,
            false,
        ),
        (
            "base-oscontainer",
            put(
                "base-oscontainer",
                json!({"image": "quay.io/n/n", "digest": "sha256:00", "tags": ["a"]}),
            ),
            true,
            true,
        ),
        (
            "base-oscontainer without image",
            put("base-oscontainer", json!({"digest": "sha256:00"})),
            false,
            false,
        ),
        (
            "base-oscontainer with a number tag",
            put("base-oscontainer", json!({"image": "i", "tags": [1]})),
            false,
            false,
        ),
        (
            "base-oscontainer as a string",
            put("base-oscontainer", json!("quay.io/n/n")),
            false,
            false,
        ),
        (
            "amis",
            put("amis", json!([{"name": "r", "hvm": "h", "snapshot": "s"}])),
            true,
            true,
        ),
        (
            "amis without snapshot",
            put("amis", json!([{"name": "r", "hvm": "h"}])),
            false,
            false,
        ),
        (
            "aliyun with an empty id",
            put("aliyun", json!([{"name": "r", "id": ""}])),
            false,
            false,
        ),
        (
            "gcp without url",
            put("gcp", json!({"image": "i"})),
            false,
            false,
        ),
        (
            "ibmcloud",
            put("ibmcloud", json!([{"url": "u", "bucket": "b"}])),
            true,
            true,
        ),
        (
            "koji with a string id",
            put("koji", json!({"build_id": "3"})),
            false,
            false,
        ),
        (
            "pkgdiff",
            put("pkgdiff", json!(["a", ["b"], 1])),
            true,
            true,
        ),
        (
            "pkgdiff with an empty string",
            put("pkgdiff", json!(["a", ""])),
            false,
            false,
        ),
        (
            "extensions",
            put(
                "extensions",
                json!({"path": "p", "sha256": "s", "rpm-ostree-state": sum('e'), "manifest": {}}),
            ),
            true,
            true,
        ),
        (
            "extensions without manifest",
            put(
                "extensions",
                json!({"path": "p", "sha256": "s", "rpm-ostree-state": sum('e')}),
            ),
            false,
            false,
        ),
        (
            "images without ostree",
            put(
                "images",
                json!({"qemu": {"path": "q", "sha256": sum('a'), "size": 1}}),
            ),
            false,
            false,
        ),
        (
            "a qemu image",
            put(
                "images/qemu",
                json!({"path": "q", "sha256": sum('a'), "size": 1, "skip-compression": true, "uncompressed-size": 3}),
            ),
            true,
            true,
        ),
        (
            "a qemu image without sha256",
            put("images/qemu", json!({"path": "q", "size": 1})),
            false,
            false,
        ),
        (
            "a qemu image with a short sha256",
            put(
                "images/qemu",
                json!({"path": "q", "sha256": "abc", "size": 1}),
            ),
            true,
            false,
        ),
        (
            "a qemu image without size",
            put("images/qemu", json!({"path": "q", "sha256": sum('a')})),
            true,
            false,
        ),
        (
            "a qemu image with a string size",
            put(
                "images/qemu",
                json!({"path": "q", "sha256": sum('a'), "size": "1"}),
            ),
            false,
            false,
        ),
        (
            "a qemu image with a fractional size",
            put(
                "images/qemu",
                json!({"path": "q", "sha256": sum('a'), "size": 1.5}),
            ),
            true,
            false,
        ),
        (
            "an image v1 does not list",
            put(
                "images/nosa-thing",
                json!({"path": "n", "sha256": sum('a'), "size": 1}),
            ),
            true,
            true,
        ),
        (
            "a string as an image v1 does not list",
            put("images/nosa-thing", json!("n")),
            true,
            false,
        ),
        ("not an object", Box::new(|d| *d = json!([])), false, false),
    ]
}

/// nosa's check against the table.
#[test]
fn meta_check_agrees_with_the_table() {
    let mut failures = Vec::new();
    for (what, edit, v1, nosa_ok) in cases() {
        let mut doc = base();
        edit(&mut doc);
        let ours_v1 = meta_check::check_v1(&doc);
        let ours = meta_check::check(&doc);
        if ours_v1.is_empty() != v1 {
            failures.push(format!(
                "{what}: nosa's v1 check says {ours_v1:?}, the table {v1}"
            ));
        }
        if ours.is_empty() != nosa_ok {
            failures.push(format!(
                "{what}: nosa's check says {ours:?}, the table {nosa_ok}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The table against coreos-assembler's real v1 schema: so nosa's check, which agrees with
/// the table, agrees with the schema on every case.
#[test]
#[ignore = "needs ../shared/reference"]
fn the_table_agrees_with_the_v1_schema() {
    let schema = v1_schema().expect(
        "v1.json is not beside the repository (../shared/reference/cosa/nestos-assembler/)",
    );
    let mut failures = Vec::new();
    for (what, edit, v1, _) in cases() {
        let mut doc = base();
        edit(&mut doc);
        if schema_valid(&schema, &doc) != v1 {
            failures.push(format!(
                "{what}: the v1 schema says {}, the table {v1}",
                !v1
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The ostree commit's os-release, as `nosa runc` prints it: (VERSION, OSTREE_VERSION).
fn os_release_versions(out: &str) -> (String, String) {
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches(|c| c == '"' || c == '\'').to_string())
            .unwrap_or_else(|| panic!("no {k} in {out}"))
    };
    (field("VERSION"), field("OSTREE_VERSION"))
}

#[test]
fn meta_runc_and_shell_on_a_built_example() {
    let (_tmp, w) = fixture_workdir();
    ok(&nosa(&w, &["build"]));
    let index = json_file(&w.join("builds/builds.json"));
    let id = index["builds"][0]["id"].as_str().unwrap().to_string();
    let arch_dir = w.join("builds").join(&id).join("x86_64");
    let meta_path = arch_dir.join("meta.json");
    let meta = json_file(&meta_path);

    // --get: strings raw, objects as JSON, keys with dots, dotted paths.
    let got = ok(&nosa(
        &w,
        &[
            "meta",
            "--get",
            "buildid",
            "--get",
            "coreos-assembler.basearch",
            "--get",
            "images.ostree.sha256",
        ],
    ));
    let sha = meta["images"]["ostree"]["sha256"].as_str().unwrap();
    assert_eq!(got, format!("{id}\nx86_64\n{sha}\n"));
    let obj: Value =
        serde_json::from_str(&ok(&nosa(&w, &["meta", "--get", "images.ostree"]))).unwrap();
    assert_eq!(obj, meta["images"]["ostree"]);
    let dumped: Value = serde_json::from_str(&ok(&nosa(&w, &["meta", "--dump"]))).unwrap();
    assert_eq!(dumped, meta);
    let missing = nosa(&w, &["meta", "--get", "images.qemu.path"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));

    // --image-path: the OCI archive `nosa build` records as `images.ostree`.
    let p = ok(&nosa(&w, &["meta", "--image-path", "ostree"]));
    let p = PathBuf::from(p.trim_end());
    assert!(p.is_absolute(), "{}", p.display());
    assert_eq!(
        p,
        arch_dir.join(meta["images"]["ostree"]["path"].as_str().unwrap())
    );
    let sha256sum = std::process::Command::new("sha256sum")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        text(&sha256sum.stdout).starts_with(sha),
        "the path is the image"
    );
    let none = nosa(&w, &["meta", "--image-path", "qemu"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("its images: ostree"),
        "{}",
        text(&none.stderr)
    );

    // --set, refused: exit 2, the key named, the file byte for byte as it was.
    let before = fs_err::read(&meta_path).unwrap();
    for (args, key) in [
        (vec!["--set", "ostree-commit=abc"], "ostree-commit"),
        (
            vec!["--set", "summary=fine", "--set", "images.ostree.sha256=xyz"],
            "images.ostree.sha256",
        ),
        (
            vec!["--set", "coreos-assembler.image-genver=two"],
            "coreos-assembler.image-genver",
        ),
        (vec!["--set", "nosa-note=x"], "nosa-note"),
        (
            vec!["--set", "base-oscontainer={\"digest\": \"sha256:00\"}"],
            "base-oscontainer.image",
        ),
    ] {
        let mut full = vec!["meta"];
        full.extend(args.iter().copied());
        let out = nosa(&w, &full);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("  {key}: expected")),
            "{args:?}: {err}"
        );
        assert!(err.contains("fix: "), "{err}");
        assert_eq!(fs_err::read(&meta_path).unwrap(), before, "{args:?} wrote");
    }

    // --set, accepted: kept, the rest as it was, and still valid.
    let out = nosa(
        &w,
        &[
            "meta",
            "--set",
            "summary=nightly for QA",
            "--set",
            "coreos-assembler.image-genver=2",
            "--set",
            "images.ostree.skip-compression=true",
            "--set",
            "base-oscontainer={\"image\": \"registry.example/nestos\", \"digest\": \"sha256:00\"}",
        ],
    );
    ok(&out);
    let after = json_file(&meta_path);
    assert_eq!(after["summary"], "nightly for QA");
    assert_eq!(after["coreos-assembler.image-genver"], 2);
    assert_eq!(after["images"]["ostree"]["skip-compression"], true);
    assert_eq!(
        after["base-oscontainer"]["image"],
        "registry.example/nestos"
    );
    for (k, v) in meta.as_object().unwrap() {
        if k != "images" {
            assert_eq!(&after[k], v, "{k} changed");
        }
    }
    assert_eq!(after["images"]["ostree"]["sha256"], sha);
    assert_eq!(meta_check::check(&after), []);
    if let Some(s) = v1_schema() {
        assert!(schema_valid(&s, &after), "v1 schema refuses {after:#}");
        assert!(
            schema_valid(&s, &meta),
            "v1 schema refuses nosa's own {meta:#}"
        );
    }
    assert_eq!(
        ok(&nosa(&w, &["meta", "--get", "summary"])),
        "nightly for QA\n"
    );
    // A key the next build writes again is set, with a warning.
    let out = nosa(&w, &["meta", "--set", &format!("ostree-version={id}")]);
    ok(&out);
    assert!(text(&out.stderr).contains("warning: nosa writes ostree-version"));
    // The build made again (unchanged: the same id) keeps what was set, on the images too.
    ok(&nosa(&w, &["build"]));
    let rebuilt = json_file(&meta_path);
    assert_eq!(rebuilt["buildid"], id.as_str());
    assert_eq!(rebuilt["summary"], "nightly for QA");
    assert_eq!(
        rebuilt["images"]["ostree"]["skip-compression"], true,
        "{rebuilt:#}"
    );
    assert_eq!(rebuilt["base-oscontainer"], after["base-oscontainer"]);

    // runc: the build's tree, its os-release carrying the build id.
    let os_release = ok(&nosa(&w, &["runc", "--", "cat", "/etc/os-release"]));
    let (version, ostree_version) = os_release_versions(&os_release);
    assert_eq!(ostree_version, id);
    assert_eq!(version.split(' ').next(), Some(id.as_str()), "{os_release}");
    let commit = meta["ostree-commit"].as_str().unwrap();
    let checkout = w.join("tmp/runc").join(commit);
    let inode = fs_err::metadata(&checkout).unwrap().ino();

    // The command's exit status is runc's.
    let out = nosa(&w, &["runc", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // /usr is read-only; /etc, /var and /tmp are writable and thrown away.
    let out = nosa(&w, &["runc", "--", "sh", "-c", "echo x > /usr/nosa-test"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    ok(&nosa(
        &w,
        &[
            "runc",
            "--",
            "sh",
            "-c",
            "echo x > /etc/nosa-test && : > /var/t && : > /tmp/t",
        ],
    ));
    assert!(!checkout.join("usr/nosa-test").exists());
    assert!(
        !checkout.join("usr/etc/nosa-test").exists(),
        "/etc is a copy"
    );

    // The checkout was made once and reused; no half-made checkout or /etc copy is left.
    assert_eq!(fs_err::metadata(&checkout).unwrap().ino(), inode);
    let mut left: Vec<String> = fs_err::read_dir(w.join("tmp/runc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [commit.to_string(), "repo".to_string()]);

    // shell: the workdir, NOSA_WORKDIR, this nosa first on PATH, the exit status.
    let out = ok(&nosa(
        &w,
        &[
            "shell",
            "--",
            "sh",
            "-c",
            "echo $NOSA_WORKDIR; command -v nosa; pwd",
        ],
    ));
    let here = w.canonicalize().unwrap();
    let bin = nosa_bin();
    assert_eq!(
        out,
        format!(
            "{}\n{}\n{}\n",
            here.display(),
            bin.display(),
            here.display()
        )
    );
    let out = nosa(&w, &["shell", "--", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
}
