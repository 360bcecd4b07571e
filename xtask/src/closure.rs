//! The Debian closure: root packages and everything apt installs with them (Depends and
//! Pre-Depends, no Recommends), each Debian package repackaged as one RPM of the same name.
//!
//! apt resolves: `apt-get --simulate install ROOTS` against an empty dpkg status, so the
//! answer is the whole closure, with apt's own choice among alternatives and virtual
//! packages, whatever the host has installed. Each package's control data, maintainer
//! scripts and files come from its .deb. The translation:
//!
//! - **paths**: `/bin`, `/sbin`, `/lib*` move under `/usr` (the fixture's `filesystem`
//!   package carries the links); a relative symlink is retargeted so that it still names what
//!   it named; `/usr/share/{doc,man,info,lintian,locale}` are left out (the copyright files
//!   stay), as `[closure].drop` says.
//! - **Requires** from Depends and Pre-Depends: arch qualifiers dropped, versions kept (Debian
//!   epoch -> RPM epoch, the revision -> the release); of an alternative (`a | b`) the first
//!   one the repository has (what apt chose, unless the fixture's own packages stand in for
//!   it). Conflicts, Breaks and Replaces are left out: they describe Debian upgrade paths, and
//!   an unversioned Provides of a stand-in package would match every versioned Conflicts.
//! - **Essential packages** (`Essential: yes`) are required by every package: Debian packages
//!   rely on them without naming them (debconf's scripts need perl-base's perl).
//! - **Provides** from Provides; conffiles become `%config(noreplace)`.
//! - **maintainer scripts** are not run (no dpkg). Their effects that matter are scriptlets
//!   named in `[closure.scripts]` (ldconfig, sysusers, PAM's common files) or postprocess
//!   steps of the config (presets), and `update-alternatives --install` lines become the
//!   link of the highest priority, shipped by the package that registers it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::deb::{self, Deb};
use crate::payload::Payload;
use crate::rpmbuild::RpmMeta;
use crate::spec::{ClosureSpec, Dep, FileSpec, Op};
use crate::tools::{run, run_stdout};

/// The top-level directories that are links into `/usr` in the fixture (`filesystem`).
const MERGED: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

#[derive(Debug, Serialize, Deserialize)]
struct ResolveCache {
    key: String,
    /// (name, version, arch) in apt's order.
    packages: Vec<(String, String, String)>,
}

/// The closure of `spec.roots` as apt resolves it on an empty system, minus `spec.exclude`,
/// as .debs in `cache` (not downloaded yet). Cached in `cache/closure.json` while the apt
/// lists, the roots and the exclusions are unchanged.
pub fn resolve(spec: &ClosureSpec, deb_arch: &str, cache: &Path) -> Result<Vec<Deb>> {
    let key = {
        let mut h = blake3::Hasher::new();
        h.update(deb::apt_state()?.as_bytes());
        h.update(deb_arch.as_bytes());
        for r in &spec.roots {
            h.update(b"\0root ");
            h.update(r.as_bytes());
        }
        h.finalize().to_hex().to_string()
    };
    let cache_file = cache.join("closure.json");
    let cached = fs_err::read_to_string(&cache_file)
        .ok()
        .and_then(|t| serde_json::from_str::<ResolveCache>(&t).ok())
        .filter(|c| c.key == key);
    let packages = match cached {
        Some(c) => c.packages,
        None => {
            fs_err::create_dir_all(cache)?;
            let empty = cache.join("empty-dpkg-status");
            fs_err::write(&empty, "")?;
            let text = run_stdout(
                Command::new("apt-get")
                    .args(["--simulate", "--quiet", "-o", "Debug::NoLocking=1"])
                    .arg(format!("-o=Dir::State::status={}", empty.display()))
                    .args([
                        "-o=APT::Install-Recommends=false",
                        "-o=APT::Install-Suggests=false",
                    ])
                    .arg(format!("-o=APT::Architecture={deb_arch}"))
                    .arg("install")
                    .args(&spec.roots),
            )
            .map_err(|e| {
                format!("apt cannot resolve the closure (is `apt-get update` done?): {e}")
            })?;
            let packages = parse_simulation(&text)?;
            let c = ResolveCache {
                key,
                packages: packages.clone(),
            };
            fs_err::write(&cache_file, serde_json::to_string_pretty(&c)?)?;
            packages
        }
    };
    Ok(packages
        .into_iter()
        .filter(|(name, _, _)| !spec.exclude.contains(name))
        .map(|(name, version, arch)| {
            let file = format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"));
            Deb {
                path: cache.join(file),
                name,
                version,
                arch,
            }
        })
        .collect())
}

/// `Inst NAME (VERSION SUITE [ARCH])` lines of `apt-get --simulate install`.
fn parse_simulation(text: &str) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("Inst ") else {
            continue;
        };
        let (name, rest) = rest
            .split_once(' ')
            .ok_or("an Inst line without a version")?;
        let inner = rest
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(i, _)| i)
            .ok_or_else(|| format!("cannot read apt's line {line:?}"))?;
        let version = inner.split_whitespace().next().ok_or("no version")?;
        let arch = inner
            .rsplit_once('[')
            .and_then(|(_, a)| a.split_once(']'))
            .map(|(a, _)| a)
            .ok_or_else(|| format!("no architecture in apt's line {line:?}"))?;
        out.push((name.to_string(), version.to_string(), arch.to_string()));
    }
    if out.is_empty() {
        return Err("apt's simulation installs nothing".into());
    }
    Ok(out)
}

/// One closure package's control data and maintainer scripts, read from its .deb.
#[derive(Debug, Clone)]
pub struct Control {
    pub deb: Deb,
    fields: BTreeMap<String, String>,
    conffiles: BTreeSet<String>,
    /// (link, path, priority) registered by its scripts with `update-alternatives --install`.
    alternatives: Vec<(String, String, i64)>,
}

impl Control {
    /// Reads `deb`'s control area (unpacked into `work`).
    pub fn read(deb: &Deb, work: &Path) -> Result<Control> {
        let dir = work.join(format!("control-{}", deb.name));
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
        }
        fs_err::create_dir_all(&dir)?;
        run(Command::new("dpkg-deb").arg("-e").arg(&deb.path).arg(&dir))
            .map_err(|e| format!("dpkg-deb -e {}: {e}", deb.path.display()))?;
        let fields = parse_control(&fs_err::read_to_string(dir.join("control"))?);
        let conffiles = fs_err::read_to_string(dir.join("conffiles"))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('/'))
            .map(merged_path)
            .collect();
        let mut alternatives = Vec::new();
        for script in ["postinst", "preinst"] {
            if let Ok(text) = fs_err::read_to_string(dir.join(script)) {
                alternatives.extend(parse_alternatives(&text));
            }
        }
        fs_err::remove_dir_all(&dir)?;
        Ok(Control {
            deb: deb.clone(),
            fields,
            conffiles,
            alternatives,
        })
    }

    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    /// Whether Debian marks it Essential (`Essential: yes`): other packages rely on it
    /// without naming it.
    pub fn essential(&self) -> bool {
        self.field("Essential") == "yes"
    }

    /// The names and virtual names it provides.
    pub fn provided(&self) -> Vec<String> {
        let mut v = vec![self.deb.name.clone()];
        v.extend(
            parse_relations(self.field("Provides"))
                .into_iter()
                .flatten()
                .map(|d| d.name),
        );
        v
    }
}

/// A deb822 stanza: field -> value (continuation lines joined).
fn parse_control(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(k) = &last
                && let Some(v) = out.get_mut(k)
            {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.insert(k.to_string(), v.trim().to_string());
            last = Some(k.to_string());
        }
    }
    out
}

/// `a (>= 1) | b:any, c` -> [[a >= 1, b], [c]].
fn parse_relations(text: &str) -> Vec<Vec<Dep>> {
    text.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let alt = alt.trim();
                    let (name, rest) = match alt.find(['(', ' ']) {
                        Some(i) => (alt[..i].trim(), &alt[i..]),
                        None => (alt, ""),
                    };
                    let name = name.split(':').next().unwrap_or(name);
                    if name.is_empty() {
                        return None;
                    }
                    let constraint = rest
                        .split_once('(')
                        .and_then(|(_, r)| r.split_once(')'))
                        .and_then(|(c, _)| {
                            let c = c.trim();
                            let (op, v) =
                                c.split_at(c.find(|ch: char| ch.is_ascii_alphanumeric())?);
                            let op = match op.trim() {
                                "<<" | "<" => Op::Lt,
                                "<=" => Op::Le,
                                "=" => Op::Eq,
                                ">=" => Op::Ge,
                                ">>" | ">" => Op::Gt,
                                _ => return None,
                            };
                            let v = v.trim();
                            // Debian's `>> V` holds for every revision of V (`2.36-9 >> 2.36`);
                            // RPM ignores the release when the requirement has none, so the
                            // requirement gets the lowest release there is.
                            let evr = match (op, split_version(v).2) {
                                (Op::Gt, None) => format!("{}-~", rpm_evr(v)),
                                _ => rpm_evr(v),
                            };
                            Some((op, evr))
                        });
                    Some(Dep {
                        name: name.to_string(),
                        constraint,
                    })
                })
                .collect::<Vec<Dep>>()
        })
        .filter(|g: &Vec<Dep>| !g.is_empty())
        .collect()
}

/// A Debian version as an RPM `[epoch:]version[-release]`: the revision becomes the release,
/// characters RPM does not allow in a version (`-`, `:`) become `_`.
pub fn rpm_evr(version: &str) -> String {
    let (e, v, r) = split_version(version);
    let mut s = String::new();
    if let Some(e) = e {
        s.push_str(&format!("{e}:"));
    }
    s.push_str(&v);
    if let Some(r) = r {
        s.push('-');
        s.push_str(&r);
    }
    s
}

/// (epoch, version, release) of a Debian version, each valid in RPM.
pub fn split_version(version: &str) -> (Option<u32>, String, Option<String>) {
    let (epoch, rest) = match version.split_once(':') {
        Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().ok(), r),
        _ => (None, version),
    };
    let clean = |s: &str| s.replace(['-', ':'], "_");
    match rest.rsplit_once('-') {
        Some((v, r)) => (epoch, clean(v), Some(clean(r))),
        None => (epoch, clean(rest), None),
    }
}

/// `update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME PATH]...` in a
/// maintainer script (continued lines joined; lines that use shell variables skipped).
fn parse_alternatives(script: &str) -> Vec<(String, String, i64)> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let Some(at) = line.find("update-alternatives") else {
            continue;
        };
        if line.contains('$') {
            continue;
        }
        let words: Vec<&str> = line[at..].split_whitespace().collect();
        let Some(i) = words.iter().position(|w| *w == "--install") else {
            continue;
        };
        let (Some(link), Some(path), Some(prio)) = (
            words.get(i + 1),
            words.get(i + 3),
            words.get(i + 4).and_then(|p| p.parse::<i64>().ok()),
        ) else {
            continue;
        };
        out.push((merged_path(link), merged_path(path), prio));
        let mut j = i + 5;
        while words.get(j) == Some(&"--slave") {
            if let (Some(l), Some(p)) = (words.get(j + 1), words.get(j + 3)) {
                out.push((merged_path(l), merged_path(p), prio));
            }
            j += 4;
        }
    }
    out
}

/// `/bin/x` -> `/usr/bin/x` (and `/sbin`, `/lib*`); other paths unchanged.
pub fn merged_path(p: &str) -> String {
    let rel = p.trim_start_matches('/');
    let top = rel.split('/').next().unwrap_or("");
    if MERGED.contains(&top) {
        format!("/usr/{rel}")
    } else {
        format!("/{rel}")
    }
}

/// `a/./b/../c` -> `/a/c`, lexically.
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// The relative path from directory `from` to `to` (both absolute, normalized).
fn relative(from: &str, to: &str) -> String {
    let f: Vec<&str> = from.split('/').filter(|c| !c.is_empty()).collect();
    let t: Vec<&str> = to.split('/').filter(|c| !c.is_empty()).collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = std::iter::repeat_n("..", f.len() - common).collect();
    parts.extend(&t[common..]);
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// The links every package's alternatives settle on: for each link, the path of the highest
/// priority (ties: the first package in apt's order), and the package that ships it.
pub fn choose_alternatives(controls: &[Control]) -> BTreeMap<String, (String, String)> {
    let mut best: BTreeMap<String, (i64, String, String)> = BTreeMap::new();
    for c in controls {
        for (link, path, prio) in &c.alternatives {
            let better = best.get(link).is_none_or(|(p, _, _)| prio > p);
            if better {
                best.insert(link.clone(), (*prio, path.clone(), c.deb.name.clone()));
            }
        }
    }
    best.into_iter()
        .map(|(link, (_, path, pkg))| (link, (path, pkg)))
        .collect()
}

/// What the packages of one repository provide (names, virtual names, file paths of
/// packages.toml entries), to pick the alternative of a dependency the repository has.
pub type Available = BTreeSet<String>;

/// The RPM metadata and payload of closure package `c`, unpacked in `work`. `links`: the
/// alternatives links this package ships (link -> path); `essential`: the closure's Essential
/// packages, which every package requires (Debian packages rely on them without saying so).
pub fn package(
    spec: &ClosureSpec,
    c: &Control,
    available: &Available,
    links: &BTreeMap<String, String>,
    essential: &[String],
    work: &Path,
) -> Result<(RpmMeta, Payload)> {
    let unpacked = work.join("unpacked");
    deb::unpack(&c.deb, &unpacked)?;
    let mut payload = Payload::new();
    // Programs that were in /bin or /sbin keep those names as Provides (like Fedora's bash
    // provides /bin/sh): scripts and file dependencies name them so.
    let mut moved_programs: Vec<String> = Vec::new();
    for entry in walkdir::WalkDir::new(&unpacked).sort_by_file_name() {
        let entry = entry?;
        let rel = entry.path().strip_prefix(&unpacked)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let old = format!("/{}", rel.to_string_lossy());
        let top = old.trim_start_matches('/');
        if MERGED.contains(&top) {
            continue; // `filesystem` makes these links
        }
        let path = merged_path(&old);
        if dropped(spec, &path) {
            continue;
        }
        let meta = entry.path().symlink_metadata()?;
        let mode = (meta.permissions().mode() & 0o7777) as u16;
        let ft = meta.file_type();
        if !ft.is_dir() && (top.starts_with("bin/") || top.starts_with("sbin/")) {
            moved_programs.push(old.clone());
        }
        let spec_entry = if ft.is_symlink() {
            let target = fs_err::read_link(entry.path())?
                .to_string_lossy()
                .into_owned();
            FileSpec::Symlink {
                target: retarget(&old, &path, &target),
            }
        } else if ft.is_dir() {
            FileSpec::Dir { mode }
        } else if ft.is_file() {
            FileSpec::File {
                content: fs_err::read(entry.path())?,
                mode,
                config: c.conffiles.contains(&path),
            }
        } else {
            return Err(
                format!("{}: {old} is neither file, directory nor link", c.deb.name).into(),
            );
        };
        payload.insert(path, spec_entry);
    }
    for (link, path) in links {
        if dropped(spec, link) {
            continue;
        }
        payload.insert(
            link.clone(),
            FileSpec::Symlink {
                target: path.clone(),
            },
        );
    }
    fs_err::remove_dir_all(&unpacked)?;

    let mut requires = Vec::new();
    for field in ["Pre-Depends", "Depends"] {
        for group in parse_relations(c.field(field)) {
            let chosen = group
                .iter()
                .find(|d| available.contains(&d.name))
                .ok_or_else(|| {
                    let names: Vec<String> = group.iter().map(|d| d.to_string()).collect();
                    format!(
                        "{}: nothing in the repository satisfies `{}` (add its provider to \
                         [closure].roots, or provide it from a packages.toml package)",
                        c.deb.name,
                        names.join(" | ")
                    )
                })?;
            if chosen.name != c.deb.name && !requires.contains(chosen) {
                requires.push(chosen.clone());
            }
        }
    }
    for e in essential {
        if *e != c.deb.name && !requires.iter().any(|d| d.name == *e) {
            requires.push(Dep {
                name: e.clone(),
                constraint: None,
            });
        }
    }
    let mut provides: Vec<Dep> = parse_relations(c.field("Provides"))
        .into_iter()
        .flatten()
        .filter(|d| d.name != c.deb.name)
        .collect();
    provides.extend(moved_programs.into_iter().map(|name| Dep {
        name,
        constraint: None,
    }));
    let (epoch, version, release) = split_version(&c.deb.version);
    let arch = match c.deb.arch.as_str() {
        "all" => "noarch".to_string(),
        "amd64" => "x86_64".to_string(),
        "arm64" => "aarch64".to_string(),
        other => return Err(format!("{}: unknown Debian architecture {other}", c.deb.name).into()),
    };
    let description_field = c.field("Description");
    let summary = description_field
        .lines()
        .next()
        .unwrap_or(&c.deb.name)
        .to_string();
    let scripts = spec.scripts.get(&c.deb.name).cloned().unwrap_or_default();
    let meta = RpmMeta {
        name: c.deb.name.clone(),
        epoch,
        version,
        release: release.unwrap_or_else(|| "0".into()),
        arch,
        license: format!(
            "LicenseRef-Debian (see /usr/share/doc/{}/copyright)",
            c.deb.name
        ),
        summary,
        description: format!(
            "{}\n\nRepackaged from the Debian package {} {} ({}) by nosa's fixture distro \
             generator (the Debian closure of fixtures/distro/packages.toml).",
            description_field.replace("\n.", "\n"),
            c.deb.name,
            c.deb.version,
            c.deb.arch
        ),
        url: Some(format!(
            "https://packages.debian.org/bookworm/{}",
            c.deb.name
        )),
        requires,
        provides,
        conflicts: Vec::new(),
        obsoletes: Vec::new(),
        pre: scripts.pre,
        post: scripts.post,
        posttrans: scripts.posttrans,
    };
    Ok((meta, payload))
}

fn dropped(spec: &ClosureSpec, path: &str) -> bool {
    // The copyright files stay: they are the packages' licences.
    if path.starts_with("/usr/share/doc/") && path.ends_with("/copyright") {
        return false;
    }
    spec.drop
        .iter()
        .any(|d| path == d || path.starts_with(&format!("{d}/")))
}

/// A link that was at `old` pointing to `target` (as written), moved to `new`: a relative
/// target is rewritten so that it names the same file after both moved under `/usr`.
fn retarget(old: &str, new: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let old_dir = old.rsplit_once('/').map_or("/", |(d, _)| d);
    let new_dir = new.rsplit_once('/').map_or("/", |(d, _)| d);
    let meant = merged_path(&normalize(&format!("{old_dir}/{target}")));
    if old_dir == new_dir && merged_path(&normalize(&format!("{new_dir}/{target}"))) == meant {
        return target.to_string();
    }
    relative(new_dir, &meant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_keep_epoch_and_revision() {
        assert_eq!(
            split_version("1:2.38.1-5+deb12u3"),
            (Some(1), "2.38.1".into(), Some("5+deb12u3".into()))
        );
        assert_eq!(
            split_version("252.39-1~deb12u2"),
            (None, "252.39".into(), Some("1~deb12u2".into()))
        );
        assert_eq!(
            split_version("2.14.0+ds1"),
            (None, "2.14.0+ds1".into(), None)
        );
        assert_eq!(
            split_version("1.2-3-4"),
            (None, "1.2_3".into(), Some("4".into()))
        );
        assert_eq!(rpm_evr("1:2.0-1"), "1:2.0-1");
    }

    #[test]
    fn relations_alternatives_and_qualifiers() {
        let r = parse_relations("libc6 (>= 2.34), usrmerge | usr-is-merged, python3:any (>> 3.1~)");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0][0].to_string(), "libc6 >= 2.34");
        assert_eq!(
            r[1].iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["usrmerge", "usr-is-merged"]
        );
        assert_eq!(
            r[2][0].to_string(),
            "python3 > 3.1~-~",
            "any revision of 3.1~ is newer"
        );
        assert!(parse_relations("").is_empty());
    }

    #[test]
    fn alternatives_from_scripts() {
        let s = "update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n  --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz\nupdate-alternatives --install $x y $z 1\n";
        let a = parse_alternatives(s);
        assert_eq!(a[0], ("/usr/bin/awk".into(), "/usr/bin/mawk".into(), 5));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn merged_paths_and_links() {
        assert_eq!(merged_path("/bin/sh"), "/usr/bin/sh");
        assert_eq!(
            merged_path("/lib64/ld-linux-x86-64.so.2"),
            "/usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(merged_path("/etc/x"), "/etc/x");
        // A link beside its target keeps its text.
        assert_eq!(
            retarget("/lib/x/a.so.1", "/usr/lib/x/a.so.1", "a.so.1.2"),
            "a.so.1.2"
        );
        // A link from /bin into /usr is rewritten to name the same file from /usr/bin.
        assert_eq!(retarget("/bin/x", "/usr/bin/x", "../usr/bin/y"), "y");
        // From /usr into /lib: still the same file.
        assert_eq!(
            retarget("/usr/lib/a", "/usr/lib/a", "../../lib/b"),
            "../../lib/b"
        );
        assert_eq!(
            retarget("/sbin/init", "/usr/sbin/init", "/lib/systemd/systemd"),
            "/lib/systemd/systemd"
        );
    }

    #[test]
    fn apt_simulation_lines() {
        let t = "NOTE: x\nInst libc6 (2.36-9+deb12u9 Debian:12.9/stable [amd64])\nInst tzdata (2024a-0+deb12u1 Debian:12.9/stable [all])\nConf libc6 (2.36-9 Debian [amd64])\n";
        let p = parse_simulation(t).unwrap();
        assert_eq!(
            p[0],
            ("libc6".into(), "2.36-9+deb12u9".into(), "amd64".into())
        );
        assert_eq!(p[1].2, "all");
        assert_eq!(p.len(), 2);
    }
}
