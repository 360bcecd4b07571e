//! External tools: a missing one fails the test with the Debian package that has it.

use std::process::Command;

/// Fails the test unless `tool` is on `PATH`, naming the Debian package to install.
pub fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install the Debian package `{package}` \
         (apt-get install -y {package}; `make test` installs it)"
    );
}

/// Runs `cmd ARGS` and returns its stdout; fails naming `package` when `cmd` cannot run, and
/// with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str], package: &str) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{cmd}` ({e}): install the Debian package `{package}`")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that Ignition's own validator (`ignition-validate`, Debian package `ignition`)
/// accepts the config at `path`.
pub fn ignition_validate(path: &std::path::Path) {
    run(
        "ignition-validate",
        &[path.to_str().expect("a UTF-8 path")],
        "ignition",
    );
}
