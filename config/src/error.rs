//! Errors and warnings of configuration loading, as miette diagnostics that point at the bad span.
//!
//! The library never prints: callers render these (the binary exits with code 2 on any
//! [`ConfigError`]).

use std::path::PathBuf;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

use crate::source::{Origin, Sources};

/// Source text shown with a diagnostic.
pub type Src = NamedSource<Arc<str>>;

/// Everything that can go wrong while loading a configuration or making a workdir.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    /// Reading a file or directory failed (the message names the path).
    #[error(transparent)]
    #[diagnostic(code(nosa::config::io))]
    Io(#[from] std::io::Error),

    /// The config directory has no treefile.
    #[error("no {manifest} in {}", dir.display())]
    #[diagnostic(
        code(nosa::config::no_manifest),
        help("a nestos-config tree has manifest.yaml (or manifest-<variant>.yaml) at its root")
    )]
    NoManifest {
        /// The config directory.
        dir: PathBuf,
        /// The file name looked for.
        manifest: String,
    },

    /// A file is not valid YAML (or JSON).
    #[error("{file}: {message}")]
    #[diagnostic(code(nosa::config::syntax))]
    Syntax {
        /// File name, relative to the config directory.
        file: String,
        /// What the parser said.
        message: String,
        #[source_code]
        src: Src,
        #[label("here")]
        span: SourceSpan,
    },

    /// A key has a value of the wrong type.
    #[error("`{key}` must be {expected}, found {found}")]
    #[diagnostic(code(nosa::config::wrong_type))]
    WrongType {
        /// The key (or `key[index]`).
        key: String,
        /// What was expected, e.g. "a list of strings".
        expected: String,
        /// What was found, e.g. "a mapping".
        found: String,
        #[source_code]
        src: Src,
        #[label("expected {expected}")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    /// An `include` names a file that does not exist.
    #[error("included file `{path}` does not exist")]
    #[diagnostic(
        code(nosa::config::include_not_found),
        help("include paths are relative to the directory of the including file")
    )]
    IncludeNotFound {
        /// The missing path, relative to the config directory.
        path: String,
        #[source_code]
        src: Src,
        #[label("included here")]
        span: SourceSpan,
    },

    /// Files include each other in a cycle.
    #[error("include loop: {chain}")]
    #[diagnostic(
        code(nosa::config::include_loop),
        help("a file may not (directly or indirectly) include itself")
    )]
    IncludeLoop {
        /// The chain of files, e.g. `a.yaml -> b.yaml -> a.yaml`.
        chain: String,
        #[source_code]
        src: Src,
        #[label("this include closes the loop")]
        span: SourceSpan,
    },

    /// The same treefile is included twice (rpm-ostree rejects this too).
    #[error("`{path}` is included more than once")]
    #[diagnostic(code(nosa::config::include_twice))]
    IncludeTwice {
        /// The file, relative to the config directory.
        path: String,
        #[source_code]
        src: Src,
        #[label("included again here")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    /// A `${name}` or condition refers to an undefined variable.
    #[error("unknown variable `{name}`")]
    #[diagnostic(code(nosa::config::unknown_variable))]
    UnknownVariable {
        /// The variable.
        name: String,
        #[source_code]
        src: Src,
        #[label("used here")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    /// `repos` or `lockfile-repos` names a repo no `.repo` file defines.
    #[error("`{key}` names unknown repo `{name}`")]
    #[diagnostic(code(nosa::config::unknown_repo))]
    UnknownRepo {
        /// `repos` or `lockfile-repos`.
        key: String,
        /// The repo id.
        name: String,
        #[source_code]
        src: Src,
        #[label("no .repo file defines this")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    /// A value is well-typed but not acceptable (bad condition, bad repo setting, ...).
    #[error("{message}")]
    #[diagnostic(code(nosa::config::invalid))]
    Invalid {
        /// What is wrong.
        message: String,
        #[source_code]
        src: Src,
        #[label("{label}")]
        span: SourceSpan,
        /// Label text.
        label: String,
        #[help]
        help: Option<String>,
    },

    /// `init` was pointed at a non-empty directory without `--force`.
    #[error("{} is not empty", dest.display())]
    #[diagnostic(
        code(nosa::config::init_not_empty),
        help("use an empty directory, or pass --force to initialise it anyway")
    )]
    InitNotEmpty {
        /// The destination directory.
        dest: PathBuf,
    },

    /// `init` could not fetch the config source.
    #[error("cannot use `{source_spec}` as config source: {message}")]
    #[diagnostic(code(nosa::config::init_source))]
    InitSource {
        /// The URL or path given.
        source_spec: String,
        /// What failed.
        message: String,
        #[help]
        help: Option<String>,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] at `origin`.
    pub(crate) fn invalid(
        sources: &Sources,
        origin: Origin,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let (src, span) = locate(sources, origin);
        ConfigError::Invalid {
            message: message.into(),
            src,
            span,
            label: label.into(),
            help,
        }
    }
}

/// The named source and (widened) span of `origin`.
pub(crate) fn locate(sources: &Sources, origin: Origin) -> (Src, SourceSpan) {
    let file = sources.get(origin.file);
    (file.named(), file.widen(origin.span))
}

/// A problem that does not stop loading (e.g. a treefile key nosa ignores).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
#[diagnostic(severity(Warning), code(nosa::config::warning))]
pub struct ConfigWarning {
    /// What is wrong.
    pub message: String,
    /// File name, relative to the config directory.
    pub file: String,
    /// 1-based line of the span.
    pub line: usize,
    /// 1-based column of the span.
    pub column: usize,
    #[source_code]
    src: Src,
    #[label("here")]
    span: SourceSpan,
    /// A hint for fixing it.
    #[help]
    pub help: Option<String>,
}

impl ConfigWarning {
    pub(crate) fn new(
        sources: &Sources,
        origin: Origin,
        message: String,
        help: Option<String>,
    ) -> Self {
        let file = sources.get(origin.file);
        let span = file.widen(origin.span);
        let before = &file.text[..span.offset().min(file.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigWarning {
            message,
            file: file.name.clone(),
            line,
            column,
            src: file.named(),
            span,
            help,
        }
    }

    /// The byte span of the warning in its file.
    pub fn span(&self) -> SourceSpan {
        self.span
    }

    /// `{"file", "line", "column", "message", "help"}` for JSON output.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "help": self.help,
        })
    }
}
