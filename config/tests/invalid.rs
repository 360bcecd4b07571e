//! Every invalid fixture under `tests/fixtures/invalid/<case>/` fails to load with a
//! diagnostic; the rendered diagnostic of each is a snapshot.

mod common;

use nosa_config::{Arch, Config, LoadOptions};

#[test]
fn invalid_configs() {
    let root = common::fixture("invalid");
    let mut cases: Vec<_> = fs_err::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "fixtures missing under {}",
        root.display()
    );
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let opts = LoadOptions {
            workdir: Some(common::WORKDIR.into()),
            ..LoadOptions::new(Arch::X86_64)
        };
        match Config::load(&dir, &opts) {
            Ok(_) => panic!("invalid/{name} loaded without error"),
            Err(e) => {
                let rendered = common::render(&e, &dir);
                insta::assert_snapshot!(format!("invalid-{name}"), rendered);
            }
        }
    }
}
