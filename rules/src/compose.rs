//! The compose nodes after the scriptlets, each on the tree its predecessor produced (`root/`
//! plus `meta.json`): `postprocess` (one script, run inside the tree under bubblewrap),
//! `initramfs` (the tree's own dracut, inside the tree), and `ostree-tree` (the layout ostree
//! deploys: `/etc` moved to `/usr/etc`, `/var` emptied into tmpfiles.d entries, the
//! default target).

use std::os::unix::fs::PermissionsExt;

use nosa_engine::{InputSpec, Params, Rule, RunContext, RunError};

use crate::scriptlets::run_in_tree;

/// Stages the single dependency (a tree node) into `ctx.out`.
fn stage_single(ctx: &mut RunContext<'_>, kind: &str) -> Result<(), RunError> {
    let [dep] = ctx.deps else {
        return Err(RunError::msg(format!(
            "{kind} needs exactly one tree dependency"
        )));
    };
    let out = ctx.out.clone();
    ctx.stage_dep(dep, &out)
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
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch).add("index", &self.index);
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
        stage_single(ctx, "postprocess")?;
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
        let program: Vec<String> = match text.lines().next().and_then(|l| l.strip_prefix("#!")) {
            Some(line) => line.split_whitespace().map(str::to_string).collect(),
            None => vec!["/bin/sh".into()],
        };
        let root = ctx.out.join("root");
        let what = format!("postprocess script {}", self.index);
        run_in_tree(&root, &ctx.scratch.clone(), &program, &text, ctx.log, &what)
    }
}

/// The kernel version of a tree: its single `/usr/lib/modules/<kver>/vmlinuz`.
pub fn kernel_version(root: &std::path::Path) -> Result<String, RunError> {
    let dir = root.join("usr/lib/modules");
    let mut found = Vec::new();
    for e in fs_err::read_dir(&dir)? {
        let e = e?;
        if e.path().join("vmlinuz").is_file() {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    match found.as_slice() {
        [k] => Ok(k.clone()),
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
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch).add("initramfs-args", &self.args);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        stage_single(ctx, "initramfs")?;
        let root = ctx.out.join("root");
        let kver = kernel_version(&root)?;
        let mut cmd = format!(
            "SOURCE_DATE_EPOCH=0 exec dracut --no-hostonly --reproducible -f --kver '{kver}'"
        );
        for a in &self.args {
            cmd.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        cmd.push_str(&format!(" '/usr/lib/modules/{kver}/initramfs.img'"));
        let what = format!("dracut for kernel {kver}");
        run_in_tree(
            &root,
            &ctx.scratch.clone(),
            &["/bin/sh".to_string()],
            &cmd,
            ctx.log,
            &what,
        )?;
        let img = root.join(format!("usr/lib/modules/{kver}/initramfs.img"));
        if !img.is_file() {
            return Err(RunError::msg(format!(
                "dracut did not write /usr/lib/modules/{kver}/initramfs.img"
            )));
        }
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
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch)
            .add("default-target", &self.default_target);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        stage_single(ctx, "ostree-tree")?;
        let root = ctx.out.join("root");
        // /etc -> /usr/etc (ostree merges it into the deployment's /etc at deploy time).
        let etc = root.join("etc");
        let usr_etc = root.join("usr/etc");
        if usr_etc.exists() {
            return Err(RunError::msg("the tree already has /usr/etc"));
        }
        if etc.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            fs_err::rename(&etc, &usr_etc)?;
        }
        // /var is the deployment's own: record its directories as tmpfiles.d lines, empty it.
        let var = root.join("var");
        let mut lines = Vec::new();
        if var.is_dir() {
            for e in walkdir::WalkDir::new(&var).min_depth(1).sort_by_file_name() {
                let e = e.map_err(|e| RunError::msg(e.to_string()))?;
                if e.file_type().is_dir() {
                    let mode = e.metadata().map_err(|e| RunError::msg(e.to_string()))?;
                    let rel = e.path().strip_prefix(&root).unwrap_or(e.path());
                    lines.push(format!(
                        "d /{} {:04o} root root -",
                        rel.display(),
                        mode.permissions().mode() & 0o7777
                    ));
                }
            }
            fs_err::remove_dir_all(&var)?;
        }
        fs_err::create_dir_all(&var)?;
        let tmpfiles = root.join("usr/lib/tmpfiles.d");
        fs_err::create_dir_all(&tmpfiles)?;
        let mut text = String::from("# /var of the composed tree, recreated at boot (nosa).\n");
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
        fs_err::write(tmpfiles.join("nosa-var.conf"), text)?;
        if let Some(t) = &self.default_target {
            let dir = root.join("usr/lib/systemd/system");
            fs_err::create_dir_all(&dir)?;
            let link = dir.join("default.target");
            let _ = fs_err::remove_file(&link);
            std::os::unix::fs::symlink(t, &link)
                .map_err(|e| RunError::msg(format!("{}: {e}", link.display())))?;
        }
        Ok(())
    }
}
