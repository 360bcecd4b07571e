//! The `repo-sync` rule: fetches a repository's `repomd.xml` and its primary, filelists and other
//! metadata, verifies every file against repomd.xml (checksum and size, compressed and after
//! decompression), and outputs them with a `repo.json` describing the repository. Also the pin:
//! [`probe_repomd`], the digest that makes a moved remote repository change the node's key.

use std::io::{self, BufReader};
use std::path::Path;

use nosa_cache::Digest;
use nosa_engine::{Params, Rule, RunContext, RunError};
use serde::{Deserialize, Serialize};

use crate::checksum::{ChecksumKind, HashingWriter};
use crate::decompress::decoder;
use crate::error::{ChecksumMismatch, RepoError};
use crate::fetch::{DownloadError, Fetcher, join, parse_metalink, parse_mirrorlist};
use crate::repomd::{RepoMd, RepoMdData, parse_repomd};

/// The metadata types a sync downloads; `primary` is required, the others are fetched if listed.
pub const METADATA_KINDS: [&str; 3] = ["primary", "filelists", "other"];

/// Largest metadata file accepted when repomd.xml does not give its size.
const METADATA_LIMIT: u64 = 8 << 30;

/// A repository as the sync rule sees it: every value that influences the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSource {
    /// The repo id (`.repo` section name).
    pub id: String,
    /// The basearch it is synced for.
    pub arch: String,
    /// Base URLs, `$basearch` and other variables already substituted, in preference order.
    pub baseurl: Vec<String>,
    /// A metalink URL, tried after the base URLs.
    pub metalink: Option<String>,
    /// A mirrorlist URL (one base URL per line), tried after the base URLs.
    pub mirrorlist: Option<String>,
    /// dnf `priority` (lower wins).
    pub priority: i64,
    /// dnf `cost` (lower wins between identical packages).
    pub cost: i64,
    /// `exclude` / `excludepkgs` globs.
    pub exclude: Vec<String>,
    /// `includepkgs` globs.
    pub includepkgs: Vec<String>,
    /// `file://<workdir>`, when the workdir is known: base URLs under it enter the key and
    /// `repo.json` as `file://$nosa_workdir/...`, so a copy of the workdir elsewhere (another
    /// CI machine, a shared cache) has the same keys and outputs.
    pub workdir_url: Option<String>,
}

impl RepoSource {
    /// The same source, with base URLs under `workdir` made portable (see `workdir_url`).
    pub fn in_workdir(mut self, workdir: &Path) -> RepoSource {
        self.workdir_url = Some(format!(
            "file://{}",
            workdir.to_string_lossy().trim_end_matches('/')
        ));
        self
    }

    /// `url` with the workdir prefix written `$nosa_workdir`.
    pub fn portable(&self, url: &str) -> String {
        match &self.workdir_url {
            Some(w) => match url.strip_prefix(w.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    format!("file://$nosa_workdir{rest}")
                }
                _ => url.to_string(),
            },
            None => url.to_string(),
        }
    }

    /// The base URLs as they enter the key, the pin and `repo.json`.
    pub fn portable_baseurl(&self) -> Vec<String> {
        self.baseurl.iter().map(|u| self.portable(u)).collect()
    }

    /// The source for a repo loaded by nosa-config, synced for `arch`.
    pub fn from_config(repo: &nosa_config::Repo, arch: &str) -> RepoSource {
        RepoSource {
            id: repo.id.clone(),
            arch: arch.to_string(),
            baseurl: repo.baseurl.clone(),
            metalink: repo.metalink.clone(),
            mirrorlist: repo.mirrorlist.clone(),
            priority: repo.priority,
            cost: repo.cost,
            exclude: repo.exclude.clone(),
            includepkgs: repo.includepkgs.clone(),
            workdir_url: None,
        }
    }
}

/// `repo.json` in a synced repository's output. Fields other than `id` have dnf's defaults
/// when absent, so a hand-written one (tests, other tools) reads too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoJson {
    /// The repo id.
    pub id: String,
    /// The basearch.
    #[serde(default)]
    pub arch: String,
    /// Base URLs, the one that served this sync first.
    #[serde(default)]
    pub baseurl: Vec<String>,
    /// dnf `priority`: lower wins (default 99).
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// dnf `cost`: lower wins among equal priorities (default 1000).
    #[serde(default = "default_cost")]
    pub cost: i64,
    /// `exclude` globs.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `includepkgs` globs (empty: everything).
    #[serde(default)]
    pub includepkgs: Vec<String>,
}

fn default_priority() -> i64 {
    99
}

fn default_cost() -> i64 {
    1000
}

/// The `repo-sync:<arch>:<repoid>` node.
#[derive(Clone, Debug)]
pub struct RepoSyncRule {
    source: RepoSource,
    pin: Option<Digest>,
    /// `repo_gpgcheck=1`: `repomd.xml.asc` is checked against the keys of the one dependency
    /// (`repo-keys:<arch>:<repo>`).
    repo_gpgcheck: bool,
}

impl RepoSyncRule {
    /// The node kind.
    pub const KIND: &'static str = "repo-sync";

    /// A sync of `source`. `pin` is the blake3 of repomd.xml recorded by `nosa fetch`
    /// ([`probe_repomd`]); with a pin, a repository that moved makes the run fail instead of
    /// syncing something the key does not cover.
    pub fn new(source: RepoSource, pin: Option<Digest>) -> RepoSyncRule {
        RepoSyncRule {
            source,
            pin,
            repo_gpgcheck: false,
        }
    }

    /// Checks `repomd.xml.asc` against the keys of this node's one dependency, the
    /// repository's `repo-keys` node, before anything else is fetched.
    pub fn with_repo_gpgcheck(mut self) -> RepoSyncRule {
        self.repo_gpgcheck = true;
        self
    }

    /// The node id: `repo-sync:<arch>:<repoid>`.
    pub fn node_id(arch: &str, repo_id: &str) -> String {
        format!("{}:{arch}:{repo_id}", Self::KIND)
    }

    /// This node's id.
    pub fn id(&self) -> String {
        Self::node_id(&self.source.arch, &self.source.id)
    }

    /// The repository.
    pub fn source(&self) -> &RepoSource {
        &self.source
    }
}

impl Rule for RepoSyncRule {
    fn kind(&self) -> &str {
        Self::KIND
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        let s = &self.source;
        p.add("id", &s.id)
            .add("arch", &s.arch)
            .add("baseurl", &s.portable_baseurl())
            .add("metalink", &s.metalink)
            .add("mirrorlist", &s.mirrorlist)
            .add("priority", &s.priority)
            .add("cost", &s.cost)
            .add("exclude", &s.exclude)
            .add("includepkgs", &s.includepkgs)
            .add("repomd-pin", &self.pin);
        if self.repo_gpgcheck {
            // sqv decides which signatures verify.
            p.add("repo_gpgcheck", &true)
                .add("sqv", crate::tool_version("sqv"));
        }
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let f = Fetcher::new();
        let found = find_repomd(&f, &self.source, self.pin.as_ref())?;
        writeln!(
            ctx.log,
            "repomd.xml from {} ({} bytes, blake3 {})",
            found.url,
            found.bytes.len(),
            Digest::of(&found.bytes)
        )?;
        if self.repo_gpgcheck {
            let [keys] = ctx.deps else {
                return Err(RunError::msg(
                    "repo_gpgcheck needs the repo-keys node as the one dependency",
                ));
            };
            let keys = keys.clone();
            let sig_url = format!("{}.asc", found.url);
            let sig = f.get_bytes(&sig_url).map_err(|e| {
                RunError::msg(format!(
                    "repo {} sets repo_gpgcheck=1, but its repomd.xml.asc is missing: {e}",
                    self.source.id
                ))
            })?;
            let (md, asc) = (
                ctx.scratch.join("repomd.xml"),
                ctx.scratch.join("repomd.xml.asc"),
            );
            fs_err::write(&md, &found.bytes)?;
            fs_err::write(&asc, &sig)?;
            crate::keys::check_repomd(ctx, &keys, &self.source.id, &md, &asc)?;
        }
        fs_err::write(ctx.out.join("repomd.xml"), &found.bytes)?;
        for kind in METADATA_KINDS {
            let Some(d) = found.md.get(kind) else {
                if kind == "primary" {
                    return Err(RepoError::Xml {
                        file: found.url.clone(),
                        reason: "no <data type=\"primary\">".into(),
                    }
                    .into());
                }
                writeln!(ctx.log, "{kind}: not listed")?;
                continue;
            };
            check_href(&self.source.id, &d.href)?;
            let dest = ctx.out.join(&d.href);
            if let Some(parent) = dest.parent() {
                fs_err::create_dir_all(parent)?;
            }
            let tmp = ctx.scratch.join(format!("{kind}.part"));
            let url = fetch_metadata(&f, &self.source.id, d, &found.bases, &tmp)?;
            fs_err::rename(&tmp, &dest)?;
            writeln!(
                ctx.log,
                "{kind}: {} from {url}: verified {}",
                d.href, d.checksum
            )?;
        }
        let json = RepoJson {
            id: self.source.id.clone(),
            arch: self.source.arch.clone(),
            baseurl: found
                .bases
                .iter()
                .map(|u| self.source.portable(u))
                .collect(),
            priority: self.source.priority,
            cost: self.source.cost,
            exclude: self.source.exclude.clone(),
            includepkgs: self.source.includepkgs.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&json).map_err(io::Error::other)?;
        bytes.push(b'\n');
        fs_err::write(ctx.out.join("repo.json"), bytes)?;
        Ok(())
    }

    /// blake3 over repomd.xml and repo.json: repomd.xml pins every metadata file by checksum
    /// (verified in `run`), so these two files determine the whole output.
    fn equivalence_digest(&self, out: &Path) -> Option<Digest> {
        let repomd = fs_err::read(out.join("repomd.xml")).ok()?;
        let json = fs_err::read(out.join("repo.json")).ok()?;
        let mut h = blake3::Hasher::new();
        h.update(b"nosa-repo-sync-v1\0");
        for part in [&repomd, &json] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Some(h.finalize().into())
    }
}

/// Fetches only `repodata/repomd.xml` of `source` (first base URL that serves a parseable one,
/// then the mirrorlist, then the metalink) and returns its blake3: the pin `nosa fetch`
/// records and passes to [`RepoSyncRule::new`].
pub fn probe_repomd(source: &RepoSource) -> Result<Digest, RepoError> {
    let found = find_repomd(&Fetcher::new(), source, None)?;
    Ok(Digest::of(&found.bytes))
}

/// The repomd.xml that a sync uses.
struct Found {
    /// Every known base URL, the one that served `bytes` first.
    bases: Vec<String>,
    /// Where it came from.
    url: String,
    bytes: Vec<u8>,
    md: RepoMd,
}

fn find_repomd(f: &Fetcher, src: &RepoSource, pin: Option<&Digest>) -> Result<Found, RepoError> {
    let mut candidates = src.baseurl.clone();
    let mut attempts = Vec::new();
    let mut mismatch: Option<(String, Digest)> = None;
    let mut expanded = false;
    let mut i = 0;
    loop {
        if i == candidates.len() {
            if expanded {
                break;
            }
            expanded = true;
            for more in expand_mirrors(f, src, &mut attempts) {
                if !candidates.contains(&more) {
                    candidates.push(more);
                }
            }
            if i == candidates.len() {
                break;
            }
        }
        let base = candidates[i].clone();
        i += 1;
        let url = join(&base, "repodata/repomd.xml");
        let bytes = match f.get_bytes(&url) {
            Ok(b) => b,
            Err(e) => {
                attempts.push(e.to_string());
                continue;
            }
        };
        let md = match parse_repomd(&bytes, &url) {
            Ok(md) => md,
            Err(e) => {
                attempts.push(e.to_string());
                continue;
            }
        };
        let digest = Digest::of(&bytes);
        if let Some(p) = pin
            && *p != digest
        {
            attempts.push(format!("{url}: blake3 {digest} is not the pinned {p}"));
            mismatch.get_or_insert((url, digest));
            continue;
        }
        let mut bases = vec![base.clone()];
        bases.extend(candidates.into_iter().filter(|c| *c != base));
        return Ok(Found {
            bases,
            url,
            bytes,
            md,
        });
    }
    if let (Some((url, actual)), Some(p)) = (mismatch, pin) {
        return Err(RepoError::PinMismatch {
            repo: src.id.clone(),
            url,
            pinned: p.to_hex(),
            actual: actual.to_hex(),
        });
    }
    if candidates.is_empty() && attempts.is_empty() {
        return Err(RepoError::NoBaseUrl {
            repo: src.id.clone(),
        });
    }
    Err(RepoError::NoMirror {
        repo: src.id.clone(),
        attempts,
    })
}

/// Base URLs from the mirrorlist, then the metalink; failures are noted in `attempts`.
fn expand_mirrors(f: &Fetcher, src: &RepoSource, attempts: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(url) = &src.mirrorlist {
        match f.get_bytes(url) {
            Ok(b) => out.extend(parse_mirrorlist(&String::from_utf8_lossy(&b))),
            Err(e) => attempts.push(format!("mirrorlist: {e}")),
        }
    }
    if let Some(url) = &src.metalink {
        match f.get_bytes(url).and_then(|b| parse_metalink(&b, url)) {
            Ok(urls) => out.extend(urls),
            Err(e) => attempts.push(format!("metalink: {e}")),
        }
    }
    out
}

/// Refuses hrefs that would write outside the output or over `repomd.xml` / `repo.json`.
pub(crate) fn check_href(repo: &str, href: &str) -> Result<(), RepoError> {
    let bad = href.is_empty()
        || href.starts_with('/')
        || href.contains('\\')
        || href
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || href == "repomd.xml"
        || href == "repo.json";
    if bad {
        return Err(RepoError::UnsafeHref {
            repo: repo.to_string(),
            href: href.to_string(),
        });
    }
    Ok(())
}

/// Downloads one metadata file into `tmp`, trying each base URL in order, and verifies it.
/// Returns the URL that served it.
fn fetch_metadata(
    f: &Fetcher,
    repo: &str,
    d: &RepoMdData,
    bases: &[String],
    tmp: &Path,
) -> Result<String, RepoError> {
    let urls: Vec<String> = match &d.base {
        Some(b) => vec![join(b, &d.href)],
        None => bases.iter().map(|b| join(b, &d.href)).collect(),
    };
    let mut errors = Vec::new();
    for url in urls {
        match fetch_one(f, repo, d, &url, tmp) {
            Ok(()) => return Ok(url),
            Err(e) => errors.push(e),
        }
    }
    if errors.len() == 1 {
        return Err(errors.remove(0));
    }
    Err(RepoError::AllMirrorsFailed {
        repo: repo.to_string(),
        href: d.href.clone(),
        errors: errors.iter().map(ToString::to_string).collect(),
    })
}

fn fetch_one(
    f: &Fetcher,
    repo: &str,
    d: &RepoMdData,
    url: &str,
    tmp: &Path,
) -> Result<(), RepoError> {
    let size_err = |what, expected, actual| RepoError::MetadataSize {
        repo: repo.to_string(),
        href: d.href.clone(),
        url: url.to_string(),
        what,
        expected,
        actual,
    };
    let sum_err = |what, expected: String, actual: String| {
        RepoError::MetadataChecksum(Box::new(ChecksumMismatch {
            repo: repo.to_string(),
            href: d.href.clone(),
            url: url.to_string(),
            what,
            expected,
            actual,
        }))
    };
    let got = match f.download(url, tmp, d.checksum.kind, d.size.unwrap_or(METADATA_LIMIT)) {
        Ok(got) => got,
        Err(DownloadError::TooLong) => {
            let limit = d.size.unwrap_or(METADATA_LIMIT);
            return Err(size_err("size", limit, format!("more than {limit}")));
        }
        Err(DownloadError::Other(reason)) => {
            return Err(RepoError::Fetch {
                url: url.to_string(),
                reason,
            });
        }
    };
    if let Some(s) = d.size
        && s != got.size
    {
        return Err(size_err("size", s, got.size.to_string()));
    }
    if got.hex != d.checksum.hex {
        return Err(sum_err(
            "checksum",
            d.checksum.to_string(),
            format!("{}:{}", d.checksum.kind.name(), got.hex),
        ));
    }
    // Always decompress fully: a file whose compressed checksum matches a corrupt repomd.xml
    // entry without an open-checksum is still caught here.
    let kind = d
        .open_checksum
        .as_ref()
        .map_or(ChecksumKind::Sha256, |c| c.kind);
    let limit = d.open_size.unwrap_or(u64::MAX);
    let mut r = decoder(&d.href, BufReader::new(fs_err::File::open(tmp)?))?;
    let mut w = HashingWriter::new(io::sink(), kind, limit);
    if let Err(e) = io::copy(&mut r, &mut w) {
        return Err(if crate::checksum::is_too_long(&e) {
            size_err("open-size", limit, format!("more than {limit}"))
        } else {
            RepoError::Decompress {
                repo: repo.to_string(),
                href: d.href.clone(),
                url: url.to_string(),
                reason: e.to_string(),
            }
        });
    }
    let (_, hex, n) = w.finish();
    if let Some(s) = d.open_size
        && s != n
    {
        return Err(size_err("open-size", s, n.to_string()));
    }
    if let Some(c) = &d.open_checksum
        && c.hex != hex
    {
        return Err(sum_err(
            "open-checksum",
            c.to_string(),
            format!("{}:{hex}", c.kind.name()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_stay_inside() {
        assert!(check_href("r", "repodata/a-primary.xml.gz").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "repodata/../../x",
            "./a",
            "a//b",
            "repomd.xml",
            "a\\b",
        ] {
            assert!(check_href("r", bad).is_err(), "{bad}");
        }
    }
}
