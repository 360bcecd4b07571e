//! dnf `.repo` files (INI): one section per repo, with `$basearch`-style variables.
//!
//! nosa-specific: `$nosa_workdir` expands to the workdir root, so a config can point at a
//! repository built inside the workdir (`baseurl=file://$nosa_workdir/...`). dnf does not
//! know this variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miette::SourceSpan;

use crate::error::ConfigError;
use crate::source::{FileId, Origin, Sources};

/// One repository definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Repo {
    /// The section name.
    pub id: String,
    /// `name`, substituted.
    pub name: Option<String>,
    /// `baseurl`: every URL, substituted (dnf accepts several, on continuation lines).
    pub baseurl: Vec<String>,
    /// `metalink`, substituted.
    pub metalink: Option<String>,
    /// `mirrorlist`, substituted.
    pub mirrorlist: Option<String>,
    /// `enabled` (default true).
    pub enabled: bool,
    /// `gpgcheck` (default false).
    pub gpgcheck: bool,
    /// `repo_gpgcheck` (default false).
    pub repo_gpgcheck: bool,
    /// `gpgkey` URLs, substituted.
    pub gpgkey: Vec<String>,
    /// `exclude` / `excludepkgs` globs.
    pub exclude: Vec<String>,
    /// `includepkgs` globs.
    pub includepkgs: Vec<String>,
    /// `priority` (default 99; lower wins).
    pub priority: i64,
    /// `cost` (default 1000).
    pub cost: i64,
    /// Every key as written (unsubstituted), for keys nosa does not interpret.
    pub options: BTreeMap<String, String>,
    /// The `.repo` file.
    pub file: PathBuf,
}

/// Values for `$name` / `${name}` in `.repo` files.
#[derive(Debug, Clone, Default)]
pub struct RepoVars {
    /// Name to value (`basearch`, `releasever`, `nosa_workdir`, treefile `repovars`).
    pub vars: BTreeMap<String, String>,
}

impl RepoVars {
    /// Substitutes `$name` and `${name}`; unknown names are left as written (as dnf does).
    pub fn substitute(&self, s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.vars.get(name) {
                Some(v) if !name.is_empty() => {
                    out.push_str(v);
                    rest = &after[consumed..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// A section: repo id, where its header is, and its options in order.
type Section = (String, Origin, Vec<(String, RawOpt)>);

/// A key's raw value and where it was written.
struct RawOpt {
    value: String,
    origin: Origin,
}

fn ini_error(
    sources: &Sources,
    file: FileId,
    span: SourceSpan,
    msg: String,
    help: Option<String>,
) -> ConfigError {
    ConfigError::invalid(sources, Origin { file, span }, msg, "here", help)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses one `.repo` file already in `sources`.
pub(crate) fn parse(
    sources: &Sources,
    file: FileId,
    vars: &RepoVars,
) -> Result<Vec<(Repo, Origin)>, ConfigError> {
    let src = sources.get(file);
    let text = src.text.clone();
    let mut sections: Vec<Section> = Vec::new();
    let mut offset = 0usize;
    let mut last_key: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        let trimmed = content.trim();
        let lead = content.len() - content.trim_start().len();
        let span = SourceSpan::new((start + lead).into(), trimmed.len());
        if trimmed.is_empty() {
            last_key = None;
            continue;
        }
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if lead > 0
            && let (Some(i), Some((_, _, opts))) = (last_key, sections.last_mut())
        {
            let v = &mut opts[i].1.value;
            v.push('\n');
            v.push_str(trimmed);
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(id) = rest.strip_suffix(']') else {
                return Err(ini_error(
                    sources,
                    file,
                    span,
                    "section header is missing `]`".into(),
                    None,
                ));
            };
            let id = id.trim().to_string();
            if let Some((_, first, _)) = sections.iter().find(|(s, _, _)| *s == id) {
                let w = crate::error::ConfigWarning::new(sources, *first, String::new(), None);
                return Err(ini_error(
                    sources,
                    file,
                    span,
                    format!("repo `{id}` is defined twice"),
                    Some(format!("first defined at {}:{}", w.file, w.line)),
                ));
            }
            sections.push((id, Origin { file, span }, Vec::new()));
            last_key = None;
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(ini_error(
                sources,
                file,
                span,
                "expected `key=value`, `[repo-id]` or a comment".into(),
                None,
            ));
        };
        let Some((_, _, opts)) = sections.last_mut() else {
            return Err(ini_error(
                sources,
                file,
                span,
                "option outside of a repo section".into(),
                Some("start the file with a `[repo-id]` line".into()),
            ));
        };
        let key = key.trim().to_string();
        opts.retain(|(k, _)| *k != key);
        opts.push((
            key,
            RawOpt {
                value: value.trim().to_string(),
                origin: Origin { file, span },
            },
        ));
        last_key = Some(opts.len() - 1);
    }

    let mut repos = Vec::new();
    for (id, origin, opts) in sections {
        let get = |k: &str| opts.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let flag = |k: &str, default: bool| -> Result<bool, ConfigError> {
            match get(k) {
                None => Ok(default),
                Some(o) => parse_bool(&o.value).ok_or_else(|| {
                    ConfigError::invalid(
                        sources,
                        o.origin,
                        format!("`{k}` in repo `{id}` must be a boolean, not `{}`", o.value),
                        "not a boolean",
                        Some("use 1/0, yes/no, true/false or on/off".into()),
                    )
                }),
            }
        };
        let int = |k: &str, default: i64| -> Result<i64, ConfigError> {
            match get(k) {
                None => Ok(default),
                Some(o) => o.value.trim().parse().map_err(|_| {
                    ConfigError::invalid(
                        sources,
                        o.origin,
                        format!("`{k}` in repo `{id}` must be an integer, not `{}`", o.value),
                        "not an integer",
                        None,
                    )
                }),
            }
        };
        let list = |k: &str| -> Vec<String> {
            get(k)
                .map(|o| split_list(&vars.substitute(&o.value)))
                .unwrap_or_default()
        };
        let text = |k: &str| get(k).map(|o| vars.substitute(&o.value));
        let mut exclude = list("exclude");
        exclude.extend(list("excludepkgs"));
        let repo = Repo {
            name: text("name"),
            baseurl: list("baseurl"),
            metalink: text("metalink"),
            mirrorlist: text("mirrorlist"),
            enabled: flag("enabled", true)?,
            gpgcheck: flag("gpgcheck", false)?,
            repo_gpgcheck: flag("repo_gpgcheck", false)?,
            gpgkey: list("gpgkey"),
            exclude,
            includepkgs: list("includepkgs"),
            priority: int("priority", 99)?,
            cost: int("cost", 1000)?,
            options: opts
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            file: src.path.clone(),
            id: id.clone(),
        };
        if repo.baseurl.is_empty() && repo.metalink.is_none() && repo.mirrorlist.is_none() {
            return Err(ConfigError::invalid(
                sources,
                origin,
                format!("repo `{id}` has no baseurl, metalink or mirrorlist"),
                "this repo",
                None,
            ));
        }
        if let Some(url) = repo.baseurl.iter().find(|u| u.contains("$nosa_workdir")) {
            let o = get("baseurl").map_or(origin, |o| o.origin);
            return Err(ConfigError::invalid(
                sources,
                o,
                format!("repo `{id}` uses `$nosa_workdir` ({url}) but no workdir is known"),
                "needs a workdir",
                Some("load the config from a workdir (one with nestos.build.toml)".into()),
            ));
        }
        repos.push((repo, origin));
    }
    Ok(repos)
}

/// `*.repo` files directly in `dir`, sorted by name.
pub(crate) fn repo_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "repo") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<Repo>, ConfigError> {
        let mut s = Sources::new(Path::new("/cfg"));
        let id = s.add(Path::new("/cfg/a.repo"), text.to_string());
        let vars = RepoVars {
            vars: [("basearch", "x86_64"), ("releasever", "40")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        parse(&s, id, &vars).map(|r| r.into_iter().map(|(r, _)| r).collect())
    }

    #[test]
    fn parses_dnf_repo_files() {
        let repos = parse_str(
            "# c\n[fedora]\nname=Fedora $releasever - $basearch\nbaseurl=https://a/$releasever/${basearch}/\n        https://b/$basearch/\nenabled=1\ngpgcheck=True\ngpgkey=file:///k-$releasever\nexclude=foo bar,baz\npriority = 10\n\n[other]\nmetalink=https://m?arch=$basearch&x=$unknown\nenabled=0\n",
        )
        .unwrap();
        assert_eq!(repos.len(), 2);
        let f = &repos[0];
        assert_eq!(f.name.as_deref(), Some("Fedora 40 - x86_64"));
        assert_eq!(f.baseurl, ["https://a/40/x86_64/", "https://b/x86_64/"]);
        assert!(f.enabled && f.gpgcheck);
        assert_eq!(f.gpgkey, ["file:///k-40"]);
        assert_eq!(f.exclude, ["foo", "bar", "baz"]);
        assert_eq!((f.priority, f.cost), (10, 1000));
        assert_eq!(
            repos[1].metalink.as_deref(),
            Some("https://m?arch=x86_64&x=$unknown")
        );
        assert!(!repos[1].enabled);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_str("baseurl=x\n").is_err());
        assert!(parse_str("[a]\nbaseurl=x\nenabled=maybe\n").is_err());
        assert!(parse_str("[a]\nbaseurl=x\n[a]\nbaseurl=y\n").is_err());
        assert!(parse_str("[a\n").is_err());
        assert!(parse_str("[a]\nname=x\n").is_err());
    }
}
