//! Resolved stage of a treefile: variables substituted, typed fields, and the JSON that
//! `config show` prints (like `rpm-ostree compose tree --print-only`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as J;

use crate::error::{ConfigError, locate};
use crate::source::{Origin, Sources};
use crate::treefile::load::known_vars_help;
use crate::treefile::merge::{Entry, Layer};
use crate::vars::{self, BuildDate, Variables};

/// An inline `postprocess` script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostprocessScript {
    /// Position in execution order (0 runs first).
    pub index: usize,
    /// The script text (usually starting with a `#!` line).
    pub script: String,
    /// The treefile it was written in.
    pub file: PathBuf,
}

/// One postprocess step, in execution order: every inline `postprocess` script, then
/// `postprocess-script`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostprocessStep<'a> {
    /// An inline script.
    Inline(&'a PostprocessScript),
    /// The `postprocess-script` file.
    Script(&'a Path),
}

/// One `remove-from-packages` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveFromPackage {
    /// Package name.
    pub package: String,
    /// Regular expressions of paths to delete from it.
    pub patterns: Vec<String>,
}

/// `check-passwd` / `check-groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct PasswdCheck {
    /// `none`, `previous`, `file` or `data`.
    pub kind: String,
    /// For `file`: the file, resolved against the treefile that names it.
    pub file: Option<PathBuf>,
    /// The object as written.
    pub raw: J,
}

/// A treefile with includes merged, the target arch selected and variables substituted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Treefile {
    /// `ref`, substituted.
    pub ref_name: Option<String>,
    /// `releasever` as a string.
    pub releasever: Option<String>,
    /// Every variable: `basearch`, `releasever` and `variables`.
    pub variables: Variables,
    /// `automatic-version-prefix`, substituted; `<date:...>` tags are kept
    /// (see [`Treefile::version_prefix`]).
    pub automatic_version_prefix: Option<String>,
    /// `automatic-version-suffix`.
    pub automatic_version_suffix: Option<String>,
    /// `mutate-os-release`, substituted.
    pub mutate_os_release: Option<String>,
    /// `add-commit-metadata`, string values substituted.
    pub add_commit_metadata: serde_json::Map<String, J>,
    /// `packages` plus `packages-<arch>`, split on whitespace.
    pub packages: Vec<String>,
    /// `exclude-packages`.
    pub exclude_packages: Vec<String>,
    /// `remove-from-packages`.
    pub remove_from_packages: Vec<RemoveFromPackage>,
    /// `remove-files`.
    pub remove_files: Vec<String>,
    /// `postprocess`, in execution order.
    pub postprocess: Vec<PostprocessScript>,
    /// `postprocess-script`, resolved against its treefile (runs after `postprocess`).
    pub postprocess_script: Option<PathBuf>,
    /// `ostree-layers` (e.g. `overlay/15nestos`).
    pub ostree_layers: Vec<String>,
    /// `repos`.
    pub repos: Vec<String>,
    /// `lockfile-repos`.
    pub lockfile_repos: Vec<String>,
    /// `recommends` (rpm-ostree's default: true).
    pub recommends: Option<bool>,
    /// `initramfs-args`.
    pub initramfs_args: Vec<String>,
    /// `default-target`.
    pub default_target: Option<String>,
    /// `etc-group-members`.
    pub etc_group_members: Vec<String>,
    /// `check-passwd`.
    pub check_passwd: Option<PasswdCheck>,
    /// `check-groups`.
    pub check_groups: Option<PasswdCheck>,
    /// `ignore-removed-users`.
    pub ignore_removed_users: Vec<String>,
    /// `ignore-removed-groups`.
    pub ignore_removed_groups: Vec<String>,
    /// `machineid-compat` (rpm-ostree's default: true).
    pub machineid_compat: Option<bool>,
    /// `boot-location`: `new` or `modules`.
    pub boot_location: Option<String>,
    /// `tmp-is-dir`.
    pub tmp_is_dir: Option<bool>,
    /// `rpmdb`.
    pub rpmdb: Option<String>,
    /// `container-cmd`.
    pub container_cmd: Vec<String>,
    /// `repovars`: extra `$name` variables for `.repo` files.
    pub repovars: BTreeMap<String, String>,
    /// The flattened treefile as JSON (what `config show` prints, minus `image`).
    pub json: J,
}

/// Keys whose strings get `${var}` substitution (rpm-ostree's list).
const SUBSTITUTED: &[&str] = &[
    "ref",
    "automatic-version-prefix",
    "mutate-os-release",
    "platform-module",
    "add-commit-metadata",
    "metadata",
];

fn strings(e: Option<&Entry>) -> Vec<String> {
    e.and_then(|e| e.value.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn string(e: Option<&Entry>) -> Option<String> {
    e.and_then(|e| e.value.as_str()).map(str::to_string)
}

fn boolean(e: Option<&Entry>) -> Option<bool> {
    e.and_then(|e| e.value.as_bool())
}

fn dir_of(sources: &Sources, origin: Origin) -> PathBuf {
    sources
        .get(origin.file)
        .path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

fn substitute_value(v: &mut J, vars: &Variables) -> Result<(), String> {
    match v {
        J::String(s) => *s = vars::substitute(s, vars)?,
        J::Object(m) => {
            for val in m.values_mut() {
                if let J::String(s) = val {
                    *s = vars::substitute(s, vars)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

impl Treefile {
    /// Builds the resolved treefile from the merged layer. Reads the files named by
    /// `check-passwd`/`check-groups` (recording them in `sources`) and checks that
    /// `postprocess-script` exists.
    pub(crate) fn resolve(
        mut layer: Layer,
        vars: Variables,
        sources: &mut Sources,
    ) -> Result<Treefile, ConfigError> {
        for key in SUBSTITUTED {
            if let Some(e) = layer.entries.get_mut(*key)
                && let Err(name) = substitute_value(&mut e.value, &vars)
            {
                // Point at the `${name}` itself when it can be found.
                let file = sources.get(e.origin.file);
                let origin = match file.find_from(e.origin.span.offset(), &format!("${{{name}}}")) {
                    Some(span) => Origin { span, ..e.origin },
                    None => e.origin,
                };
                let (src, span) = locate(sources, origin);
                return Err(ConfigError::UnknownVariable {
                    name,
                    src,
                    span,
                    help: Some(known_vars_help(&vars)),
                });
            }
        }
        let e = &layer.entries;
        if !e.contains_key("ref") {
            let root = Origin {
                file: 0,
                span: miette::SourceSpan::new(0.into(), 0),
            };
            return Err(ConfigError::invalid(
                sources,
                root,
                "the treefile has no `ref`",
                "in this treefile or its includes",
                Some("add e.g. `ref: nestos/${basearch}/devel`".into()),
            ));
        }

        let postprocess = match e.get("postprocess") {
            Some(entry) => strings(Some(entry))
                .into_iter()
                .zip(&entry.items)
                .enumerate()
                .map(|(index, (script, origin))| PostprocessScript {
                    index,
                    script,
                    file: sources.get(origin.file).path.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        let postprocess_script = match e.get("postprocess-script") {
            Some(entry) => {
                let rel = entry.value.as_str().unwrap_or_default();
                let path = dir_of(sources, entry.origin).join(rel);
                if !path.is_file() || sources.read(&path).is_err() {
                    return Err(ConfigError::invalid(
                        sources,
                        entry.origin,
                        format!("postprocess script `{rel}` does not exist or cannot be read"),
                        "named here",
                        Some("the path is relative to the directory of this treefile".into()),
                    ));
                }
                Some(path)
            }
            None => None,
        };
        let check_passwd = passwd_check(e.get("check-passwd"), "check-passwd", sources)?;
        let check_groups = passwd_check(e.get("check-groups"), "check-groups", sources)?;
        if let Some(entry) = e.get("boot-location") {
            let v = entry.value.as_str().unwrap_or_default();
            if v != "new" && v != "modules" {
                return Err(ConfigError::invalid(
                    sources,
                    entry.origin,
                    format!("`boot-location` must be `new` or `modules`, not `{v}`"),
                    "unknown value",
                    None,
                ));
            }
        }
        let remove_from_packages = e
            .get("remove-from-packages")
            .and_then(|e| e.value.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|item| {
                        let parts: Vec<String> = item
                            .as_array()?
                            .iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect();
                        let (package, patterns) = parts.split_first()?;
                        Some(RemoveFromPackage {
                            package: package.clone(),
                            patterns: patterns.to_vec(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let repovars = e
            .get("repovars")
            .and_then(|e| e.value.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), vars::var_text(v)))
                    .collect()
            })
            .unwrap_or_default();

        let json = J::Object(
            layer
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        );
        let e = &layer.entries;
        Ok(Treefile {
            ref_name: string(e.get("ref")),
            releasever: vars.get("releasever").map(vars::var_text),
            automatic_version_prefix: string(e.get("automatic-version-prefix")),
            automatic_version_suffix: string(e.get("automatic-version-suffix")),
            mutate_os_release: string(e.get("mutate-os-release")),
            add_commit_metadata: e
                .get("add-commit-metadata")
                .and_then(|e| e.value.as_object().cloned())
                .unwrap_or_default(),
            packages: strings(e.get("packages")),
            exclude_packages: strings(e.get("exclude-packages")),
            remove_from_packages,
            remove_files: strings(e.get("remove-files")),
            postprocess,
            postprocess_script,
            ostree_layers: strings(e.get("ostree-layers")),
            repos: strings(e.get("repos")),
            lockfile_repos: strings(e.get("lockfile-repos")),
            recommends: boolean(e.get("recommends")),
            initramfs_args: strings(e.get("initramfs-args")),
            default_target: string(e.get("default-target")),
            etc_group_members: strings(e.get("etc-group-members")),
            check_passwd,
            check_groups,
            ignore_removed_users: strings(e.get("ignore-removed-users")),
            ignore_removed_groups: strings(e.get("ignore-removed-groups")),
            machineid_compat: boolean(e.get("machineid-compat")),
            boot_location: string(e.get("boot-location")),
            tmp_is_dir: boolean(e.get("tmp-is-dir")),
            rpmdb: string(e.get("rpmdb")),
            container_cmd: strings(e.get("container-cmd")),
            repovars,
            variables: vars,
            json,
        })
    }

    /// The postprocess steps in execution order (graph nodes `postprocess:<arch>:<index>`).
    pub fn postprocess_steps(&self) -> Vec<PostprocessStep<'_>> {
        let mut steps: Vec<PostprocessStep<'_>> = self
            .postprocess
            .iter()
            .map(PostprocessStep::Inline)
            .collect();
        if let Some(p) = &self.postprocess_script {
            steps.push(PostprocessStep::Script(p));
        }
        steps
    }

    /// `automatic-version-prefix` with `<date:...>` tags expanded for `date`.
    pub fn version_prefix(&self, date: &BuildDate) -> Option<Result<String, String>> {
        self.automatic_version_prefix
            .as_deref()
            .map(|p| vars::expand_date_tags(p, date))
    }
}

fn passwd_check(
    entry: Option<&Entry>,
    key: &str,
    sources: &mut Sources,
) -> Result<Option<PasswdCheck>, ConfigError> {
    let Some(entry) = entry else {
        return Ok(None);
    };
    let kind = entry.value.get("type").and_then(J::as_str).unwrap_or("");
    if !["none", "previous", "file", "data"].contains(&kind) {
        return Err(ConfigError::invalid(
            sources,
            entry.origin,
            format!("`{key}` needs `type: none|previous|file|data`, found `{kind}`"),
            "here",
            None,
        ));
    }
    let mut file = None;
    if kind == "file" {
        let Some(name) = entry.value.get("filename").and_then(J::as_str) else {
            return Err(ConfigError::invalid(
                sources,
                entry.origin,
                format!("`{key}` of type `file` needs a `filename`"),
                "here",
                None,
            ));
        };
        let path = dir_of(sources, entry.origin).join(name);
        let src_file = sources.get(entry.origin.file);
        let origin = match src_file.find_from(entry.origin.span.offset(), name) {
            Some(span) => Origin {
                span,
                ..entry.origin
            },
            None => entry.origin,
        };
        if let Err(e) = sources.read(&path) {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "it does not exist".to_string(),
                other => other.to_string(),
            };
            return Err(ConfigError::invalid(
                sources,
                origin,
                format!("cannot read `{key}` file `{name}`: {why}"),
                "named here",
                Some("the path is relative to the directory of this treefile".into()),
            ));
        }
        file = Some(path);
    }
    Ok(Some(PasswdCheck {
        kind: kind.to_string(),
        file,
        raw: entry.value.clone(),
    }))
}
