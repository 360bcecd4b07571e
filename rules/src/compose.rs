//! The compose nodes after the scriptlets, each on the tree its predecessor produced (`root/`
//! plus `meta.json`): `postprocess` (one script, run inside the tree under bubblewrap),
//! `initramfs` (the tree's own dracut, inside the tree), both traced (`crate::trace`), and
//! `ostree-tree` (the layout ostree deploys: `/etc` moved to `/usr/etc`, `/var` emptied into
//! tmpfiles.d entries, the default target), computed on the tree's listing.

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
        2
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch).add("initramfs-args", &self.args);
        crate::trace::params(p);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let dep = single(ctx, "initramfs")?;
        let kver = kernel_version(&ctx.dep_tree(&dep)?)?;
        let mut cmd = format!(
            "SOURCE_DATE_EPOCH=0 exec dracut --no-hostonly --reproducible -f --kver '{kver}'"
        );
        for a in &self.args {
            cmd.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        cmd.push_str(&format!(" '/usr/lib/modules/{kver}/initramfs.img'"));
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

/// `ostree-tree:<arch>`: the layout ostree deploys.
#[derive(Debug, Clone)]
pub struct OstreeTreeRule {
    arch: String,
    default_target: Option<String>,
}

impl OstreeTreeRule {
    /// The rule for `arch`.
    pub fn new(arch: &str, default_target: Option<String>) -> Self {
        OstreeTreeRule {
            arch: arch.to_string(),
            default_target,
        }
    }
}

impl Rule for OstreeTreeRule {
    fn kind(&self) -> &str {
        "ostree-tree"
    }

    fn version(&self) -> u32 {
        2
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch)
            .add("default-target", &self.default_target);
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
        ctx.set_output_tree(Tree {
            entries: map.into_values().collect(),
        });
        Ok(())
    }
}
