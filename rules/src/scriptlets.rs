//! The `scriptlets` rule: the packages' `%pre` and `%post` scriptlets (package by package, in
//! install order), then every `%posttrans`, run inside the composed tree (which already has the
//! overlay layers, as rpm-ostree orders it) in a bubblewrap sandbox: the tree is `/`, no
//! network, a private `/tmp`, nothing of the host but what the tree itself contains.

use std::path::Path;
use std::process::{Command, Stdio};

use nosa_engine::{Params, Rule, RunContext, RunError};
use serde::Deserialize;

/// The environment a scriptlet sees, and the only one.
const SCRIPT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the scriptlets recorded in the rootfs's `meta.json`.
#[derive(Debug, Clone)]
pub struct ScriptletsRule {
    arch: String,
}

impl ScriptletsRule {
    /// The rule for `arch`.
    pub fn new(arch: &str) -> Self {
        ScriptletsRule {
            arch: arch.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Script {
    program: Vec<String>,
    script: String,
}

#[derive(Debug, Deserialize)]
struct Meta {
    #[serde(default)]
    scripts: Vec<(String, std::collections::BTreeMap<String, Script>)>,
}

/// Runs `program script-file 1` with `root` as `/` in bubblewrap.
pub fn run_in_tree(
    root: &Path,
    scratch: &Path,
    program: &[String],
    script: &str,
    log: &mut dyn std::io::Write,
    what: &str,
) -> Result<(), RunError> {
    let file = scratch.join("script");
    fs_err::write(&file, script)?;
    let program: Vec<String> = if program.is_empty() {
        vec!["/bin/sh".into()]
    } else {
        program.to_vec()
    };
    writeln!(log, "# {what}: {}", program.join(" "))?;
    log.flush()?;
    let out = Command::new("bwrap")
        .arg("--bind")
        .arg(root)
        .arg("/")
        .args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"])
        .arg("--ro-bind")
        .arg(&file)
        .arg("/tmp/.nosa-scriptlet")
        .args(["--unshare-all", "--die-with-parent", "--clearenv"])
        .args(["--setenv", "PATH", SCRIPT_PATH, "--setenv", "LC_ALL", "C"])
        .args(["--setenv", "HOME", "/root", "--setenv", "TZ", "UTC"])
        .args(["--chdir", "/"])
        .arg("--")
        .args(&program)
        .arg("/tmp/.nosa-scriptlet")
        .arg("1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            RunError::msg(format!(
                "cannot run bwrap ({e}); install Debian's bubblewrap package"
            ))
        })?;
    log.write_all(&out.stdout)?;
    log.write_all(&out.stderr)?;
    if !out.status.success() {
        return Err(RunError::msg(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Rule for ScriptletsRule {
    fn kind(&self) -> &str {
        "scriptlets"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch).add("env.PATH", SCRIPT_PATH);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "scriptlets needs exactly one rootfs dependency",
            ));
        };
        ctx.stage_dep(dep, &ctx.out.clone())?;
        let meta: Meta = serde_json::from_slice(&fs_err::read(ctx.out.join("meta.json"))?)
            .map_err(|e| RunError::msg(format!("{}: meta.json: {e}", dep.id)))?;
        let root = ctx.out.join("root");
        let scratch = ctx.scratch.clone();
        for (nevra, scripts) in &meta.scripts {
            for phase in ["pre", "post"] {
                if let Some(s) = scripts.get(phase) {
                    let what = format!("%{phase} of {nevra}");
                    run_in_tree(&root, &scratch, &s.program, &s.script, ctx.log, &what)?;
                }
            }
        }
        for (nevra, scripts) in &meta.scripts {
            if let Some(s) = scripts.get("posttrans") {
                let what = format!("%posttrans of {nevra}");
                run_in_tree(&root, &scratch, &s.program, &s.script, ctx.log, &what)?;
            }
        }
        Ok(())
    }
}
