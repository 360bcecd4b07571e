//! The `rpmdb` rule: the rpm database of the composed OS at `/usr/share/rpm` (where rpm-ostree
//! keeps it), written by the host's `rpm --justdb` from the downloaded packages, so that
//! `rpm --root TREE -qa` lists what was installed. Reproducible: install time from
//! `SOURCE_DATE_EPOCH=0`, no lock or WAL files kept.

use std::process::{Command, Stdio};

use nosa_cache::EntryKind;
use nosa_engine::{Params, Rule, RunContext, RunError};

/// Builds `rpmdb:<arch>` from its `rpm:` dependencies.
#[derive(Debug, Clone)]
pub struct RpmdbRule {
    arch: String,
}

impl RpmdbRule {
    /// The rule for `arch`.
    pub fn new(arch: &str) -> Self {
        RpmdbRule {
            arch: arch.to_string(),
        }
    }
}

impl Rule for RpmdbRule {
    fn kind(&self) -> &str {
        "rpmdb"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch)
            .add("rpm", nosa_repo::tool_version("rpm"));
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let mut rpms = Vec::new();
        for d in ctx.deps.iter().filter(|d| d.id.starts_with("rpm:")) {
            let tree = ctx.dep_tree(d)?;
            for e in &tree.entries {
                if let EntryKind::File { digest, .. } = e.kind
                    && e.path.ends_with(".rpm")
                {
                    // rpm wants a .rpm name; link the blob under its file name.
                    let link = ctx.scratch.join(&e.path);
                    fs_err::hard_link(ctx.store().blob_path(&digest), &link).or_else(|_| {
                        fs_err::copy(ctx.store().blob_path(&digest), &link).map(|_| ())
                    })?;
                    rpms.push(link);
                }
            }
        }
        rpms.sort();
        let root = ctx.out.join("root");
        fs_err::create_dir_all(&root)?;
        let out = Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args([
                "--dbpath",
                "/usr/share/rpm",
                "--justdb",
                "--nodeps",
                "--noscripts",
            ])
            .args([
                "--notriggers",
                "--ignorearch",
                "--ignoreos",
                "--ignoresize",
                "-i",
            ])
            .args(&rpms)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SOURCE_DATE_EPOCH", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RunError::msg(format!("cannot run rpm ({e}); install Debian's rpm")))?;
        crate::output::logged(ctx.log, &out, "rpm --justdb")?;
        let db = root.join("usr/share/rpm");
        for junk in [".rpm.lock", "rpmdb.sqlite-shm", "rpmdb.sqlite-wal"] {
            let p = db.join(junk);
            if p.exists() {
                if junk.ends_with("-wal") && fs_err::metadata(&p)?.len() > 0 {
                    return Err(RunError::msg("rpm left an unmerged write-ahead log"));
                }
                fs_err::remove_file(&p)?;
            }
        }
        Ok(())
    }
}
