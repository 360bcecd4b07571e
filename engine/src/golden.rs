//! Golden digests that pin the key encoding (`crate::key`): parameter values of every type,
//! every component kind, the rule digest and the aggregate key.
//!
//! A change here invalidates every user's cache: every stored action record becomes
//! unreachable and every node reruns. If the change is deliberate, bump `KEY_ENCODING` in
//! `key.rs` and update the digests below in the same commit; if it is not, the refactoring
//! changed the encoding by accident and must be fixed instead.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::key::{Component, ComponentKind};
use crate::key::{digest_of, key_of, rule_component, rule_digest};
use crate::{KeyHash, Params};
use nosa_cache::Digest;

fn hex(d: &Digest) -> String {
    d.to_string()
}

fn param(name: &str, v: &(impl KeyHash + ?Sized)) -> String {
    let mut p = Params::default();
    p.add(name, v);
    hex(&p.items[0].digest)
}

fn component(kind: ComponentKind, name: &str, content: &str) -> Component {
    Component {
        kind,
        name: name.to_string(),
        digest: blake3::hash(content.as_bytes()).into(),
        preview: None,
    }
}

#[test]
fn parameter_value_digests_are_pinned() {
    let mut map = BTreeMap::new();
    map.insert("a".to_string(), 1u32);
    map.insert("b".to_string(), 2u32);
    let digest: Digest = blake3::hash(b"content").into();
    let cases: Vec<(&str, String)> = vec![
        ("str", param("p", "echo hi")),
        ("String", param("p", &"echo hi".to_string())),
        ("Path", param("p", std::path::Path::new("etc/motd"))),
        ("PathBuf", param("p", &PathBuf::from("etc/motd"))),
        ("bool", param("p", &true)),
        ("u8", param("p", &7u8)),
        ("u16", param("p", &7u16)),
        ("u32", param("p", &7u32)),
        ("u64", param("p", &7u64)),
        ("usize", param("p", &7usize)),
        ("i32", param("p", &-7i32)),
        ("i64", param("p", &-7i64)),
        ("Digest", param("p", &digest)),
        ("Option::None", param("p", &None::<u64>)),
        ("Option::Some", param("p", &Some("x".to_string()))),
        ("slice", param("p", &["a".to_string(), "b".to_string()][..])),
        ("Vec", param("p", &vec![1u64, 2, 3])),
        ("BTreeMap", param("p", &map)),
        ("tuple", param("p", &("k".to_string(), 9u64))),
    ];
    let got: Vec<String> = cases.iter().map(|(n, d)| format!("{n} {d}")).collect();
    let want = GOLDEN_PARAMS;
    assert_eq!(
        got.join("\n"),
        want.trim(),
        "the key encoding changed (see module doc)"
    );
    // The parameter digest is the value's digest; the name only enters the key.
    assert_eq!(hex(&digest_of("echo hi")), cases[0].1);
}

#[test]
fn rule_digest_and_keys_are_pinned() {
    let got = [
        hex(&rule_digest("step", 1)),
        hex(&rule_digest("ostree-commit", 3)),
        hex(&rule_component("step", 1).digest),
    ];
    let want = GOLDEN_RULES;
    assert_eq!(
        got.join("\n"),
        want.trim(),
        "the rule digest changed (see module doc)"
    );

    let mut p = Params::default();
    p.add("run", "echo hi")
        .add("outputs", &vec!["out/a".to_string()]);
    let mut components = vec![rule_component("step", 1)];
    components.extend(p.items);
    components.push(component(
        ComponentKind::Input,
        "overlay.d/etc/motd",
        "hello\n",
    ));
    components.push(component(ComponentKind::Dep, "resolve:x86_64", "lockfile"));
    crate::key::sort_components(&mut components);
    let kinds: Vec<ComponentKind> = components.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ComponentKind::Rule,
            ComponentKind::Param,
            ComponentKind::Param,
            ComponentKind::Input,
            ComponentKind::Dep
        ]
    );
    let empty = key_of(&[]);
    let only_rule = key_of(&[rule_component("step", 1)]);
    let full = key_of(&components);
    let got = [hex(&empty), hex(&only_rule), hex(&full)];
    let want = GOLDEN_KEYS;
    assert_eq!(
        got.join("\n"),
        want.trim(),
        "the key encoding changed (see module doc)"
    );

    // An input file's part of a key: content, type and permission bits.
    let f = |symlink: bool, mode: u32| crate::node::InputFile {
        rel: "overlay.d/etc/motd".into(),
        abs: "/w/overlay.d/etc/motd".into(),
        digest: nosa_cache::Digest::of(b"hello\n"),
        symlink,
        mode,
    };
    let inputs = [f(false, 0o644), f(false, 0o755), f(true, 0o777)];
    let got: Vec<String> = inputs.iter().map(|i| hex(&i.key_digest())).collect();
    assert_eq!(
        got.join("\n"),
        GOLDEN_INPUTS.trim(),
        "the input encoding changed (see module doc)"
    );
}

const GOLDEN_PARAMS: &str = "
str 1e4bda71d1dc2dd8d5b72db45106dca5a58373a07f505bce92ce0f4dea0f2f79
String 1e4bda71d1dc2dd8d5b72db45106dca5a58373a07f505bce92ce0f4dea0f2f79
Path 485e76808975a30b7629688189743fb550ed5e9fe238c3a9d95e0257ac846293
PathBuf 485e76808975a30b7629688189743fb550ed5e9fe238c3a9d95e0257ac846293
bool 79ff7083d23261d93f595b7dee0f73680b13c20f00013344d46a6bfd957c99ac
u8 6d2783a6e74c7198bd0848363e58a4a9e2e24526b516458be84738e83a83e6ae
u16 6d2783a6e74c7198bd0848363e58a4a9e2e24526b516458be84738e83a83e6ae
u32 6d2783a6e74c7198bd0848363e58a4a9e2e24526b516458be84738e83a83e6ae
u64 6d2783a6e74c7198bd0848363e58a4a9e2e24526b516458be84738e83a83e6ae
usize 6d2783a6e74c7198bd0848363e58a4a9e2e24526b516458be84738e83a83e6ae
i32 755549231ac6e48b2cf0be02f19a0d156078ed052d7c8fbddd11a3a109a6f859
i64 755549231ac6e48b2cf0be02f19a0d156078ed052d7c8fbddd11a3a109a6f859
Digest 0d9ecba3d620c3647f975e98aa828ebfc9a4907c59722ec3467fa907f715c995
Option::None 4d067153ac729a4a7e8220c97935ffba67487860d58298ceeb23864369867d9f
Option::Some dd2c1cb40ece938845b9bbd96746ae7e793944d67e4ea5dca671b38c72b60e35
slice ac3e9a1e45160c704ff82f9aa9dfd7cffa1459696a6935d42ccc6dcc30e73788
Vec 4536ffb32ca9ca7c2362dde7024046bbeece87bdc848da4cc6638018d62bd333
BTreeMap 42eb4ba7487da83f5a048acf42a6375516f0a47b4f89de9d1b4e956840679dd7
tuple 296e511c2773786701bf9ebb1f1a493b14c5b30bf0b1d835f9b2f8260ee64e8f
";

const GOLDEN_RULES: &str = "
da5da4aa8d159612cc52bdb0a7c2b81abafc25e564451b695c2187c728b42021
66eb656dc07e0820821687cf479b12f256216c40fc490ca828a5f5cc27147ab3
da5da4aa8d159612cc52bdb0a7c2b81abafc25e564451b695c2187c728b42021
";

const GOLDEN_KEYS: &str = "
92022183096e677229e742b2b84131aab3c07c747aac4eba843cb81a998c0b37
c6e0ad889650bb425110d48dbb418963b0b7ca10d51fe35e022acf22662fffc6
a64b81af97259a5a113f4d942bcb598692133639be0d871179ce01bf24ea7294
";

const GOLDEN_INPUTS: &str = "
22a5c4e9f1ae202d8797ccec4d143a36199198ac55647d66ed51caa871a8616a
e31eb9aaf5ec2e393d9430852aea6a7218b6983c1be61d8778e8d1a0649f785f
fc5e25c18a95747786db726fb9698a6c5489bfb5386a0c3f6711988c9c31155a
";
