//! Where things are: the checkout, and the fixture distro `make test` builds first.

use std::path::{Path, PathBuf};

/// The workspace root (the checkout).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is in the workspace")
        .to_path_buf()
}

/// The fixture distro's x86_64 repository, canonical; fails (never skips) when it has not
/// been built, naming the command that builds it.
pub fn fixture_repo() -> PathBuf {
    let p = workspace_root().join("fixtures/out/repo/x86_64");
    assert!(
        p.join("repodata/repomd.xml").is_file(),
        "the fixture repository {} is missing: run `cargo xtask fixture-distro` first \
         (`make test` does)",
        p.display()
    );
    p.canonicalize().expect("canonical fixture repository path")
}

/// The fixture distro's RPMs (`Packages/` of [`fixture_repo`]).
pub fn fixture_packages() -> PathBuf {
    fixture_repo().join("Packages")
}
