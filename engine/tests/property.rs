//! Property test: random DAGs of nodes and random edits of their input files. The set of nodes
//! that run is exactly the set a reference model says changed (own input changed, or a
//! dependency that ran produced a different output), and a second build runs nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use nosa_cache::{EntryKind, Store};
use nosa_engine::{
    BuildOptions, Engine, GraphBuilder, InputSpec, Params, Rule, RunContext, RunError, Status,
};
use proptest::prelude::*;

/// Output = (sum of input bytes and dependency outputs) mod `modulus`: a small modulus makes
/// outputs collide often, which exercises early cutoff.
struct SumRule {
    /// Makes every node's action distinct (identical actions would share one cache entry).
    index: usize,
    input: Option<String>,
    modulus: u64,
}

fn value_of(bytes: &[u8]) -> u64 {
    String::from_utf8_lossy(bytes).trim().parse().unwrap_or(0)
}

impl Rule for SumRule {
    fn kind(&self) -> &str {
        "sum"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, p: &mut Params) {
        p.add("index", &self.index);
        p.add("modulus", &self.modulus);
        p.add("input", &self.input);
    }
    fn inputs(&self) -> Vec<InputSpec> {
        self.input.iter().map(|i| InputSpec::parse(i)).collect()
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let mut sum = 0u64;
        for f in ctx.inputs {
            sum += value_of(&fs_err::read(&f.abs)?);
        }
        for d in ctx.deps {
            let tree = ctx.dep_tree(d)?;
            for e in &tree.entries {
                if let EntryKind::File { digest, .. } = e.kind {
                    sum += value_of(&fs_err::read(ctx.store().blob_path(&digest))?);
                }
            }
        }
        fs_err::write(ctx.out.join("out"), (sum % self.modulus).to_string())?;
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Case {
    /// deps[i] ⊆ 0..i
    deps: Vec<Vec<usize>>,
    /// Whether node i has an input file, and its modulus.
    has_input: Vec<bool>,
    modulus: Vec<u64>,
    initial: Vec<u64>,
    edits: Vec<(usize, u64)>,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..14).prop_flat_map(|n| {
        let deps = (0..n)
            .map(|i| proptest::sample::subsequence((0..i).collect::<Vec<_>>(), 0..=i.min(3)))
            .collect::<Vec<_>>();
        (
            deps,
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(2u64..5, n),
            proptest::collection::vec(0u64..10, n),
            proptest::collection::vec((0..n, 0u64..10), 1..4),
        )
            .prop_map(|(deps, has_input, modulus, initial, edits)| Case {
                deps,
                has_input,
                modulus,
                initial,
                edits,
            })
    })
}

/// The reference model: each node's output given input values.
fn model(c: &Case, inputs: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; c.deps.len()];
    for i in 0..c.deps.len() {
        let mut s = if c.has_input[i] { inputs[i] } else { 0 };
        for &d in &c.deps[i] {
            s += out[d];
        }
        out[i] = s % c.modulus[i];
    }
    out
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    fs_err::create_dir_all(w.join("in")).unwrap();
    let write_inputs = |vals: &[u64]| {
        for (i, v) in vals.iter().enumerate() {
            if c.has_input[i] {
                fs_err::write(w.join(format!("in/{i}")), v.to_string()).unwrap();
            }
        }
    };
    write_inputs(&c.initial);
    let mut b = GraphBuilder::new();
    for i in 0..c.deps.len() {
        b.add(
            format!("sum:{i}"),
            Arc::new(SumRule {
                index: i,
                input: c.has_input[i].then(|| format!("in/{i}")),
                modulus: c.modulus[i],
            }),
            c.deps[i].iter().map(|d| format!("sum:{d}")).collect(),
        );
    }
    let graph = b.build().unwrap();
    let engine = Engine::new(w, Store::open(w.join("cache/store")).unwrap());
    let all: Vec<usize> = (0..graph.len()).collect();
    let opts = BuildOptions {
        jobs: 2,
        ..Default::default()
    };
    let ran = |r: &nosa_engine::BuildReport| -> BTreeSet<usize> {
        r.ids(Status::Ran)
            .iter()
            .map(|id| id.trim_start_matches("sum:").parse().unwrap())
            .collect()
    };
    let first = engine
        .build(&graph, &all, &opts, &mut nosa_engine::Quiet)
        .unwrap();
    prop_assert_eq!(first.count(Status::Ran), graph.len());

    let mut vals = c.initial.clone();
    for &(i, v) in &c.edits {
        vals[i] = v;
    }
    write_inputs(&vals);
    let before = model(c, &c.initial);
    let after = model(c, &vals);
    // Expected: a node runs iff its own input changed or a dependency that ran changed output.
    let mut expect = BTreeSet::new();
    let mut changed_out = vec![false; c.deps.len()];
    for i in 0..c.deps.len() {
        let own = c.has_input[i] && vals[i] != c.initial[i];
        let dep = c.deps[i].iter().any(|&d| changed_out[d]);
        if own || dep {
            expect.insert(i);
            changed_out[i] = before[i] != after[i];
        }
    }
    let second = engine
        .build(&graph, &all, &opts, &mut nosa_engine::Quiet)
        .unwrap();
    prop_assert_eq!(ran(&second), expect.clone());
    // Cut off: not run, but a dependency ran.
    for id in second.ids(Status::Cutoff) {
        let i: usize = id.trim_start_matches("sum:").parse().unwrap();
        prop_assert!(c.deps[i].iter().any(|d| expect.contains(d)));
    }
    // Outputs equal the model.
    let state = engine.state();
    for (i, want) in after.iter().enumerate() {
        let good = state.nodes[&format!("sum:{i}")].good.unwrap();
        let tree = engine.store().get_tree(&good.tree).unwrap();
        let EntryKind::File { digest, .. } = tree.entries[0].kind else {
            panic!("file output")
        };
        let got = value_of(&fs_err::read(engine.store().blob_path(&digest)).unwrap());
        prop_assert_eq!(got, *want, "node {}", i);
    }
    let third = engine
        .build(&graph, &all, &opts, &mut nosa_engine::Quiet)
        .unwrap();
    prop_assert_eq!(third.count(Status::Ran), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn ran_set_is_exactly_the_changed_downstream(c in case()) {
        run_case(&c)?;
    }
}
