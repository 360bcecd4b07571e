//! Reading a treefile and everything it includes (`include`, `arch-include`,
//! `conditional-include`), with type checks, loop detection and warnings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value as J;

use crate::arch::Arch;
use crate::error::{ConfigError, ConfigWarning, locate};
use crate::schema::{self, Support};
use crate::source::{FileId, Origin, Sources};
use crate::treefile::condition::{self, CondError};
use crate::treefile::merge::{Layer, merge};
use crate::vars::Variables;
use crate::yaml::{self, Key, Node, Value};

/// rpm-ostree's include depth limit.
const MAX_DEPTH: usize = 50;

/// Loads one treefile tree.
pub(crate) struct Loader<'a> {
    pub sources: &'a mut Sources,
    pub warnings: &'a mut Vec<ConfigWarning>,
    arch: Arch,
    /// Variables defined so far (`basearch`, `releasever`, `variables`); the first
    /// definition wins, and files are visited includer-first.
    pub vars: Variables,
    /// Files being processed, outermost first: canonical path and display name.
    stack: Vec<(PathBuf, String)>,
    /// Files already included, and from where.
    seen: HashMap<PathBuf, Option<Origin>>,
}

/// Something to include: a file, or an inline treefile (from `conditional-include`).
enum Include<'n> {
    File(String, Origin),
    Inline(&'n Node),
}

impl<'a> Loader<'a> {
    pub fn new(sources: &'a mut Sources, warnings: &'a mut Vec<ConfigWarning>, arch: Arch) -> Self {
        let mut vars = Variables::new();
        vars.insert("basearch".into(), J::from(arch.as_str()));
        Loader {
            sources,
            warnings,
            arch,
            vars,
            stack: Vec::new(),
            seen: HashMap::new(),
        }
    }

    /// Loads the root treefile at `path` and returns the fully merged layer.
    pub fn load_root(&mut self, path: &Path) -> Result<Layer, ConfigError> {
        self.load_file(path, None)
    }

    fn load_file(&mut self, path: &Path, from: Option<Origin>) -> Result<Layer, ConfigError> {
        let name = self.sources.display_name(path);
        let canonical = match fs_err::canonicalize(path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(match from {
                    Some(origin) => {
                        let (src, span) = locate(self.sources, origin);
                        ConfigError::IncludeNotFound {
                            path: name,
                            src,
                            span,
                        }
                    }
                    None => ConfigError::Io(e),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let name = self.sources.display_name(&canonical);
        if let Some(origin) = from {
            if let Some(pos) = self.stack.iter().position(|(p, _)| *p == canonical) {
                let mut chain: Vec<&str> =
                    self.stack[pos..].iter().map(|(_, n)| n.as_str()).collect();
                chain.push(&name);
                let (src, span) = locate(self.sources, origin);
                return Err(ConfigError::IncludeLoop {
                    chain: chain.join(" -> "),
                    src,
                    span,
                });
            }
            if let Some(first) = self.seen.get(&canonical) {
                let help = first.map(|o| {
                    let w = ConfigWarning::new(self.sources, o, String::new(), None);
                    format!(
                        "first included from {}:{}:{}; rpm-ostree rejects including a treefile twice",
                        w.file, w.line, w.column
                    )
                });
                let (src, span) = locate(self.sources, origin);
                return Err(ConfigError::IncludeTwice {
                    path: name,
                    src,
                    span,
                    help,
                });
            }
            if self.stack.len() >= MAX_DEPTH {
                return Err(ConfigError::invalid(
                    self.sources,
                    origin,
                    format!("includes nest deeper than {MAX_DEPTH} levels"),
                    "too deep",
                    None,
                ));
            }
        }
        self.seen.insert(canonical.clone(), from);
        let file = self.sources.read(&canonical)?;
        let node = yaml::parse(self.sources, file)?;
        let dir = canonical
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        self.stack.push((canonical, name));
        let layer = self.process_doc(file, &node, &dir);
        self.stack.pop();
        layer
    }

    fn process_doc(&mut self, file: FileId, node: &Node, dir: &Path) -> Result<Layer, ConfigError> {
        let entries: &[(Key, Node)] = match &node.value {
            Value::Map(e) => e,
            Value::Null => &[],
            other => {
                let (src, span) = locate(self.sources, node.origin(file));
                return Err(ConfigError::WrongType {
                    key: "treefile".into(),
                    expected: "a mapping".into(),
                    found: other.kind().into(),
                    src,
                    span,
                    help: Some("a treefile is a YAML mapping of keys such as `packages`".into()),
                });
            }
        };
        self.check_keys(file, entries)?;
        self.define_variables(file, entries)?;

        let mut includes: Vec<Include<'_>> = Vec::new();
        for (key, val) in entries {
            match key.name.as_str() {
                "include" => push_includes(&mut includes, val, file),
                "arch-include" => {
                    if let Value::Map(arches) = &val.value {
                        for (a, inc) in arches {
                            if a.name == self.arch.as_str() {
                                push_includes(&mut includes, inc, file);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let mut acc = Layer::default();
        for inc in includes {
            acc = merge(acc, self.include(inc, file, dir)?);
        }
        for (key, val) in entries {
            if key.name != "conditional-include" {
                continue;
            }
            let Value::Seq(items) = &val.value else {
                continue;
            };
            for item in items {
                if !self.conditions_hold(file, item)? {
                    continue;
                }
                let Value::Map(fields) = &item.value else {
                    continue;
                };
                let mut incs = Vec::new();
                for (k, v) in fields {
                    if k.name == "include" {
                        match &v.value {
                            Value::Map(_) => incs.push(Include::Inline(v)),
                            _ => push_includes(&mut incs, v, file),
                        }
                    }
                }
                for inc in incs {
                    acc = merge(acc, self.include(inc, file, dir)?);
                }
            }
        }
        let own = Layer::from_doc(file, entries, self.arch.as_str());
        Ok(merge(own, acc))
    }

    fn include(
        &mut self,
        inc: Include<'_>,
        file: FileId,
        dir: &Path,
    ) -> Result<Layer, ConfigError> {
        match inc {
            Include::File(p, origin) => self.load_file(&dir.join(p), Some(origin)),
            Include::Inline(node) => self.process_doc(file, node, dir),
        }
    }

    /// Type-checks every key and warns about keys nosa does not act on.
    fn check_keys(&mut self, file: FileId, entries: &[(Key, Node)]) -> Result<(), ConfigError> {
        for (key, val) in entries {
            let key_origin = Origin {
                file,
                span: key.span,
            };
            let Some((def, canonical)) = schema::lookup(&key.name) else {
                let help = match schema::suggest(&key.name) {
                    Some(s) => format!("did you mean `{s}`? (rpm-ostree rejects unknown keys)"),
                    None => "rpm-ostree rejects unknown keys; nosa ignores it".to_string(),
                };
                self.warnings.push(ConfigWarning::new(
                    self.sources,
                    key_origin,
                    format!("`{}` is not a treefile key", key.name),
                    Some(help),
                ));
                continue;
            };
            if let Err(m) = schema::check(def.kind, val) {
                let (src, span) = locate(self.sources, m.node.origin(file));
                return Err(ConfigError::WrongType {
                    key: format!("{}{}", key.name, m.path),
                    expected: m.expected.to_string(),
                    found: m.node.value.kind().to_string(),
                    src,
                    span,
                    help: Some(format!(
                        "`{canonical}` is {} (see rpm-ostree's treefile reference)",
                        def.kind.expected()
                    )),
                });
            }
            if canonical == "conditional-include" {
                self.check_conditional_items(file, val)?;
            }
            match def.support {
                Support::Yes => {}
                Support::NotYet => self.warnings.push(ConfigWarning::new(
                    self.sources,
                    key_origin,
                    format!("treefile key `{canonical}` is not implemented by nosa yet; it has no effect"),
                    Some("it is kept in `nosa config show` output".to_string()),
                )),
                Support::Obsolete(why) => self.warnings.push(ConfigWarning::new(
                    self.sources,
                    key_origin,
                    format!("treefile key `{canonical}` is obsolete: {why}"),
                    None,
                )),
            }
        }
        Ok(())
    }

    /// Each `conditional-include` item has exactly the keys `if` and `include`.
    fn check_conditional_items(&self, file: FileId, val: &Node) -> Result<(), ConfigError> {
        let Value::Seq(items) = &val.value else {
            return Ok(());
        };
        for (i, item) in items.iter().enumerate() {
            let Value::Map(fields) = &item.value else {
                continue;
            };
            for (k, _) in fields {
                if k.name != "if" && k.name != "include" {
                    return Err(ConfigError::invalid(
                        self.sources,
                        Origin { file, span: k.span },
                        format!("`conditional-include[{i}]` has unknown key `{}`", k.name),
                        "unknown key",
                        Some("each item has exactly `if:` (conditions) and `include:`".into()),
                    ));
                }
            }
            for needed in ["if", "include"] {
                if !fields.iter().any(|(k, _)| k.name == needed) {
                    return Err(ConfigError::invalid(
                        self.sources,
                        item.origin(file),
                        format!("`conditional-include[{i}]` has no `{needed}`"),
                        "this item",
                        Some("each item has exactly `if:` (conditions) and `include:`".into()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Adds `releasever` and `variables` of this document (first definition wins).
    fn define_variables(
        &mut self,
        file: FileId,
        entries: &[(Key, Node)],
    ) -> Result<(), ConfigError> {
        for (key, val) in entries {
            match key.name.as_str() {
                "releasever" => {
                    self.vars
                        .entry("releasever".into())
                        .or_insert(val.to_json());
                }
                "variables" => {
                    let Value::Map(vars) = &val.value else {
                        continue;
                    };
                    for (name, v) in vars {
                        if name.name == "basearch" || name.name == "releasever" {
                            return Err(ConfigError::invalid(
                                self.sources,
                                Origin {
                                    file,
                                    span: name.span,
                                },
                                format!("variable `{}` is reserved", name.name),
                                "reserved",
                                Some("`basearch` is the target architecture; set `releasever` with the top-level `releasever` key".into()),
                            ));
                        }
                        self.vars.entry(name.name.clone()).or_insert(v.to_json());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether every `if:` condition of a conditional-include item holds.
    fn conditions_hold(&mut self, file: FileId, item: &Node) -> Result<bool, ConfigError> {
        let Value::Map(fields) = &item.value else {
            return Ok(false);
        };
        let mut conds: Vec<&Node> = Vec::new();
        for (k, v) in fields {
            if k.name == "if" {
                match &v.value {
                    Value::Seq(items) => conds.extend(items),
                    _ => conds.push(v),
                }
            }
        }
        for cond in conds {
            let text = cond.value.as_str().unwrap_or_default();
            let origin = cond.origin(file);
            match condition::evaluate(text, &self.vars) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(CondError::UnknownVariable(name)) => {
                    let (src, span) = locate(self.sources, origin);
                    return Err(ConfigError::UnknownVariable {
                        name,
                        src,
                        span,
                        help: Some(known_vars_help(&self.vars)),
                    });
                }
                Err(CondError::Syntax(msg) | CondError::Type(msg)) => {
                    return Err(ConfigError::invalid(
                        self.sources,
                        origin,
                        format!("invalid condition: {msg}"),
                        "in this condition",
                        Some("conditions are `<var> <op> <value>` with op one of == != < <= > >=, and string values in quotes".into()),
                    ));
                }
            }
        }
        Ok(true)
    }
}

/// "known variables: a, b" for hints.
pub(crate) fn known_vars_help(vars: &Variables) -> String {
    let names: Vec<&str> = vars.keys().map(String::as_str).collect();
    format!("known variables: {}", names.join(", "))
}

fn push_includes<'n>(out: &mut Vec<Include<'n>>, val: &'n Node, file: FileId) {
    match &val.value {
        Value::Str(s) => out.push(Include::File(s.clone(), val.origin(file))),
        Value::Seq(items) => {
            for item in items {
                if let Value::Str(s) = &item.value {
                    out.push(Include::File(s.clone(), item.origin(file)));
                }
            }
        }
        _ => {}
    }
}
