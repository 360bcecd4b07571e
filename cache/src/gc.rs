//! Garbage collection: mark everything reachable from the roots (action records of kept builds
//! and of the current graph, plus extra trees), delete the rest, report what was freed.

use std::collections::HashSet;

use crate::{Digest, Result, Store};

/// What a collection removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Action records kept.
    pub kept_actions: usize,
    /// Action records removed.
    pub removed_actions: usize,
    /// Trees removed.
    pub removed_trees: usize,
    /// Blobs removed.
    pub removed_blobs: usize,
    /// Bytes freed.
    pub freed_bytes: u64,
}

impl Store {
    /// Deletes every action record, tree and blob not reachable from `root_actions` (keys) and
    /// `root_trees`, and what was derived from the blobs deleted (`Store::derived_path`);
    /// also empties the temporary directory and removes the kept staging directories
    /// (`Store::stage_path`). Must run under the workdir lock.
    pub fn gc(
        &self,
        root_actions: &HashSet<Digest>,
        root_trees: &HashSet<Digest>,
        root_blobs: &HashSet<Digest>,
        dry_run: bool,
    ) -> Result<GcReport> {
        // Blobs may go: nothing this process saw present may be taken as present any more
        // (nothing below asks again before the sweep, so once is enough).
        self.forget_present();
        let mut report = GcReport::default();
        let mut trees: HashSet<Digest> = root_trees.clone();
        let mut blobs: HashSet<Digest> = root_blobs.clone();
        for key in self.action_keys()? {
            if root_actions.contains(&key)
                && let Some(rec) = self.read_action_raw(&key)
            {
                report.kept_actions += 1;
                trees.insert(rec.tree);
                trees.extend(rec.memo);
                blobs.extend(rec.log);
                continue;
            }
            report.removed_actions += 1;
            if !dry_run {
                report.freed_bytes += self.remove_action(&key)?;
            }
        }
        for t in &trees {
            if let Ok(tree) = self.get_tree(t) {
                blobs.extend(tree.blobs());
            }
        }
        let (n, bytes) = sweep(self, "trees", ".json", &trees, dry_run)?;
        report.removed_trees = n;
        report.freed_bytes += bytes;
        let (n, bytes) = sweep(self, "blobs", "", &blobs, dry_run)?;
        report.removed_blobs = n;
        report.freed_bytes += bytes;
        // Facts derived from a blob go with it.
        if let Ok(kinds) = fs_err::read_dir(self.root().join("derived")) {
            for kind in kinds {
                let kind = format!("derived/{}", kind?.file_name().to_string_lossy());
                report.freed_bytes += sweep(self, &kind, "", &blobs, dry_run)?.1;
            }
        }
        if !dry_run {
            // Kept staging directories hold links to blobs: a deleted blob's space would stay
            // taken. They are made again on first use.
            let stage = self.root().join("stage");
            if stage.exists() {
                fs_err::remove_dir_all(&stage)?;
            }
            for e in fs_err::read_dir(self.tmp_dir())? {
                let p = e?.path();
                let _ = if p.is_dir() {
                    fs_err::remove_dir_all(&p)
                } else {
                    fs_err::remove_file(&p)
                };
            }
        }
        Ok(report)
    }
}

fn sweep(
    store: &Store,
    kind: &str,
    ext: &str,
    keep: &HashSet<Digest>,
    dry_run: bool,
) -> Result<(usize, u64)> {
    let mut removed = 0;
    let mut bytes = 0;
    for shard in fs_err::read_dir(store.root().join(kind))? {
        for e in fs_err::read_dir(shard?.path())? {
            let e = e?;
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(ext)) else {
                continue;
            };
            let Ok(d) = hex.parse::<Digest>() else {
                continue;
            };
            if keep.contains(&d) {
                continue;
            }
            removed += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                fs_err::remove_file(e.path())?;
            }
        }
    }
    Ok((removed, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActionRecord, Digest};

    #[test]
    fn unreachable_entries_go_reachable_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mk = |name: &str, content: &str| {
            let dir = tmp.path().join(name);
            fs_err::create_dir_all(&dir).unwrap();
            fs_err::write(dir.join("f"), content).unwrap();
            let (tree, _) = store.ingest_dir(&dir, false).unwrap();
            let memo_dir = tmp.path().join(format!("{name}-memo"));
            fs_err::create_dir_all(&memo_dir).unwrap();
            fs_err::write(memo_dir.join("m"), format!("memo of {name}")).unwrap();
            let (memo, _) = store.ingest_dir(&memo_dir, false).unwrap();
            let rec: ActionRecord<String> = ActionRecord {
                node: name.into(),
                key: Digest::of(name.as_bytes()),
                components: vec![],
                tree,
                output: tree,
                log: None,
                memo: Some(memo),
                note: None,
                reused: false,
                farm: None,
                ms: 0,
                finished: 0,
            };
            store.put_action(&rec).unwrap();
            rec
        };
        let keep = mk("keep", "kept content");
        let drop = mk("drop", "dropped content");
        let roots: HashSet<_> = [keep.key].into();
        let dry = store
            .gc(&roots, &HashSet::new(), &HashSet::new(), true)
            .unwrap();
        assert_eq!(dry.removed_actions, 1);
        assert!(
            store.get_action::<String>(&drop.key).is_some(),
            "dry run removes nothing"
        );
        let report = store
            .gc(&roots, &HashSet::new(), &HashSet::new(), false)
            .unwrap();
        assert_eq!(
            report,
            GcReport {
                freed_bytes: report.freed_bytes,
                ..dry
            }
        );
        // The dropped record's output and memo trees and their blobs go; the kept memo stays.
        assert_eq!((report.removed_trees, report.removed_blobs), (2, 2));
        assert!(report.freed_bytes > 0);
        assert!(store.get_action::<String>(&keep.key).is_some());
        assert!(
            store.tree_complete(&keep.memo.unwrap()),
            "a kept record's memo stays"
        );
        assert!(store.get_action::<String>(&drop.key).is_none());
    }

    #[test]
    fn derived_facts_go_with_their_blob() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let kept = store.put_bytes(b"kept").unwrap();
        let dropped = store.put_bytes(b"dropped").unwrap();
        for d in [kept, dropped] {
            let p = store.derived_path("sha256", &d);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(&p, "fact").unwrap();
        }
        let roots: HashSet<_> = [kept].into();
        store
            .gc(&HashSet::new(), &HashSet::new(), &roots, false)
            .unwrap();
        assert!(store.derived_path("sha256", &kept).is_file());
        assert!(!store.derived_path("sha256", &dropped).exists());
        assert!(!store.blob_path(&dropped).exists());
    }
}
