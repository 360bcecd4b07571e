//! Traced runs of code inside a compose tree (scriptlets, postprocess scripts, the initramfs
//! generator), and their reuse.
//!
//! A traced node runs its programs in bubblewrap on an overlayfs: the lower directory is the
//! input tree, the upper directory collects the effect (files written, deleted, modes and
//! links changed). Debian's strace records every path the programs looked up (failed lookups
//! too), every directory they listed and every program they executed; the kernel's invisible
//! reads (a script's `#!` interpreter, an ELF file's dynamic loader) are added from the tree.
//! The output is the input tree with the effect applied, as a listing: no copy of the tree is
//! ingested. The node keeps a memo: its own key, the digest of each read on the input tree and
//! on the output tree, and the effect.
//!
//! On the next run (its input tree changed), when the memo is for the same own key and every
//! read digests the same on the new input and on the new output, the effect is replayed
//! instead of running. Anything the tracer cannot vouch for (randomness, the network, host
//! state under /proc or /dev, a changed mount view, a descriptor it could not name) makes the
//! run non-reusable: the node then runs every time its input changes. docs/tracing.md has the
//! measurements and the blind spots.

pub mod effect;
pub mod host;
pub mod probe;
pub mod strace;
mod sys;
pub mod workdir;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nosa_cache::{Digest, EntryKind, Materialize, Tree, TreeEntry};
use nosa_engine::{DepOutput, Params, RunContext, RunError};
use serde::{Deserialize, Serialize};

use effect::Change;
use probe::{Resolved, TreeView};
use strace::Reads;

/// Where the program's script appears in the sandbox (a private `/tmp`, not the tree).
pub const SCRIPT_IN_SANDBOX: &str = "/tmp/.nosa-script";

/// The environment a traced program sees, and the only one.
/// Interpreters that seed their hash tables from `/dev/urandom` (perl, for every Debian
/// maintainer-script helper such as pam-auth-update; python) get a fixed seed instead: their
/// output no longer depends on it, and the trace does not see a read of randomness.
const SANDBOX_ENV: [(&str, &str); 9] = [
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("LC_ALL", "C"),
    ("HOME", "/root"),
    ("TZ", "UTC"),
    ("SOURCE_DATE_EPOCH", "0"),
    ("PERL_HASH_SEED", "0"),
    ("PERL_PERTURB_KEYS", "0"),
    ("PERL_INTERNAL_RAND_SEED", "0"),
    ("PYTHONHASHSEED", "0"),
];

/// The PID namespace every sandboxed run gets, made by util-linux's `unshare` around the tracer
/// (not by bubblewrap inside it): strace, bubblewrap and the program share one PID namespace
/// with a `/proc` of its own, so the pids strace prints, `clone`'s return values and the
/// `/proc/<pid>/fd` links behind `-y` all mean the same processes without strace translating
/// pids between namespaces (`--decode-pids=pidns`, which cost ~0.5 ms a traced call here).
/// The namespace dies with its first process, and that with nosa's thread.
pub(crate) const PID_NAMESPACE: [&str; 5] =
    ["--pid", "--fork", "--kill-child", "--mount-proc", "--"];

/// bubblewrap's isolation flags around a traced program: every namespace `--unshare-all` makes
/// but the PID namespace, which [`PID_NAMESPACE`] already is.
const BWRAP_FLAGS: [&str; 13] = [
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    "--unshare-user-try",
    "--unshare-ipc",
    "--unshare-net",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",
    "--clearenv",
];

/// What a sandboxed program reads as the kernel command line (`/proc/cmdline` is bound to a
/// file with this content): the build host's is host state (dracut-install reads it), and
/// none of it concerns the tree being built.
pub const SANDBOX_CMDLINE: &str = "nosa.sandbox\n";

/// The environment variable that turns the tracer off (`NOSA_TRACE=off`): the programs run in
/// the same sandbox on the same overlay, without strace, and are never reused by trace. For
/// measuring the tracer's overhead and for telling a tracer problem from a script problem.
pub const TRACE_ENV: &str = "NOSA_TRACE";

/// Whether the tracer is on (it is unless `NOSA_TRACE=off`).
pub fn tracing_on() -> bool {
    std::env::var(TRACE_ENV).map_or(true, |v| v != "off")
}

/// Declares how traced programs run (tracer, sandbox, environment) as parameters of the node
/// that runs them, from the same constants [`run_one`] uses: a change reruns them.
pub fn params(p: &mut Params) {
    let env: Vec<(String, String)> = SANDBOX_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let strace: Vec<String> = if tracing_on() {
        strace::STRACE_ARGS.iter().map(|a| a.to_string()).collect()
    } else {
        vec!["off".to_string()]
    };
    p.add("tracer", &strace);
    sandbox_params(p, &BWRAP_FLAGS);
    p.add("sandbox-env", &env)
        .add("tree-times", "every mtime and atime 0");
}

/// The sandbox's parameters: the PID namespace, bubblewrap's `flags`, the fixed kernel
/// command line.
pub(crate) fn sandbox_params(p: &mut Params, flags: &[&str]) {
    let bwrap: Vec<String> = PID_NAMESPACE
        .iter()
        .chain(flags)
        .map(|a| a.to_string())
        .collect();
    p.add("sandbox", &bwrap)
        .add("sandbox-cmdline", SANDBOX_CMDLINE);
}

/// Bump when the memo's meaning changes: every memo of an older format is ignored.
const MEMO_FORMAT: u32 = 5;

/// Prefix of a compose tree's filesystem in its node output.
const ROOT: &str = "root/";

/// One program of a traced node: `argv` plus the script file it is given.
#[derive(Debug, Clone)]
pub struct Program {
    /// The interpreter and its options (`/bin/sh`); the script's path and `1` follow.
    pub argv: Vec<String>,
    /// The script's text.
    pub script: String,
    /// What it is, for the log and errors (`%post of foo-1.0-1.x86_64`).
    pub what: String,
}

/// What a traced node remembers of its last run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Memo {
    format: u32,
    /// The node's own key plus what the rule derived from its input (scripts, kernel version).
    base: Digest,
    /// Why the run cannot be reused, if so.
    untraceable: Option<String>,
    /// Path looked up -> digest on the input tree, digest on the output tree.
    lookups: Vec<(String, Digest, Digest)>,
    /// Directory listed -> digest on the input tree, digest on the output tree.
    listings: Vec<(String, Digest, Digest)>,
    /// Facts of the build host read (`/proc/cpuinfo`, `/proc/sys/...`) -> content digest.
    #[serde(default)]
    facts: Vec<(String, Digest)>,
    /// The effect, in order.
    changes: Vec<Change>,
}

/// Runs `programs` in order on `input`'s tree, traced, or replays their last effect when
/// nothing they read changed. `derived` is what the rule computed from the input tree itself
/// (it enters the memo's validity). Keeps the memo with the run and returns the output tree,
/// for the rule to check and hand the engine ([`RunContext::set_output_tree`]).
pub fn run_traced(
    ctx: &mut RunContext<'_>,
    input: &DepOutput,
    derived: &[u8],
    programs: &[Program],
) -> Result<Tree, RunError> {
    let tree = ctx.dep_tree(input)?;
    let base = {
        let mut h = blake3::Hasher::new();
        h.update(b"nosa-trace-base\0");
        h.update(&MEMO_FORMAT.to_le_bytes());
        h.update(&ctx.own_key.0);
        h.update(&(derived.len() as u64).to_le_bytes());
        h.update(derived);
        Digest::from(h.finalize())
    };
    if !tracing_on() {
        writeln!(ctx.log, "# nosa: running untraced ({TRACE_ENV}=off)")?;
        let (_, changes) = run_programs(ctx, &tree, programs, false)?;
        ctx.note(format!(
            "ran untraced ({TRACE_ENV}=off): not reusable by trace"
        ));
        return Ok(effect::apply(&tree, ROOT, &changes));
    }
    let why_run = match load_memo(ctx) {
        None => "no trace of an earlier run".to_string(),
        Some((m, _)) if m.format != MEMO_FORMAT || m.base != base => {
            "its script, environment or derived input changed since the last trace".to_string()
        }
        Some((m, memo_tree)) => match &m.untraceable {
            Some(w) => format!("not reusable by trace: {w}"),
            None => match check(&tree, &m) {
                Ok((out, reads)) => {
                    writeln!(ctx.log, "# nosa: replaying the effect of the last run")?;
                    // The same memo serves the next run: it is what this output came from.
                    ctx.set_memo(memo_tree);
                    ctx.reused(format!("reused by trace ({reads} paths read, unchanged)"));
                    return Ok(out);
                }
                Err(changed) => changed,
            },
        },
    };
    writeln!(ctx.log, "# nosa: running traced: {why_run}")?;
    let (reads, changes) = run_programs(ctx, &tree, programs, true)?;
    let out = effect::apply(&tree, ROOT, &changes);
    let memo = record(ctx, &tree, &out, base, reads, changes)?;
    let note = match &memo.untraceable {
        Some(w) => format!("ran traced ({why_run}); not reusable by trace: {w}"),
        None => format!(
            "ran traced ({why_run}); {} paths read",
            memo.lookups.len() + memo.listings.len() + memo.facts.len()
        ),
    };
    ctx.set_memo(make_memo_tree(ctx, &memo)?);
    ctx.note(note);
    Ok(out)
}

/// The last run's memo and its tree, if the store still has all of it.
fn load_memo(ctx: &RunContext<'_>) -> Option<(Memo, Tree)> {
    let (t, json) = ctx.previous_memo_file("trace.json")?;
    let memo: Memo = serde_json::from_slice(&json).ok()?;
    let complete = t.blobs().all(|b| ctx.store().has_blob(&b));
    complete.then_some((memo, t))
}

/// The new output if every read of `m` digests the same on `input` and on the output;
/// otherwise the first read that changed.
fn check(input: &Tree, m: &Memo) -> Result<(Tree, usize), String> {
    let out = effect::apply(input, ROOT, &m.changes);
    let vin = TreeView::new(input, ROOT);
    let vout = TreeView::new(&out, ROOT);
    for (p, din, dout) in &m.lookups {
        if vin.lookup(p) != *din {
            return Err(format!("{p} changed since the last trace"));
        }
        if vout.lookup(p) != *dout {
            return Err(format!(
                "{p} changed since the last trace (as the run left it)"
            ));
        }
    }
    for (p, din, dout) in &m.listings {
        if vin.listing(p) != *din || vout.listing(p) != *dout {
            return Err(format!("the listing of {p} changed since the last trace"));
        }
    }
    for (p, d) in &m.facts {
        if host::fact(p) != *d {
            return Err(format!("the build host's {p} changed since the last trace"));
        }
    }
    let n = m.lookups.len() + m.listings.len() + m.facts.len();
    Ok((out, n))
}

/// The memo as a tree: `trace.json` and the effect's blobs (kept alive with it).
fn make_memo_tree(ctx: &RunContext<'_>, m: &Memo) -> Result<Tree, RunError> {
    let json = serde_json::to_vec(m).map_err(|e| RunError::msg(e.to_string()))?;
    let d = ctx.store().put_bytes(&json)?;
    let mut entries = vec![TreeEntry {
        path: "trace.json".into(),
        mode: 0o644,
        kind: EntryKind::File {
            digest: d,
            size: json.len() as u64,
        },
    }];
    let mut seen = std::collections::HashSet::new();
    for (digest, size) in effect::blobs(&m.changes) {
        if seen.insert(digest) {
            entries.push(TreeEntry {
                path: format!("blobs/{digest}"),
                mode: 0o644,
                kind: EntryKind::File { digest, size },
            });
        }
    }
    Ok(Tree { entries })
}

/// The memo of a finished run: each read digested on the input and on the output tree.
fn record(
    ctx: &RunContext<'_>,
    input: &Tree,
    out: &Tree,
    base: Digest,
    mut reads: Reads,
    changes: Vec<Change>,
) -> Result<Memo, RunError> {
    let vin = TreeView::new(input, ROOT);
    let vout = TreeView::new(out, ROOT);
    // What the kernel read without a system call: interpreters of executed files.
    let mut todo: Vec<String> = reads.execs.iter().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        for v in [&vin, &vout] {
            let Resolved::Entry(at) = v.resolve(&p, &mut blake3::Hasher::new()) else {
                continue;
            };
            let Some(TreeEntry {
                kind: EntryKind::File { digest, .. },
                ..
            }) = v.get(&at)
            else {
                continue;
            };
            let bytes = fs_err::read(ctx.store().blob_path(digest))?;
            match probe::interpreter(&bytes) {
                Ok(Some(i)) => {
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
    }
    // Lookups, judged where they really ended: a tree symlink into /dev or /proc counts.
    let mut lookups = Vec::with_capacity(reads.lookups.len());
    let mut facts = std::collections::BTreeMap::new();
    for p in &reads.lookups {
        let (din, rin) = vin.lookup_resolved(p);
        let (dout, rout) = vout.lookup_resolved(p);
        for r in [rin, rout] {
            let Resolved::Sandbox(at) = r else { continue };
            match strace::host_read(&at) {
                strace::HostRead::Quiet => {}
                strace::HostRead::Fact(f) => {
                    facts.entry(f.clone()).or_insert_with(|| host::fact(&f));
                }
                strace::HostRead::Refused(why) => {
                    if reads.untraceable.is_none() {
                        reads.untraceable = Some(match reads.who.get(p) {
                            Some(exe) => format!("{why} ({exe})"),
                            None => why,
                        });
                    }
                }
            }
        }
        lookups.push((p.clone(), din, dout));
    }
    let listings = reads
        .listings
        .iter()
        .map(|p| (p.clone(), vin.listing(p), vout.listing(p)))
        .collect();
    Ok(Memo {
        format: MEMO_FORMAT,
        base,
        untraceable: reads.untraceable.clone(),
        lookups,
        listings,
        facts: facts.into_iter().collect(),
        changes,
    })
}

/// Runs the programs on an overlay of the input tree (under strace if `traced`); returns their
/// reads and effect.
fn run_programs(
    ctx: &mut RunContext<'_>,
    tree: &Tree,
    programs: &[Program],
    traced: bool,
) -> Result<(Reads, Vec<Change>), RunError> {
    let scratch = ctx.scratch.clone();
    let input = scratch.join("input");
    ctx.store().materialize(tree, &input, Materialize::Copy)?;
    let lower = input.join("root");
    fs_err::create_dir_all(&lower)?;
    // Every time in the tree is the epoch, as in an ostree checkout (what rpm-ostree's
    // scripts see): the tree model has no times, and a program that copies or compares them
    // (dracut --reproducible stamps its image with dracut-functions.sh's mtime) would
    // otherwise see when the store happened to write each file.
    for e in walkdir::WalkDir::new(&lower).contents_first(true) {
        let e = e.map_err(|e| RunError::msg(e.to_string()))?;
        sys::zero_times(e.path())
            .map_err(|err| RunError::msg(format!("{}: {err}", e.path().display())))?;
    }
    let (upper, work, merged) = (
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("merged"),
    );
    for d in [&upper, &work, &merged] {
        fs_err::create_dir_all(d)?;
    }
    let mut reads = Reads::default();
    for (n, p) in programs.iter().enumerate() {
        let script = scratch.join(format!("script-{n}"));
        fs_err::write(&script, &p.script)?;
        let trace = scratch.join(format!("trace-{n}"));
        let trace = traced.then_some(trace.as_path());
        run_one(ctx, p, &script, trace, [&lower, &upper, &work, &merged])?;
        let Some(trace) = trace else {
            continue;
        };
        let text = fs_err::read_to_string(trace)?;
        let r = strace::parse(&text);
        if r.lines == 0 {
            return Err(RunError::msg(format!(
                "{}: the tracer saw the program do nothing; is strace working?",
                p.what
            )));
        }
        reads.extend(r);
    }
    let changes = effect::read_upper(ctx.store(), &upper)?;
    Ok((reads, changes))
}

/// One program under strace (when given a trace file), in bubblewrap, on the overlay
/// (mounted in a private mount namespace that dies with the process, so a killed build leaves
/// no mount behind).
fn run_one(
    ctx: &mut RunContext<'_>,
    p: &Program,
    script: &Path,
    trace: Option<&Path>,
    [lower, upper, work, merged]: [&PathBuf; 4],
) -> Result<(), RunError> {
    let argv: Vec<String> = if p.argv.is_empty() {
        vec!["/bin/sh".into()]
    } else {
        p.argv.clone()
    };
    writeln!(ctx.log, "# {}: {}", p.what, argv.join(" "))?;
    ctx.log.flush()?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off,xino=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    let cstr =
        |b: &[u8]| CString::new(b).map_err(|_| RunError::msg("a path with a NUL byte".to_string()));
    let (opts, merged_c) = (cstr(opts.as_bytes())?, cstr(merged.as_os_str().as_bytes())?);
    let mut cmd = Command::new("unshare");
    cmd.args(PID_NAMESPACE);
    if let Some(trace) = trace {
        cmd.arg("strace")
            .args(strace::STRACE_ARGS)
            .arg("-o")
            .arg(trace)
            .arg("--");
        sys::keep_on_one_cpu(&mut cmd);
    }
    let cmdline = script.with_extension("cmdline");
    fs_err::write(&cmdline, SANDBOX_CMDLINE)?;
    cmd.arg("bwrap")
        .arg("--bind")
        .arg(merged)
        .arg("/")
        .args(BWRAP_FLAGS)
        .arg("--ro-bind")
        .arg(&cmdline)
        .arg("/proc/cmdline")
        .arg("--ro-bind")
        .arg(script)
        .arg(SCRIPT_IN_SANDBOX);
    for (k, v) in SANDBOX_ENV {
        cmd.args(["--setenv", k, v]);
    }
    cmd.args(["--chdir", "/", "--"])
        .args(&argv)
        .arg(SCRIPT_IN_SANDBOX)
        .arg("1")
        .stdin(Stdio::null());
    sys::mount_overlay_before_exec(&mut cmd, opts, merged_c);
    let out = cmd.output().map_err(|e| {
        RunError::msg(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "cannot run unshare; install Debian's util-linux package".into()
            }
            _ => format!(
                "{}: cannot start the traced sandbox ({e}); traced runs need root for the \
                 overlay mount",
                p.what
            ),
        })
    })?;
    crate::output::logged(ctx.log, &out, &p.what).map_err(|e| {
        // `unshare` runs the tracer and the sandbox: name the package of the one missing.
        let stderr = String::from_utf8_lossy(&out.stderr);
        [("strace", "strace"), ("bwrap", "bubblewrap")]
            .into_iter()
            .find(|(tool, _)| stderr.contains(&format!("unshare: failed to execute {tool}")))
            .map_or(e, |(tool, package)| {
                RunError::msg(format!(
                    "{}: cannot run {tool}; install Debian's {package} package",
                    p.what
                ))
            })
    })
}
