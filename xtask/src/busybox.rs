//! The `busybox` package: Debian's static busybox at /usr/bin/busybox plus one relative link per applet (`busybox --list-full`).

use std::path::Path;
use std::process::Command;

use crate::Result;
use crate::payload::{Payload, add_host_file};
use crate::spec::FileSpec;
use crate::tools::run_stdout;

/// Maps one `--list-full` line (`sbin/init`, `usr/bin/[`) to its usrmerge
/// path and link target. None for applets that live elsewhere (`linuxrc`).
pub fn applet_link(line: &str) -> Option<(String, &'static str)> {
    let line = line.trim();
    let (dir, name) = line.rsplit_once('/')?;
    if name.is_empty() {
        return None;
    }
    match dir {
        "bin" | "usr/bin" => Some((format!("/usr/bin/{name}"), "busybox")),
        "sbin" | "usr/sbin" => Some((format!("/usr/sbin/{name}"), "../bin/busybox")),
        _ => None,
    }
}

/// Builds the busybox payload from an unpacked busybox-static .deb.
pub fn busybox_payload(unpacked: &Path, exclude: &[String]) -> Result<Payload> {
    let binary = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| unpacked.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no busybox binary in {}", unpacked.display()))?;
    // Static, so it runs on the build host whatever its libc.
    let list = run_stdout(Command::new(&binary).arg("--list-full"))?;
    let mut payload = Payload::new();
    add_host_file(&mut payload, "/usr/bin/busybox", &binary, Some(0o755))?;
    for line in list.lines() {
        let Some((path, target)) = applet_link(line) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or_default();
        if exclude.iter().any(|e| e == name) || name == "busybox" {
            continue;
        }
        // An applet listed in both bin and sbin keeps its first place.
        let twin = if path.starts_with("/usr/bin/") {
            format!("/usr/sbin/{name}")
        } else {
            format!("/usr/bin/{name}")
        };
        if payload.contains_key(&twin) {
            continue;
        }
        payload.insert(
            path,
            FileSpec::Symlink {
                target: target.to_string(),
            },
        );
    }
    if !payload.contains_key("/usr/bin/sh") || !payload.contains_key("/usr/sbin/init") {
        return Err("busybox has no sh or init applet".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applets_land_in_usr() {
        assert_eq!(
            applet_link("bin/sh"),
            Some(("/usr/bin/sh".into(), "busybox"))
        );
        assert_eq!(
            applet_link("sbin/init"),
            Some(("/usr/sbin/init".into(), "../bin/busybox"))
        );
        assert_eq!(
            applet_link("usr/bin/["),
            Some(("/usr/bin/[".into(), "busybox"))
        );
        assert_eq!(applet_link("linuxrc"), None);
    }
}
