//! The compose nodes after the scriptlets, each on the tree its predecessor produced (`root/`
//! plus `meta.json`): `postprocess` (one script, run inside the tree under bubblewrap),
//! `initramfs` (the tree's own dracut, inside the tree), both traced (`crate::trace`), and
//! `ostree-tree` (the layout ostree deploys: `/etc` moved to `/usr/etc`, `/var` emptied into
//! tmpfiles.d entries, rpm-ostree's top level, the default target), computed on the tree's
//! listing.

use std::collections::BTreeMap;

use nosa_cache::{EntryKind, Tree, TreeEntry};
use nosa_engine::{DepOutput, InputSpec, Params, Rule, RunContext, RunError};

use crate::listing::{ensure_dir, put, take_subtree};
use crate::trace::{Program, run_traced};

/// The single dependency (a tree node).
fn single(ctx: &RunContext<'_>, kind: &str) -> Result<DepOutput, RunError> {
    match ctx.deps {
        [dep] => Ok(dep.clone()),
        _ => Err(RunError::msg(format!(
            "{kind} needs exactly one tree dependency"
        ))),
    }
}

/// What a postprocess step runs.
#[derive(Debug, Clone)]
pub enum Script {
    /// An inline `postprocess` entry.
    Inline(String),
    /// `postprocess-script`: a file, workdir-relative (a declared input).
    File(String),
}

/// `postprocess:<arch>:<n>`: one postprocess script inside the tree.
#[derive(Debug, Clone)]
pub struct PostprocessRule {
    arch: String,
    index: usize,
    script: Script,
}

impl PostprocessRule {
    /// Step `index` for `arch`.
    pub fn new(arch: &str, index: usize, script: Script) -> Self {
        PostprocessRule {
            arch: arch.to_string(),
            index,
            script,
        }
    }
}

impl Rule for PostprocessRule {
    fn kind(&self) -> &str {
        "postprocess"
    }

    fn version(&self) -> u32 {
        2
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch).add("index", &self.index);
        crate::trace::params(p);
        match &self.script {
            Script::Inline(s) => p.add("script", s),
            Script::File(f) => p.add("script-file", f),
        };
    }

    fn inputs(&self) -> Vec<InputSpec> {
        match &self.script {
            Script::File(f) => vec![InputSpec::Path(f.clone())],
            Script::Inline(_) => Vec::new(),
        }
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let dep = single(ctx, "postprocess")?;
        let text = match &self.script {
            Script::Inline(s) => s.clone(),
            Script::File(f) => {
                let input = ctx
                    .inputs
                    .iter()
                    .find(|i| &i.rel == f)
                    .ok_or_else(|| RunError::msg(format!("{f} is not among the inputs")))?;
                fs_err::read_to_string(&input.abs)?
            }
        };
        // A script with a `#!` line runs through that interpreter, as rpm-ostree executes it.
        let argv: Vec<String> = match text.lines().next().and_then(|l| l.strip_prefix("#!")) {
            Some(line) => line.split_whitespace().map(str::to_string).collect(),
            None => vec!["/bin/sh".into()],
        };
        let program = Program {
            argv,
            script: text,
            what: format!("postprocess script {}", self.index),
        };
        let out = run_traced(ctx, &dep, &[], &[program])?;
        ctx.set_output_tree(out);
        Ok(())
    }
}

/// The kernel version of a compose tree: its single `/usr/lib/modules/<kver>/vmlinuz`.
pub fn kernel_version(tree: &Tree) -> Result<String, RunError> {
    let found: Vec<&str> = tree
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .filter_map(|e| e.path.strip_prefix("root/usr/lib/modules/"))
        .filter_map(|rest| rest.strip_suffix("/vmlinuz"))
        .filter(|k| !k.contains('/'))
        .collect();
    match found.as_slice() {
        [k] => Ok(k.to_string()),
        [] => Err(RunError::msg(
            "no kernel: the tree has no /usr/lib/modules/<kver>/vmlinuz",
        )),
        many => Err(RunError::msg(format!(
            "several kernels in /usr/lib/modules: {}",
            many.join(", ")
        ))),
    }
}

/// `initramfs:<arch>`: runs the tree's own dracut inside the tree, writing
/// `/usr/lib/modules/<kver>/initramfs.img` as rpm-ostree does.
#[derive(Debug, Clone)]
pub struct InitramfsRule {
    arch: String,
    args: Vec<String>,
}

impl InitramfsRule {
    /// The rule for `arch`, with the treefile's `initramfs-args`.
    pub fn new(arch: &str, args: Vec<String>) -> Self {
        InitramfsRule {
            arch: arch.to_string(),
            args,
        }
    }
}

impl Rule for InitramfsRule {
    fn kind(&self) -> &str {
        "initramfs"
    }

    fn version(&self) -> u32 {
        3
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch).add("initramfs-args", &self.args);
        crate::trace::params(p);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let dep = single(ctx, "initramfs")?;
        let kver = kernel_version(&ctx.dep_tree(&dep)?)?;
        // rpm-ostree's command line: `--reproducible -v --add ostree --tmpdir=... -f OUT`, then
        // the treefile's `initramfs-args` (`--no-hostonly` when there are none), then the kernel.
        let mut cmd = format!(
            "SOURCE_DATE_EPOCH=0; export SOURCE_DATE_EPOCH; mkdir -p /tmp/dracut; \
             exec dracut --reproducible -v --add ostree --tmpdir=/tmp/dracut \
             -f '/usr/lib/modules/{kver}/initramfs.img'"
        );
        let default = ["--no-hostonly".to_string()];
        let args = if self.args.is_empty() {
            &default[..]
        } else {
            &self.args[..]
        };
        for a in args {
            cmd.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        cmd.push_str(&format!(" --kver '{kver}'"));
        let program = Program {
            argv: vec!["/bin/sh".into()],
            script: cmd,
            what: format!("dracut for kernel {kver}"),
        };
        // The kernel version was read from the tree: it belongs to what the trace is for.
        let out = run_traced(ctx, &dep, kver.as_bytes(), &[program])?;
        if out
            .file(&format!("root/usr/lib/modules/{kver}/initramfs.img"))
            .is_none()
        {
            return Err(RunError::msg(format!(
                "dracut did not write /usr/lib/modules/{kver}/initramfs.img"
            )));
        }
        ctx.set_output_tree(out);
        Ok(())
    }
}

/// `ostree-tree:<arch>`: the layout ostree deploys, as rpm-ostree makes it after the
/// initramfs (its `compose_prepare_rootfs` in strict mode, `rootfs_prepare_links` and
/// `process_kernel_and_initramfs`):
///
/// - `/etc` moves to `/usr/etc`; `/etc/machine-id` is removed (`machineid-compat: false`) or
///   made empty (`true`, rpm-ostree's default), so that the first boot makes one;
/// - `/var` is emptied into tmpfiles.d lines (ostree keeps `/var` per deployment);
/// - the top level is rebuilt: `usr`, `var`, `boot` and the usrmerge links (`bin`, `sbin`,
///   `lib`, `lib64`, `lib32`) stay, `dev`, `proc`, `run`, `sys` and `sysroot` are empty
///   directories, `tmp` a directory (`tmp-is-dir: true`) or a link to `sysroot/tmp`, and the
///   writable places are links into `/var`: `home` -> `var/home`, `root` -> `var/roothome`,
///   `srv`, `mnt`, `opt` -> `var/...`, `media` -> `run/media`, `ostree` -> `sysroot/ostree`;
///   anything else at the top is dropped;
/// - `/usr/local` is a link to `../var/usrlocal`, and `nosa-0-integration.conf` makes the
///   targets of those links at boot (rpm-ostree's `rpm-ostree-0-integration.conf`);
/// - `HOME=` in `/usr/etc/default/useradd` becomes `/var/home`;
/// - the default target, if the treefile sets one.
#[derive(Debug, Clone)]
pub struct OstreeTreeRule {
    arch: String,
    default_target: Option<String>,
    tmp_is_dir: bool,
    machineid_compat: bool,
}

/// The top-level entries rpm-ostree keeps from the composed tree.
const KEPT_TOPLEVEL: &[&str] = &["usr", "var", "boot", "bin", "sbin", "lib", "lib64", "lib32"];

/// Top-level links into `/var`, `/run` and `/sysroot` (rpm-ostree's strict layout).
const TOPLEVEL_LINKS: &[(&str, &str)] = &[
    ("home", "var/home"),
    ("root", "var/roothome"),
    ("srv", "var/srv"),
    ("mnt", "var/mnt"),
    ("opt", "var/opt"),
    ("media", "run/media"),
    ("ostree", "sysroot/ostree"),
];

/// The targets of the links, made at boot (rpm-ostree's integration tmpfiles.d file).
const INTEGRATION_TMPFILES: &str =
    "# The targets of the top-level links into /var (nosa, as rpm-ostree).
d /var/home 0755 root root -
d /var/srv 0755 root root -
d /var/roothome 0700 root root -
d /var/mnt 0755 root root -
d /var/opt 0755 root root -
d /var/usrlocal 0755 root root -
d /run/media 0755 root root -
d /usr/local/bin 0755 root root -
d /usr/local/etc 0755 root root -
d /usr/local/games 0755 root root -
d /usr/local/include 0755 root root -
d /usr/local/lib 0755 root root -
d /usr/local/sbin 0755 root root -
d /usr/local/share 0755 root root -
d /usr/local/src 0755 root root -
L /var/lib/rpm - - - - ../../usr/share/rpm
";

impl OstreeTreeRule {
    /// The rule for `arch` with rpm-ostree's defaults (`tmp-is-dir: false`,
    /// `machineid-compat: true`).
    pub fn new(arch: &str, default_target: Option<String>) -> Self {
        OstreeTreeRule {
            arch: arch.to_string(),
            default_target,
            tmp_is_dir: false,
            machineid_compat: true,
        }
    }

    /// The treefile's `tmp-is-dir` and `machineid-compat`.
    pub fn with_layout(mut self, tmp_is_dir: bool, machineid_compat: bool) -> Self {
        self.tmp_is_dir = tmp_is_dir;
        self.machineid_compat = machineid_compat;
        self
    }
}

impl Rule for OstreeTreeRule {
    fn kind(&self) -> &str {
        "ostree-tree"
    }

    fn version(&self) -> u32 {
        3
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch)
            .add("default-target", &self.default_target)
            .add("tmp-is-dir", &self.tmp_is_dir)
            .add("machineid-compat", &self.machineid_compat);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let dep = single(ctx, "ostree-tree")?;
        let tree = ctx.dep_tree(&dep)?;
        let mut map: BTreeMap<String, TreeEntry> = tree
            .entries
            .into_iter()
            .map(|e| (e.path.clone(), e))
            .collect();
        // /etc -> /usr/etc (ostree merges it into the deployment's /etc at deploy time).
        if map.contains_key("root/usr/etc") {
            return Err(RunError::msg("the tree already has /usr/etc"));
        }
        if map
            .get("root/etc")
            .is_some_and(|e| e.kind == EntryKind::Dir)
        {
            for (p, e) in take_subtree(&mut map, "root/etc", true) {
                let to = format!("root/usr/etc{}", &p["root/etc".len()..]);
                map.insert(to.clone(), TreeEntry { path: to, ..e });
            }
        }
        // /var is the deployment's own: record its directories as tmpfiles.d lines, empty it.
        let mut lines = Vec::new();
        if map
            .get("root/var")
            .is_some_and(|e| e.kind == EntryKind::Dir)
        {
            let mut dirs: Vec<(String, u32)> = take_subtree(&mut map, "root/var", false)
                .into_iter()
                .filter(|(_, e)| e.kind == EntryKind::Dir)
                .map(|(p, e)| (p["root/".len()..].to_string(), e.mode))
                .collect();
            // Parents before children, siblings by name: the order of a directory walk.
            dirs.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
            for (p, mode) in dirs {
                lines.push(format!("d /{p} {:04o} root root -", mode & 0o7777));
            }
        }
        map.remove("root/var");
        ensure_dir(&mut map, "root/var")?;
        let mut text = String::from("# /var of the composed tree, recreated at boot (nosa).\n");
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
        let blob = ctx.store().put_bytes(text.as_bytes())?;
        put(
            &mut map,
            "root/usr/lib/tmpfiles.d/nosa-var.conf",
            0o644,
            EntryKind::File {
                digest: blob,
                size: text.len() as u64,
            },
        )?;
        if let Some(t) = &self.default_target {
            put(
                &mut map,
                "root/usr/lib/systemd/system/default.target",
                0o777,
                EntryKind::Symlink { target: t.clone() },
            )?;
        }
        // machine-id: absent (first boot makes it) or empty (compat).
        map.remove("root/usr/etc/machine-id");
        if self.machineid_compat {
            let empty = ctx.store().put_bytes(b"")?;
            put(
                &mut map,
                "root/usr/etc/machine-id",
                0o444,
                EntryKind::File {
                    digest: empty,
                    size: 0,
                },
            )?;
        }
        self.toplevel(ctx, &mut map)?;
        self.useradd_home(ctx, &mut map)?;
        ctx.set_output_tree(Tree {
            entries: map.into_values().collect(),
        });
        Ok(())
    }
}

impl OstreeTreeRule {
    /// Rebuilds the top level as rpm-ostree's strict layout (see the type's documentation).
    fn toplevel(
        &self,
        ctx: &mut RunContext<'_>,
        map: &mut BTreeMap<String, TreeEntry>,
    ) -> Result<(), RunError> {
        let tops: Vec<String> = map
            .keys()
            .filter_map(|k| k.strip_prefix("root/"))
            .filter(|k| !k.contains('/'))
            .map(str::to_string)
            .collect();
        let mut dropped = Vec::new();
        for t in tops {
            let keep = KEPT_TOPLEVEL.contains(&t.as_str());
            let link = map.get(&format!("root/{t}")).map(|e| &e.kind);
            let merged_link = ["bin", "sbin", "lib", "lib64", "lib32"].contains(&t.as_str());
            if keep && (!merged_link || matches!(link, Some(EntryKind::Symlink { .. }))) {
                continue;
            }
            take_subtree(map, &format!("root/{t}"), true);
            dropped.push(t);
        }
        if !dropped.is_empty() {
            writeln!(ctx.log, "top-level entries replaced: {}", dropped.join(" "))?;
        }
        for d in ["dev", "proc", "run", "sys", "sysroot", "boot"] {
            ensure_dir(map, &format!("root/{d}"))?;
        }
        if self.tmp_is_dir {
            map.insert(
                "root/tmp".into(),
                TreeEntry {
                    path: "root/tmp".into(),
                    mode: 0o1777,
                    kind: EntryKind::Dir,
                },
            );
        } else {
            put(map, "root/tmp", 0o777, link("sysroot/tmp"))?;
        }
        for (name, target) in TOPLEVEL_LINKS {
            put(map, &format!("root/{name}"), 0o777, link(target))?;
        }
        take_subtree(map, "root/usr/local", true);
        put(map, "root/usr/local", 0o777, link("../var/usrlocal"))?;
        let blob = ctx.store().put_bytes(INTEGRATION_TMPFILES.as_bytes())?;
        put(
            map,
            "root/usr/lib/tmpfiles.d/nosa-0-integration.conf",
            0o644,
            EntryKind::File {
                digest: blob,
                size: INTEGRATION_TMPFILES.len() as u64,
            },
        )
    }

    /// `HOME=` of `/usr/etc/default/useradd` points at `/var/home` (rpm-ostree's
    /// `postprocess_useradd`): `~` then shows as the real path.
    fn useradd_home(
        &self,
        ctx: &mut RunContext<'_>,
        map: &mut BTreeMap<String, TreeEntry>,
    ) -> Result<(), RunError> {
        let path = "root/usr/etc/default/useradd";
        let Some(TreeEntry {
            kind: EntryKind::File { digest, .. },
            ..
        }) = map.get(path)
        else {
            return Ok(());
        };
        let text = fs_err::read_to_string(ctx.store().blob_path(digest))?;
        if !text.lines().any(|l| l.starts_with("HOME=")) {
            return Ok(());
        }
        let mut out = String::new();
        for l in text.lines() {
            out.push_str(if l.starts_with("HOME=") {
                "HOME=/var/home"
            } else {
                l
            });
            out.push('\n');
        }
        let blob = ctx.store().put_bytes(out.as_bytes())?;
        put(
            map,
            path,
            0o644,
            EntryKind::File {
                digest: blob,
                size: out.len() as u64,
            },
        )
    }
}

fn link(target: &str) -> EntryKind {
    EntryKind::Symlink {
        target: target.to_string(),
    }
}
