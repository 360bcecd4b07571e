//! Running host tools (apt, dpkg-deb, depmod, createrepo_c, rpm): errors name the command and its stderr, missing tools name their Debian package.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::Result;

/// Host tools the generator runs, with the Debian package that provides each.
pub const TOOLS: &[(&str, &str)] = &[
    ("apt-cache", "apt"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("depmod", "kmod"),
    ("createrepo_c", "createrepo-c"),
];

/// Tools only `--verify` needs.
pub const VERIFY_TOOLS: &[(&str, &str)] = &[("rpm", "rpm"), ("rpm2cpio", "rpm"), ("cpio", "cpio")];

/// Finds `name` in PATH (plus /usr/sbin and /sbin, where depmod lives).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Fails with an install hint when a tool is missing.
pub fn require(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<_> = tools
        .iter()
        .filter(|(tool, _)| which(tool).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<_> = missing.iter().map(|(t, _)| *t).collect();
    let mut pkgs: Vec<_> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.dedup();
    Err(format!(
        "missing tools: {}\nhint: apt-get install {}",
        names.join(", "),
        pkgs.join(" ")
    )
    .into())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn output(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )
        .into());
    }
    Ok(out)
}

/// Runs a command to completion; stdout is discarded.
pub fn run(cmd: &mut Command) -> Result<()> {
    output(cmd).map(|_| ())
}

/// Runs a command and returns its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    Ok(String::from_utf8(out.stdout)
        .map_err(|e| format!("`{}`: output is not UTF-8: {e}", describe(cmd)))?)
}
