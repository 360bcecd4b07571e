//! Resolution against the fixture distro, checked against Debian's dnf on the same repository.

mod common;

use common::*;
use nosa_testkit::fixture_repo;

/// The example manifest's package list (examples/manifests/packages.yaml, x86_64).
const EXAMPLE: &[&str] = &[
    "filesystem",
    "setup",
    "nestos-release",
    "kernel",
    "systemd",
    "systemd-sysv",
    "udev",
    "kmod",
    "dbus",
    "bash",
    "dash",
    "coreutils",
    "util-linux",
    "procps",
    "less",
    "dracut",
    "dracut-network",
    "ostree",
    "ostree-boot",
    "ignition",
    "nestos-ignition-dracut",
    "passwd",
    "openssh-server",
    "sudo",
    "nestos-base",
    "fixture-app",
    "fixture-pre",
    "fixture-post",
    "grub2-pc-modules",
    "grub2-efi-x64-modules",
    "systemd-boot-unsigned",
];

#[test]
fn example_package_list_matches_dnf() {
    let repo = fixture_repo();
    let tmp = tempfile::tempdir().unwrap();
    let staged = tmp.path().join("fixture");
    stage_repo(&repo, &staged, &config("fixture", &repo));
    for weak in [true, false] {
        let mut req = request(EXAMPLE);
        req.recommends = weak;
        let ours = run(&req, &[&staged]).unwrap();
        let dnf = dnf_install(&[("fixture", &repo)], EXAMPLE, weak, &[]).unwrap();
        assert_eq!(nevras(&ours), dnf, "weak deps {weak}");
    }
}
