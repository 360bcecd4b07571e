//! dnf semantics, each case checked against Debian's dnf on the same repositories: unsatisfiable
//! requests (missing dependency with its chain, conflicts), obsoletes, virtual provides, file
//! dependencies, arch policy, excludes, weak dependencies, priorities, locks.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use nosa_solve::{RepoConfig, ResolveError};
use nosa_testkit::fixture_repo;
use rpm::Dependency as D;

/// The fixture repository staged as `fixture`, plus an `extra` repository built from `pkgs`.
struct Setup {
    _tmp: tempfile::TempDir,
    fixture: PathBuf,
    fixture_staged: PathBuf,
    extra: PathBuf,
    extra_staged: PathBuf,
}

fn setup(pkgs: &[Pkg], extra_cfg: impl FnOnce(&mut RepoConfig)) -> Setup {
    let fixture = fixture_repo();
    let tmp = tempfile::tempdir().unwrap();
    let fixture_staged = tmp.path().join("staged/fixture");
    stage_repo(&fixture, &fixture_staged, &config("fixture", &fixture));
    let extra = tmp.path().join("extra");
    let extra_staged = tmp.path().join("staged/extra");
    if !pkgs.is_empty() {
        build_repo(&extra, pkgs);
        let mut c = config("extra", &extra);
        extra_cfg(&mut c);
        stage_repo(&extra, &extra_staged, &c);
    }
    Setup {
        _tmp: tmp,
        fixture,
        fixture_staged,
        extra,
        extra_staged,
    }
}

impl Setup {
    fn dirs(&self) -> Vec<&Path> {
        let mut v = vec![self.fixture_staged.as_path()];
        if self.extra_staged.exists() {
            v.push(&self.extra_staged);
        }
        v
    }
    fn dnf_repos(&self) -> Vec<(&str, &Path)> {
        let mut v = vec![("fixture", self.fixture.as_path())];
        if self.extra_staged.exists() {
            v.push(("extra", &self.extra));
        }
        v
    }
    /// Ours and dnf's NEVRA sets agree for `pkgs`; returns ours.
    fn check(&self, req: &nosa_solve::Request, dnf_extra: &[&str]) -> Vec<String> {
        let pkgs: Vec<&str> = req.packages.iter().map(String::as_str).collect();
        let ours = run(req, &self.dirs()).unwrap_or_else(|e| panic!("{e}"));
        let dnf = dnf_install(&self.dnf_repos(), &pkgs, req.recommends, dnf_extra)
            .unwrap_or_else(|e| panic!("dnf failed:\n{e}"));
        assert_eq!(nevras(&ours), dnf, "request {pkgs:?}");
        nevras(&ours).into_iter().collect()
    }
    /// Both we and dnf refuse `req`; returns our message.
    fn check_fails(&self, req: &nosa_solve::Request, dnf_extra: &[&str]) -> String {
        let pkgs: Vec<&str> = req.packages.iter().map(String::as_str).collect();
        let err = run(req, &self.dirs())
            .expect_err("unsatisfiable")
            .to_string();
        let dnf = dnf_install(&self.dnf_repos(), &pkgs, req.recommends, dnf_extra);
        assert!(dnf.is_err(), "dnf solved {pkgs:?}: {dnf:?}");
        err
    }
}

fn broken_pkgs() -> Vec<Pkg> {
    vec![
        Pkg {
            requires: vec![D::any("fixture-missing")],
            ..pkg("fixture-broken", "1")
        },
        Pkg {
            requires: vec![D::any("fixture-mid")],
            ..pkg("fixture-top", "1")
        },
        Pkg {
            requires: vec![D::any("fixture-gone")],
            ..pkg("fixture-mid", "1")
        },
        Pkg {
            recommends: vec![D::any("fixture-rec")],
            ..pkg("fixture-weak", "1")
        },
        pkg("fixture-rec", "1"),
    ]
}

#[test]
fn missing_dependency_names_package_and_request() {
    let s = setup(&broken_pkgs(), |_| {});
    let err = s.check_fails(&request(&["fixture-broken"]), &[]);
    assert!(
        err.contains(
            "nothing provides fixture-missing needed by fixture-broken-1-1.noarch (requested)"
        ),
        "{err}"
    );
}

#[test]
fn missing_dependency_names_the_chain() {
    let s = setup(&broken_pkgs(), |_| {});
    let err = s.check_fails(&request(&["filesystem", "fixture-top"]), &[]);
    assert!(
        err.contains(
            "nothing provides fixture-gone needed by fixture-mid-1-1.noarch, needed by fixture-top-1-1.noarch (requested)"
        ),
        "{err}"
    );
}

#[test]
fn conflict_pair_is_refused_naming_both() {
    let s = setup(&[], |_| {});
    let err = s.check_fails(&request(&["fixture-conflict-a", "fixture-conflict-b"]), &[]);
    assert!(
        err.contains(
            "fixture-conflict-a-1.0-1.nosa1.noarch (requested) conflicts with fixture-conflict-b"
        ),
        "{err}"
    );
    assert!(
        err.contains("fixture-conflict-b-1.0-1.nosa1.noarch (requested)"),
        "{err}"
    );
}

#[test]
fn obsoletes_replace_a_requested_name() {
    let s = setup(&[], |_| {});
    let got = s.check(&request(&["fixture-old"]), &[]);
    assert_eq!(got, ["fixture-new-2.0-1.nosa1.noarch"]);
    s.check(&request(&["fixture-old", "fixture-app"]), &[]);
}

#[test]
fn virtual_provide_with_two_candidates() {
    let s = setup(&[], |_| {});
    let got = s.check(&request(&["fixture-virtual"]), &[]);
    assert_eq!(got, ["fixture-virt-a-1.0-1.nosa1.noarch"]);
    // Asking for the other provider by name takes it, and fixture-app is then content.
    s.check(&request(&["fixture-virt-b", "fixture-app"]), &[]);
}

#[test]
fn file_dependency_and_file_request() {
    let s = setup(&[], |_| {});
    let got = s.check(&request(&["fixture-app"]), &[]);
    assert!(got.contains(&"fixture-foo-1.0-1.nosa1.x86_64".to_string()));
    assert!(got.contains(&"fixture-lib-1.3-1.nosa1.x86_64".to_string()));
    let got = s.check(&request(&["/usr/bin/foo"]), &[]);
    assert_eq!(got, ["fixture-foo-1.0-1.nosa1.x86_64"]);
}

#[test]
fn versioned_requests() {
    let s = setup(&[], |_| {});
    assert_eq!(
        s.check(&request(&["fixture-lib-1.1"]), &[]),
        ["fixture-lib-1.1-1.nosa1.x86_64"]
    );
    assert_eq!(
        s.check(&request(&["fixture-lib"]), &[]),
        ["fixture-lib-1.3-1.nosa1.x86_64"]
    );
    assert_eq!(
        s.check(&request(&["fixture-lib-1.1-1.nosa1.x86_64"]), &[]),
        ["fixture-lib-1.1-1.nosa1.x86_64"]
    );
}

#[test]
fn arch_policy_noarch_and_foreign_arch() {
    let s = setup(&[], |_| {});
    // noarch packages install on x86_64 (checked against dnf).
    s.check(&request(&["setup", "nosa-mini-dracut", "busybox"]), &[]);
    // On aarch64 only the noarch packages are candidates.
    let mut req = request(&["setup"]);
    req.arch = "aarch64".into();
    assert_eq!(nevras(&run(&req, &s.dirs()).unwrap()).len(), 1);
    req.packages = vec!["busybox".into()];
    let err = run(&req, &s.dirs()).unwrap_err();
    assert!(matches!(err, ResolveError::NoMatch(_)), "{err}");
}

#[test]
fn exclude_packages() {
    let s = setup(&[], |_| {});
    let mut req = request(&["fixture-app"]);
    req.exclude_packages = vec!["fixture-virt-a".into()];
    let got = s.check(&req, &["--exclude=fixture-virt-a"]);
    assert!(
        got.contains(&"fixture-virt-b-1.0-1.nosa1.noarch".to_string()),
        "{got:?}"
    );
    // Excluding the only provider of a hard dependency fails.
    req.exclude_packages = vec!["fixture-foo".into()];
    let err = s.check_fails(&req, &["--exclude=fixture-foo"]);
    assert!(err.contains("/usr/bin/foo"), "{err}");
    // Requested and excluded: refused before solving (rpm-ostree does the same).
    req.exclude_packages = vec!["fixture-app".into()];
    let err = run(&req, &s.dirs()).unwrap_err();
    assert!(
        matches!(err, ResolveError::RequestedAndExcluded(_)),
        "{err}"
    );
}

#[test]
fn repo_exclude_and_includepkgs() {
    let s = setup(&[pkg("fixture-virt-c", "1")], |c| {
        c.includepkgs = vec!["fixture-rec".into()]
    });
    let mut req = request(&["fixture-virt-c"]);
    let err = run(&req, &s.dirs()).unwrap_err();
    assert!(
        err.to_string().contains("fixture-virt-c (only excluded"),
        "{err}"
    );
    req.packages = vec!["fixture-app".into()];
    let tmp = tempfile::tempdir().unwrap();
    let staged = tmp.path().join("f");
    let mut c = config("fixture", &s.fixture);
    c.exclude = vec!["fixture-lib-1.3*".into()];
    stage_repo(&s.fixture, &staged, &c);
    let err = run(&req, &[&staged]).unwrap_err().to_string();
    assert!(err.contains("fixture-lib >= 1.2"), "{err}");
}

#[test]
fn recommends_on_and_off() {
    let s = setup(&broken_pkgs(), |_| {});
    let mut req = request(&["fixture-weak"]);
    let on = s.check(&req, &[]);
    assert!(on.contains(&"fixture-rec-1-1.noarch".to_string()), "{on:?}");
    req.recommends = false;
    let off = s.check(&req, &[]);
    assert_eq!(off, ["fixture-weak-1-1.noarch"]);
}

#[test]
fn repo_priority_beats_version() {
    let lib12 = Pkg {
        arch: "x86_64",
        ..pkg("fixture-lib", "1.2")
    };
    let s = setup(&[lib12], |c| c.priority = 10);
    let got = s.check(&request(&["fixture-app"]), &["--setopt=extra.priority=10"]);
    assert!(
        got.contains(&"fixture-lib-1.2-1.x86_64".to_string()),
        "{got:?}"
    );
    // The priority parameter overrides repo.json.
    let mut req = request(&["fixture-app"]);
    req.priorities.insert("extra".into(), 99);
    let got = s.check(&req, &[]);
    assert!(
        got.contains(&"fixture-lib-1.3-1.nosa1.x86_64".to_string()),
        "{got:?}"
    );
}

#[test]
fn locks_pin_versions_and_missing_locks_fail() {
    let s = setup(&[], |_| {});
    let mut req = request(&["fixture-lib"]);
    req.locks
        .insert("fixture-lib".into(), lock("1.1-1.nosa1.x86_64"));
    let got = nevras(&run(&req, &s.dirs()).unwrap());
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ["fixture-lib-1.1-1.nosa1.x86_64"]
    );
    // The lock makes fixture-app's `fixture-lib >= 1.2` unsatisfiable.
    req.packages.push("fixture-app".into());
    let err = run(&req, &s.dirs()).unwrap_err().to_string();
    assert!(err.contains("fixture-lib >= 1.2"), "{err}");
    // A locked version that no repository has.
    req.locks.insert("fixture-lib".into(), lock("9.9-1.x86_64"));
    let err = run(&req, &s.dirs()).unwrap_err().to_string();
    assert!(err.contains("fixture-lib-9.9-1.x86_64"), "{err}");
    assert!(err.contains("1.1-1.nosa1.x86_64"), "{err}");
    // An evr lock (overrides) without arch.
    req.locks.insert(
        "fixture-lib".into(),
        nosa_solve::Lock::from_evr("1.3-1.nosa1"),
    );
    run(&req, &s.dirs()).unwrap();
}

#[test]
fn unknown_package_is_named() {
    let s = setup(&[], |_| {});
    let err = run(&request(&["setup", "no-such-package"]), &s.dirs()).unwrap_err();
    assert_eq!(err.to_string(), "no package matches: no-such-package");
}

#[test]
fn override_repos_win_over_versions_and_locks() {
    // `overrides/rpm` holds an older fixture-lib than the fixture repository (1.3), and the
    // lockfile pins 1.3: the override is taken all the same, as dnf takes it from a repository
    // of higher priority.
    let lib12 = Pkg {
        arch: "x86_64",
        ..pkg("fixture-lib", "1.2")
    };
    let s = setup(&[lib12], |_| {});
    let mut req = request(&["fixture-app"]);
    req.locks
        .insert("fixture-lib".into(), lock("1.3-1.nosa1.x86_64"));
    req.overrides.push("extra".into());
    let got = s.check(&req, &["--setopt=extra.priority=1"]);
    assert!(
        got.contains(&"fixture-lib-1.2-1.x86_64".to_string()),
        "{got:?}"
    );
    // Without the override the lock holds.
    req.overrides.clear();
    let got = nevras(&run(&req, &s.dirs()).unwrap());
    assert!(got.contains("fixture-lib-1.3-1.nosa1.x86_64"), "{got:?}");
}
