//! The run directories a rule may use besides `out`: `memory_scratch` is gone after the run,
//! whether it succeeded or failed, and a killed build's is cleared by the next build;
//! `stage_dep_kept` shows the dependency's current tree and nothing else, whatever an earlier
//! run left in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nosa_cache::Store;
use nosa_engine::{
    BuildOptions, Engine, GraphBuilder, InputSpec, Params, Rule, RunContext, RunError,
};

/// Copies its input file to `out/value`.
struct Source;

impl Rule for Source {
    fn kind(&self) -> &str {
        "source"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, _: &mut Params) {}
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::parse("in/value"), InputSpec::parse("in/extra/*")]
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        for f in ctx.inputs {
            let to = ctx.out.join(f.rel.strip_prefix("in/").expect("under in/"));
            fs_err::create_dir_all(to.parent().expect("has a parent"))?;
            fs_err::copy(&f.abs, to)?;
        }
        Ok(())
    }
}

/// Stages its dependency kept, writes what it sees (and where its memory scratch was) to
/// `out/seen`, leaves junk in both, and fails when the dependency's value says so.
struct Reader;

impl Rule for Reader {
    fn kind(&self) -> &str {
        "reader"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, _: &mut Params) {}
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let [dep] = ctx.deps else {
            return Err(RunError::msg("one dependency"));
        };
        let staged = ctx.stage_dep_kept(dep)?;
        let mut seen: Vec<String> = walkdir::WalkDir::new(&staged)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.expect("walk");
                e.path()
                    .strip_prefix(&staged)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        let value = fs_err::read_to_string(staged.join("value"))?;
        seen.push(format!("value={}", value.trim()));
        let (mem, in_memory) = ctx.memory_scratch("work", 1 << 20)?;
        fs_err::write(mem.join("temp"), "x")?;
        // A rule that writes into its kept staging directory: the next sync must undo it.
        fs_err::write(staged.join("junk"), "left behind")?;
        fs_err::create_dir_all(staged.join("junkdir/sub"))?;
        writeln!(ctx.log, "memory: {} {in_memory}", mem.display())?;
        for s in &seen {
            writeln!(ctx.log, "seen: {s}")?;
        }
        fs_err::write(ctx.out.join("seen"), seen.join("\n"))?;
        if value.trim() == "fail" {
            return Err(RunError::msg("asked to fail"));
        }
        Ok(())
    }
}

/// What one build of the two nodes showed: the reader's staged entries, its memory
/// directory, and whether the reader succeeded.
fn build(w: &Path, mem_base: &Path) -> (Vec<String>, PathBuf, bool) {
    let mut b = GraphBuilder::new();
    b.add("source", Arc::new(Source), vec![]);
    b.add("reader", Arc::new(Reader), vec!["source".into()]);
    let graph = b.build().unwrap();
    let engine =
        Engine::new(w, Store::open(w.join("cache/store")).unwrap()).with_memory_dir(Some(mem_base));
    let all: Vec<usize> = (0..graph.len()).collect();
    let report = engine
        .build(
            &graph,
            &all,
            &BuildOptions::default(),
            &mut nosa_engine::Quiet,
        )
        .unwrap();
    let log = fs_err::read_to_string(w.join("cache/store/logs/reader.log")).unwrap();
    let seen = log
        .lines()
        .filter_map(|l| l.strip_prefix("seen: "))
        .map(str::to_string)
        .collect();
    let memory = log
        .lines()
        .find_map(|l| l.strip_prefix("memory: "))
        .expect("the reader logs its memory directory");
    let (dir, in_memory) = memory.rsplit_once(' ').unwrap();
    assert_eq!(
        in_memory, "true",
        "the memory directory was not used: {memory}"
    );
    (seen, PathBuf::from(dir), report.ok())
}

#[test]
fn memory_scratch_goes_with_the_run_and_kept_stages_show_only_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w");
    let mem_base = tmp.path().join("mem");
    fs_err::create_dir_all(&mem_base).unwrap();
    fs_err::create_dir_all(w.join("in/extra")).unwrap();
    fs_err::write(w.join("in/value"), "1").unwrap();
    fs_err::write(w.join("in/extra/a"), "a").unwrap();
    let (seen, mem, ok) = build(&w, &mem_base);
    assert!(ok);
    assert_eq!(seen, ["extra", "extra/a", "value", "value=1"]);
    assert!(mem.starts_with(&mem_base), "{}", mem.display());
    assert!(!mem.exists(), "{} outlived its run", mem.display());
    assert_eq!(
        fs_err::read_dir(&mem_base).unwrap().count(),
        0,
        "the store's memory directory is left behind"
    );

    // The next tree: a file goes, another comes; the junk the last run left is gone too.
    fs_err::remove_file(w.join("in/extra/a")).unwrap();
    fs_err::write(w.join("in/extra/b"), "b").unwrap();
    fs_err::write(w.join("in/value"), "2").unwrap();
    let (seen, mem, ok) = build(&w, &mem_base);
    assert!(ok);
    assert_eq!(seen, ["extra", "extra/b", "value", "value=2"]);
    assert!(!mem.exists());

    // A failed run's memory directory goes too.
    fs_err::write(w.join("in/value"), "fail").unwrap();
    let (_, mem, ok) = build(&w, &mem_base);
    assert!(!ok);
    assert!(!mem.exists(), "{} outlived a failed run", mem.display());

    // What a killed build left in the store's memory directory is cleared by the next build.
    let store_mem = mem.parent().and_then(Path::parent).unwrap();
    let stale = store_mem.join("run-stale-from-a-killed-build/work");
    fs_err::create_dir_all(&stale).unwrap();
    fs_err::write(w.join("in/value"), "3").unwrap();
    let (seen, _, ok) = build(&w, &mem_base);
    assert!(ok);
    assert_eq!(seen, ["extra", "extra/b", "value", "value=3"]);
    assert!(!stale.exists(), "{} was not cleared", stale.display());
}
