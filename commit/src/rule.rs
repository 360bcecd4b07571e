//! `OstreeCommitRule` (`ostree-commit:<arch>`): its dependency's `root/` committed into a fresh
//! archive repository under `out/repo`, with `out/commit.json`; the equivalence digest ignores
//! the commit timestamp, so a re-commit of the same content cuts off downstream. Also the
//! commit-time finishing that needs the version: rpm-ostree's `mutate-os-release`, and the
//! `rpmostree.inputhash` and `rpmostree.rpmdb.pkglist` metadata.

use std::collections::BTreeMap;
use std::path::Path;

use nosa_cache::{Digest, EntryKind, TreeEntry};
use nosa_engine::{Params, Rule, RunContext, RunError};
use serde::{Deserialize, Serialize};

use crate::{
    CommitRequest, IdMap, Listing, MetaValue, ObjectMemo, RepoMode, caps_from_text, commit_listing,
    mutate_os_release, parse_nevra,
};

/// Commits the OS tree its single dependency produced.
///
/// The dependency's output must hold `root/` (the tree in ostree layout, committed as it is)
/// and may hold `meta.json` ([`TreeMeta`]).
#[derive(Clone, Debug)]
pub struct OstreeCommitRule {
    arch: String,
    ref_name: String,
    version: String,
    metadata_json: String,
    timestamp: u64,
    parent: Option<String>,
    mutate_os_release: Option<String>,
}

/// What the rule reads from the dependency's `meta.json` (other fields are ignored, so the
/// unpack rule's `meta.json` is accepted as it is).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TreeMeta {
    /// Owners by absolute path: `user:group`, by name (looked up in the tree's own
    /// passwd/group files) or by number.
    #[serde(default)]
    pub owners: BTreeMap<String, String>,
    /// Numeric owners by absolute path; win over `owners`.
    #[serde(default)]
    pub owner_ids: BTreeMap<String, (u32, u32)>,
    /// File capabilities by absolute path, in libcap's text form (`cap_net_raw=ep`).
    #[serde(default)]
    pub caps: BTreeMap<String, String>,
    /// The installed packages (`name-[epoch:]version-release.arch`), as the rootfs rule lists
    /// them; when present they become `rpmostree.rpmdb.pkglist`.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// `commit.json`: what the rule committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The ref in `repo/`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The `version` metadata.
    pub version: String,
    /// The commit checksum.
    pub checksum: String,
    /// The content checksum (timestamp- and metadata-independent).
    pub content_checksum: String,
    /// The commit timestamp.
    pub timestamp: u64,
    /// The parent commit, if any.
    pub parent: Option<String>,
    /// The commit metadata as written (with `version` and `ostree.ref-binding`).
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl CommitRecord {
    /// Everything dependents can observe in the commit except its timestamp (and the commit
    /// checksum, which covers the timestamp): content, ref, parent, metadata.
    pub fn equivalence_digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(b"nosa-ostree-commit-eq-v1\0");
        for field in [
            self.content_checksum.as_str(),
            self.ref_name.as_str(),
            self.parent.as_deref().unwrap_or(""),
        ] {
            h.update(&(field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        let meta = serde_json::to_vec(&self.metadata).unwrap_or_default();
        h.update(&(meta.len() as u64).to_le_bytes());
        h.update(&meta);
        h.finalize().into()
    }
}

fn meta_to_json(v: &MetaValue) -> serde_json::Value {
    match v {
        MetaValue::Str(s) => s.clone().into(),
        MetaValue::StrList(l) => l.clone().into(),
        MetaValue::Bool(b) => (*b).into(),
        MetaValue::I64(i) => (*i).into(),
        MetaValue::U64(u) => (*u).into(),
        MetaValue::PkgList(l) => l.iter().map(|e| e.to_vec()).collect::<Vec<_>>().into(),
    }
}

impl OstreeCommitRule {
    /// Commits for `arch` to `ref_name`, with `version` in the metadata; timestamp 0, no
    /// other metadata, no parent.
    pub fn new(arch: &str, ref_name: &str, version: &str) -> Self {
        OstreeCommitRule {
            arch: arch.into(),
            ref_name: ref_name.into(),
            version: version.into(),
            metadata_json: "{}".into(),
            timestamp: 0,
            parent: None,
            mutate_os_release: None,
        }
    }

    /// rpm-ostree's `mutate-os-release`: the string (e.g. the releasever) replaced by the
    /// version in the tree's os-release `VERSION`/`PRETTY_NAME`, plus `OSTREE_VERSION`.
    pub fn mutate_os_release(mut self, base: Option<&str>) -> Self {
        self.mutate_os_release = base.map(str::to_string);
        self
    }

    /// Extra commit metadata: a JSON object of strings, string arrays, booleans and integers
    /// (canonical JSON, so that equal metadata gives equal keys).
    pub fn metadata_json(mut self, json: &str) -> Self {
        self.metadata_json = json.into();
        self
    }

    /// The commit timestamp (SOURCE_DATE_EPOCH-like; never the wall clock).
    pub fn timestamp(mut self, secs: u64) -> Self {
        self.timestamp = secs;
        self
    }

    /// The parent commit checksum.
    pub fn parent(mut self, checksum: Option<&str>) -> Self {
        self.parent = checksum.map(str::to_string);
        self
    }

    /// rpm-ostree's input hash for this commit of the tree whose output digest is `tree`:
    /// everything the commit is made from except what each build picks (version, timestamp,
    /// parent), i.e. the tree, the ref, the caller's metadata, `mutate-os-release` and this
    /// rule's version. Equal input hashes mean the same commit apart from the version, so
    /// `nosa build` keeps the build id when it is unchanged.
    pub fn input_hash(&self, tree: &Digest) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(b"nosa-ostree-commit-inputhash-v1\0");
        let rule_version = self.version().to_string();
        for field in [
            rule_version.as_str(),
            &tree.to_hex(),
            &self.arch,
            &self.ref_name,
            &self.metadata_json,
            self.mutate_os_release.as_deref().unwrap_or("\0none"),
        ] {
            h.update(&(field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        h.finalize().into()
    }

    /// The node id: `ostree-commit:<arch>`.
    pub fn node_id(&self) -> String {
        format!("ostree-commit:{}", self.arch)
    }

    /// The commit metadata: the caller's, then `version`, `ostree.ref-binding`,
    /// `rpmostree.inputhash` (from the tree dependency's output digest: what went into the commit
    /// apart from the version, see [`OstreeCommitRule::input_hash`]) and, when the tree lists its packages,
    /// `rpmostree.rpmdb.pkglist` (sorted, as rpm-ostree sorts it).
    fn metadata(
        &self,
        tree: &Digest,
        packages: &[String],
    ) -> Result<BTreeMap<String, MetaValue>, RunError> {
        let mut m = crate::metadata_from_json(&self.metadata_json)
            .map_err(|e| RunError::msg(e.to_string()))?;
        match m.get("version") {
            Some(MetaValue::Str(v)) if *v != self.version => {
                return Err(RunError::msg(format!(
                    "commit metadata has version {v:?}, the build is {:?}",
                    self.version
                )));
            }
            _ => {}
        }
        m.insert("version".into(), MetaValue::Str(self.version.clone()));
        m.insert(
            "ostree.ref-binding".into(),
            MetaValue::StrList(vec![self.ref_name.clone()]),
        );
        m.insert(
            "rpmostree.inputhash".into(),
            MetaValue::Str(self.input_hash(tree).to_hex()),
        );
        if !packages.is_empty() {
            let mut list = packages
                .iter()
                .map(|n| {
                    parse_nevra(n).ok_or_else(|| {
                        RunError::msg(format!("meta.json packages: {n:?} is not a NEVRA"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            list.sort();
            m.insert("rpmostree.rpmdb.pkglist".into(), MetaValue::PkgList(list));
        }
        Ok(m)
    }
}

/// The memo tree's one file: the previous commit's [`ObjectMemo`].
const MEMO_FILE: &str = "objects.map";

/// Makes every object file read-only (0444), as the linked ones are: the output is the same
/// whichever objects were linked and which were written.
fn readonly_objects(dir: &Path) -> Result<(), RunError> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| RunError::msg(format!("{}: {e}", dir.display())))?;
        if entry.file_type().is_file() {
            let mode = entry
                .metadata()
                .map_err(std::io::Error::other)?
                .permissions()
                .mode();
            if mode & 0o7777 != 0o444 {
                fs_err::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o444))?;
            }
        }
    }
    Ok(())
}

fn read_tree_meta(path: &Path) -> Result<TreeMeta, RunError> {
    if !path.exists() {
        return Ok(TreeMeta::default());
    }
    serde_json::from_slice(&fs_err::read(path)?)
        .map_err(|e| RunError::msg(format!("{}: {e}", path.display())))
}

impl Rule for OstreeCommitRule {
    fn kind(&self) -> &str {
        "ostree-commit"
    }

    fn version(&self) -> u32 {
        // 4: the repository is committed in a kept directory and handed over as a tree.
        4
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("ref", &self.ref_name);
        p.add("version", &self.version);
        p.add("metadata", &self.metadata_json);
        p.add("timestamp", &self.timestamp);
        p.add("parent", &self.parent);
        p.add("mutate-os-release", &self.mutate_os_release);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "ostree-commit needs exactly one dependency (the OS tree)",
            ));
        };
        let listing = ctx.dep_tree(dep)?;
        let Some(root) = listing.entries.iter().find(|e| e.path == "root") else {
            return Err(RunError::msg(format!("{} has no root/ directory", dep.id)));
        };
        let root_mode = root.mode;
        // Read-only links (no copies): the owners' names resolve through the tree's own
        // passwd and group files, and os-release is found as the deployed system finds it.
        // Kept between runs and synced: an edit to one file relinks that file, not the tree.
        let staged = ctx.stage_dep_kept(dep)?;
        let rootfs = staged.join("root");
        let meta = read_tree_meta(&staged.join("meta.json"))?;
        let mut entries: Vec<TreeEntry> = listing
            .entries
            .into_iter()
            .filter_map(|mut e| {
                let rel = e.path.strip_prefix("root/")?.to_string();
                e.path = rel;
                Some(e)
            })
            .collect();
        if let Some(base) = &self.mutate_os_release {
            // The file is replaced (never written through its link) and stored as a blob.
            let rel = mutate_os_release(&rootfs, base, &self.version)
                .map_err(|e| RunError::msg(format!("{}: {e}", dep.id)))?;
            let bytes = fs_err::read(rootfs.join(&rel))?;
            let digest = ctx.store().put_bytes(&bytes)?;
            let rel_str = rel.to_string_lossy();
            let entry = entries
                .iter_mut()
                .find(|e| e.path == rel_str)
                .ok_or_else(|| RunError::msg(format!("{}: /{rel_str} is not listed", dep.id)))?;
            entry.mode = 0o644;
            entry.kind = EntryKind::File {
                digest,
                size: bytes.len() as u64,
            };
            writeln!(
                ctx.log,
                "mutate-os-release: /{rel_str} gets version {} (replacing {base:?})",
                self.version
            )?;
        }
        let ids = IdMap::from_tree(&rootfs).map_err(|e| RunError::msg(e.to_string()))?;
        let mut owners = BTreeMap::new();
        for (path, owner) in &meta.owners {
            let id = ids
                .resolve(owner)
                .map_err(|e| RunError::msg(format!("{}: {path}: {e}", dep.id)))?;
            owners.insert(path.clone(), id);
        }
        owners.extend(meta.owner_ids.clone());
        let mut xattrs = BTreeMap::new();
        for (path, text) in &meta.caps {
            let value = caps_from_text(text).map_err(|e| RunError::msg(format!("{path}: {e}")))?;
            if let Some(v) = value {
                xattrs.insert(path.clone(), vec![("security.capability".to_string(), v)]);
            }
        }
        let metadata = self.metadata(&dep.output, &meta.packages)?;
        // Speed only: the content objects of this node's previous output, linked in, and the
        // memo that says which content each one is, so that unchanged files are named, not
        // read and compressed again. Objects the new commit does not reach are deleted after
        // it: the output is what a commit into an empty repository gives (commit/tests/engine.rs
        // compares the two). The repository is a directory kept between runs and synced to
        // exactly that starting point (a fresh repository plus the named objects), so that a
        // run does not make its 256 `objects/xx` directories again.
        let t0 = std::time::Instant::now();
        let repo = ctx.kept_dir("repo")?;
        // The previous output's repository: where the named objects are, and the hint that
        // names the files left linked when the repository is taken back.
        let previous_repo = ctx
            .previous
            .and_then(|d| ctx.store().get_tree(&d).ok())
            .map(|t| under(&t, "repo"));
        let (known, start) = self.starting_repo(ctx, previous_repo.as_ref())?;
        ctx.store()
            .sync_into(&start, &repo, nosa_cache::Materialize::Hardlink)?;
        nosa_engine::timing(&format!("{}: sync the kept repository", ctx.node), t0);
        let t0 = std::time::Instant::now();
        let req = CommitRequest {
            repo: repo.clone(),
            mode: RepoMode::Archive,
            rootfs,
            owners,
            xattrs,
            ref_name: self.ref_name.clone(),
            metadata: metadata.clone(),
            timestamp: self.timestamp,
            parent: self.parent.clone(),
            subject: None,
            fsync: false,
        };
        let done = commit_listing(
            &req,
            &Listing {
                store: ctx.store(),
                root_mode,
                entries: &entries,
                known: &known,
            },
        )
        .map_err(|e| RunError::msg(e.to_string()))?;
        let result = done.result;
        let deleted = if known.is_empty() {
            0
        } else {
            crate::keep_reachable_objects(&repo, &result.checksum)
                .map_err(|e| RunError::msg(e.to_string()))?
        };
        readonly_objects(&repo.join("objects"))?;
        nosa_engine::timing(&format!("{}: commit, prune, read-only", ctx.node), t0);
        writeln!(
            ctx.log,
            "content objects: {} written, {} named from the previous output ({} of its objects linked, {deleted} not reached and deleted)",
            done.written,
            done.memo.len().saturating_sub(done.written),
            known.len(),
        )?;
        ctx.set_memo_files(&[(MEMO_FILE, &done.memo.encode())])?;
        for p in &result.unmatched {
            writeln!(
                ctx.log,
                "warning: {p}: owner or capability given for a path not in the tree"
            )?;
        }
        writeln!(
            ctx.log,
            "committed {} -> {} (content {})",
            self.ref_name, result.checksum, result.content_checksum
        )?;
        let record = CommitRecord {
            ref_name: self.ref_name.clone(),
            version: self.version.clone(),
            checksum: result.checksum,
            content_checksum: result.content_checksum,
            timestamp: self.timestamp,
            parent: self.parent.clone(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.clone(), meta_to_json(v)))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| RunError::msg(e.to_string()))?;
        // The output, handed over as a tree: the repository's files that are links to blobs
        // are named without being read, the others (the new objects) are moved into the store
        // and linked back, so that the kept repository is all links for the next run's sync.
        let t0 = std::time::Instant::now();
        let (_, repo_tree) = ctx
            .store()
            .ingest_dir_hinted(&repo, true, previous_repo.as_ref())?;
        ctx.store()
            .sync_into(&repo_tree, &repo, nosa_cache::Materialize::Hardlink)?;
        let json_digest = ctx.store().put_bytes(&json)?;
        let mut entries = vec![
            TreeEntry {
                path: "repo".into(),
                mode: 0o755,
                kind: EntryKind::Dir,
            },
            TreeEntry {
                path: "commit.json".into(),
                mode: 0o644,
                kind: EntryKind::File {
                    digest: json_digest,
                    size: json.len() as u64,
                },
            },
        ];
        entries.extend(repo_tree.entries.into_iter().map(|mut e| {
            e.path = format!("repo/{}", e.path);
            e
        }));
        ctx.set_output_tree(nosa_cache::Tree { entries });
        ctx.set_equivalence(record.equivalence_digest());
        nosa_engine::timing(&format!("{}: take the repository", ctx.node), t0);
        Ok(())
    }

    fn equivalence_digest(&self, out: &Path) -> Option<Digest> {
        self.equivalence(out)
    }
}

/// The entries of `t` under `prefix/`, with the prefix taken off.
fn under(t: &nosa_cache::Tree, prefix: &str) -> nosa_cache::Tree {
    let p = format!("{prefix}/");
    nosa_cache::Tree {
        entries: t
            .entries
            .iter()
            .filter_map(|e| {
                let rest = e.path.strip_prefix(&p)?;
                Some(TreeEntry {
                    path: rest.to_string(),
                    ..e.clone()
                })
            })
            .collect(),
    }
}

impl OstreeCommitRule {
    /// What the repository must hold before the commit: a fresh archive repository (made on
    /// a memory file system and taken as a tree) plus the content objects of the node's
    /// previous output that its memo names, and the memo cut down to them (empty when there
    /// is no previous run, its tree or memo is gone, or the run is forced).
    fn starting_repo(
        &self,
        ctx: &mut RunContext<'_>,
        previous_repo: Option<&nosa_cache::Tree>,
    ) -> Result<(ObjectMemo, nosa_cache::Tree), RunError> {
        let (fresh, _) = ctx.memory_scratch("fresh-repo", 1 << 20)?;
        let fresh = fresh.join("repo");
        crate::open_or_create(&fresh, RepoMode::Archive)
            .map_err(|e| RunError::msg(e.to_string()))?;
        let store = ctx.store();
        let (_, mut start) = store.ingest_dir(&fresh, false)?;
        let memo = ctx
            .previous_memo_file(MEMO_FILE)
            .and_then(|(_, b)| ObjectMemo::decode(&b));
        let (Some(mut memo), Some(prev)) = (memo, previous_repo) else {
            return Ok((ObjectMemo::default(), start));
        };
        // Each named object's path in the previous output's repository
        // (`objects/ab/cdef….filez`).
        let wanted: std::collections::HashMap<String, String> = memo
            .iter()
            .filter_map(|(_, c)| {
                let rel = crate::write::object_relpath(c, ostree::ObjectType::File, true)?;
                Some((format!("objects/{rel}"), c.to_string()))
            })
            .collect();
        let objects: Vec<TreeEntry> = prev
            .entries
            .iter()
            .filter(|e| wanted.contains_key(&e.path) && matches!(e.kind, EntryKind::File { .. }))
            .cloned()
            .collect();
        let linked: std::collections::HashSet<&str> =
            objects.iter().map(|e| wanted[&e.path].as_str()).collect();
        memo.retain(|c| linked.contains(c));
        // Their directories as the previous output had them, unless the fresh repository has
        // them already.
        let have: std::collections::HashSet<String> =
            start.entries.iter().map(|e| e.path.clone()).collect();
        let dirs: std::collections::HashSet<&str> = objects
            .iter()
            .filter_map(|e| e.path.rsplit_once('/').map(|(d, _)| d))
            .collect();
        let object_dirs: Vec<TreeEntry> = prev
            .entries
            .iter()
            .filter(|e| {
                matches!(e.kind, EntryKind::Dir)
                    && dirs.contains(e.path.as_str())
                    && !have.contains(&e.path)
            })
            .cloned()
            .collect();
        start.entries.extend(object_dirs);
        start.entries.extend(objects);
        start.normalize();
        Ok((memo, start))
    }

    fn equivalence(&self, out: &Path) -> Option<Digest> {
        let bytes = fs_err::read(out.join("commit.json")).ok()?;
        let record: CommitRecord = serde_json::from_slice(&bytes).ok()?;
        Some(record.equivalence_digest())
    }
}
