//! The `step` rule: a user-defined shell command run in a scratch directory that holds only its
//! declared inputs and its dependencies' outputs, with a fixed environment; with `trace = true`
//! it runs traced in a sandbox and is reused when what it read is unchanged
//! (`nosa_rules::trace::workdir`).

use std::path::Path;
use std::process::{Command, Stdio};

use nosa_cache::{Digest, Materialize};
use nosa_engine::{InputSpec, KeyHasher, MaterializeTo, Params, Rule, RunContext, RunError};
use nosa_rules::trace::{self, workdir};

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
        // 2: untraced steps run in a sandbox (read-only host, no network).
        2
    }

    fn params(&self, p: &mut Params) {
        p.add("run", &self.step.run)
            .add("outputs", &self.step.outputs)
            .add("inputs", &self.step.inputs)
            .add("env.PATH", STEP_PATH);
        if self.step.network {
            // Only networked steps carry it: the keys of every other step stay as they were.
            p.add("network", &true);
        }
        if self.step.trace {
            // Only traced steps carry these: the keys of every other step stay as they were.
            p.add("trace", &trace::tracing_on());
            workdir::params(p);
        }
    }

    fn inputs(&self) -> Vec<InputSpec> {
        self.step
            .inputs
            .iter()
            .map(|s| InputSpec::parse(s))
            .collect()
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        if self.step.trace && trace::tracing_on() {
            return self.run_traced(ctx);
        }
        let work = self.stage(ctx)?;
        if self.step.trace {
            writeln!(
                ctx.log,
                "# nosa: running untraced ({}=off)",
                trace::TRACE_ENV
            )?;
            ctx.note(format!(
                "ran untraced ({}=off): not reusable by trace",
                trace::TRACE_ENV
            ));
        }
        writeln!(ctx.log, "$ {}", self.step.run)?;
        ctx.log.flush()?;
        if !self.step.trace
            && !self.step.network
            && let Some(farm) = ctx.remote_executor()
            && self.run_remotely(ctx, farm, &work)?
        {
            return Ok(());
        }
        let log = fs_err::OpenOptions::new()
            .append(true)
            .open(ctx.log_path())?
            .into_parts()
            .0;
        let status = self
            .sandboxed(&work)
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
            .map_err(|e| {
                RunError::msg(format!(
                    "cannot run bwrap ({e}): install Debian's bubblewrap, which steps run in"
                ))
            })?;
        if !status.success() {
            return Err(RunError::msg(format!(
                "`{}` exited with {}",
                self.step.run.lines().next().unwrap_or_default(),
                status
            )));
        }
        self.take_outputs(ctx, &work)
    }

    fn shareable(&self) -> bool {
        // What it fetched is not a function of its key.
        !self.step.network
    }

    fn materialize(&self) -> Option<MaterializeTo> {
        (!self.step.outputs.is_empty()).then(|| MaterializeTo {
            dir: Path::new("").to_path_buf(),
            how: Materialize::Copy,
        })
    }
}

impl StepRule {
    /// Runs the step on the build farm: its work directory is the input root, its declared
    /// outputs come back into the node's output. `false` when the farm could not run it (it
    /// said why, once): the step then runs here.
    fn run_remotely(
        &self,
        ctx: &mut RunContext<'_>,
        farm: &dyn nosa_engine::RemoteExecutor,
        work: &Path,
    ) -> Result<bool, RunError> {
        let argv = ["sh".to_string(), "-c".to_string(), self.step.run.clone()];
        // As a local run's, but HOME: the work directory's path is the worker's business.
        let env = [
            ("PATH".to_string(), STEP_PATH.to_string()),
            ("LC_ALL".to_string(), "C.UTF-8".to_string()),
            ("TZ".to_string(), "UTC".to_string()),
        ];
        let cmd = nosa_engine::RemoteCommand {
            root: work,
            argv: &argv,
            env: &env,
            outputs: &self.step.outputs,
            out: &ctx.out,
            files: &[],
            platform: &[],
        };
        match farm.execute(&cmd) {
            nosa_engine::RemoteRun::Unavailable(why) => {
                writeln!(
                    ctx.log,
                    "# nosa: the build farm could not run it ({why}); running here"
                )?;
                // Whatever a half-finished download left goes.
                fs_err::remove_dir_all(&ctx.out)?;
                fs_err::create_dir_all(&ctx.out)?;
                Ok(false)
            }
            nosa_engine::RemoteRun::Done { exit_code, output } => {
                let farm = farm.describe();
                ctx.log.write_all(&output)?;
                if exit_code != 0 {
                    return Err(RunError::msg(format!(
                        "`{}` exited with exit status: {exit_code} on the build farm {farm}",
                        self.step.run.lines().next().unwrap_or_default(),
                    )));
                }
                for o in &self.step.outputs {
                    if ctx.out.join(o).symlink_metadata().is_err() {
                        return Err(RunError::msg(format!(
                            "the step did not produce its declared output {o}"
                        )));
                    }
                }
                ctx.ran_on_farm(&farm);
                Ok(true)
            }
        }
    }

    /// `sh -c <run>` in bubblewrap: the host read-only, `work` (its inputs, its dependencies'
    /// outputs, where its outputs go) the one writable directory, a private empty /tmp, /dev
    /// and /proc, its own PID, IPC and UTS namespaces, and no network unless it says
    /// `network = true`.
    fn sandboxed(&self, work: &Path) -> Command {
        let mut c = Command::new("bwrap");
        c.args([
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]);
        if !self.step.network {
            c.arg("--unshare-net");
        }
        c.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
        // After /tmp, so that a work directory under /tmp is bound into the new one.
        c.args(["--tmpfs", "/tmp"]);
        c.arg("--bind").arg(work).arg(work).arg("--chdir").arg(work);
        c.args(["--", "sh", "-c", &self.step.run]);
        c
    }

    /// The work directory with the declared inputs and the dependencies' outputs in it.
    fn stage(&self, ctx: &RunContext<'_>) -> Result<std::path::PathBuf, RunError> {
        let work = ctx.scratch.join("work");
        fs_err::create_dir_all(&work)?;
        ctx.stage_inputs(&work)?;
        for d in ctx.deps {
            ctx.stage_dep(d, &work)?;
        }
        Ok(work)
    }

    /// What a traced run's reuse is valid for: everything in the key but the inputs' and
    /// dependencies' contents, which the trace judges path by path.
    fn trace_base(&self) -> Digest {
        let mut p = Params::default();
        self.params(&mut p);
        let mut h = KeyHasher::new();
        h.bytes(b"nosa-step-trace-base");
        h.u64(u64::from(self.version()));
        h.bytes(&p.digest().0);
        h.finish()
    }

    fn run_traced(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let input = workdir::input_tree(ctx)?;
        let base = self.trace_base();
        let why = match workdir::try_reuse(ctx, &input, base)? {
            workdir::Reuse::Replayed => return Ok(()),
            workdir::Reuse::Run(why) => why,
        };
        let work = self.stage(ctx)?;
        writeln!(ctx.log, "# nosa: running traced: {why}")?;
        writeln!(ctx.log, "$ {}", self.step.run)?;
        ctx.log.flush()?;
        let home = work.to_string_lossy().into_owned();
        let env = [
            ("PATH", STEP_PATH),
            ("HOME", home.as_str()),
            ("LC_ALL", "C.UTF-8"),
            ("TZ", "UTC"),
        ];
        let started = nosa_cache::stamp::epoch_ns(std::time::SystemTime::now());
        let trace_file = workdir::run(ctx, &work, &self.step.run, &env)?;
        self.take_outputs(ctx, &work)?;
        workdir::record(
            ctx,
            &input,
            &work,
            &trace_file,
            &self.step.outputs,
            base,
            &why,
            started,
        )
    }

    /// Moves the declared outputs from the work directory into the node's output.
    fn take_outputs(&self, ctx: &RunContext<'_>, work: &Path) -> Result<(), RunError> {
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
}
