//! The `rpm` rule: downloads one package, streaming to disk, and verifies its size and checksum
//! against the repository metadata. The key is the NEVRA, checksum and size, never the URLs:
//! the checksum fully determines the output, so a package already in the store is never fetched
//! again, whichever mirror it would come from.

use nosa_engine::{Params, Rule, RunContext, RunError};

use crate::checksum::Checksum;
use crate::error::RepoError;
use crate::fetch::{DownloadError, Fetcher};
use crate::primary::Package;

/// The `rpm:<arch>:<nevra>` node.
#[derive(Clone, Debug)]
pub struct RpmDownloadRule {
    nevra: String,
    checksum: Checksum,
    size: u64,
    /// Where to get it, tried in order. Deliberately not a parameter (see the module doc).
    urls: Vec<String>,
    /// The repository whose keys must have signed it (`gpgcheck=1`): its `repo-keys` node is
    /// then this node's one dependency.
    gpgcheck: Option<String>,
}

impl RpmDownloadRule {
    /// The node kind.
    pub const KIND: &'static str = "rpm";

    /// A download of `nevra` (the output is `<nevra>.rpm`) with the checksum and size the
    /// repository lists, from `urls` in order.
    pub fn new(nevra: String, checksum: Checksum, size: u64, urls: Vec<String>) -> RpmDownloadRule {
        RpmDownloadRule {
            nevra,
            checksum,
            size,
            urls,
            gpgcheck: None,
        }
    }

    /// The download of `pkg` from a repository whose base URLs are `baseurls` (`repo.json`).
    pub fn for_package(pkg: &Package, baseurls: &[String]) -> RpmDownloadRule {
        Self::new(
            pkg.nevra(),
            pkg.checksum.clone(),
            pkg.size,
            pkg.urls(baseurls),
        )
    }

    /// Checks the package's signature against the keys of repository `repo`, the output of
    /// this node's one dependency (`repo-keys:<arch>:<repo>`), before it is stored.
    pub fn with_gpgcheck(mut self, repo: &str) -> RpmDownloadRule {
        self.gpgcheck = Some(repo.to_string());
        self
    }

    /// The node id: `rpm:<arch>:<nevra>`.
    pub fn node_id(arch: &str, nevra: &str) -> String {
        format!("{}:{arch}:{nevra}", Self::KIND)
    }

    /// The output file name: `<nevra>.rpm`.
    pub fn file_name(&self) -> String {
        format!("{}.rpm", self.nevra)
    }

    /// The NEVRA.
    pub fn nevra(&self) -> &str {
        &self.nevra
    }
}

impl Rule for RpmDownloadRule {
    fn kind(&self) -> &str {
        Self::KIND
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        // Not the URLs: see the module doc.
        p.add("nevra", &self.nevra)
            .add("checksum", &self.checksum)
            .add("size", &self.size);
        // Only when checked, so that an unchecked repository's keys stay as they were.
        if let Some(repo) = &self.gpgcheck {
            p.add("gpgcheck", repo)
                .add("rpm", crate::tool_version("rpmkeys"));
        }
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        if self.nevra.is_empty() || self.nevra.contains('/') || self.nevra.starts_with('.') {
            return Err(RunError::msg(format!(
                "package {:?}: not a valid NEVRA for a file name",
                self.nevra
            )));
        }
        let f = Fetcher::new();
        let tmp = ctx.scratch.join("download.part");
        let mut errors = Vec::new();
        for url in &self.urls {
            match self.try_url(&f, url, &tmp) {
                Ok(()) => {
                    if let Some(repo) = &self.gpgcheck {
                        let [keys] = ctx.deps else {
                            return Err(RunError::msg(format!(
                                "{}: a signature check needs the repo-keys node as the one dependency",
                                self.nevra
                            )));
                        };
                        let keys = keys.clone();
                        crate::keys::check_package(ctx, &keys, repo, &self.nevra, &tmp)?;
                    }
                    fs_err::rename(&tmp, ctx.out.join(self.file_name()))?;
                    writeln!(
                        ctx.log,
                        "{} from {url}: {} bytes, {} verified",
                        self.nevra, self.size, self.checksum
                    )?;
                    return Ok(());
                }
                Err(e) => {
                    writeln!(ctx.log, "{e}")?;
                    errors.push(e);
                }
            }
        }
        Err(match errors.len() {
            1 => errors.remove(0),
            0 => RepoError::PackageFailed {
                package: self.nevra.clone(),
                errors: vec!["no URL (the package's repository has no base URL)".into()],
            },
            _ => RepoError::PackageFailed {
                package: self.nevra.clone(),
                errors: errors.iter().map(ToString::to_string).collect(),
            },
        }
        .into())
    }
}

impl RpmDownloadRule {
    fn try_url(&self, f: &Fetcher, url: &str, tmp: &std::path::Path) -> Result<(), RepoError> {
        let mismatch = |what, expected: String, actual: String| RepoError::PackageMismatch {
            package: self.nevra.clone(),
            url: url.to_string(),
            what,
            expected,
            actual,
        };
        let got = match f.download(url, tmp, self.checksum.kind, self.size) {
            Ok(got) => got,
            Err(DownloadError::TooLong) => {
                return Err(mismatch(
                    "size",
                    self.size.to_string(),
                    format!("more than {}", self.size),
                ));
            }
            Err(DownloadError::Other(reason)) => {
                return Err(RepoError::Fetch {
                    url: url.to_string(),
                    reason,
                });
            }
        };
        if got.size != self.size {
            return Err(mismatch(
                "size",
                self.size.to_string(),
                got.size.to_string(),
            ));
        }
        if got.hex != self.checksum.hex {
            return Err(mismatch(
                "checksum",
                self.checksum.to_string(),
                format!("{}:{}", self.checksum.kind.name(), got.hex),
            ));
        }
        Ok(())
    }
}
