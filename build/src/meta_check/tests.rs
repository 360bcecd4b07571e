//! Unit tests of the meta.json checks: each rule, the source it is charged to, and the
//! messages (key, expectation, fix).

use serde_json::{Value, json};

use super::*;

fn sum(c: char) -> String {
    c.to_string().repeat(64)
}

/// A meta.json as nosa writes it.
fn good() -> Value {
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

/// `good()` with `edit` applied, checked: (key, source) of each problem.
fn check_with(edit: impl FnOnce(&mut Value)) -> Vec<(String, Source)> {
    let mut v = good();
    edit(&mut v);
    check(&v).into_iter().map(|p| (p.key, p.source)).collect()
}

fn one(key: &str, source: Source) -> Vec<(String, Source)> {
    vec![(key.to_string(), source)]
}

#[test]
fn nosas_own_meta_passes() {
    assert_eq!(check(&good()), []);
    // Everything optional v1 knows, well formed.
    let mut v = good();
    let extra = json!({
        "summary": "s", "build-url": "u", "coreos-assembler.config-gitrev": "abc",
        "coreos-assembler.config-dirty": "false", "coreos-assembler.config-variant": "",
        "coreos-assembler.image-genver": 0, "coreos-assembler.meta-stamp": 1.5,
        "coreos-assembler.overrides-active": false,
        "coreos-assembler.container-config-git": {"commit": "abcde", "origin": "o"},
        "fedora-coreos.parent-commit": sum('e'), "fedora-coreos.parent-version": "123456789012",
        "ostree-n-cache-hits": 3, "pkgdiff": ["a", 1], "advisories-diff": [{}],
        "base-oscontainer": {"image": "quay.io/x", "digest": "sha256:1", "tags": ["t"]},
        "amis": [{"name": "r", "hvm": "h", "snapshot": "s"}],
        "aliyun": [{"name": "r", "id": "i"}], "azure": {"url": "u"},
        "ibmcloud": [{"url": "u", "region": "r"}], "gcp": {"image": "i", "url": "u"},
        "koji": {"build_id": 3}, "s3": {"bucket": "b"},
        "extensions": {"path": "p", "sha256": "s", "rpm-ostree-state": sum('f'), "manifest": {}}
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v["images"]["qemu"] = json!({"path": "q", "sha256": sum('0'), "size": 0,
        "skip-compression": true, "uncompressed-sha256": "u", "uncompressed-size": 7});
    v["images"]["nosa-extra"] = json!({"path": "n", "sha256": sum('1'), "size": 1});
    assert_eq!(check(&v), []);
}

#[test]
fn required_keys_and_no_others_at_the_top() {
    for key in [
        "buildid",
        "name",
        "ostree-commit",
        "ostree-content-checksum",
        "ostree-timestamp",
        "ostree-version",
        "rpm-ostree-inputhash",
    ] {
        assert_eq!(
            check_with(|v| {
                v.as_object_mut().unwrap().remove(key);
            }),
            one(key, Source::V1),
            "{key}"
        );
    }
    // Optional at the top: ref, images, the basearch.
    for key in ["ref", "images", "coreos-assembler.basearch"] {
        assert_eq!(
            check_with(|v| {
                v.as_object_mut().unwrap().remove(key);
            }),
            []
        );
    }
    assert_eq!(
        check_with(|v| v["nosa-note"] = json!("x")),
        one("nosa-note", Source::V1)
    );
    // Listed by v1 as optional but never defined: not allowed either.
    assert_eq!(
        check_with(|v| v["exoscale"] = json!({})),
        one("exoscale", Source::V1)
    );
    assert_eq!(check(&json!([])).len(), 1, "not an object");
}

#[test]
fn types_and_lengths() {
    let cases: Vec<(&str, Value, Source)> = vec![
        ("buildid", json!(""), Source::V1),
        ("buildid", json!(3), Source::V1),
        ("name", json!(null), Source::V1),
        ("ref", json!(""), Source::V1),
        ("summary", json!(""), Source::V1),
        ("ostree-commit", json!("abc"), Source::V1),
        ("ostree-commit", json!(sum('A')), Source::Nosa),
        (
            "ostree-commit",
            json!(format!("{}0", sum('a'))),
            Source::Nosa,
        ),
        ("rpm-ostree-inputhash", json!(sum('g')), Source::Nosa),
        ("fedora-coreos.parent-commit", json!("short"), Source::V1),
        (
            "fedora-coreos.parent-version",
            json!("12345678901"),
            Source::V1,
        ),
        ("ostree-timestamp", json!("2024-01-01 00:00:00"), Source::V1),
        (
            "ostree-timestamp",
            json!("2024-01-01T00:00:00Z\n"),
            Source::V1,
        ),
        ("coreos-assembler.image-genver", json!(1.5), Source::V1),
        ("coreos-assembler.image-genver", json!("1"), Source::V1),
        ("coreos-assembler.meta-stamp", json!("1"), Source::V1),
        (
            "coreos-assembler.overrides-active",
            json!("true"),
            Source::V1,
        ),
        ("pkgdiff", json!({}), Source::V1),
        ("koji", json!([]), Source::V1),
    ];
    for (key, value, source) in cases {
        assert_eq!(
            check_with(|v| v[key] = value.clone()),
            one(key, source),
            "{key} = {value}"
        );
    }
    // v1's time pattern is not anchored at the start, and takes anything up to the Z.
    for t in ["x2024-01-01TZ", "2024-01-01T00:00:00.5+junkZ"] {
        assert_eq!(check_with(|v| v["ostree-timestamp"] = json!(t)), []);
    }
    assert_eq!(
        check_with(|v| v["coreos-assembler.image-genver"] = json!(2.0)),
        [],
        "a whole number written with a fraction is an integer"
    );
}

#[test]
fn nested_shapes() {
    let cases: Vec<(&str, Value, &str, Source)> = vec![
        ("pkgdiff", json!(["a", ""]), "pkgdiff.1", Source::V1),
        (
            "amis",
            json!([{"name": "r", "hvm": "h"}]),
            "amis.0.snapshot",
            Source::V1,
        ),
        (
            "aliyun",
            json!([{"name": "", "id": "i"}]),
            "aliyun.0.name",
            Source::V1,
        ),
        (
            "base-oscontainer",
            json!({"digest": "d"}),
            "base-oscontainer.image",
            Source::V1,
        ),
        (
            "base-oscontainer",
            json!({"image": "i", "tags": [1]}),
            "base-oscontainer.tags.0",
            Source::V1,
        ),
        (
            "coreos-assembler.yumrepos-git",
            json!({"commit": "abcd", "origin": "o"}),
            "coreos-assembler.yumrepos-git.commit",
            Source::V1,
        ),
        (
            "ibmcloud",
            json!([{"region": "r"}]),
            "ibmcloud.0.url",
            Source::V1,
        ),
        ("gcp", json!({"image": "i"}), "gcp.url", Source::V1),
        (
            "extensions",
            json!({"path": "p", "sha256": "s", "rpm-ostree-state": sum('a')}),
            "extensions.manifest",
            Source::V1,
        ),
    ];
    for (key, value, at, source) in cases {
        assert_eq!(
            check_with(|v| v[key] = value.clone()),
            one(at, source),
            "{key} = {value}"
        );
    }
}

#[test]
fn image_entries() {
    let cases: Vec<(&str, Value, Source)> = vec![
        // v1: `images` needs the OCI archive, each artifact a path and a SHA-256 string.
        ("images.ostree", Value::Null, Source::V1),
        (
            "images.qemu.path",
            json!({"sha256": sum('a'), "size": 1}),
            Source::V1,
        ),
        (
            "images.qemu.sha256",
            json!({"path": "p", "size": 1}),
            Source::V1,
        ),
        (
            "images.qemu.sha256",
            json!({"path": "p", "sha256": 5, "size": 1}),
            Source::V1,
        ),
        (
            "images.qemu.size",
            json!({"path": "p", "sha256": sum('a'), "size": "1"}),
            Source::V1,
        ),
        (
            "images.qemu.skip-compression",
            json!({"path": "p", "sha256": sum('a'), "size": 1, "skip-compression": 1}),
            Source::V1,
        ),
        // nosa: the SHA-256 in hex, a whole size, and the same for names v1 does not list.
        (
            "images.qemu.sha256",
            json!({"path": "p", "sha256": "abc", "size": 1}),
            Source::Nosa,
        ),
        (
            "images.qemu.size",
            json!({"path": "p", "sha256": sum('a')}),
            Source::Nosa,
        ),
        (
            "images.qemu.size",
            json!({"path": "p", "sha256": sum('a'), "size": -1}),
            Source::Nosa,
        ),
        (
            "images.qemu.size",
            json!({"path": "p", "sha256": sum('a'), "size": 1.5}),
            Source::Nosa,
        ),
        ("images.nosa-thing", json!("p"), Source::Nosa),
        (
            "images.nosa-thing.path",
            json!({"sha256": sum('a'), "size": 1}),
            Source::Nosa,
        ),
    ];
    for (at, value, source) in cases {
        let mut parts = at.splitn(3, '.');
        let (_, name) = (parts.next(), parts.next().unwrap());
        let got = check_with(|v| {
            if value.is_null() {
                v["images"] = json!({});
            } else {
                v["images"][name] = value.clone();
            }
        });
        assert_eq!(got, one(at, source), "{at}: {value}");
    }
}

#[test]
fn messages_name_the_key_the_expectation_and_the_fix() {
    let mut v = good();
    v["coreos-assembler.image-genver"] = json!("x");
    v["summary"] = json!(123);
    v["buildid"] = json!("");
    v["ostree-comit"] = json!("x");
    let p = check(&v);
    let text: Vec<String> = p.iter().map(|p| format!("{p} | {}", p.fix)).collect();
    insta::assert_snapshot!(text.join("\n"), @r#"
    buildid: expected a non-empty string, found "" (a string) | for example `nosa meta --set buildid=text`
    summary: expected a string, found 123 (a number) | for example `nosa meta --set summary=text`; a VALUE that parses as JSON is JSON: quote it to keep it a string, `nosa meta --set 'summary="123"'`
    coreos-assembler.image-genver: expected an integer, found "x" (a string) | for example `nosa meta --set coreos-assembler.image-genver=42`
    ostree-comit: expected no such key (not one of v1's), found "x" (a string) | did you mean `ostree-commit`? v1 allows no keys but its own here: remove it
    "#);
}

#[test]
fn top_level_keys_hold_the_dotted_ones() {
    let keys: Vec<&str> = top_level_keys().collect();
    assert!(keys.contains(&"coreos-assembler.basearch"));
    assert!(keys.contains(&"base-oscontainer"));
    assert_eq!(keys.len(), 52);
}
