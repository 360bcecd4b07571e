//! `nestos.build.toml`: the workdir's build file, loaded in two stages: raw serde types (unknown
//! keys refused), then checked (step names, paths, dependencies, cycles) with every error
//! pointing at its span.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Deserialize;
use toml::Spanned;

/// The name of the build file nosa looks for in the current directory and its parents.
pub const BUILD_FILE: &str = "nestos.build.toml";

/// Raw `nestos.build.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuildFile {
    /// The NestOS build, if this workdir builds an OS.
    #[serde(default)]
    pub nestos: Option<RawNestos>,
    /// Graph settings.
    #[serde(default)]
    pub graph: Option<RawGraph>,
    /// User-defined steps.
    #[serde(default)]
    pub step: Vec<RawStep>,
}

/// `[nestos]`: where the config is and what to build from it.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNestos {
    /// Path of the nestos-config tree, relative to the workdir.
    pub config: Spanned<String>,
    /// Architectures to build.
    #[serde(default)]
    pub arches: Vec<Spanned<String>>,
    /// Default targets.
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
    /// Builds kept by `prune`.
    #[serde(default)]
    pub keep_last_n: Option<u32>,
    /// Manifest variant (`manifest-<variant>.yaml`).
    #[serde(default)]
    pub variant: Option<String>,
}

/// `[graph]`.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawGraph {
    /// Targets built when none are named (default: every step and the `[nestos]` targets).
    #[serde(default)]
    pub default: Vec<Spanned<String>>,
}

/// `[[step]]`: a make-like user step.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Name; the node id is `step:<name>`.
    pub name: Spanned<String>,
    /// Files, directories or globs the step reads, relative to the workdir.
    #[serde(default)]
    pub inputs: Vec<Spanned<String>>,
    /// Shell command, run with `sh -c` in a scratch directory.
    pub run: Spanned<String>,
    /// Paths the step must produce, relative to its scratch directory and to the workdir.
    #[serde(default)]
    pub outputs: Vec<Spanned<String>>,
    /// Steps whose outputs it reads.
    #[serde(default)]
    pub deps: Vec<Spanned<String>>,
}

/// A checked step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Name.
    pub name: String,
    /// Input patterns.
    pub inputs: Vec<String>,
    /// Command.
    pub run: String,
    /// Output paths.
    pub outputs: Vec<String>,
    /// Names of the steps it depends on.
    pub deps: Vec<String>,
}

/// A loaded, checked build file.
#[derive(Debug, Clone)]
pub struct BuildFile {
    /// The workdir (the file's directory).
    pub workdir: PathBuf,
    /// The file's path.
    pub path: PathBuf,
    /// Its text, for diagnostics raised later.
    pub source: Arc<String>,
    /// `[nestos]`, if present.
    pub nestos: Option<RawNestos>,
    /// Default targets, if set.
    pub default: Vec<Spanned<String>>,
    /// Steps, in file order.
    pub steps: Vec<Step>,
    /// Span of each step's name, for later diagnostics.
    pub step_spans: HashMap<String, SourceSpan>,
}

/// An error in the build file, pointing at the offending span.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(nosa::build_file))]
pub struct BuildFileError {
    /// What is wrong.
    pub message: String,
    /// The file.
    #[source_code]
    pub src: NamedSource<Arc<String>>,
    /// Where.
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    /// Label text.
    pub label: String,
    /// How to fix it.
    #[help]
    pub help: Option<String>,
}

impl BuildFile {
    /// Finds `nestos.build.toml` in `start` or the nearest parent that has one.
    pub fn find(start: &Path) -> Option<PathBuf> {
        start
            .ancestors()
            .map(|d| d.join(BUILD_FILE))
            .find(|p| p.is_file())
    }

    /// Reads and checks the build file at `path`.
    pub fn load(path: &Path) -> Result<BuildFile, Box<BuildFileError>> {
        let text = fs_err::read_to_string(path).map_err(|e| {
            Box::new(BuildFileError {
                message: e.to_string(),
                src: NamedSource::new(path.display().to_string(), Arc::new(String::new())),
                span: None,
                label: String::new(),
                help: None,
            })
        })?;
        Self::parse(path, text)
    }

    /// Checks build file text as if read from `path`.
    pub fn parse(path: &Path, text: String) -> Result<BuildFile, Box<BuildFileError>> {
        let source = Arc::new(text);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| BUILD_FILE.into());
        let err = |message: String,
                   span: Option<std::ops::Range<usize>>,
                   label: &str,
                   help: Option<String>| {
            Box::new(BuildFileError {
                message,
                src: NamedSource::new(name.clone(), Arc::clone(&source)),
                span: span.map(|r| SourceSpan::from(r.start..r.end)),
                label: label.into(),
                help,
            })
        };
        let raw: RawBuildFile = toml::from_str(&source).map_err(|e| {
            let msg = e.message().trim().to_string();
            let help = if msg.contains("unknown field") {
                Some(
                    "a [[step]] has name, inputs, run, outputs and deps; [nestos] has config, \
                     arches, targets, keep-last-n and variant; [graph] has default"
                        .to_string(),
                )
            } else {
                None
            };
            err(format!("invalid {name}: {msg}"), e.span(), "here", help)
        })?;

        let mut steps = Vec::new();
        let mut step_spans: HashMap<String, SourceSpan> = HashMap::new();
        let mut outputs_of: HashMap<String, String> = HashMap::new();
        for s in &raw.step {
            let n = s.name.get_ref();
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(err(
                    format!("invalid step name {n:?}"),
                    Some(s.name.span()),
                    "bad name",
                    Some("step names use letters, digits, `-`, `_` and `.`".into()),
                ));
            }
            if step_spans.contains_key(n) {
                return Err(err(
                    format!("two steps are named {n:?}"),
                    Some(s.name.span()),
                    "second definition",
                    Some("give each [[step]] its own name".into()),
                ));
            }
            step_spans.insert(n.clone(), (s.name.span().start..s.name.span().end).into());
            for p in s.inputs.iter().chain(&s.outputs) {
                if let Err(m) = nosa_engine::check_relative(p.get_ref()) {
                    return Err(err(
                        m,
                        Some(p.span()),
                        "not inside the workdir",
                        Some("paths are relative to the directory of nestos.build.toml".into()),
                    ));
                }
            }
            for o in &s.outputs {
                let o_norm = o.get_ref().trim_end_matches('/').to_string();
                if let Some(other) = outputs_of.insert(o_norm.clone(), n.clone()) {
                    return Err(err(
                        format!("{o_norm} is an output of both step {other} and step {n}"),
                        Some(o.span()),
                        "produced twice",
                        Some("each output path belongs to one step".into()),
                    ));
                }
            }
            if s.run.get_ref().trim().is_empty() {
                return Err(err(
                    format!("step {n} has an empty run command"),
                    Some(s.run.span()),
                    "empty",
                    None,
                ));
            }
        }
        for s in &raw.step {
            for d in &s.deps {
                if !step_spans.contains_key(d.get_ref()) {
                    let mut known: Vec<&String> = step_spans.keys().collect();
                    known.sort();
                    return Err(err(
                        format!(
                            "step {} depends on unknown step {:?}",
                            s.name.get_ref(),
                            d.get_ref()
                        ),
                        Some(d.span()),
                        "no such step",
                        Some(format!(
                            "deps name other [[step]] entries: {}",
                            known
                                .iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ));
                }
            }
            for i in &s.inputs {
                let p = i.get_ref().trim_end_matches('/');
                let clash = outputs_of
                    .iter()
                    .find(|(o, _)| p == o.as_str() || p.starts_with(&format!("{o}/")));
                if let Some((o, producer)) = clash {
                    return Err(err(
                        format!("input {p} is the output {o} of step {producer}"),
                        Some(i.span()),
                        "produced by a step",
                        Some(format!(
                            "drop it from inputs and add deps = [\"{producer}\"]: the step then \
                             gets {producer}'s outputs at the same paths"
                        )),
                    ));
                }
            }
            steps.push(Step {
                name: s.name.get_ref().clone(),
                inputs: s.inputs.iter().map(|v| v.get_ref().clone()).collect(),
                run: s.run.get_ref().clone(),
                outputs: s
                    .outputs
                    .iter()
                    .map(|v| v.get_ref().trim_end_matches('/').to_string())
                    .collect(),
                deps: s.deps.iter().map(|v| v.get_ref().clone()).collect(),
            });
        }
        let workdir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(BuildFile {
            workdir,
            path: path.to_path_buf(),
            source,
            nestos: raw.nestos,
            default: raw.graph.map(|g| g.default).unwrap_or_default(),
            steps,
            step_spans,
        })
    }

    /// An error pointing at step `name`'s name in the file (for errors found later, e.g. a
    /// dependency cycle).
    pub fn error_at_step(
        &self,
        name: &str,
        message: String,
        help: Option<String>,
    ) -> BuildFileError {
        BuildFileError {
            message,
            src: NamedSource::new(
                self.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                Arc::clone(&self.source),
            ),
            span: self.step_spans.get(name).copied(),
            label: "here".into(),
            help,
        }
    }

    /// An error pointing at `span` in the file.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        message: String,
        label: &str,
        help: Option<String>,
    ) -> BuildFileError {
        let mut e = self.error_at_step("", message, help);
        e.span = Some((span.start..span.end).into());
        e.label = label.into();
        e
    }
}
