//! A repository whose metadata places a package outside itself: the resolve node refuses the
//! location before any download could fetch a file of the mirror's host (or, for a file://
//! repository, of this one) into the store.

mod common;

use std::process::Command;

use common::{build_repo, config, pkg, request, run, stage_repo};

#[test]
fn a_package_location_that_leaves_the_repository_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    build_repo(&repo, &[pkg("a", "1")]);
    for (prefix, shown) in [
        ("../../../etc/", "../../../etc/Packages/a-1-1.noarch.rpm"),
        ("/etc/", "/etc/Packages/a-1-1.noarch.rpm"),
    ] {
        // createrepo_c writes the hostile href itself.
        let st = Command::new("createrepo_c")
            .args(["--quiet", "--no-database", "--workers", "1"])
            .arg(format!("--location-prefix={prefix}"))
            .arg(&repo)
            .status()
            .unwrap();
        assert!(st.success());
        let staged = t.path().join(format!("staged-{}", prefix.len()));
        stage_repo(&repo, &staged, &config("hostile", &repo));
        let e = run(&request(&["a"]), &[&staged]).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "repository hostile: package a-1-1.noarch: refusing location href {shown:?}"
            )),
            "{prefix}: {e}"
        );
    }
}
