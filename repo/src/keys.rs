//! OpenPGP signatures, checked as dnf checks them: a repository's `gpgkey=` keys fetched by the
//! `repo-keys:<arch>:<repo>` node; each package of a `gpgcheck=1` repository checked against
//! them by rpm's own `rpmkeys --checksig` in a private keyring, with rpm's
//! `_pkgverify_level all` (a package without a signature fails); `repomd.xml.asc` of a
//! `repo_gpgcheck=1` repository checked by Sequoia's `sqv` (docs/packages.md says why these
//! two). The keys are their nodes' output, so they enter the keys of the nodes they guard.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nosa_cache::{Digest, EntryKind, Tree};
use nosa_engine::{DepOutput, Params, Rule, RunContext, RunError};

use crate::fetch::Fetcher;

/// The tools' `PATH`.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Fetches a repository's `gpgkey=` keys and checks that each is an OpenPGP public key that
/// rpm imports. Output: `keys/<n>.asc` in the order of `gpgkey=`, and `keys.txt` (the URL and
/// the key ids of each).
#[derive(Debug, Clone)]
pub struct RepoKeysRule {
    repo: String,
    arch: String,
    /// The key URLs as the `.repo` gives them (variables substituted).
    urls: Vec<String>,
    /// The URLs as they enter the key (`$nosa_workdir` for the workdir).
    portable: Vec<String>,
    /// The blake3 of each local (`file://`) key when the graph was made: a changed key file
    /// changes the key. Remote keys are fetched again when the repository is re-pinned.
    local: Vec<Option<Digest>>,
    /// The repository's pin (`nosa fetch`), if any.
    pin: Option<Digest>,
}

impl RepoKeysRule {
    /// The node kind.
    pub const KIND: &'static str = "repo-keys";

    /// The keys of `repo` for `arch`, at `urls` (`portable`: the same as they enter the key).
    pub fn new(
        repo: &str,
        arch: &str,
        urls: Vec<String>,
        portable: Vec<String>,
        pin: Option<Digest>,
    ) -> RepoKeysRule {
        let local = urls
            .iter()
            .map(|u| {
                let path = u.strip_prefix("file://")?;
                fs_err::read(path).ok().map(|b| Digest::of(&b))
            })
            .collect();
        RepoKeysRule {
            repo: repo.to_string(),
            arch: arch.to_string(),
            urls,
            portable,
            local,
            pin,
        }
    }

    /// The node id: `repo-keys:<arch>:<repoid>`.
    pub fn node_id(arch: &str, repo: &str) -> String {
        format!("{}:{arch}:{repo}", Self::KIND)
    }
}

impl Rule for RepoKeysRule {
    fn kind(&self) -> &str {
        Self::KIND
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("repo", &self.repo)
            .add("arch", &self.arch)
            .add("gpgkey", &self.portable)
            .add(
                "local",
                &self
                    .local
                    .iter()
                    .map(|d| d.map(|d| d.to_hex()))
                    .collect::<Vec<_>>(),
            )
            .add("repomd-pin", &self.pin.map(|d| d.to_hex()))
            // rpmkeys checks the keys here and the packages downstream.
            .add("rpm", crate::tool_version("rpmkeys"));
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        if self.urls.is_empty() {
            return Err(RunError::msg(format!(
                "repo {} sets gpgcheck=1 or repo_gpgcheck=1 but names no key: add \
                 gpgkey=file:///path/to/RPM-GPG-KEY (or an https:// URL) to its .repo section, \
                 or set gpgcheck=0 to use its packages unverified",
                self.repo
            )));
        }
        let f = Fetcher::new();
        let dir = ctx.out.join("keys");
        fs_err::create_dir_all(&dir)?;
        let mut listing = String::new();
        for (n, url) in self.urls.iter().enumerate() {
            let bytes = f.get_bytes(url).map_err(|e| {
                RunError::msg(format!(
                    "repo {}: gpgkey {url}: unreadable key: {e}",
                    self.repo
                ))
            })?;
            if let Some(Some(want)) = self.local.get(n)
                && Digest::of(&bytes) != *want
            {
                return Err(RunError::msg(format!(
                    "repo {}: gpgkey {url} changed during the build; build again",
                    self.repo
                )));
            }
            let file = dir.join(format!("{n}.asc"));
            fs_err::write(&file, &bytes)?;
            let db = ctx.scratch.join(format!("check-{n}"));
            let ids = import(&db, &[file])
                .and_then(|()| key_ids(&db))
                .map_err(|e| {
                    RunError::msg(format!(
                        "repo {}: gpgkey {url}: unreadable key (not an OpenPGP public key rpm \
                         imports): {e}",
                        self.repo
                    ))
                })?;
            listing.push_str(&format!("{} {}\n", self.portable[n], ids.join(" ")));
            writeln!(ctx.log, "{url}: key ids {}", ids.join(", "))?;
        }
        fs_err::write(ctx.out.join("keys.txt"), listing)?;
        Ok(())
    }
}

/// Imports `keys` into a new rpm keyring at `db`.
fn import(db: &Path, keys: &[PathBuf]) -> Result<(), String> {
    fs_err::create_dir_all(db).map_err(|e| e.to_string())?;
    for k in keys {
        let out = rpmkeys(db)
            .arg("--import")
            .arg(k)
            .output()
            .map_err(|e| format!("cannot run rpmkeys ({e}); install Debian's rpm"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
    }
    Ok(())
}

/// The key ids the rpm keyring at `db` holds (`gpg-pubkey-<id>-<time>`'s id, lower-case hex).
fn key_ids(db: &Path) -> Result<Vec<String>, String> {
    let out = tool("rpm")
        .arg("--dbpath")
        .arg(db)
        .args(["-q", "gpg-pubkey", "--qf", "%{VERSION}\\n"])
        .output()
        .map_err(|e| format!("cannot run rpm ({e}); install Debian's rpm"))?;
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    if ids.is_empty() {
        return Err("rpm imported no key from it".into());
    }
    Ok(ids)
}

/// `program` with nothing of the caller's environment but the tools' `PATH` and `LC_ALL=C`.
fn tool(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    c
}

fn rpmkeys(db: &Path) -> Command {
    let mut c = tool("rpmkeys");
    c.arg("--dbpath").arg(db);
    c
}

/// What `out` printed, stdout then stderr.
fn printed(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The key files of a `repo-keys` output, in order.
fn key_files(ctx: &RunContext<'_>, tree: &Tree) -> Vec<PathBuf> {
    let mut files: Vec<(String, PathBuf)> = tree
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File { digest, .. }
                if e.path.starts_with("keys/") && e.path.ends_with(".asc") =>
            {
                Some((e.path.clone(), ctx.store().blob_path(digest)))
            }
            _ => None,
        })
        .collect();
    files.sort_by_key(|(p, _)| {
        p.trim_start_matches("keys/")
            .trim_end_matches(".asc")
            .parse::<u64>()
            .unwrap_or(u64::MAX)
    });
    files.into_iter().map(|(_, f)| f).collect()
}

/// The key ids `keys.txt` of a `repo-keys` output lists, for a message.
fn listed_ids(ctx: &RunContext<'_>, tree: &Tree) -> Vec<String> {
    tree.file("keys.txt")
        .and_then(|d| fs_err::read_to_string(ctx.store().blob_path(&d)).ok())
        .map(|text| {
            text.lines()
                .flat_map(|l| l.split_whitespace().skip(1))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Checks `rpm`'s signature (package `nevra` of repository `repo`) against the keys of the
/// `repo-keys` output `keys`, as dnf does with `gpgcheck=1`: a missing, bad or unknown
/// signature is an error naming the package, the key id and the repository.
pub(crate) fn check_package(
    ctx: &mut RunContext<'_>,
    keys: &DepOutput,
    repo: &str,
    nevra: &str,
    rpm: &Path,
) -> Result<(), RunError> {
    let tree = ctx.dep_tree(keys)?;
    let db = std::path::absolute(ctx.scratch.join("keyring"))?;
    import(&db, &key_files(ctx, &tree))
        .map_err(|e| RunError::msg(format!("repo {repo}: its keys: {e}")))?;
    // From its directory, so that the log names the file, not this run's scratch path.
    let (dir, name) = (
        rpm.parent().unwrap_or(Path::new(".")),
        rpm.file_name().unwrap_or_default(),
    );
    let out = rpmkeys(&db)
        .args(["--define", "_pkgverify_level all", "--checksig", "-v"])
        .arg(name)
        .current_dir(dir)
        .output()
        .map_err(|e| RunError::msg(format!("cannot run rpmkeys ({e}); install Debian's rpm")))?;
    let text = printed(&out);
    writeln!(ctx.log, "{}", text.trim_end())?;
    if out.status.success() {
        return Ok(());
    }
    let signed_by: Vec<String> = text
        .split("key ID ")
        .skip(1)
        .filter_map(|s| s.get(..8))
        .map(str::to_lowercase)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let why = if signed_by.is_empty() {
        "it is not signed".to_string()
    } else if text.contains("NOKEY") {
        format!(
            "it is signed with key ID {}, which is not among the repository's keys ({})",
            signed_by.join(", "),
            listed_ids(ctx, &tree).join(", ")
        )
    } else {
        format!(
            "its signature by key ID {} does not verify (a damaged or altered package)",
            signed_by.join(", ")
        )
    };
    let said: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("NOT OK") || l.contains("BAD") || l.contains("NOKEY"))
        .collect();
    let said = match said.is_empty() {
        true => String::new(),
        false => format!(" (rpmkeys: {})", said.join("; ")),
    };
    Err(RunError::msg(format!(
        "package {nevra} from repo {repo}: signature check failed: {why}{said}"
    )))
}

/// Checks `repomd.xml.asc` (`sig`) over `repomd` against the keys of `keys`, as dnf does with
/// `repo_gpgcheck=1`, with Sequoia's `sqv`.
pub(crate) fn check_repomd(
    ctx: &mut RunContext<'_>,
    keys: &DepOutput,
    repo: &str,
    repomd: &Path,
    sig: &Path,
) -> Result<(), RunError> {
    let tree = ctx.dep_tree(keys)?;
    let mut cmd = tool("sqv");
    for k in key_files(ctx, &tree) {
        cmd.arg("--keyring").arg(k);
    }
    let out = cmd
        .arg(sig)
        .arg(repomd)
        .output()
        .map_err(|e| RunError::msg(format!("cannot run sqv ({e}); install Debian's sqv")))?;
    let text = printed(&out);
    if out.status.success() {
        writeln!(ctx.log, "repomd.xml.asc: good signature by {}", text.trim())?;
        return Ok(());
    }
    Err(RunError::msg(format!(
        "repo {repo}: repomd.xml's signature (repomd.xml.asc) does not verify against the \
         repository's keys: {}",
        text.trim()
    )))
}
