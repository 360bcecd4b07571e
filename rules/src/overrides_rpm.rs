//! The `overrides-rpm` rule: nestos-assembler's `overrides/rpm/` (RPMs dropped into the
//! workdir) as a repository in repo-sync's output layout (`repo.json`, `repomd.xml`, the
//! metadata at its hrefs), made reproducibly by `createrepo_c`. The resolve node loads it as an
//! override repository: a package name it holds comes from it only.

use std::process::{Command, Stdio};

use nosa_engine::{InputSpec, Params, Rule, RunContext, RunError};
use nosa_repo::RepoJson;

/// The workdir directory of override RPMs.
pub const OVERRIDES_RPM: &str = "overrides/rpm";

/// The repository id of the override RPMs (in `resolved.json` and the lockfile).
pub const OVERRIDES_REPO_ID: &str = "overrides-rpm";

/// `overrides-rpm:<arch>`: the `*.rpm` files directly under `overrides/rpm` as a repository.
#[derive(Debug, Clone)]
pub struct OverridesRpmRule {
    arch: String,
}

impl OverridesRpmRule {
    /// The rule for `arch`.
    pub fn new(arch: &str) -> Self {
        OverridesRpmRule {
            arch: arch.to_string(),
        }
    }

    /// `overrides-rpm:<arch>`.
    pub fn node_id(arch: &str) -> String {
        format!("overrides-rpm:{arch}")
    }
}

impl Rule for OverridesRpmRule {
    fn kind(&self) -> &str {
        "overrides-rpm"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch)
            .add("createrepo_c", nosa_repo::tool_version("createrepo_c"));
    }

    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::Glob(format!("{OVERRIDES_RPM}/*.rpm"))]
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let repo = ctx.scratch.join("repo");
        fs_err::create_dir_all(&repo)?;
        for f in ctx.inputs {
            let name = f
                .abs
                .file_name()
                .ok_or_else(|| RunError::msg(format!("{}: no file name", f.rel)))?;
            let dest = repo.join(name);
            fs_err::copy(&f.abs, &dest)?;
            // createrepo_c records each file's mtime: fix it, so the metadata depends on the
            // RPMs' content only.
            fs_err::File::options()
                .write(true)
                .open(&dest)?
                .set_modified(std::time::UNIX_EPOCH)?;
            writeln!(ctx.log, "override: {}", f.rel)?;
        }
        let out = Command::new("createrepo_c")
            .args([
                "--quiet",
                "--no-database",
                "--workers",
                "1",
                "--set-timestamp-to-revision",
                "--revision=0",
            ])
            .arg(&repo)
            .env("SOURCE_DATE_EPOCH", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                RunError::msg(format!(
                    "cannot run createrepo_c ({e}); install Debian's createrepo-c"
                ))
            })?;
        ctx.log.write_all(&out.stdout)?;
        ctx.log.write_all(&out.stderr)?;
        if !out.status.success() {
            return Err(RunError::msg(format!(
                "createrepo_c failed ({}) on {OVERRIDES_RPM}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // repo-sync's layout: repomd.xml at the top, the metadata files at their hrefs.
        let repodata = repo.join("repodata");
        fs_err::rename(repodata.join("repomd.xml"), ctx.out.join("repomd.xml"))?;
        fs_err::rename(&repodata, ctx.out.join("repodata"))?;
        let json = RepoJson {
            id: OVERRIDES_REPO_ID.to_string(),
            arch: self.arch.clone(),
            // The download nodes get the URL from the expansion; none is recorded here, so
            // the output does not depend on where the workdir is.
            baseurl: vec![],
            priority: 1,
            cost: 1000,
            exclude: vec![],
            includepkgs: vec![],
        };
        let mut bytes =
            serde_json::to_vec_pretty(&json).map_err(|e| RunError::msg(e.to_string()))?;
        bytes.push(b'\n');
        fs_err::write(ctx.out.join("repo.json"), bytes)?;
        // createrepo_c skips a file it cannot read as an RPM, with a warning only: refuse it.
        let listed: std::collections::BTreeSet<String> = nosa_repo::parse_primary(&ctx.out)
            .map_err(|e| RunError::msg(e.to_string()))?
            .into_iter()
            .map(|p| p.href)
            .collect();
        for f in ctx.inputs {
            let name = f.abs.file_name().unwrap_or_default().to_string_lossy();
            if !listed.contains(name.as_ref()) {
                return Err(RunError::msg(format!(
                    "{}: not a readable RPM (createrepo_c skipped it); remove it from {OVERRIDES_RPM}",
                    f.rel
                )));
            }
        }
        Ok(())
    }
}
