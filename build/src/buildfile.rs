//! `nestos.build.toml`: the workdir's build file, loaded in two stages: raw serde types (unknown
//! keys refused), then checked (step names, paths, dependencies, cycles) with every error
//! pointing at its span.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Deserialize;
use toml::Spanned;

mod cache;

/// The name of the build file nosa looks for in the current directory and its parents.
pub const BUILD_FILE: &str = "nestos.build.toml";

/// The checked build file's cache, in the store's state directory.
const CACHE_FILE: &str = "buildfile.bin";

fn workdir_of(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

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
    /// The remote cache.
    #[serde(default)]
    pub cache: Option<RawCache>,
    /// The live ISO's and PXE files' customization.
    #[serde(default)]
    pub live: Option<RawLive>,
}

/// `[live]`: what the customized live artifacts embed (docs/live.md, "Customization").
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLive {
    /// The Ignition config the live system applies, relative to the workdir: embedded in a
    /// copy of the ISO and appended to a copy of the PXE initramfs.
    #[serde(default)]
    pub live_ignition: Option<Spanned<String>>,
}

/// `[cache]`: a cache shared with other machines (docs/remote-cache.md).
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCache {
    /// `grpc(s)://host:port` (REAPI v2) or `http(s)://host:port/prefix` (an HTTP cache in
    /// Bazel's layout).
    pub remote: Spanned<String>,
    /// Only read from it.
    #[serde(default)]
    pub read_only: bool,
    /// Environment variable holding the `Authorization` header's value.
    #[serde(default)]
    pub auth_env: Option<String>,
    /// REAPI instance name (gRPC only).
    #[serde(default)]
    pub instance: Option<Spanned<String>>,
    /// PEM file of CA certificates for a `grpcs://` server, relative to the workdir.
    #[serde(default)]
    pub tls_roots: Option<Spanned<String>>,
    /// Run the commands of steps on the server's Execution service (gRPC only).
    #[serde(default)]
    pub execute: Option<Spanned<bool>>,
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
    /// Run under the tracer: reused when what it read last time is unchanged.
    #[serde(default)]
    pub trace: bool,
    /// May reach the network (its sandbox otherwise has none); keeps it out of any shared
    /// cache and off the build farm.
    #[serde(default)]
    pub network: bool,
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
    /// Whether it runs traced (docs/tracing.md, "Traced steps").
    pub trace: bool,
    /// Whether it may reach the network.
    pub network: bool,
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
    /// `[cache]`, if present.
    pub cache: Option<RawCache>,
    /// `[live]`, if present.
    pub live: Option<RawLive>,
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
        let text = Self::read(path)?;
        Self::parse(path, text)
    }

    /// [`BuildFile::load`], reusing the checked form cached in `store`'s state directory while
    /// the file's full content and the nosa executable are unchanged (see [`cache`]): a no-op
    /// build of a large file then skips TOML parsing and checking.
    pub fn load_cached(
        path: &Path,
        store: &nosa_cache::Store,
    ) -> Result<BuildFile, Box<BuildFileError>> {
        let text = Self::read(path)?;
        let t = std::time::Instant::now();
        let cache_file = store.state_dir().join(CACHE_FILE);
        let key = cache::key(&text);
        if let Some(k) = &key
            && let Some(c) = cache::read(&cache_file, k)
        {
            nosa_engine::timing("load: build file (cached)", t);
            return Ok(BuildFile {
                workdir: workdir_of(path),
                path: path.to_path_buf(),
                source: Arc::new(text),
                nestos: c.nestos,
                default: c.default,
                steps: c.steps,
                step_spans: c.step_spans,
                cache: c.cache,
                live: c.live,
            });
        }
        let bf = Self::parse(path, text)?;
        nosa_engine::timing("load: build file (parsed)", t);
        if let Some(k) = &key {
            cache::write(&cache_file, &store.tmp_dir(), k, &bf);
        }
        Ok(bf)
    }

    fn read(path: &Path) -> Result<String, Box<BuildFileError>> {
        fs_err::read_to_string(path).map_err(|e| {
            Box::new(BuildFileError {
                message: e.to_string(),
                src: NamedSource::new(path.display().to_string(), Arc::new(String::new())),
                span: None,
                label: String::new(),
                help: None,
            })
        })
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
                    "a [[step]] has name, inputs, run, outputs, deps, trace and network; [nestos] has \
                     config, arches, targets, keep-last-n and variant; [graph] has default; \
                     [cache] has remote, read-only, auth-env, instance, tls-roots and execute; \
                     [live] has live-ignition"
                        .to_string(),
                )
            } else {
                None
            };
            err(format!("invalid {name}: {msg}"), e.span(), "here", help)
        })?;

        if let Some(c) = &raw.cache {
            match nosa_remote::check_url(c.remote.get_ref()) {
                Err(m) => {
                    return Err(err(
                        m,
                        Some(c.remote.span()),
                        "this remote",
                        Some(
                            "remote = \"grpc://host:port\" names an REAPI server (BuildGrid, \
                             buildbox-casd, bazel-remote); remote = \"http://host:port/prefix\" \
                             an HTTP cache in Bazel's layout (nginx with WebDAV PUT)"
                                .into(),
                        ),
                    ));
                }
                Ok(nosa_remote::Protocol::Http) => {
                    if let Some(e) = c.execute.as_ref().filter(|e| *e.get_ref()) {
                        return Err(err(
                            "remote execution needs an REAPI server".into(),
                            Some(e.span()),
                            "not with an HTTP cache",
                            Some(
                                "use remote = \"grpc://host:port\" (BuildGrid, buildbox-casd \
                                 with --buildbox-run), or drop execute"
                                    .into(),
                            ),
                        ));
                    }
                    if let Some(f) = c.instance.as_ref().or(c.tls_roots.as_ref()) {
                        return Err(err(
                            "instance and tls-roots are for grpc:// and grpcs:// remotes".into(),
                            Some(f.span()),
                            "not for an HTTP cache",
                            Some(
                                "over HTTP, the URL's prefix plays the instance name: \
                                 remote = \"http://host:port/<instance>\""
                                    .into(),
                            ),
                        ));
                    }
                }
                Ok(nosa_remote::Protocol::Grpc) => {
                    if let Some(t) = &c.tls_roots
                        && !c.remote.get_ref().starts_with("grpcs://")
                    {
                        return Err(err(
                            "tls-roots is for grpcs:// remotes".into(),
                            Some(t.span()),
                            "here",
                            Some("use remote = \"grpcs://host:port\", or drop tls-roots".into()),
                        ));
                    }
                }
            }
        }
        if let Some(p) = raw.live.as_ref().and_then(|l| l.live_ignition.as_ref()) {
            let missing = nosa_engine::check_relative(p.get_ref()).err().or_else(|| {
                (!workdir_of(path).join(p.get_ref()).is_file())
                    .then(|| format!("{} is not a file", p.get_ref()))
            });
            if let Some(m) = missing {
                return Err(err(
                    m,
                    Some(p.span()),
                    "this Ignition config",
                    Some(
                        "live-ignition names an Ignition config (JSON) relative to the \
                         directory of nestos.build.toml"
                            .into(),
                    ),
                ));
            }
        }
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
            if s.trace && s.network {
                return Err(err(
                    format!("step {n} sets both trace and network"),
                    Some(s.name.span()),
                    "traced and networked",
                    Some(
                        "a traced step runs without network (what it fetched could not be \
                         traced); drop `trace = true` or `network = true`"
                            .to_string(),
                    ),
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
                // An input clashes with an output `o` when it is `o` or lies below it: look up
                // the input and each of its ancestors (not every output: that is quadratic).
                let clash = std::iter::once(p)
                    .chain(p.rmatch_indices('/').map(|(at, _)| &p[..at]))
                    .find_map(|o| outputs_of.get_key_value(o));
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
                trace: s.trace,
                network: s.network,
            });
        }
        Ok(BuildFile {
            workdir: workdir_of(path),
            path: path.to_path_buf(),
            source,
            nestos: raw.nestos,
            default: raw.graph.map(|g| g.default).unwrap_or_default(),
            steps,
            step_spans,
            cache: raw.cache,
            live: raw.live,
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

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[nestos]
config = "src/config"
arches = ["x86_64", "aarch64"]
targets = ["qemu"]
keep-last-n = 3
variant = "minimal"

[graph]
default = ["b"]

[live]
live-ignition = "live.ign"

[[step]]
name = "a"
inputs = ["in/a.txt", "in/*.md"]
run = "cat in/a.txt > a.out"
outputs = ["a.out"]

[[step]]
name = "b"
run = "cat a.out > b.out"
outputs = ["b.out"]
deps = ["a"]
"#;

    fn spans(v: &[Spanned<String>]) -> Vec<(String, std::ops::Range<usize>)> {
        v.iter().map(|s| (s.get_ref().clone(), s.span())).collect()
    }

    fn same(a: &BuildFile, b: &BuildFile) {
        assert_eq!(a.steps, b.steps);
        assert_eq!(a.step_spans, b.step_spans);
        assert_eq!(spans(&a.default), spans(&b.default));
        assert_eq!(a.source, b.source);
        assert_eq!((&a.workdir, &a.path), (&b.workdir, &b.path));
        let (na, nb) = (a.nestos.as_ref().unwrap(), b.nestos.as_ref().unwrap());
        assert_eq!(
            (na.config.get_ref(), na.config.span()),
            (nb.config.get_ref(), nb.config.span())
        );
        assert_eq!(spans(&na.arches), spans(&nb.arches));
        assert_eq!(spans(&na.targets), spans(&nb.targets));
        assert_eq!((na.keep_last_n, &na.variant), (nb.keep_last_n, &nb.variant));
        let ign = |b: &BuildFile| {
            let l = b.live.as_ref().unwrap().live_ignition.as_ref().unwrap();
            (l.get_ref().clone(), l.span())
        };
        assert_eq!(ign(a), ign(b));
    }

    #[test]
    fn live_ignition_must_name_a_file_in_the_workdir() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(BUILD_FILE);
        let text = "[live]\nlive-ignition = \"missing.ign\"\n";
        let e = BuildFile::parse(&path, text.into()).unwrap_err();
        assert_eq!(e.message, "missing.ign is not a file");
        let span = e.span.unwrap();
        assert_eq!(
            &text[span.offset()..span.offset() + span.len()],
            "\"missing.ign\""
        );
        assert!(e.help.unwrap().contains("Ignition config"));
        let e =
            BuildFile::parse(&path, "[live]\nlive-ignition = \"../x.ign\"\n".into()).unwrap_err();
        assert!(e.message.contains(".."), "{}", e.message);
        let e = BuildFile::parse(&path, "[live]\ndest-device = \"/dev/vda\"\n".into()).unwrap_err();
        assert!(e.help.unwrap().contains("[live] has live-ignition"));
        fs_err::write(tmp.path().join("live.ign"), "{}").unwrap();
        let ok = BuildFile::parse(&path, "[live]\nlive-ignition = \"live.ign\"\n".into()).unwrap();
        assert_eq!(
            ok.live.unwrap().live_ignition.unwrap().get_ref(),
            "live.ign"
        );
    }

    #[test]
    fn cached_load_equals_parse_and_any_edit_misses() {
        let tmp = tempfile::tempdir().unwrap();
        let store = nosa_cache::Store::open(tmp.path().join("store")).unwrap();
        let path = tmp.path().join(BUILD_FILE);
        fs_err::write(&path, TEXT).unwrap();
        fs_err::write(tmp.path().join("live.ign"), "{}").unwrap();
        let parsed = BuildFile::load(&path).unwrap();
        let first = BuildFile::load_cached(&path, &store).unwrap();
        let cache_file = store.state_dir().join(CACHE_FILE);
        assert!(cache_file.exists(), "a checked file is cached");
        let second = BuildFile::load_cached(&path, &store).unwrap();
        same(&parsed, &first);
        same(&parsed, &second);

        // One changed byte in a command: the cache must not answer for the new text.
        fs_err::write(&path, TEXT.replace("> b.out", "> b.ouT")).unwrap();
        let edited = BuildFile::load_cached(&path, &store).unwrap();
        assert_eq!(edited.steps[1].run, "cat a.out > b.ouT");

        // An invalid edit is reported, never answered from the cache.
        fs_err::write(&path, TEXT.replace("deps = [\"a\"]", "deps = [\"zz\"]")).unwrap();
        let err = BuildFile::load_cached(&path, &store).unwrap_err();
        assert!(err.message.contains("unknown step"), "{}", err.message);

        // A damaged cache file is a miss.
        fs_err::write(&path, TEXT).unwrap();
        BuildFile::load_cached(&path, &store).unwrap();
        let mut bytes = fs_err::read(&cache_file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
        fs_err::write(&cache_file, &bytes).unwrap();
        same(&parsed, &BuildFile::load_cached(&path, &store).unwrap());
    }
}
