//! Traced runs of a shell command in a work directory on the host, and their reuse: a
//! `[[step]]` with `trace = true`.
//!
//! A step's key covers every file it declares, so a step that declares a whole directory
//! reruns whenever any file in it changes, though it may read two of them. Traced, the step
//! runs in bubblewrap with the host read-only, its work directory writable at its own path
//! and private `/tmp`, `/dev` and `/proc`, under the same strace as the compose nodes
//! ([`super::strace`]). The memo keeps what it looked up and listed, in the work directory
//! (digested on the tree the directory was staged from) and on the host (digested by stamp,
//! [`super::host`]). When the step's key changes but its command, outputs and environment do
//! not, and every one of those reads digests the same now, the previous output is the output
//! again and the step does not run.
//!
//! What a step declares as output may hold input files it never read (`touch dir/new` with
//! `outputs = ["dir"]`): every input entry at or under an output path counts as read, and
//! every such directory as listed, so a change there runs the step again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nosa_cache::{Digest, EntryKind, Tree, TreeEntry};
use nosa_engine::{Params, RunContext, RunError};
use serde::{Deserialize, Serialize};

use super::host::{self, HostEnd};
use super::probe::{Resolved, TreeView};
use super::{PID_NAMESPACE, strace};

/// bubblewrap's flags around a traced step: the host read-only (the step's tools are the
/// host's), private `/dev` and `/proc`, empty `/sys` and `/tmp` ([`host::STEP_PRIVATE`]: the
/// host's `/sys` is host state, and libselinux looks at it in every coreutils program), its
/// own IPC and UTS namespaces. The network is the host's: a step that uses it cannot be
/// reused, and the trace says so.
const STEP_SANDBOX: [&str; 15] = [
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/sys",
    "--tmpfs",
    "/tmp",
    "--unshare-ipc",
    "--unshare-uts",
    "--die-with-parent",
    "--clearenv",
];

/// Bump when the memo's meaning changes: every memo of an older format is ignored.
const MEMO_FORMAT: u32 = 2;

/// The memo file in the node's memo tree.
const MEMO_FILE: &str = "step-trace.json";

/// Declares the tracer and the sandbox of a traced step as parameters of its node.
pub fn params(p: &mut Params) {
    let strace: Vec<String> = strace::STRACE_ARGS.iter().map(|a| a.to_string()).collect();
    p.add("tracer", &strace);
    super::sandbox_params(p, &STEP_SANDBOX);
}

/// What a traced step remembers of its last run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Memo {
    format: u32,
    /// What the step's reuse is valid for: its command, outputs and environment.
    base: Digest,
    /// Why the run cannot be reused, if so.
    untraceable: Option<String>,
    /// Path below the work directory looked up -> digest on the staged tree.
    work: Vec<(String, Digest)>,
    /// Directory below the work directory listed -> digest on the staged tree.
    work_listings: Vec<(String, Digest)>,
    /// Host path looked up -> digest.
    host: Vec<(String, Digest)>,
    /// Host directory listed -> digest.
    host_listings: Vec<(String, Digest)>,
    /// Facts of the build host read (`/proc/cpuinfo`, `/proc/sys/...`) -> content digest.
    #[serde(default)]
    facts: Vec<(String, Digest)>,
}

/// The tree the work directory is staged from: the declared inputs at their paths (sizes left
/// out: the content digest fixes them), then each dependency's output, as staging writes them,
/// with every directory they imply.
pub fn input_tree(ctx: &RunContext<'_>) -> Result<Tree, RunError> {
    let mut map: BTreeMap<String, TreeEntry> = BTreeMap::new();
    for f in ctx.inputs {
        let kind = if f.symlink {
            let target = fs_err::read_link(&f.abs)?;
            EntryKind::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else {
            EntryKind::File {
                digest: f.digest,
                size: 0,
            }
        };
        map.insert(
            f.rel.clone(),
            TreeEntry {
                path: f.rel.clone(),
                mode: f.mode,
                kind,
            },
        );
    }
    for d in ctx.deps {
        for e in ctx.dep_tree(d)?.entries {
            map.insert(e.path.clone(), e);
        }
    }
    let implied: Vec<String> = map
        .keys()
        .flat_map(|p| p.rmatch_indices('/').map(|(at, _)| p[..at].to_string()))
        .collect();
    for dir in implied {
        map.entry(dir.clone()).or_insert(TreeEntry {
            path: dir,
            mode: 0o755,
            kind: EntryKind::Dir,
        });
    }
    let mut t = Tree {
        entries: map.into_values().collect(),
    };
    t.normalize();
    Ok(t)
}

/// What [`try_reuse`] decided.
pub enum Reuse {
    /// The previous output is this run's output.
    Replayed,
    /// The step must run, for this reason.
    Run(String),
}

/// Makes the previous output this run's output when the memo is for `base` and every read it
/// lists digests the same on `input` and on the host now.
pub fn try_reuse(ctx: &mut RunContext<'_>, input: &Tree, base: Digest) -> Result<Reuse, RunError> {
    let Some((memo_tree, json)) = ctx.previous_memo_file(MEMO_FILE) else {
        return Ok(Reuse::Run("no trace of an earlier run".into()));
    };
    let Ok(m) = serde_json::from_slice::<Memo>(&json) else {
        return Ok(Reuse::Run("no trace of an earlier run".into()));
    };
    if m.format != MEMO_FORMAT || m.base != base {
        return Ok(Reuse::Run(
            "its command, outputs or environment changed since the last trace".into(),
        ));
    }
    if let Some(w) = &m.untraceable {
        return Ok(Reuse::Run(format!("not reusable by trace: {w}")));
    }
    let previous = ctx.previous.and_then(|d| ctx.store().get_tree(&d).ok());
    let Some(previous) = previous.filter(|t| t.blobs().all(|b| ctx.store().has_blob(&b))) else {
        return Ok(Reuse::Run(
            "its last output is no longer in the store".into(),
        ));
    };
    let view = TreeView::plain(input, "");
    for (p, d) in &m.work {
        if view.lookup(&format!("/{p}")) != *d {
            return Ok(Reuse::Run(format!("{p} changed since the last trace")));
        }
    }
    for (p, d) in &m.work_listings {
        if view.listing(&format!("/{p}")) != *d {
            return Ok(Reuse::Run(format!(
                "the listing of {} changed since the last trace",
                if p.is_empty() { "." } else { p }
            )));
        }
    }
    for (p, d) in &m.host {
        if host::lookup(p, i64::MAX).0 != *d {
            return Ok(Reuse::Run(format!(
                "host file {p} changed since the last trace"
            )));
        }
    }
    for (p, d) in &m.host_listings {
        if host::listing(p, i64::MAX).0 != *d {
            return Ok(Reuse::Run(format!(
                "the listing of host directory {p} changed since the last trace"
            )));
        }
    }
    for (p, d) in &m.facts {
        if host::fact(p) != *d {
            return Ok(Reuse::Run(format!(
                "the build host's {p} changed since the last trace"
            )));
        }
    }
    let n =
        m.work.len() + m.work_listings.len() + m.host.len() + m.host_listings.len() + m.facts.len();
    writeln!(ctx.log, "# nosa: reusing the last output")?;
    ctx.set_output_tree(previous);
    ctx.set_memo(memo_tree);
    ctx.reused(format!("reused by trace ({n} paths read, unchanged)"));
    Ok(Reuse::Replayed)
}

/// Runs `sh -c script` in `work` with exactly `env`, traced, in the step sandbox; its output
/// goes to the node's log. Returns the trace file, in the node's scratch directory.
pub fn run(
    ctx: &mut RunContext<'_>,
    work: &Path,
    script: &str,
    env: &[(&str, &str)],
) -> Result<PathBuf, RunError> {
    let trace = ctx.scratch.join("step.trace");
    let work_s = work
        .to_str()
        .ok_or_else(|| RunError::msg(format!("{}: not UTF-8", work.display())))?;
    let cmdline = ctx.scratch.join("step.cmdline");
    fs_err::write(&cmdline, super::SANDBOX_CMDLINE)?;
    let mut cmd = Command::new("unshare");
    cmd.args(PID_NAMESPACE)
        .arg("strace")
        .args(strace::STRACE_ARGS)
        .arg("-o")
        .arg(&trace)
        .args(["--", "bwrap"])
        .args(STEP_SANDBOX)
        .arg("--ro-bind")
        .arg(&cmdline)
        .arg("/proc/cmdline")
        .args(["--bind", work_s, work_s]);
    for (k, v) in env {
        cmd.args(["--setenv", k, v]);
    }
    cmd.args(["--chdir", work_s, "--", "sh", "-c", script])
        .stdin(Stdio::null());
    super::sys::die_with_thread(&mut cmd);
    super::sys::keep_on_one_cpu(&mut cmd);
    let out = cmd.output().map_err(|e| {
        RunError::msg(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "cannot run unshare; install Debian's util-linux package".into()
            }
            _ => format!("cannot start the traced sandbox: {e}"),
        })
    })?;
    let first = script.lines().next().unwrap_or_default();
    crate::output::logged(ctx.log, &out, &format!("`{first}`")).map_err(|e| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        [("strace", "strace"), ("bwrap", "bubblewrap")]
            .into_iter()
            .find(|(tool, _)| stderr.contains(&format!("unshare: failed to execute {tool}")))
            .map_or(e, |(tool, package)| {
                RunError::msg(format!(
                    "cannot run {tool} for a traced step; install Debian's {package} package"
                ))
            })
    })?;
    Ok(trace)
}

/// Keeps the memo of a finished traced run: its reads from `trace` (the step ran in `work`,
/// staged from `input`, started at `started_ns`), plus every input entry at or under an
/// output path. Says in the node's note why it ran and what it read.
#[allow(clippy::too_many_arguments)]
pub fn record(
    ctx: &mut RunContext<'_>,
    input: &Tree,
    work: &Path,
    trace: &Path,
    outputs: &[String],
    base: Digest,
    why_run: &str,
    started_ns: i64,
) -> Result<(), RunError> {
    let text = fs_err::read_to_string(trace)?;
    let mut reads = strace::parse_with(&text, &work.to_string_lossy(), true);
    if reads.lines == 0 {
        return Err(RunError::msg(
            "the tracer saw the step do nothing; is strace working?".to_string(),
        ));
    }
    let prefix = format!("{}/", work.to_string_lossy().trim_end_matches('/'));
    let in_work = |p: &str| -> Option<String> {
        if p == prefix.trim_end_matches('/') {
            Some(String::new())
        } else {
            p.strip_prefix(&prefix).map(str::to_string)
        }
    };
    // What the kernel read without a system call: interpreters of executed files.
    let mut todo: Vec<String> = reads.execs.iter().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p.clone()) || p.starts_with("/tmp/") {
            continue;
        }
        match host::interpreter(Path::new(&p)) {
            Ok(Some(i)) => {
                let i = if i.starts_with('/') {
                    i
                } else {
                    format!("{}/{i}", work.display())
                };
                reads.lookups.insert(i.clone());
                todo.push(i);
            }
            Ok(None) => {}
            Err(e) => {
                if reads.untraceable.is_none() {
                    reads.untraceable = Some(format!("it executed {p}, {e}"));
                }
            }
        }
    }
    let mut untraceable = reads.untraceable.clone();
    let mut refuse = |why: String| {
        if untraceable.is_none() {
            untraceable = Some(why);
        }
    };
    let view = TreeView::plain(input, "");
    let mut memo = Memo {
        format: MEMO_FORMAT,
        base,
        untraceable: None,
        work: Vec::new(),
        work_listings: Vec::new(),
        host: Vec::new(),
        host_listings: Vec::new(),
        facts: Vec::new(),
    };
    let who = reads.who.clone();
    let mut facts = BTreeMap::new();
    let mut host_end = |end: HostEnd, p: &str, refuse: &mut dyn FnMut(String)| match end {
        HostEnd::Sandbox(s) => {
            match strace::host_read(&s) {
                strace::HostRead::Quiet => {}
                strace::HostRead::Fact(f) => {
                    facts.entry(f.clone()).or_insert_with(|| host::fact(&f));
                }
                strace::HostRead::Refused(why) => match who.get(p) {
                    Some(exe) => refuse(format!("{why} ({exe}, through {p})")),
                    None => refuse(format!("{why} (through {p})")),
                },
            }
            false
        }
        _ => true,
    };
    for p in &reads.lookups {
        if let Some(rel) = in_work(p) {
            let (d, end) = view.lookup_resolved(&format!("/{rel}"));
            if let Resolved::Outside(at) = end {
                refuse(format!(
                    "its lookup of {rel} left the work directory ({at})"
                ));
            }
            memo.work.push((rel, d));
        } else {
            let (d, end) = host::lookup(p, started_ns);
            if host_end(end, p, &mut refuse) {
                memo.host.push((p.clone(), d));
            }
        }
    }
    for p in &reads.listings {
        if let Some(rel) = in_work(p) {
            memo.work_listings
                .push((rel.clone(), view.listing(&format!("/{rel}"))));
        } else {
            let (d, end) = host::listing(p, started_ns);
            if host_end(end, p, &mut refuse) {
                memo.host_listings.push((p.clone(), d));
            }
        }
    }
    // Input entries under an output path are part of the output whether read or not.
    for o in outputs {
        let under = format!("{o}/");
        memo.work.push((o.clone(), view.lookup(&format!("/{o}"))));
        for e in &input.entries {
            if e.path.starts_with(&under) {
                memo.work
                    .push((e.path.clone(), view.lookup(&format!("/{}", e.path))));
            }
            if (e.path == *o || e.path.starts_with(&under)) && e.kind == EntryKind::Dir {
                memo.work_listings
                    .push((e.path.clone(), view.listing(&format!("/{}", e.path))));
            }
        }
    }
    memo.facts = facts.into_iter().collect();
    memo.untraceable = untraceable;
    for v in [
        &mut memo.work,
        &mut memo.work_listings,
        &mut memo.host,
        &mut memo.host_listings,
    ] {
        v.sort();
        v.dedup();
    }
    let n = memo.work.len()
        + memo.work_listings.len()
        + memo.host.len()
        + memo.host_listings.len()
        + memo.facts.len();
    let note = match &memo.untraceable {
        Some(w) => format!("ran traced ({why_run}); not reusable by trace: {w}"),
        None => format!("ran traced ({why_run}); {n} paths read"),
    };
    let json = serde_json::to_vec(&memo).map_err(|e| RunError::msg(e.to_string()))?;
    ctx.set_memo_files(&[(MEMO_FILE, &json)])?;
    ctx.note(note);
    Ok(())
}
