//! The `step` rule: a user-defined shell command run in a scratch directory that holds only its
//! declared inputs and its dependencies' outputs, with a fixed environment.

use std::path::Path;
use std::process::{Command, Stdio};

use nosa_cache::Materialize;
use nosa_engine::{InputSpec, MaterializeTo, Params, Rule, RunContext, RunError};

use crate::buildfile::Step;

/// The environment a step sees; nothing else from the caller's environment leaks in.
const STEP_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A `[[step]]` as a rule.
#[derive(Debug, Clone)]
pub struct StepRule {
    step: Step,
}

impl StepRule {
    /// The rule for `step`.
    pub fn new(step: Step) -> Self {
        StepRule { step }
    }

    /// The node id of step `name`.
    pub fn node_id(name: &str) -> String {
        format!("step:{name}")
    }
}

impl Rule for StepRule {
    fn kind(&self) -> &str {
        "step"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("run", &self.step.run)
            .add("outputs", &self.step.outputs)
            .add("inputs", &self.step.inputs)
            .add("env.PATH", STEP_PATH);
    }

    fn inputs(&self) -> Vec<InputSpec> {
        self.step
            .inputs
            .iter()
            .map(|s| InputSpec::parse(s))
            .collect()
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let work = ctx.scratch.join("work");
        fs_err::create_dir_all(&work)?;
        ctx.stage_inputs(&work)?;
        for d in ctx.deps {
            ctx.stage_dep(d, &work)?;
        }
        writeln!(ctx.log, "$ {}", self.step.run)?;
        ctx.log.flush()?;
        let log = fs_err::OpenOptions::new()
            .append(true)
            .open(ctx.log_path())?
            .into_parts()
            .0;
        let status = Command::new("sh")
            .arg("-c")
            .arg(&self.step.run)
            .current_dir(&work)
            .env_clear()
            .env("PATH", STEP_PATH)
            .env("HOME", &work)
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .map_err(|e| RunError::msg(format!("cannot run sh: {e}")))?;
        if !status.success() {
            return Err(RunError::msg(format!(
                "`{}` exited with {}",
                self.step.run.lines().next().unwrap_or_default(),
                status
            )));
        }
        for o in &self.step.outputs {
            let from = work.join(o);
            if from.symlink_metadata().is_err() {
                return Err(RunError::msg(format!(
                    "the step did not produce its declared output {o}"
                )));
            }
            let to = ctx.out.join(o);
            if let Some(p) = to.parent() {
                fs_err::create_dir_all(p)?;
            }
            fs_err::rename(&from, &to)?;
        }
        Ok(())
    }

    fn materialize(&self) -> Option<MaterializeTo> {
        (!self.step.outputs.is_empty()).then(|| MaterializeTo {
            dir: Path::new("").to_path_buf(),
            how: Materialize::Copy,
        })
    }
}
