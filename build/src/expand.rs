//! Expanding a nestos-config into graph nodes, per architecture: repo sync per repo, resolve,
//! one overlay node per applied overlay.d layer, rootfs, postprocess per script, initramfs,
//! ostree commit, OCI archive and the disk images; and the target names that select them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nosa_config::{Config, PostprocessStep};
use nosa_engine::{InputSpec, Rule};
use serde_json::Value as J;

use nosa_repo::{Checksum, RepoKeysRule, RepoSource, RepoSyncRule, RpmDownloadRule};
use nosa_solve::{Lock, Request, ResolveRule, ResolvedPackage};

use crate::ids;
use crate::pins::Pins;
use nosa_commit::OstreeCommitRule;
use nosa_image::{ImageFormat, ImageFsRule, ImageRule, LiveCustomRule, LiveIsoRule, LivePxeRule};
use nosa_kola::{KolaKind, KolaRule};
use nosa_oci::{ComponentSource, DEFAULT_MAX_LAYERS, OciRule};
use nosa_rules::compose::{InitramfsRule, OstreeTreeRule, PostprocessRule, Script};
use nosa_rules::overlay::OverlayRule;
use nosa_rules::overrides_rpm::{OVERRIDES_REPO_ID, OVERRIDES_RPM, OverridesRpmRule};
use nosa_rules::pending::PendingRule;
use nosa_rules::rootfs::{RemoveFrom, RootfsRule};
use nosa_rules::rpmdb::RpmdbRule;
use nosa_rules::scriptlets::ScriptletsRule;
use nosa_rules::unpack::UnpackRule;

/// The workdir directory whose files override the tree, as nestos-assembler's `overrides/rootfs`.
pub const OVERRIDES_ROOTFS: &str = "overrides/rootfs";

/// The node of `overrides/rootfs`.
pub const OVERRIDES_NODE: &str = "overlay:overrides-rootfs";

/// Disk image formats and the node each target name selects.
pub const IMAGE_TARGETS: &[&str] = &["qemu", "metal", "metal4k", "openstack"];

/// Every target name a NestOS workdir understands.
pub const TARGETS: &[&str] = &[
    "ostree",
    "oci",
    "qemu",
    "metal",
    "metal4k",
    "openstack",
    "live",
    "kola",
];

/// One node to add to the graph.
pub struct NodeDecl {
    /// Node id.
    pub id: String,
    /// Its rule.
    pub rule: Arc<dyn Rule>,
    /// Ids of its dependencies.
    pub deps: Vec<String>,
}

/// The nodes of a NestOS build and the targets that select them.
#[derive(Default)]
pub struct Expansion {
    /// Nodes, dependencies before dependents.
    pub nodes: Vec<NodeDecl>,
    /// Target name -> node ids (one per arch).
    pub targets: BTreeMap<String, Vec<String>>,
}

/// Why a config cannot be expanded into nodes.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExpandError {
    /// resolve chose a package whose checksum nosa cannot verify a download against.
    #[error(
        "package {nevra} from repo {repo} has a checksum nosa cannot verify ({checksum}): {reason}"
    )]
    #[diagnostic(
        code(nosa::bad_package_checksum),
        help(
            "the repository metadata (primary.xml) is broken or uses an unknown checksum type; fix the repository, or exclude the package"
        )
    )]
    BadChecksum {
        /// The package.
        nevra: String,
        /// Its repository id.
        repo: String,
        /// The checksum as the metadata gives it.
        checksum: String,
        /// Why it is unusable.
        reason: String,
    },
}

/// Maps paths inside the config directory to workdir-relative paths (through the config path
/// as the build file names it, e.g. `src/config`, which may be a symlink).
struct PathMap {
    config_dir: PathBuf,
    config_rel: String,
}

impl PathMap {
    fn rel(&self, p: &Path) -> Option<String> {
        let inner = p.strip_prefix(&self.config_dir).ok()?;
        let inner = inner.to_string_lossy();
        Some(if inner.is_empty() {
            self.config_rel.clone()
        } else {
            format!("{}/{inner}", self.config_rel)
        })
    }

    fn input(&self, p: &Path) -> Option<InputSpec> {
        self.rel(p).map(InputSpec::Path)
    }
}

impl Expansion {
    fn add(&mut self, id: String, rule: PendingRule, deps: Vec<String>) -> String {
        self.nodes.push(NodeDecl {
            id: id.clone(),
            rule: Arc::new(rule),
            deps,
        });
        id
    }

    fn target(&mut self, name: &str, id: &str) {
        self.targets
            .entry(name.to_string())
            .or_default()
            .push(id.to_string());
    }
}

/// What the expansion knows beyond the config: repository pins and, per arch, the package set
/// from a `resolve:<arch>` output of this build (absent until resolve has run).
#[derive(Debug, Default)]
pub struct Known {
    /// Repo pins recorded by `nosa fetch`.
    pub pins: Pins,
    /// arch -> resolved packages.
    pub resolved: BTreeMap<String, Vec<ResolvedPackage>>,
    /// arch -> the version `nosa build` assigned to the commit.
    pub versions: BTreeMap<String, CommitVersion>,
}

/// A commit's version, timestamp and parent, chosen by `nosa build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitVersion {
    /// e.g. `24.03-LTS.20261125.dev.0`.
    pub version: String,
    /// Commit timestamp (seconds since the epoch).
    pub timestamp: u64,
    /// The parent commit: the previous build's commit of the same ref, if any.
    pub parent: Option<String>,
}

/// The `ostree-commit:<arch>` rule of `c` for the commit `v` (ref, add-commit-metadata,
/// mutate-os-release from the treefile). `nosa build` also uses it, before the commit exists,
/// for the input hash that decides whether a build is new.
pub fn commit_rule(c: &Config, v: &CommitVersion) -> OstreeCommitRule {
    let tf = &c.treefile;
    let metadata =
        serde_json::to_string(&J::Object(tf.add_commit_metadata.clone())).unwrap_or_default();
    OstreeCommitRule::new(
        c.arch.as_str(),
        tf.ref_name.as_deref().unwrap_or_default(),
        &v.version,
    )
    .metadata_json(&metadata)
    .timestamp(v.timestamp)
    .parent(v.parent.as_deref())
    .mutate_os_release(tf.mutate_os_release.as_deref())
}

/// Expands `configs` (one per arch; `config_rel` is the config path relative to the workdir).
/// Without a resolved package set for an arch, its package nodes are one planned node
/// `packages:<arch>` ("expands after resolve").
/// `workdir` is where `overrides/rootfs` is looked for: when it holds files it is one more
/// overlay node, `overlay:overrides-rootfs`, applied after the config's layers. RPMs in
/// `overrides/rpm` are one more repository per arch, `overrides-rpm:<arch>`, whose packages
/// replace same-name packages of the config's repositories (versions and locks aside).
pub fn expand(
    configs: &[Config],
    config_rel: &str,
    known: &Known,
    workdir: &Path,
    live_ignition: Option<&str>,
) -> Result<Expansion, ExpandError> {
    let mut x = Expansion::default();
    let Some(first) = configs.first() else {
        return Ok(x);
    };
    let map = PathMap {
        config_dir: first.dir.clone(),
        config_rel: config_rel.trim_end_matches('/').to_string(),
    };

    // Overlay layers are arch-independent: one node per overlay.d layer, shared by every arch
    // (cosa commits each as a ref); rootfs depends on those `ostree-layers` applies.
    let mut overlay_ids = BTreeMap::new();
    for c in configs {
        for layer in &c.overlays {
            if overlay_ids.contains_key(&layer.name) {
                continue;
            }
            let id = ids::overlay(&layer.name);
            match map.rel(&layer.path) {
                Some(dir) => x.nodes.push(NodeDecl {
                    id: id.clone(),
                    rule: Arc::new(OverlayRule::new(&layer.name, &dir)),
                    deps: vec![],
                }),
                None => {
                    x.add(
                        id.clone(),
                        PendingRule::new("overlay").param("name", &layer.name),
                        vec![],
                    );
                }
            }
            overlay_ids.insert(layer.name.clone(), id);
        }
    }

    let overrides = workdir.join(OVERRIDES_ROOTFS);
    let has_overrides = fs_err::read_dir(&overrides).is_ok_and(|mut d| d.next().is_some());
    if has_overrides {
        x.nodes.push(NodeDecl {
            id: OVERRIDES_NODE.to_string(),
            rule: Arc::new(OverlayRule::new("overrides-rootfs", OVERRIDES_ROOTFS)),
            deps: vec![],
        });
    }

    let has_override_rpms = fs_err::read_dir(workdir.join(OVERRIDES_RPM)).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".rpm"))
    });

    for c in configs {
        let st = Stage {
            c,
            arch: c.arch.as_str(),
            known,
            map: &map,
            workdir,
            overlay_ids: &overlay_ids,
            has_overrides,
        };
        let (resolve, repos) = repos_and_resolve(&mut x, &st, has_override_rpms);
        let unpacked = packages(&mut x, &st, &resolve, &repos)?;
        let tree = compose_chain(&mut x, &st, resolve, &unpacked);
        let (commit, name) = commit_and_oci(&mut x, &st, tree, &unpacked);
        images(&mut x, &st, &commit, &name);
        kola_tests(&mut x, &st);
        live(&mut x, &st, &commit, &name, live_ignition);
    }
    Ok(x)
}

/// What the per-arch stages of [`expand`] share.
struct Stage<'a> {
    c: &'a Config,
    arch: &'a str,
    known: &'a Known,
    map: &'a PathMap,
    workdir: &'a Path,
    /// Layer name -> its overlay node.
    overlay_ids: &'a BTreeMap<String, String>,
    /// Whether `overrides/rootfs` has files (one more overlay node).
    has_overrides: bool,
}

/// What the package downloads need of the repositories.
#[derive(Default)]
struct Repos {
    /// Base URLs per repository id.
    baseurls: BTreeMap<String, Vec<String>>,
    /// The repositories with `gpgcheck=1`: their packages are checked against the keys of
    /// their `repo-keys` node.
    gpgcheck: std::collections::BTreeSet<String>,
}

/// Stage 1: one `repo-sync` per repository (and `overrides-rpm` when RPMs are dropped there;
/// `repo-keys` for a repository with `gpgcheck` or `repo_gpgcheck`), then `resolve`. Returns
/// resolve's id and what the downloads need.
fn repos_and_resolve(
    x: &mut Expansion,
    st: &Stage<'_>,
    has_override_rpms: bool,
) -> (String, Repos) {
    let (c, arch, known, workdir) = (st.c, st.arch, st.known, st.workdir);
    let tf = &c.treefile;
    let mut syncs = Vec::new();
    let mut repos = Repos::default();
    let baseurls = &mut repos.baseurls;
    let mut override_repos = Vec::new();
    let mut override_node = None;
    if has_override_rpms {
        let id = OverridesRpmRule::node_id(arch);
        x.nodes.push(NodeDecl {
            id: id.clone(),
            rule: Arc::new(OverridesRpmRule::new(arch)),
            deps: vec![],
        });
        let dir = std::path::absolute(workdir.join(OVERRIDES_RPM))
            .unwrap_or_else(|_| workdir.join(OVERRIDES_RPM));
        baseurls.insert(
            OVERRIDES_REPO_ID.to_string(),
            vec![format!("file://{}", dir.display())],
        );
        override_repos.push(OVERRIDES_REPO_ID.to_string());
        override_node = Some(id);
    }
    for repo in c.compose_repos() {
        let source = RepoSource::from_config(repo, arch).in_workdir(workdir);
        let pin = known.pins.get(arch, &repo.id, &source.portable_baseurl());
        baseurls.insert(repo.id.clone(), source.baseurl.clone());
        let id = ids::repo_sync(arch, &repo.id);
        let mut sync = RepoSyncRule::new(source.clone(), pin);
        let mut deps = vec![];
        if repo.gpgcheck || repo.repo_gpgcheck {
            let keys = ids::repo_keys(arch, &repo.id);
            let urls = repo.gpgkey.clone();
            let portable = urls.iter().map(|u| source.portable(u)).collect::<Vec<_>>();
            x.nodes.push(NodeDecl {
                id: keys.clone(),
                rule: Arc::new(RepoKeysRule::new(&repo.id, arch, urls, portable, pin)),
                deps: vec![],
            });
            x.target("fetch", &keys);
            if repo.gpgcheck {
                repos.gpgcheck.insert(repo.id.clone());
            }
            if repo.repo_gpgcheck {
                sync = sync.with_repo_gpgcheck();
                deps.push(keys);
            }
        }
        x.nodes.push(NodeDecl {
            id: id.clone(),
            rule: Arc::new(sync),
            deps,
        });
        syncs.push(id);
    }
    // Loaded after the config's repositories.
    syncs.extend(override_node);
    let locks = c
        .lockfiles
        .effective()
        .into_iter()
        .filter_map(|(name, l)| {
            let lock = match (&l.evra, &l.evr) {
                (Some(evra), _) => Lock::from_evra(evra),
                (None, Some(evr)) => Lock {
                    evr: evr.clone(),
                    arch: None,
                },
                (None, None) => return None,
            };
            Some((name, lock))
        })
        .collect();
    let request = Request {
        arch: arch.to_string(),
        packages: tf.packages.clone(),
        exclude_packages: tf.exclude_packages.clone(),
        recommends: tf.recommends.unwrap_or(true),
        locks,
        priorities: BTreeMap::new(),
        overrides: override_repos,
    };
    let resolve = ids::resolve(arch);
    x.nodes.push(NodeDecl {
        id: resolve.clone(),
        rule: Arc::new(ResolveRule::new(request)),
        deps: syncs,
    });
    x.target("fetch", &resolve);
    (resolve, repos)
}

/// Stage 2: the package nodes (one download and one unpack per package, and the rpm
/// database), known only once resolve has run in this build; before that, the planned node
/// `packages:<arch>`. Returns the ids rootfs unions.
fn packages(
    x: &mut Expansion,
    st: &Stage<'_>,
    resolve: &str,
    repos: &Repos,
) -> Result<Vec<String>, ExpandError> {
    let baseurls = &repos.baseurls;
    let (arch, known) = (st.arch, st.known);
    // The package nodes: known only once resolve has run in this build.
    let mut unpacked = Vec::new();
    match known.resolved.get(arch) {
        Some(pkgs) => {
            let rpmdb = ids::rpmdb(arch);
            x.nodes.push(NodeDecl {
                id: rpmdb.clone(),
                rule: Arc::new(RpmdbRule::new(arch)),
                deps: pkgs.iter().map(|p| ids::rpm(arch, &p.nevra)).collect(),
            });
            unpacked.push(rpmdb);
            for p in pkgs {
                let urls: Vec<String> = baseurls
                    .get(&p.repo)
                    .into_iter()
                    .flatten()
                    .map(|b| format!("{}/{}", b.trim_end_matches('/'), p.location))
                    .collect();
                let checksum =
                    Checksum::parse(&p.checksum.kind, &p.checksum.value).map_err(|e| {
                        ExpandError::BadChecksum {
                            nevra: p.nevra.clone(),
                            repo: p.repo.clone(),
                            checksum: format!("{}:{}", p.checksum.kind, p.checksum.value),
                            reason: e.to_string(),
                        }
                    })?;
                let rpm = ids::rpm(arch, &p.nevra);
                let mut rule = RpmDownloadRule::new(p.nevra.clone(), checksum, p.size, urls);
                let mut deps = vec![];
                if repos.gpgcheck.contains(&p.repo) {
                    rule = rule.with_gpgcheck(&p.repo);
                    deps.push(ids::repo_keys(arch, &p.repo));
                }
                x.nodes.push(NodeDecl {
                    id: rpm.clone(),
                    rule: Arc::new(rule),
                    // No dependency on resolve: the parameters (nevra, checksum, size) fix
                    // the output, so a changed package list does not touch other downloads.
                    // The repository's keys, when they must have signed it.
                    deps,
                });
                x.target("fetch", &rpm);
                let unpack = ids::unpack(arch, &p.nevra);
                x.nodes.push(NodeDecl {
                    id: unpack.clone(),
                    rule: Arc::new(UnpackRule::new(&p.nevra)),
                    deps: vec![rpm],
                });
                unpacked.push(unpack);
            }
        }
        None => {
            let id = x.add(
                ids::packages(arch),
                PendingRule::new("packages").param("arch", arch),
                vec![resolve.to_string()],
            );
            unpacked.push(id);
        }
    }
    Ok(unpacked)
}

/// Stage 3: the compose chain in rpm-ostree's order: rootfs (packages, then the overlays),
/// scriptlets, each postprocess script, the initramfs, the ostree layout. Returns the tree.
fn compose_chain(
    x: &mut Expansion,
    st: &Stage<'_>,
    resolve: String,
    unpacked: &[String],
) -> String {
    let (c, arch, map, overlay_ids, has_overrides) =
        (st.c, st.arch, st.map, st.overlay_ids, st.has_overrides);
    let tf = &c.treefile;
    let mut rootfs_deps = vec![resolve];
    rootfs_deps.extend(unpacked.iter().cloned());
    rootfs_deps.extend(
        c.applied_overlays()
            .iter()
            .map(|l| overlay_ids[&l.name].clone()),
    );
    if has_overrides {
        rootfs_deps.push(OVERRIDES_NODE.to_string());
    }
    let rootfs = RootfsRule::new(
        arch,
        tf.remove_files.clone(),
        tf.remove_from_packages
            .iter()
            .map(|r| RemoveFrom {
                package: r.package.clone(),
                patterns: r.patterns.clone(),
            })
            .collect(),
    );
    let rootfs_id = ids::rootfs(arch);
    x.nodes.push(NodeDecl {
        id: rootfs_id.clone(),
        rule: Arc::new(rootfs),
        deps: rootfs_deps,
    });
    // rpm-ostree's order: scriptlets run on the tree that already has the overlays.
    let mut prev = ids::scriptlets(arch);
    x.nodes.push(NodeDecl {
        id: prev.clone(),
        rule: Arc::new(ScriptletsRule::new(arch)),
        deps: vec![rootfs_id],
    });

    for (n, step) in tf.postprocess_steps().iter().enumerate() {
        let script = match step {
            PostprocessStep::Inline(s) => Some(Script::Inline(s.script.clone())),
            PostprocessStep::Script(p) => map.rel(p).map(Script::File),
        };
        let id = ids::postprocess(arch, n);
        match script {
            Some(script) => x.nodes.push(NodeDecl {
                id: id.clone(),
                rule: Arc::new(PostprocessRule::new(arch, n, script)),
                deps: vec![prev],
            }),
            None => {
                x.add(
                    id.clone(),
                    PendingRule::new("postprocess").param("arch", arch),
                    vec![prev],
                );
            }
        }
        prev = id;
    }
    let initramfs = ids::initramfs(arch);
    x.nodes.push(NodeDecl {
        id: initramfs.clone(),
        rule: Arc::new(InitramfsRule::new(arch, tf.initramfs_args.clone())),
        deps: vec![prev],
    });
    let tree = ids::ostree_tree(arch);
    x.nodes.push(NodeDecl {
        id: tree.clone(),
        rule: Arc::new(
            OstreeTreeRule::new(arch, tf.default_target.clone()).with_layout(
                tf.tmp_is_dir.unwrap_or(false),
                tf.machineid_compat.unwrap_or(true),
            ),
        ),
        deps: vec![initramfs],
    });
    x.target("tree", &tree);
    tree
}

/// Stage 4: the commit and the OCI archive (planned nodes until a build assigns the version).
/// Returns the commit's id and the OS name.
fn commit_and_oci(
    x: &mut Expansion,
    st: &Stage<'_>,
    tree: String,
    unpacked: &[String],
) -> (String, String) {
    let (c, arch, known, overlay_ids, has_overrides) =
        (st.c, st.arch, st.known, st.overlay_ids, st.has_overrides);
    let tf = &c.treefile;
    // The commit needs its version, which `nosa build` assigns once the tree is known (a
    // tree identical to the latest build's keeps that build's version and id).
    let commit = ids::ostree_commit(arch);
    match known.versions.get(arch) {
        Some(v) => {
            x.nodes.push(NodeDecl {
                id: commit.clone(),
                rule: Arc::new(commit_rule(c, v)),
                deps: vec![tree],
            });
        }
        None => {
            x.add(
                commit.clone(),
                PendingRule::new("ostree-commit")
                    .param("arch", arch)
                    .param("ref", tf.ref_name.clone().unwrap_or_default())
                    .param(
                        "automatic-version-prefix",
                        tf.automatic_version_prefix.clone().unwrap_or_default(),
                    )
                    .param("version", "assigned by `nosa build`")
                    .because(
                        "the commit's version is assigned by `nosa build`; run `nosa build` \
                         (graph commands show the latest build's commit)",
                    ),
                vec![tree],
            );
        }
    }
    x.target("ostree", &commit);
    let oci = ids::oci(arch);
    let name = c.os_name().to_string();
    match known.versions.get(arch) {
        Some(v) => {
            // One layer per package, the rpm database and each overlay (see docs/oci.md).
            let src = |node: &str, component: String, subdir: &str| ComponentSource {
                node: node.to_string(),
                component,
                subdir: subdir.to_string(),
            };
            let mut sources = Vec::new();
            for p in known.resolved.get(arch).into_iter().flatten() {
                let node = ids::unpack(arch, &p.nevra);
                if unpacked.contains(&node) {
                    sources.push(src(&node, p.name.clone(), "root"));
                }
            }
            let rpmdb = ids::rpmdb(arch);
            if unpacked.contains(&rpmdb) {
                sources.push(src(&rpmdb, "rpmdb".into(), "root"));
            }
            for l in c.applied_overlays() {
                let node = &overlay_ids[&l.name];
                sources.push(src(node, format!("overlay.d/{}", l.name), ""));
            }
            if has_overrides {
                sources.push(src(OVERRIDES_NODE, "overrides/rootfs".into(), ""));
            }
            let mut deps = vec![commit.clone()];
            deps.extend(sources.iter().map(|s| s.node.clone()));
            x.nodes.push(NodeDecl {
                id: oci.clone(),
                rule: Arc::new(
                    OciRule::new(arch, &name, &v.version).components(sources, DEFAULT_MAX_LAYERS),
                ),
                deps,
            });
        }
        None => {
            x.add(
                oci.clone(),
                PendingRule::new("oci")
                    .param("arch", arch)
                    .because("the OCI archive is made from a versioned commit: run `nosa build`"),
                vec![commit.clone()],
            );
        }
    }
    x.target("oci", &oci);
    (commit, name)
}

/// Stage 5: one `image-fs` node per platform and one `image` node per format.
fn images(x: &mut Expansion, st: &Stage<'_>, commit: &str, name: &str) {
    let (c, arch, known, map) = (st.c, st.arch, st.known, st.map);
    let image_json = J::Object(c.image.json.clone());
    let image_inputs: Vec<InputSpec> = c.image_files.iter().filter_map(|f| map.input(f)).collect();
    // One image-fs node per platform (deploy + partition contents), shared by the images
    // of that platform (metal and metal4k); each image node only assembles its disk.
    let mut fs_nodes: BTreeMap<&str, String> = BTreeMap::new();
    for fmt in IMAGE_TARGETS {
        let id = ids::image(arch, fmt);
        match (known.versions.get(arch), ImageFormat::parse(fmt)) {
            (Some(v), Some(format)) => {
                let image = ImageRule::new(arch, format, name, &v.version);
                let fs_id = image.fs_node_id();
                if !fs_nodes.contains_key(format.platform()) {
                    let mut rule = ImageFsRule::new(arch, format.platform());
                    if let Some(os) = c.image.json.get("osname").and_then(J::as_str) {
                        rule.osname = os.to_string();
                    }
                    if let Some(gib) = c.image.size {
                        // The disk is `size` GiB; the other partitions and the GPT take
                        // 514 MiB.
                        rule.root_size_mib = (gib * 1024).saturating_sub(514).max(256);
                    }
                    rule.extra_kargs = c.image.extra_kargs.clone();
                    rule.rootfs = c.image.rootfs.clone();
                    rule.timestamp = v.timestamp;
                    x.nodes.push(NodeDecl {
                        id: fs_id.clone(),
                        rule: Arc::new(rule),
                        deps: vec![commit.to_string()],
                    });
                    fs_nodes.insert(format.platform(), fs_id.clone());
                }
                x.nodes.push(NodeDecl {
                    id: id.clone(),
                    rule: Arc::new(image),
                    deps: vec![fs_id],
                });
            }
            _ => {
                let mut rule = PendingRule::new("image")
                    .param("arch", arch)
                    .param("format", *fmt)
                    .json("image", &image_json);
                for i in &image_inputs {
                    rule = rule.input(i.clone());
                }
                if ImageFormat::parse(fmt).is_some() {
                    rule = rule.because(
                        "disk images are made from a versioned commit: run `nosa build qemu|metal|metal4k|openstack` (or `nosa buildextend-...`)",
                    );
                }
                x.add(id.clone(), rule, vec![commit.to_string()]);
            }
        }
        x.target(fmt, &id);
    }
}

/// Stage 6: one kola node per test and image, after the image it boots.
fn kola_tests(x: &mut Expansion, st: &Stage<'_>) {
    let (c, arch, known, map, workdir) = (st.c, st.arch, st.known, st.map, st.workdir);
    // kola: one node per test and image, after the image it boots.
    for t in nosa_kola::plan::planned_tests(c, arch) {
        let image_id = ids::image(arch, t.image.name());
        let id = ids::kola(arch, t.image.name(), &t.name);
        let kind = match t.kind {
            KolaKind::External {
                dir,
                exe,
                exclusive,
            } => map.rel(Path::new(&dir)).map(|dir| KolaKind::External {
                dir,
                exe,
                exclusive,
            }),
            k => Some(k),
        };
        let blocked = match (&t.unsupported, &kind, known.versions.get(arch)) {
            (Some(why), _, _) => Some(why.clone()),
            (_, None, _) => Some("the test is outside the config directory".to_string()),
            (_, _, None) => Some(
                "kola tests boot built images: run `nosa build qemu metal metal4k` first"
                    .to_string(),
            ),
            _ => None,
        };
        match (blocked, kind) {
            (None, Some(kind)) => x.nodes.push(NodeDecl {
                id: id.clone(),
                rule: Arc::new(KolaRule {
                    arch: arch.to_string(),
                    image: t.image,
                    test: t.name.clone(),
                    kind,
                    uefi: t.image != ImageFormat::Qemu,
                    memory_mib: t.memory_mib,
                    timeout: t.timeout,
                    accel_cache: workdir.join("cache/qemu"),
                    machines_dir: workdir.join("tmp/kola-machines"),
                }),
                deps: vec![image_id],
            }),
            (why, _) => {
                x.add(
                    id.clone(),
                    PendingRule::new("kola")
                        .param("arch", arch)
                        .param("image", t.image.name())
                        .param("test", &t.name)
                        .because(&why.unwrap_or_default()),
                    vec![image_id],
                );
            }
        }
        x.target("kola", &id);
    }
}

/// Stage 7: the live artifacts: `live-pxe` (kernel, live initramfs, rootfs.img) from the
/// commit, and `live` (the ISO) from those and the config's `live/` templates.
fn live(x: &mut Expansion, st: &Stage<'_>, commit: &str, name: &str, ignition: Option<&str>) {
    let (c, arch, known, map) = (st.c, st.arch, st.known, st.map);
    let live_input = c.live_dir.as_deref().and_then(|d| map.rel(d));
    let pxe = ids::live_pxe(arch);
    let iso = ids::live(arch);
    match (known.versions.get(arch), live_input) {
        (Some(v), Some(live_dir)) => {
            let files = c
                .live_dir
                .as_deref()
                .map(live_templates)
                .unwrap_or_default();
            let variant = nosa_image::live::variant_of(&files).to_string();
            // The metal image's arguments, as its image-fs node gives them.
            let mut metal = ImageFsRule::new(arch, ImageFormat::Metal.platform());
            metal.extra_kargs = c.image.extra_kargs.clone();
            let kargs = metal.kargs();
            x.nodes.push(NodeDecl {
                id: pxe.clone(),
                rule: Arc::new(LivePxeRule {
                    arch: arch.to_string(),
                    osname: c
                        .image
                        .json
                        .get("osname")
                        .and_then(J::as_str)
                        .unwrap_or("nestos")
                        .to_string(),
                    kargs,
                    variant: variant.clone(),
                    compression: c.image.squashfs_compression.clone(),
                    timestamp: v.timestamp,
                }),
                deps: vec![commit.to_string()],
            });
            x.nodes.push(NodeDecl {
                id: iso.clone(),
                rule: Arc::new(LiveIsoRule {
                    arch: arch.to_string(),
                    name: name.to_string(),
                    version: v.version.clone(),
                    variant,
                    live_dir,
                    timestamp: v.timestamp,
                }),
                deps: vec![pxe],
            });
            // `[live] live-ignition`: the customized copies, after the ISO.
            if let Some(ign) = ignition {
                let custom = ids::live_custom(arch);
                x.nodes.push(NodeDecl {
                    id: custom.clone(),
                    rule: Arc::new(LiveCustomRule {
                        arch: arch.to_string(),
                        name: name.to_string(),
                        version: v.version.clone(),
                        live_ignition: ign.to_string(),
                    }),
                    deps: vec![iso.clone()],
                });
                x.target("live", &custom);
            }
        }
        (v, live_input) => {
            let why = if live_input.is_none() {
                "the config has no live/ directory (isolinux/isolinux.cfg and EFI/<vendor>/grub.cfg templates)"
            } else {
                debug_assert!(v.is_none());
                "the live ISO is made from a versioned commit: run `nosa build live` (or `nosa buildextend-live`)"
            };
            let image_json = J::Object(c.image.json.clone());
            let mut rule = PendingRule::new("live")
                .param("arch", arch)
                .json("image", &image_json)
                .because(why);
            if let Some(d) = live_input {
                rule = rule.input(InputSpec::Path(d));
            }
            x.add(iso.clone(), rule, vec![commit.to_string()]);
        }
    }
    x.target("live", &iso);
}

/// The config's `live/` files (path under it, content), for the variant: unreadable ones are
/// left out here (the `live` node reads them again and reports them).
fn live_templates(dir: &Path) -> Vec<nosa_image::live_kargs::LiveFile> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .ok()?
                .to_string_lossy()
                .into_owned();
            Some((rel, fs_err::read(e.path()).ok()?))
        })
        .collect()
}
