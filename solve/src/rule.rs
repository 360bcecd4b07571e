//! `ResolveRule`: the `resolve:<arch>` node. Reads the repo-sync outputs it depends on,
//! resolves the package list, writes the generated lockfile and `resolved.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nosa_cache::EntryKind;
use nosa_engine::{Params, Portable, Rule, RunContext, RunError};

use crate::ffi::libsolv_version;
use crate::output::{lockfile_json, resolved_json};
use crate::repo::RepoData;
use crate::resolve::{Request, resolve};

/// The `resolve` rule for one arch. Its dependencies are the repo-sync nodes, one per
/// repository, in the order dnf should load them.
#[derive(Debug, Clone)]
pub struct ResolveRule {
    request: Request,
}

impl ResolveRule {
    /// The rule for `request`.
    pub fn new(request: Request) -> Self {
        ResolveRule { request }
    }

    /// The rule again from its [`Rule::portable`] description.
    pub fn from_spec(spec: &str) -> Result<Self, String> {
        Ok(ResolveRule {
            request: serde_json::from_str(spec).map_err(|e| format!("resolve: {e}"))?,
        })
    }

    /// `resolve:<arch>`.
    pub fn node_id(arch: &str) -> String {
        format!("resolve:{arch}")
    }

    /// The name of the generated lockfile in the output.
    pub fn lockfile_name(arch: &str) -> String {
        format!("manifest-lock.generated.{arch}.json")
    }
}

impl Rule for ResolveRule {
    fn kind(&self) -> &str {
        "resolve"
    }

    fn version(&self) -> u32 {
        // 2: a package location that leaves its repository is refused.
        2
    }

    fn params(&self, p: &mut Params) {
        let r = &self.request;
        let locks: BTreeMap<String, (String, Option<String>)> = r
            .locks
            .iter()
            .map(|(n, l)| (n.clone(), (l.evr.clone(), l.arch.clone())))
            .collect();
        p.add("arch", &r.arch)
            .add("packages", &r.packages)
            .add("exclude-packages", &r.exclude_packages)
            .add("recommends", &r.recommends)
            .add("locks", &locks)
            .add("priorities", &r.priorities)
            .add("overrides", &r.overrides)
            // The solver's choices are libsolv's: another libsolv may choose differently.
            .add("libsolv", &libsolv_version());
    }

    fn portable(&self) -> Option<Portable> {
        // Its repositories come as its dependencies' trees, libsolv is linked in (a worker
        // with another libsolv refuses the node: its parameters differ).
        Some(Portable {
            spec: serde_json::to_string(&self.request).ok()?,
            tools: vec![],
        })
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let mut repos = Vec::new();
        for dep in ctx.deps {
            let tree = ctx.dep_tree(dep)?;
            let files: BTreeMap<String, PathBuf> = tree
                .entries
                .iter()
                .filter_map(|e| match &e.kind {
                    EntryKind::File { digest, .. } => {
                        Some((e.path.clone(), ctx.store().blob_path(digest)))
                    }
                    _ => None,
                })
                .collect();
            let repo = RepoData::load(&dep.id, |p| files.get(p).cloned())
                .map_err(|e| RunError::msg(e.to_string()))?;
            repos.push(repo);
        }
        let resolution =
            resolve(&self.request, &repos).map_err(|e| RunError::msg(e.to_string()))?;
        for p in &resolution.packages {
            writeln!(ctx.log, "{} from {}", p.nevra, p.repo)?;
        }
        let arch = &self.request.arch;
        fs_err::write(
            ctx.out.join(ResolveRule::lockfile_name(arch)),
            lockfile_json(&resolution),
        )?;
        fs_err::write(ctx.out.join("resolved.json"), resolved_json(&resolution))?;
        Ok(())
    }
}
