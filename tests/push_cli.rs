//! `nosa push-container` end to end, against real registries started here (Debian's
//! `docker-registry`, one open, one behind htpasswd auth from apache2-utils' `htpasswd`), read
//! back with skopeo: the pushed manifest digest is the build archive's and the one meta.json
//! records; tags default to `<buildid>-<arch>`; bad references, plain HTTP without
//! `--insecure`, missing or wrong credentials fail with messages that say the fix; the dir and
//! oci-archive transports keep the digest too. One build, one test function.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fixture_workdir, nosa, v1_meta_errors};

/// Fails, naming the Debian package, when `bin` is not on PATH.
fn need(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .any(|d| d.join(bin).is_file());
    assert!(
        found,
        "{bin} is not on PATH: install the Debian package {package} (`make install-deps`)"
    );
}

/// A `docker-registry` process on a free loopback port, killed when dropped.
struct Registry {
    child: Child,
    host: String,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts a registry storing under `dir`; with `htpasswd`, it wants those credentials.
    fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        fs_err::create_dir_all(dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.join("data").display()
        );
        if let Some(h) = htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: nosa-test\n    path: {}\n",
                h.display()
            ));
        }
        let config_path = dir.join("config.yml");
        fs_err::write(&config_path, config).unwrap();
        let log = dir.join("registry.log");
        let out = fs_err::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap().into_parts().0)
            .stderr(out.into_parts().0)
            .spawn()
            .expect("start docker-registry (Debian package docker-registry)");
        let mut r = Registry { child, host, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&r.host).is_err() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}): {}",
                    fs_err::read_to_string(&r.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}",
                r.host
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `s` with its whitespace runs and miette's wrapping (`│` margins) made single spaces.
fn flat(s: &str) -> String {
    s.split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

/// `nosa ARGS` in `w`, which must exit with `code`; returns stdout and stderr (flattened:
/// see [`flat`]).
#[track_caller]
fn nosa_exit(w: &Path, args: &[&str], code: i32) -> (String, String) {
    let out: Output = nosa(w, args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "nosa {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, flat(&stderr))
}

/// `skopeo ARGS`, which must succeed; returns stdout.
#[track_caller]
fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The manifest digest `skopeo inspect` shows for `image` (with `extra` options first).
#[track_caller]
fn inspect_digest(extra: &[&str], image: &str) -> serde_json::Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(extra);
    args.push(image);
    let v: serde_json::Value = serde_json::from_str(&skopeo(&args)).unwrap();
    v
}

fn meta_json(w: &Path, id: &str) -> serde_json::Value {
    let p = w.join("builds").join(id).join("x86_64/meta.json");
    serde_json::from_slice(&fs_err::read(p).unwrap()).unwrap()
}

/// containers-storage's overlay driver leaves its home bind-mounted after skopeo exits: this
/// guard unmounts whatever is mounted under the store when dropped (also on a failed assert),
/// so the temporary directory can go and no mount outlives the test.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(&self.0))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg(p).status();
        }
    }
}

/// Checks meta.json against v1 (`common::v1_meta_errors`) and `base-oscontainer`'s shape.
fn assert_v1(meta: &serde_json::Value) {
    let errors = v1_meta_errors(meta);
    assert!(
        errors.is_empty(),
        "meta.json against v1: {errors:#?}\n{meta:#}"
    );
    let base = meta["base-oscontainer"]
        .as_object()
        .expect("base-oscontainer");
    let keys: Vec<&str> = base.keys().map(String::as_str).collect();
    assert_eq!(keys, ["digest", "image"], "{meta:#}");
}

#[test]
fn push_container_to_registries_and_directories() {
    need("docker-registry", "docker-registry");
    need("htpasswd", "apache2-utils");
    need("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let open = Registry::start(&t.join("open"), None);
    let htpasswd = t.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbc", htpasswd.to_str().unwrap(), "alice", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success(), "htpasswd: {}", text(&out.stderr));
    let locked = Registry::start(&t.join("locked"), Some(&htpasswd));

    let (_wtmp, w) = fixture_workdir();
    nosa_exit(&w, &["build"], 0);
    let id = meta_json(&w, "latest")["buildid"]
        .as_str()
        .unwrap()
        .to_string();
    let meta = meta_json(&w, &id);
    let archive = w
        .join("builds")
        .join(&id)
        .join("x86_64")
        .join(meta["images"]["ostree"]["path"].as_str().unwrap());
    // The digest the build's own archive has: every push must keep it.
    let built =
        inspect_digest(&[], &format!("oci-archive:{}", archive.display()))["Digest"].clone();
    assert!(built.as_str().unwrap().starts_with("sha256:"), "{built}");
    let default_tag = format!("{id}-x86_64");

    // The --help shows examples.
    let (help, _) = nosa_exit(&w, &["push-container", "--help"], 0);
    assert!(help.contains("Example: `nosa push-container"), "{help}");

    // No tag: `<buildid>-<arch>`; the digest on stdout, in meta.json and in the registry.
    let repo = format!("{}/nestos", open.host);
    let (stdout, stderr) = nosa_exit(&w, &["push-container", &repo, "--insecure"], 0);
    assert_eq!(
        stdout.trim(),
        built,
        "stdout is the digest; stderr: {stderr}"
    );
    let meta = meta_json(&w, &id);
    assert_eq!(
        meta["base-oscontainer"],
        serde_json::json!({"image": repo, "digest": built}),
        "{meta:#}"
    );
    assert_v1(&meta);
    let remote = format!("docker://{repo}:{default_tag}");
    assert_eq!(
        inspect_digest(&["--tls-verify=false"], &remote)["Digest"],
        built
    );

    // A tag; the blobs are there already.
    let (stdout, stderr) = nosa_exit(
        &w,
        &["push-container", &format!("{repo}:v1"), "--insecure"],
        0,
    );
    assert_eq!(stdout.trim(), built);
    assert!(stderr.contains("0 blobs written"), "{stderr}");
    let v = inspect_digest(&["--tls-verify=false"], &format!("docker://{repo}:v1"));
    assert_eq!(v["Digest"], built);
    let tags: Vec<&str> = v["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"v1") && tags.contains(&default_tag.as_str()),
        "{tags:?}"
    );

    // What the registry holds round-trips through skopeo into an OCI layout.
    let layout = t.join("copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{repo}:v1"),
        &format!("oci:{}:v1", layout.display()),
    ]);
    assert_eq!(
        inspect_digest(&[], &format!("oci:{}:v1", layout.display()))["Digest"],
        built
    );

    // A plain-HTTP registry without --insecure: the message says to pass it.
    let (_, stderr) = nosa_exit(&w, &["push-container", &repo], 1);
    assert!(stderr.contains("--insecure"), "{stderr}");

    // Bad references: exit 2, what is wrong and how to write it; nothing pushed.
    for (image, says) in [
        (format!("{repo}:v1:v2"), "only the tag may contain"),
        ("nestos:v1".to_string(), "no registry host"),
        (format!("{}/NestOS", open.host), "lowercase"),
    ] {
        let (_, stderr) = nosa_exit(&w, &["push-container", &image, "--insecure"], 2);
        assert!(
            stderr.contains(says) && stderr.contains("HOST[:PORT]/REPO[:TAG]"),
            "{image}: {stderr}"
        );
    }

    // The registry behind htpasswd: refused without credentials, naming --authfile.
    let locked_repo = format!("{}/nestos/os", locked.host);
    let (_, stderr) = nosa_exit(&w, &["push-container", &locked_repo, "--insecure"], 1);
    assert!(stderr.contains("--authfile"), "{stderr}");
    let auth = |user_pass: &str| {
        use std::io::Write;
        let mut c = Command::new("base64")
            .args(["-w0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(user_pass.as_bytes())
            .unwrap();
        let b64 = text(&c.wait_with_output().unwrap().stdout);
        serde_json::json!({"auths": {locked.host.clone(): {"auth": b64}}}).to_string()
    };
    let authfile = t.join("auth.json");
    fs_err::write(&authfile, auth("alice:s3cret")).unwrap();
    let wrong = t.join("wrong.json");
    fs_err::write(&wrong, auth("alice:nope")).unwrap();
    let (_, stderr) = nosa_exit(
        &w,
        &[
            "push-container",
            &locked_repo,
            "--insecure",
            "--authfile",
            wrong.to_str().unwrap(),
        ],
        1,
    );
    assert!(stderr.contains("did not accept the authfile"), "{stderr}");
    // An authfile without an entry for the host: exit 2, naming the file and the host.
    let (_, stderr) = nosa_exit(
        &w,
        &[
            "push-container",
            &repo,
            "--insecure",
            "--authfile",
            authfile.to_str().unwrap(),
        ],
        2,
    );
    assert!(
        stderr.contains(authfile.to_str().unwrap())
            && stderr.contains(&format!("no credentials for {repo}")),
        "{stderr}"
    );
    let (_, stderr) = nosa_exit(
        &w,
        &[
            "push-container",
            &locked_repo,
            "--insecure",
            "--authfile",
            "missing.json",
        ],
        2,
    );
    assert!(
        stderr.contains("missing.json") && stderr.contains("does not exist"),
        "{stderr}"
    );
    let (stdout, _) = nosa_exit(
        &w,
        &[
            "push-container",
            &format!("{locked_repo}:v2"),
            "--insecure",
            "--authfile",
            authfile.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(stdout.trim(), built);
    let v = inspect_digest(
        &["--tls-verify=false", "--creds", "alice:s3cret"],
        &format!("docker://{locked_repo}:v2"),
    );
    assert_eq!(v["Digest"], built);
    let meta = meta_json(&w, &id);
    assert_eq!(
        meta["base-oscontainer"],
        serde_json::json!({"image": locked_repo, "digest": built})
    );
    assert_v1(&meta);

    // dir and oci-archive, written by nosa: same digest; meta.json unchanged.
    let dir = t.join("dir-out");
    let (stdout, _) = nosa_exit(
        &w,
        &[
            "push-container",
            "--transport",
            "dir",
            dir.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(stdout.trim(), built);
    assert_eq!(
        inspect_digest(&[], &format!("dir:{}", dir.display()))["Digest"],
        built
    );
    let oa = t.join("out.ociarchive");
    let (stdout, _) = nosa_exit(
        &w,
        &[
            "push-container",
            "--transport",
            "oci-archive",
            &format!("{}:stable", oa.display()),
        ],
        0,
    );
    assert_eq!(stdout.trim(), built);
    assert_eq!(
        inspect_digest(&[], &format!("oci-archive:{}:stable", oa.display()))["Digest"],
        built
    );
    let (stdout, _) = nosa_exit(
        &w,
        &[
            "push-container",
            "--transport",
            "oci-archive",
            oa.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(stdout.trim(), built);
    assert_eq!(
        inspect_digest(&[], &format!("oci-archive:{}:{default_tag}", oa.display()))["Digest"],
        built,
        "without a tag the archive's ref is <buildid>-<arch>"
    );
    assert_eq!(
        meta_json(&w, &id)["base-oscontainer"]["image"],
        locked_repo.as_str()
    );

    // The transports skopeo carries: docker-archive (skopeo converts the manifest to docker's
    // schema 2, and a docker-archive keeps no manifest, so only the content can be compared:
    // the config's diff_ids, the build's uncompressed layers) and containers-storage in an
    // overlay store of the test's own (no daemon). Not vfs: vfs keeps each layer as a full copy
    // of the tree below it, tens of gigabytes for the build's dozens of layers, which filled a
    // CI machine's disk.
    let diff_ids = |image: &str| {
        let config: serde_json::Value =
            serde_json::from_str(&skopeo(&["inspect", "--config", image])).unwrap();
        config["rootfs"]["diff_ids"].clone()
    };
    let built_ids = diff_ids(&format!("oci-archive:{}", oa.display()));
    assert!(
        built_ids.as_array().is_some_and(|a| a.len() > 1),
        "{built_ids}"
    );
    let da = t.join("nestos.docker-archive.tar");
    let (stdout, _) = nosa_exit(
        &w,
        &[
            "push-container",
            "--transport",
            "docker-archive",
            &format!("{}:localhost/nestos:t", da.display()),
        ],
        0,
    );
    assert!(stdout.trim().starts_with("sha256:"), "{stdout}");
    assert_eq!(
        diff_ids(&format!("docker-archive:{}", da.display())),
        built_ids
    );
    let cs_mounts = Unmount(t.join("cs-root"));
    let storage = format!(
        "[overlay@{}+{}]localhost/nestos:cs",
        t.join("cs-root").display(),
        t.join("cs-run").display()
    );
    let (stdout, _) = nosa_exit(
        &w,
        &[
            "push-container",
            "--transport",
            "containers-storage",
            &storage,
        ],
        0,
    );
    let cs_image = format!("containers-storage:{storage}");
    assert_eq!(inspect_digest(&[], &cs_image)["Digest"], stdout.trim());
    assert_eq!(diff_ids(&cs_image), built_ids);
    drop(cs_mounts);
    let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(t.to_str().unwrap()), "{mounts}");

    // A dir destination that holds something else is refused.
    let busy = t.join("busy");
    fs_err::create_dir_all(&busy).unwrap();
    fs_err::write(busy.join("x"), "x").unwrap();
    let (_, stderr) = nosa_exit(
        &w,
        &[
            "push-container",
            "--transport",
            "dir",
            busy.to_str().unwrap(),
        ],
        2,
    );
    assert!(stderr.contains("not an image directory"), "{stderr}");
    drop(open);
    drop(locked);
}
