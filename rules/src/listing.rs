//! Editing a tree listing in memory, by path (`root/...` for compose trees): what the nodes
//! that derive their output from their input's listing (the ostree layout, a traced run's
//! effect) do instead of copying files.

use std::collections::BTreeMap;

use nosa_cache::{EntryKind, TreeEntry};
use nosa_engine::RunError;

/// Removes the entries below `dir` (and `dir` itself with `with_self`) and returns them.
pub fn take_subtree(
    map: &mut BTreeMap<String, TreeEntry>,
    dir: &str,
    with_self: bool,
) -> Vec<(String, TreeEntry)> {
    let prefix = format!("{dir}/");
    let mut keys: Vec<String> = map
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    if with_self && map.contains_key(dir) {
        keys.push(dir.to_string());
    }
    keys.into_iter()
        .filter_map(|k| map.remove_entry(&k))
        .collect()
}

/// Makes `path` and its missing parents directories (mode 0755), as `mkdir -p` would.
pub fn ensure_dir(map: &mut BTreeMap<String, TreeEntry>, path: &str) -> Result<(), RunError> {
    let mut at = String::new();
    for c in path.split('/') {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(c);
        match map.get(&at).map(|e| &e.kind) {
            Some(EntryKind::Dir) => {}
            None => {
                map.insert(
                    at.clone(),
                    TreeEntry {
                        path: at.clone(),
                        mode: 0o755,
                        kind: EntryKind::Dir,
                    },
                );
            }
            Some(_) => {
                return Err(RunError::msg(format!(
                    "/{} is not a directory in the tree, so /{} cannot be made",
                    at.trim_start_matches("root/"),
                    path.trim_start_matches("root/")
                )));
            }
        }
    }
    Ok(())
}

/// Writes entry `path` (replacing a non-directory), making its parents.
pub fn put(
    map: &mut BTreeMap<String, TreeEntry>,
    path: &str,
    mode: u32,
    kind: EntryKind,
) -> Result<(), RunError> {
    if let Some((parent, _)) = path.rsplit_once('/') {
        ensure_dir(map, parent)?;
    }
    if map.get(path).is_some_and(|e| e.kind == EntryKind::Dir) {
        return Err(RunError::msg(format!(
            "/{} is a directory in the tree",
            path.trim_start_matches("root/")
        )));
    }
    map.insert(
        path.to_string(),
        TreeEntry {
            path: path.to_string(),
            mode,
            kind,
        },
    );
    Ok(())
}
