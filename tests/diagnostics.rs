//! Each invalid build file under tests/fixtures/invalid-build-files/ is its own case: nosa
//! exits 2 and the rendered diagnostic (file, line, span, hint) matches its snapshot.

mod common;

use std::path::Path;

fn render(case: &Path) -> (Option<i32>, String) {
    let toml = fs_err::read_to_string(case).unwrap();
    let w = common::Workdir::new(&toml, &[]);
    let out = w
        .cmd(&["graph", "build"])
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    (
        out.status.code(),
        stderr.replace(&w.path().display().to_string(), "<workdir>"),
    )
}

#[test]
fn invalid_build_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid-build-files");
    let mut cases: Vec<_> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "fixtures present");
    for case in cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let (code, stderr) = render(&case);
        assert_eq!(code, Some(2), "{name}: exit code 2\n{stderr}");
        assert!(
            stderr.contains("nestos.build.toml"),
            "{name}: the diagnostic names the file\n{stderr}"
        );
        insta::assert_snapshot!(name, stderr);
    }
}
