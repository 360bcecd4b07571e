//! The Ignition configs nosa writes: the one a kola machine boots with (the `nest` user with
//! a generated ssh key, a file and an enabled unit that `nestos.basic` looks for, merged with a
//! test's own config), the one `nosa run --ssh` boots with, and putting a config where a
//! metal image's first boot reads it (the boot partition's `ignition/config.ign`, where
//! nestos-installer and coreos-installer write it).

use std::path::Path;
use std::process::Command;

use serde_json::json;

/// The Ignition spec version nosa writes (Debian's Ignition 2.14 reads 3.0 to 3.4-experimental;
/// its `ignition-validate` accepts 3.0 to 3.3).
pub const SPEC_VERSION: &str = "3.3.0";

/// The unprivileged user NestOS images get from Ignition (Fedora CoreOS's is `core`).
pub const USER: &str = "nest";

/// The file every kola machine's config writes, and its content.
pub const KOLA_FILE: (&str, &str) = ("/etc/nosa-kola/ignition-wrote", "written by Ignition\n");

/// The unit every kola machine's config writes and enables.
pub const KOLA_UNIT: &str = "nosa-kola-enabled.service";

const KOLA_UNIT_CONTENTS: &str = "[Unit]
Description=nosa kola: a unit Ignition wrote and enabled

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target
";

fn data_url(bytes: &[u8]) -> String {
    format!("data:;base64,{}", base64(bytes))
}

/// Standard base64 with padding (RFC 4648), for data URLs.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(A[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A config that authorizes `pubkey` for the `nest` user (in `wheel`, which may use sudo
/// without a password on NestOS images), with `merge` (a user's own config) merged in: what
/// `nosa run --ssh` and `--authorize-key` boot with.
pub fn login_config(pubkey: &str, merge: Option<&[u8]>) -> Vec<u8> {
    serde_json::to_vec_pretty(&login(pubkey, merge)).expect("a JSON value serializes")
}

fn login(pubkey: &str, merge: Option<&[u8]>) -> serde_json::Value {
    let mut c = json!({
        "ignition": { "version": SPEC_VERSION },
        "passwd": { "users": [ {
            "name": USER,
            "groups": ["wheel"],
            "sshAuthorizedKeys": [pubkey.trim()],
        } ] },
    });
    if let Some(m) = merge {
        c["ignition"]["config"] = json!({ "merge": [ { "source": data_url(m) } ] });
    }
    c
}

/// The config a kola machine boots with: [`login_config`], the file [`KOLA_FILE`] and the
/// enabled unit [`KOLA_UNIT`] (what `nestos.basic` checks Ignition did), and the test's own
/// config merged in (Ignition's `ignition.config.merge`, as kola adds its key to a test's).
pub fn kola_config(pubkey: &str, test_config: Option<&[u8]>) -> Vec<u8> {
    let mut c = login(pubkey, test_config);
    c["storage"] = json!({ "files": [ {
        "path": KOLA_FILE.0,
        "mode": 0o644,
        "contents": { "source": data_url(KOLA_FILE.1.as_bytes()) },
    } ] });
    c["systemd"] = json!({ "units": [ {
        "name": KOLA_UNIT,
        "enabled": true,
        "contents": KOLA_UNIT_CONTENTS,
    } ] });
    serde_json::to_vec_pretty(&c).expect("a JSON value serializes")
}

/// Writes `config` as `ignition/config.ign` (mode 0600) into the ext4 file system at byte
/// `offset` of the raw disk `disk` (its boot partition), with e2fsprogs' debugfs: what
/// `nestos-installer install --ignition-file` leaves on a disk.
pub fn write_to_boot_partition(disk: &Path, offset: u64, config: &Path) -> Result<(), String> {
    let target = format!("{}?offset={offset}", disk.display());
    let script = format!(
        "mkdir ignition\nwrite {} ignition/config.ign\nsif ignition/config.ign mode 0100600\n",
        config.display()
    );
    let out = Command::new("debugfs")
        .args(["-w", "-f", "-", &target])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .map_err(|e| format!("cannot run debugfs (Debian package e2fsprogs): {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // debugfs exits 0 whatever its commands did: its complaints are on stderr.
    let bad: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.contains("Allocated inode"))
        .filter(|l| !l.contains("File exists"))
        .collect();
    if !out.status.success() || !bad.is_empty() {
        return Err(format!(
            "debugfs could not write ignition/config.ign into {target}: {}",
            bad.join("; ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn configs_are_json_with_the_key_and_the_merge() {
        let c: serde_json::Value =
            serde_json::from_slice(&kola_config("ssh-ed25519 AAAA k\n", Some(b"{}"))).unwrap();
        assert_eq!(c["ignition"]["version"], SPEC_VERSION);
        assert_eq!(
            c["passwd"]["users"][0]["sshAuthorizedKeys"][0],
            "ssh-ed25519 AAAA k"
        );
        assert_eq!(
            c["ignition"]["config"]["merge"][0]["source"],
            "data:;base64,e30="
        );
        assert_eq!(c["systemd"]["units"][0]["enabled"], true);
        let l: serde_json::Value = serde_json::from_slice(&login_config("k", None)).unwrap();
        assert!(l.get("storage").is_none());
        assert!(l["ignition"].get("config").is_none());
    }

    #[test]
    fn ignition_validate_accepts_every_config_nosa_writes() {
        let d = tempfile::tempdir().unwrap();
        let test = br#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/x","contents":{"source":"data:,x"}}]}}"#;
        for (name, bytes) in [
            ("kola.ign", kola_config("ssh-ed25519 AAAAC3Nza k", None)),
            (
                "kola-merge.ign",
                kola_config("ssh-ed25519 AAAAC3Nza k", Some(test)),
            ),
            ("login.ign", login_config("ssh-ed25519 AAAAC3Nza k", None)),
            (
                "login-merge.ign",
                login_config("ssh-ed25519 AAAAC3Nza k", Some(test)),
            ),
        ] {
            let p = d.path().join(name);
            fs_err::write(&p, bytes).unwrap();
            nosa_testkit::ignition_validate(&p);
        }
    }

    #[test]
    fn a_config_lands_in_the_boot_partition() {
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("disk.raw");
        let offset = 1 << 20;
        fs_err::File::create(&disk)
            .unwrap()
            .set_len(offset + (16 << 20))
            .unwrap();
        let st = Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-L", "boot", "-E"])
            .arg(format!("offset={offset}"))
            .arg(&disk)
            .arg("16M")
            .status()
            .expect("mke2fs (Debian package e2fsprogs)");
        assert!(st.success());
        let cfg = d.path().join("config.ign");
        fs_err::write(&cfg, login_config("ssh-ed25519 AAAA k", None)).unwrap();
        write_to_boot_partition(&disk, offset, &cfg).unwrap();
        let out = Command::new("debugfs")
            .args(["-R", "cat ignition/config.ign"])
            .arg(format!("{}?offset={offset}", disk.display()))
            .output()
            .unwrap();
        assert_eq!(out.stdout, fs_err::read(&cfg).unwrap());
    }
}
