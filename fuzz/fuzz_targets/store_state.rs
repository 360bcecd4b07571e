//! Fuzzes the store's readers of files a killed build or another version may have left: the
//! stat cache, the remembered build state, a tree and an action record. Any bytes give a value
//! or nothing (read as absent), never a panic.
#![no_main]

use std::sync::OnceLock;

use nosa_cache::{Digest, StatCache, Store};
use nosa_engine::{BuildState, Component};

fn store() -> &'static Store {
    static S: OnceLock<Store> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap()
            .keep();
        Store::open(dir.join("store")).unwrap()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = store();
    let file = s.state_dir().join("fuzz");
    fs_err::write(&file, data).unwrap();
    let _ = StatCache::load(&file);
    let _ = BuildState::load(&file);
    // A tree and an action record under the name their bytes would have, and another.
    for d in [Digest::of(data), Digest::of(b"other")] {
        let tree = s.tree_path(&d);
        fs_err::create_dir_all(tree.parent().unwrap()).unwrap();
        fs_err::write(&tree, data).unwrap();
        let _ = s.get_tree(&d);
        let _ = fs_err::remove_file(&tree);
    }
    let key = Digest::of(b"key");
    let rec = s
        .root()
        .join("ac")
        .join(&key.to_hex()[..2])
        .join(format!("{}.json", key.to_hex()));
    fs_err::create_dir_all(rec.parent().unwrap()).unwrap();
    fs_err::write(&rec, data).unwrap();
    let _ = s.get_action::<Component>(&key);
});
