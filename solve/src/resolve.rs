//! Resolution proper: load the repositories into a libsolv pool, hide what dnf would hide
//! (excludes, includepkgs, exclude-packages, other versions of locked packages), turn each
//! requested spec into an install job the way dnf's `install` does, solve, and explain failures.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use libsolv_sys::ffi as sys;
use serde::{Deserialize, Serialize};

use crate::error::ResolveError;
use crate::ffi::{Id, Pool, Problem, RuleKind, SolvableInfo};
use crate::glob::matches_package;
use crate::repo::RepoData;

/// A locked version: `evr` (`[epoch:]version-release`), and the arch when the lock gave one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lock {
    /// `[epoch:]version-release`.
    pub evr: String,
    /// The arch, from an `evra` lock.
    pub arch: Option<String>,
}

impl Lock {
    /// From a lockfile `evra` (`[epoch:]version-release.arch`).
    pub fn from_evra(evra: &str) -> Lock {
        match evra.rsplit_once('.') {
            Some((evr, arch)) => Lock {
                evr: evr.to_string(),
                arch: Some(arch.to_string()),
            },
            None => Lock::from_evr(evra),
        }
    }

    /// From an overrides `evr` (`[epoch:]version-release`).
    pub fn from_evr(evr: &str) -> Lock {
        Lock {
            evr: evr.to_string(),
            arch: None,
        }
    }

    fn render(&self) -> String {
        match &self.arch {
            Some(a) => format!("{}.{a}", self.evr),
            None => self.evr.clone(),
        }
    }
}

/// What to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The basearch (`x86_64`, `aarch64`, ... or `noarch`).
    pub arch: String,
    /// Package specs: names, `name.arch`, `name-version[-release][.arch]`, provides, paths.
    pub packages: Vec<String>,
    /// Treefile `exclude-packages` (names or globs): hidden from the solver.
    pub exclude_packages: Vec<String>,
    /// Install weak dependencies (treefile `recommends`, default true).
    pub recommends: bool,
    /// Locked versions by package name (lockfile, then overrides).
    pub locks: BTreeMap<String, Lock>,
    /// Repository priorities overriding `repo.json` (repo id -> dnf priority).
    pub priorities: BTreeMap<String, i64>,
    /// Override repositories (nestos-assembler's `overrides/rpm`): a package name they hold
    /// is taken from them only, whatever the other repositories or the locks say (as
    /// nestos-assembler's generated repo-packages and lockfile do).
    pub overrides: Vec<String>,
}

/// `checksum` of a resolved package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `sha256`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Hex digest.
    pub value: String,
}

/// One package to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPackage {
    pub name: String,
    pub epoch: u64,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// `name-[epoch:]version-release.arch` (epoch only when non-zero).
    pub nevra: String,
    /// The repository id it comes from.
    pub repo: String,
    /// `location href`, relative to the repository's baseurl.
    pub location: String,
    pub checksum: Checksum,
    /// Download size in bytes.
    pub size: u64,
    /// Source package name (lockfile metadata), not in `resolved.json`.
    #[serde(skip)]
    pub source_name: String,
}

impl ResolvedPackage {
    /// `[epoch:]version-release.arch`, the lockfile's `evra`.
    pub fn evra(&self) -> String {
        let e = if self.epoch > 0 {
            format!("{}:", self.epoch)
        } else {
            String::new()
        };
        format!("{e}{}-{}.{}", self.version, self.release, self.arch)
    }
}

/// The result: packages sorted by name (then arch), and each repository's metadata age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub arch: String,
    pub packages: Vec<ResolvedPackage>,
    /// Repo id -> newest repomd timestamp.
    pub repos: BTreeMap<String, Option<u64>>,
}

/// Splits libsolv's `[epoch:]version-release`.
pub fn split_evr(evr: &str) -> (u64, &str, &str) {
    let (epoch, vr) = match evr.split_once(':') {
        Some((e, vr)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), vr),
        _ => (0, evr),
    };
    let (v, r) = vr.rsplit_once('-').unwrap_or((vr, ""));
    (epoch, v, r)
}

/// Resolves `req` against `repos` with dnf's semantics.
pub fn resolve(req: &Request, repos: &[RepoData]) -> Result<Resolution, ResolveError> {
    let mut pool = Pool::new(&req.arch).map_err(|e| ResolveError::Solv(e.0))?;
    for r in repos {
        let c = &r.config;
        let prio = req.priorities.get(&c.id).copied().unwrap_or(c.priority);
        pool.add_rpmmd(
            &c.id,
            prio,
            c.cost,
            (&r.primary.path, &r.primary.href),
            r.filelists
                .as_ref()
                .map(|f| (f.path.as_path(), f.href.as_str())),
        )
        .map_err(|e| ResolveError::Load {
            repo: c.id.clone(),
            msg: e.0,
        })?;
    }
    pool.finish();
    let all = pool.solvables();
    let from_override = |s: &SolvableInfo| req.overrides.contains(&repos[s.repo].config.id);
    let overridden: BTreeSet<&str> = all
        .iter()
        .filter(|s| from_override(s))
        .map(|s| s.name.as_str())
        .collect();
    // Locks do not apply to overridden names: the override's version wins.
    let lock_of = |name: &str| {
        if overridden.contains(name) {
            None
        } else {
            req.locks.get(name)
        }
    };

    // What dnf would hide: repo exclude/includepkgs, exclude-packages, other versions of locks.
    let mut locked_missing = Vec::new();
    for (name, lock) in req
        .locks
        .iter()
        .filter(|(n, _)| !overridden.contains(n.as_str()))
    {
        let hit = all
            .iter()
            .any(|s| &s.name == name && lock_matches(&pool, lock, s));
        if !hit {
            let have: BTreeSet<String> = all
                .iter()
                .filter(|s| &s.name == name)
                .map(|s| format!("{}.{}", s.evr, s.arch))
                .collect();
            let have = if have.is_empty() {
                "no version in the repositories".to_string()
            } else {
                format!(
                    "repositories have {}",
                    have.into_iter().collect::<Vec<_>>().join(", ")
                )
            };
            locked_missing.push(format!("{name}-{} ({have})", lock.render()));
        }
    }
    if !locked_missing.is_empty() {
        return Err(ResolveError::LockedMissing(locked_missing));
    }
    let visible: Vec<&SolvableInfo> = all
        .iter()
        .filter(|s| {
            let c = &repos[s.repo].config;
            !matches_package(&c.exclude, &s.name, &s.evr, &s.arch)
                && (c.includepkgs.is_empty()
                    || matches_package(&c.includepkgs, &s.name, &s.evr, &s.arch))
                && !matches_package(&req.exclude_packages, &s.name, &s.evr, &s.arch)
                && lock_of(&s.name).is_none_or(|l| lock_matches(&pool, l, s))
                && (!overridden.contains(s.name.as_str()) || from_override(s))
                && pool.arch_installable(&s.arch)
        })
        .collect();
    let visible_ids: Vec<Id> = visible.iter().map(|s| s.id).collect();
    pool.set_considered(&visible_ids);

    // Jobs.
    let mut jobs = Vec::new();
    let mut requested: BTreeSet<Id> = BTreeSet::new();
    let mut no_match = Vec::new();
    for spec in &req.packages {
        if req.exclude_packages.iter().any(|e| e == spec) {
            return Err(ResolveError::RequestedAndExcluded(spec.clone()));
        }
        let ids = match_spec(&pool, &visible, spec);
        if ids.is_empty() {
            let hidden = !match_spec(&pool, &all.iter().collect::<Vec<_>>(), spec).is_empty();
            no_match.push(if hidden {
                format!("{spec} (only excluded or locked-out versions match)")
            } else {
                spec.clone()
            });
            continue;
        }
        requested.extend(&ids);
        let what = pool.one_of(&ids);
        jobs.push((
            sys::SOLVER_INSTALL | sys::SOLVER_SOLVABLE_ONE_OF | sys::SOLVER_FORCEBEST,
            what,
        ));
    }
    if !no_match.is_empty() {
        return Err(ResolveError::NoMatch(no_match));
    }

    let ids = match pool.solve(&jobs, req.recommends) {
        Ok(ids) => ids,
        Err(problems) => {
            return Err(ResolveError::Unsatisfiable {
                arch: req.arch.clone(),
                problems: problems
                    .iter()
                    .map(|p| render_problem(&pool, p, &requested))
                    .collect(),
            });
        }
    };
    let by_id: BTreeMap<Id, &SolvableInfo> = all.iter().map(|s| (s.id, s)).collect();
    let mut packages = Vec::new();
    for id in ids {
        let Some(s) = by_id.get(&id) else { continue };
        let loc = pool.location(id);
        let (epoch, version, release) = split_evr(&s.evr);
        let nevra = pool.solvable2str(id);
        // The download URL is the repository's base URL joined with it: a location that
        // leaves the repository (absolute, `..`) would fetch a file of the mirror's host, or
        // of this one for a file:// repository, into the store.
        let l = &loc.location;
        if l.is_empty()
            || l.starts_with('/')
            || l.contains("://")
            || l.contains('\\')
            || l.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(ResolveError::BadRepo {
                what: repos[s.repo].config.id.clone(),
                msg: format!(
                    "package {nevra}: refusing location href {l:?} (absolute, a URL, or with \
                     `..`): a package must lie under its repository"
                ),
            });
        }
        let source_name = source_name(&loc.sourcerpm).unwrap_or(&s.name).to_string();
        packages.push(ResolvedPackage {
            name: s.name.clone(),
            epoch,
            version: version.to_string(),
            release: release.to_string(),
            arch: s.arch.clone(),
            nevra,
            repo: repos[s.repo].config.id.clone(),
            location: loc.location,
            checksum: Checksum {
                kind: loc.checksum_type,
                value: loc.checksum,
            },
            size: loc.size,
            source_name,
        });
    }
    packages.sort_by(|a, b| (&a.name, &a.arch, &a.nevra).cmp(&(&b.name, &b.arch, &b.nevra)));
    Ok(Resolution {
        arch: req.arch.clone(),
        packages,
        repos: repos
            .iter()
            .map(|r| (r.config.id.clone(), r.generated))
            .collect(),
    })
}

/// `name` of `name-version-release.src.rpm`.
fn source_name(srpm: &str) -> Option<&str> {
    let base = srpm.strip_suffix(".rpm")?;
    let (nvr, _arch) = base.rsplit_once('.')?;
    let (nv, _r) = nvr.rsplit_once('-')?;
    let (n, _v) = nv.rsplit_once('-')?;
    Some(n)
}

fn lock_matches(pool: &Pool, lock: &Lock, s: &SolvableInfo) -> bool {
    lock.arch.as_ref().is_none_or(|a| a == &s.arch)
        && pool.evrcmp(&lock.evr, &s.evr) == std::cmp::Ordering::Equal
}

/// Does `s` match a parsed NEVRA form? Missing parts match anything.
fn form_matches(
    pool: &Pool,
    s: &SolvableInfo,
    name: &str,
    evr: Option<&str>,
    arch: Option<&str>,
) -> bool {
    if s.name != name || arch.is_some_and(|a| a != s.arch) {
        return false;
    }
    let Some(evr) = evr else { return true };
    let (se, sv, sr) = split_evr(&s.evr);
    let (epoch, vr) = match evr.split_once(':') {
        Some((e, vr)) => (e.parse::<u64>().ok(), vr),
        None => (None, evr),
    };
    if epoch.is_some_and(|e| e != se) {
        return false;
    }
    let (v, r) = match vr.rsplit_once('-') {
        Some((v, r)) => (v, Some(r)),
        None => (vr, None),
    };
    pool.evrcmp(v, sv).is_eq() && r.is_none_or(|r| pool.evrcmp(r, sr).is_eq())
}

/// The solvables among `pkgs` that `spec` selects, trying dnf's forms in its order (NEVRA, NA,
/// NAME, NEVR, NEV), then provides, then file paths. A plain name also selects the packages
/// that obsolete it, as `dnf install NAME` does.
fn match_spec(pool: &Pool, pkgs: &[&SolvableInfo], spec: &str) -> Vec<Id> {
    let select = |name: &str, evr: Option<&str>, arch: Option<&str>| -> Vec<Id> {
        pkgs.iter()
            .filter(|s| form_matches(pool, s, name, evr, arch))
            .map(|s| s.id)
            .collect()
    };
    let nevr = |s: &str| -> Option<(String, String)> {
        let (rest, r) = s.rsplit_once('-')?;
        let (n, v) = rest.rsplit_once('-')?;
        Some((n.to_string(), format!("{v}-{r}")))
    };
    // NEVRA
    if let Some((nevr_part, arch)) = spec.rsplit_once('.')
        && let Some((n, evr)) = nevr(nevr_part)
    {
        let ids = select(&n, Some(&evr), Some(arch));
        if !ids.is_empty() {
            return ids;
        }
    }
    // NA
    if let Some((n, arch)) = spec.rsplit_once('.') {
        let ids = select(n, None, Some(arch));
        if !ids.is_empty() {
            return ids;
        }
    }
    // NAME (+ obsoleters)
    let ids = select(spec, None, None);
    if !ids.is_empty() {
        let cands: Vec<Id> = pkgs.iter().map(|s| s.id).collect();
        let mut all = ids.clone();
        all.extend(pool.obsoleters(&ids, &cands));
        return all;
    }
    // NEVR, NEV
    if let Some((n, evr)) = nevr(spec) {
        let ids = select(&n, Some(&evr), None);
        if !ids.is_empty() {
            return ids;
        }
    }
    if let Some((n, v)) = spec.rsplit_once('-') {
        let ids = select(n, Some(v), None);
        if !ids.is_empty() {
            return ids;
        }
    }
    // Provides (with a relation, e.g. `foo >= 1.2`), then file lists.
    let allowed: BTreeSet<Id> = pkgs.iter().map(|s| s.id).collect();
    let mut flags = sys::SELECTION_PROVIDES | sys::SELECTION_REL;
    if spec.starts_with('/') {
        flags |= sys::SELECTION_FILELIST;
    }
    pool.select(spec, flags)
        .into_iter()
        .filter(|id| allowed.contains(id))
        .collect()
}

/// Renders one problem: the cause with the chain of packages that needs it, then libsolv's
/// other rule lines. Requested packages are marked `(requested)`.
fn render_problem(pool: &Pool, p: &Problem, requested: &BTreeSet<Id>) -> String {
    let name = |id: Id| {
        let s = pool.solvable2str(id);
        if requested.contains(&id) {
            format!("{s} (requested)")
        } else {
            s
        }
    };
    let mark = |text: &str| -> String {
        // libsolv's "is disabled" means hidden by an exclude here.
        let mut out = match text.strip_suffix(" is disabled") {
            Some(p) => {
                format!("{p} is excluded (exclude-packages, repo exclude/includepkgs or a lock)")
            }
            None => text.to_string(),
        };
        for &id in requested {
            let s = pool.solvable2str(id);
            out = out
                .split(' ')
                .map(|w| {
                    if w.trim_end_matches(',') == s {
                        w.replacen(&s, &format!("{s} (requested)"), 1)
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        }
        out
    };
    let edges = pool.requires_edges(p);
    // The cause: a missing dependency first, else the first non-job rule.
    let cause = p
        .rules
        .iter()
        .find(|r| r.kind == RuleKind::NothingProvides)
        .or_else(|| p.rules.iter().find(|r| r.kind == RuleKind::Other))
        .or_else(|| p.rules.first());
    let mut lines = Vec::new();
    if let Some(c) = cause {
        let mut first = mark(&c.text);
        if c.kind == RuleKind::NothingProvides && !requested.contains(&c.source) {
            for id in chain_to(c.source, &edges, requested) {
                first.push_str(&format!(", needed by {}", name(id)));
            }
        }
        lines.push(first);
    }
    for r in &p.rules {
        if Some(r) != cause {
            let line = format!("- {}", mark(&r.text));
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    lines.join("\n")
}

/// The packages from `to`'s requirer up to a requested package (shortest path), nearest first.
fn chain_to(to: Id, edges: &[(Id, Id)], requested: &BTreeSet<Id>) -> Vec<Id> {
    let mut prev: BTreeMap<Id, Id> = BTreeMap::new();
    let mut queue = VecDeque::from([to]);
    let mut seen = BTreeSet::from([to]);
    while let Some(b) = queue.pop_front() {
        if b != to && requested.contains(&b) {
            let mut path = vec![b];
            let mut cur = b;
            while let Some(&n) = prev.get(&cur) {
                if n == to {
                    break;
                }
                path.push(n);
                cur = n;
            }
            path.reverse();
            return path;
        }
        for &(a, bb) in edges {
            if bb == b && seen.insert(a) {
                prev.insert(a, b);
                queue.push_back(a);
            }
        }
    }
    Vec::new()
}
