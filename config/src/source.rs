//! Source files the loader has read, and spans into them for diagnostics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

/// Index of a file in [`Sources`].
pub(crate) type FileId = usize;

/// Where a value came from: a file and a byte span in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub file: FileId,
    pub span: SourceSpan,
}

/// One file read by the loader.
#[derive(Debug)]
pub(crate) struct SourceFile {
    /// Absolute path, as opened.
    pub path: PathBuf,
    /// Name shown in diagnostics: relative to the config directory when inside it.
    pub name: String,
    pub text: Arc<str>,
}

impl SourceFile {
    /// A `NamedSource` for `#[source_code]`.
    pub fn named(&self) -> NamedSource<Arc<str>> {
        NamedSource::new(self.name.clone(), self.text.clone())
    }

    /// Byte offset of a 1-based line and 1-based character column.
    pub fn offset_of(&self, line: u64, column: u64) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i as u64 + 1 == line {
                let col = column.saturating_sub(1) as usize;
                let within: usize = l.chars().take(col).map(char::len_utf8).sum();
                return offset + within;
            }
            offset += l.len();
        }
        self.text.len()
    }

    /// The first occurrence of `needle` at or after `from`, as a span.
    pub fn find_from(&self, from: usize, needle: &str) -> Option<SourceSpan> {
        let start = from.min(self.text.len());
        self.text[start..]
            .find(needle)
            .map(|i| SourceSpan::new((start + i).into(), needle.len()))
    }

    /// Widens an empty span (as YAML collections get) to the rest of its line, so a
    /// label has something to underline.
    pub fn widen(&self, span: SourceSpan) -> SourceSpan {
        if !span.is_empty() {
            return span;
        }
        let start = span.offset().min(self.text.len());
        let rest = &self.text[start..];
        let len = rest.find('\n').unwrap_or(rest.len());
        let len = rest[..len].trim_end().len();
        SourceSpan::new(start.into(), len)
    }
}

/// Every file read while loading a configuration, in the order read.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    root: PathBuf,
    files: Vec<SourceFile>,
}

impl Sources {
    pub fn new(root: &Path) -> Self {
        Sources {
            root: root.to_path_buf(),
            files: Vec::new(),
        }
    }

    /// The name of `path` in diagnostics: relative to the config root if inside it.
    pub fn display_name(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Reads `path` and records it (invalid UTF-8 is replaced, for scripts that are not text).
    pub fn read(&mut self, path: &Path) -> std::io::Result<FileId> {
        let bytes = fs_err::read(path)?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok(self.add(path, text))
    }

    /// Records a file whose text was obtained elsewhere.
    pub fn add(&mut self, path: &Path, text: String) -> FileId {
        let name = self.display_name(path);
        self.files.push(SourceFile {
            path: path.to_path_buf(),
            name,
            text: text.into(),
        });
        self.files.len() - 1
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id]
    }

    /// How many files have been read so far (a mark for [`Sources::paths_from`]).
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Paths of the files read since mark `start`, in order, without duplicates.
    pub fn paths_from(&self, start: usize) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for f in &self.files[start.min(self.files.len())..] {
            if !out.contains(&f.path) {
                out.push(f.path.clone());
            }
        }
        out
    }

    /// Paths of every file read, in order, without duplicates.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.paths_from(0)
    }
}
