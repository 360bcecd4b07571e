//! What the fuzz targets share: a config directory on a memory file system whose one file the
//! input replaces, loaded as `nosa` loads a nestos-config.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nosa_config::{Arch, Config, LoadOptions};

/// A minimal valid nestos-config: each target replaces one of its files with the input.
const MANIFEST: &str = "ref: nestos/x86_64/devel\nrepos: [fixture]\npackages: [bash]\n";
const IMAGE: &str = "size: 10\n";
const REPO: &str = "[fixture]\nname=Fixture $basearch\nbaseurl=file:///nonexistent/$basearch\nenabled=1\ngpgcheck=0\n";

/// The config directory, made once per process (under /dev/shm when it exists).
pub fn config_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let dir = base.keep();
        fs_err::write(dir.join("manifest.yaml"), MANIFEST).unwrap();
        fs_err::write(dir.join("image.yaml"), IMAGE).unwrap();
        fs_err::write(dir.join("fixture.repo"), REPO).unwrap();
        dir
    })
}

/// Loads the config with `file` (relative to it) holding `data`, then puts the file back.
pub fn load_with(file: &str, data: &[u8]) {
    let dir = config_dir();
    let path = dir.join(file);
    let before = fs_err::read(&path).unwrap();
    fs_err::write(&path, data).unwrap();
    let mut opts = LoadOptions::new(Arch::X86_64);
    opts.strict_repos = false;
    let _ = Config::load(dir, &opts);
    fs_err::write(&path, before).unwrap();
}
