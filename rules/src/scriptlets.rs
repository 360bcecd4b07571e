//! The `scriptlets` rule: the packages' `%pre` and `%post` scriptlets (package by package, in
//! install order), then every `%posttrans`, run inside the composed tree (which already has the
//! overlay layers, as rpm-ostree orders it) in a bubblewrap sandbox: the tree is `/`, no
//! network, a private `/tmp`, nothing of the host but what the tree itself contains. The run
//! is traced (`crate::trace`): when nothing the scriptlets read changed, their effect is
//! replayed.

use nosa_engine::{Params, Rule, RunContext, RunError};
use serde::{Deserialize, Serialize};

use crate::trace::{Program, run_traced};

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

#[derive(Debug, Deserialize, Serialize)]
struct Script {
    program: Vec<String>,
    script: String,
}

#[derive(Debug, Deserialize)]
struct Meta {
    #[serde(default)]
    scripts: Vec<(String, std::collections::BTreeMap<String, Script>)>,
}

impl Rule for ScriptletsRule {
    fn kind(&self) -> &str {
        "scriptlets"
    }

    fn version(&self) -> u32 {
        2
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        crate::trace::params(p);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "scriptlets needs exactly one rootfs dependency",
            ));
        };
        let dep = dep.clone();
        let tree = ctx.dep_tree(&dep)?;
        let meta_blob = tree
            .file("meta.json")
            .ok_or_else(|| RunError::msg(format!("{} has no meta.json", dep.id)))?;
        let meta: Meta = serde_json::from_slice(&fs_err::read(ctx.store().blob_path(&meta_blob))?)
            .map_err(|e| RunError::msg(format!("{}: meta.json: {e}", dep.id)))?;
        let mut programs = Vec::new();
        for (nevra, scripts) in &meta.scripts {
            for phase in ["pre", "post"] {
                if let Some(s) = scripts.get(phase) {
                    programs.push(program(s, format!("%{phase} of {nevra}")));
                }
            }
        }
        for (nevra, scripts) in &meta.scripts {
            if let Some(s) = scripts.get("posttrans") {
                programs.push(program(s, format!("%posttrans of {nevra}")));
            }
        }
        // The scripts come from the input's meta.json: they belong to what the trace is for.
        let scripts =
            serde_json::to_vec(&meta.scripts).map_err(|e| RunError::msg(e.to_string()))?;
        let out = run_traced(ctx, &dep, &scripts, &programs)?;
        ctx.set_output_tree(out);
        Ok(())
    }
}

fn program(s: &Script, what: String) -> Program {
    Program {
        argv: s.program.clone(),
        script: s.script.clone(),
        what,
    }
}
