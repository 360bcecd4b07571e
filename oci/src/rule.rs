//! `OciRule` (`oci:<arch>`): the `ostree-commit` node's `repo/` + `commit.json` exported as
//! `out/<name>-<version>-ostree.<arch>.ociarchive`, with `out/oci.json` describing it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nosa_cache::Materialize;
use nosa_commit::CommitRecord;
use nosa_engine::{MaterializeTo, Params, Rule, RunContext, RunError};

use crate::export::canonical_json;
use crate::{Chunking, ExportRequest, export_commit};

/// Exports the commit its first dependency produced.
///
/// Dependencies: the first must hold `repo/` and `commit.json` (the `ostree-commit` rule's
/// output); an optional second may hold `components.json` (absolute path -> component), which
/// adds to the path map of a [`Chunking::Components`] policy.
#[derive(Clone, Debug)]
pub struct OciRule {
    arch: String,
    name: String,
    version: String,
    chunking: Chunking,
    labels: BTreeMap<String, String>,
}

impl OciRule {
    /// Exports for `arch` as `<name>-<version>-ostree.<arch>.ociarchive`, one layer.
    pub fn new(arch: &str, name: &str, version: &str) -> Self {
        OciRule {
            arch: arch.into(),
            name: name.into(),
            version: version.into(),
            chunking: Chunking::Single,
            labels: BTreeMap::new(),
        }
    }

    /// The chunking policy.
    pub fn chunking(mut self, c: Chunking) -> Self {
        self.chunking = c;
        self
    }

    /// Extra image labels.
    pub fn labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// The node id: `oci:<arch>`.
    pub fn node_id(&self) -> String {
        format!("oci:{}", self.arch)
    }
}

fn msg(e: impl std::fmt::Display) -> RunError {
    RunError::msg(e.to_string())
}

impl Rule for OciRule {
    fn kind(&self) -> &str {
        "oci"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("name", &self.name);
        p.add("version", &self.version);
        let chunking = canonical_json(&self.chunking).unwrap_or_default();
        p.add("chunking", &String::from_utf8_lossy(&chunking).into_owned());
        let labels = canonical_json(&self.labels).unwrap_or_default();
        p.add("labels", &String::from_utf8_lossy(&labels).into_owned());
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let Some(dep) = ctx.deps.first().cloned() else {
            return Err(RunError::msg(
                "oci needs the ostree commit as its first dependency",
            ));
        };
        let staged = ctx.scratch.join("commit");
        ctx.stage_dep(&dep, &staged)?;
        let record: CommitRecord =
            serde_json::from_slice(&fs_err::read(staged.join("commit.json"))?)
                .map_err(|e| RunError::msg(format!("{}: commit.json: {e}", dep.id)))?;
        let mut chunking = self.chunking.clone();
        if let Some(extra) = ctx.deps.get(1).cloned() {
            let dir = ctx.scratch.join("components");
            ctx.stage_dep(&extra, &dir)?;
            let file = dir.join("components.json");
            if let Chunking::Components { components, .. } = &mut chunking
                && file.exists()
            {
                let map: BTreeMap<String, String> =
                    serde_json::from_slice(&fs_err::read(&file)?)
                        .map_err(|e| RunError::msg(format!("{}: {e}", file.display())))?;
                components.extend(map);
            }
        }
        let req = ExportRequest {
            repo: staged.join("repo"),
            rev: record.checksum.clone(),
            arch: self.arch.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            chunking,
            labels: self.labels.clone(),
            out_dir: ctx.out.clone(),
            scratch: ctx.scratch.join("layers"),
        };
        let mut result = export_commit(&req).map_err(msg)?;
        result.path = PathBuf::from(&result.file_name);
        writeln!(
            ctx.log,
            "exported {} as {} ({} layers, manifest {})",
            result.commit,
            result.file_name,
            result.layers.len(),
            result.manifest_digest
        )?;
        let json = serde_json::to_vec_pretty(&result).map_err(msg)?;
        fs_err::write(ctx.out.join("oci.json"), json)?;
        Ok(())
    }

    fn materialize(&self) -> Option<MaterializeTo> {
        Some(MaterializeTo {
            dir: PathBuf::from("builds").join(&self.version).join(&self.arch),
            how: Materialize::Hardlink,
        })
    }
}
