//! Raw stage: YAML (and JSON) parsed with serde-saphyr into a tree that keeps every node's span.

use std::fmt;

use miette::SourceSpan;
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::ConfigError;
use crate::source::{FileId, Origin, Sources};

/// A YAML value with the byte span it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub span: SourceSpan,
}

/// A map key with its span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub span: SourceSpan,
}

/// YAML values, as the serde data model sees them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// "a string", "a mapping", ... for type errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Uint(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl Node {
    /// The node as JSON (spans dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Uint(u) => J::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    pub fn origin(&self, file: FileId) -> Origin {
        Origin {
            file,
            span: self.span,
        }
    }
}

fn span_of<T>(s: &Spanned<T>) -> SourceSpan {
    let span = s.referenced.span();
    match (span.byte_offset(), span.byte_len()) {
        (Some(o), Some(l)) => SourceSpan::new((o as usize).into(), l as usize),
        _ => SourceSpan::new((span.offset() as usize).into(), span.len() as usize),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        let mut span = span_of(&s);
        if matches!(s.value, Value::Seq(_) | Value::Map(_)) {
            // Collections get an empty span at their start; diagnostics widen it to the line.
            span = SourceSpan::new(span.offset().into(), 0);
        }
        Ok(Node {
            value: s.value,
            span,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Uint(v),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<String>>()? {
            let span = span_of(&k);
            let v = map.next_value::<Node>()?;
            entries.push((
                Key {
                    name: k.value,
                    span,
                },
                v,
            ));
        }
        Ok(Value::Map(entries))
    }
}

/// Parses file `id` of `sources` (YAML or JSON) into a spanned tree.
pub(crate) fn parse(sources: &Sources, id: FileId) -> Result<Node, ConfigError> {
    parse_as::<Node>(sources, id).map(|n| match n {
        Some(n) => n,
        None => Node {
            value: Value::Null,
            span: SourceSpan::new(0.into(), 0),
        },
    })
}

/// Parses file `id` of `sources` into `T`, with errors pointing into the file.
/// An empty document yields `None`.
pub(crate) fn parse_as<T: for<'de> Deserialize<'de>>(
    sources: &Sources,
    id: FileId,
) -> Result<Option<T>, ConfigError> {
    let file = sources.get(id);
    if file
        .text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(None);
    }
    // YAML 1.2 booleans only (`yes`/`on` stay strings), as serde_yaml in rpm-ostree reads them.
    let options = serde_saphyr::options! { with_snippet: false, strict_booleans: true };
    serde_saphyr::from_str_with_options::<T>(&file.text, options)
        .map(Some)
        .map_err(|e| {
            let span = match e.location() {
                Some(loc) => {
                    let offset = file.offset_of(loc.line(), loc.column());
                    let len = loc.span().byte_len().unwrap_or(0) as usize;
                    SourceSpan::new(offset.into(), len)
                }
                None => SourceSpan::new(0.into(), 0),
            };
            ConfigError::Syntax {
                file: file.name.clone(),
                message: clean_message(&e.without_snippet().to_string()),
                src: file.named(),
                span: file.widen(span),
            }
        })
}

/// Strips serde-saphyr's `error: line N column M: ` prefix; the label shows the place.
fn clean_message(msg: &str) -> String {
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    let msg = match msg.strip_prefix("line ") {
        Some(rest) => match rest.find(": ") {
            Some(i) if rest[..i].contains("column") => &rest[i + 2..],
            _ => msg,
        },
        None => msg,
    };
    let msg = msg.lines().next().unwrap_or(msg).trim();
    // serde-saphyr suggests one of its own options; that is no advice for a config author.
    let msg = match msg.find(", set DuplicateKeyPolicy") {
        Some(i) => &msg[..i],
        None => msg,
    };
    let msg = if msg.starts_with("duplicate mapping key") {
        return format!("{msg}: a key may appear once per mapping; merge the two entries");
    } else {
        msg
    };
    // The label shows the position; drop a trailing " at line N, column M".
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains("column") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse_str(text: &str) -> Result<Node, ConfigError> {
        let mut s = Sources::new(Path::new("/cfg"));
        let id = s.add(Path::new("/cfg/t.yaml"), text.to_string());
        parse(&s, id)
    }

    #[test]
    fn spans_point_at_values() {
        let text = "a: [x, yy]\nb:\n  c: 1\n";
        let n = parse_str(text).unwrap();
        let Value::Map(m) = &n.value else { panic!() };
        assert_eq!(m[0].0.name, "a");
        let Value::Seq(items) = &m[0].1.value else {
            panic!()
        };
        let s = items[1].span;
        assert_eq!(&text[s.offset()..s.offset() + s.len()], "yy");
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": ["x", "yy"], "b": {"c": 1}})
        );
    }

    #[test]
    fn yaml_1_2_booleans() {
        let n = parse_str("a: yes\nb: true\n").unwrap();
        assert_eq!(n.to_json(), serde_json::json!({"a": "yes", "b": true}));
    }

    #[test]
    fn empty_is_null() {
        assert_eq!(parse_str("# only a comment\n").unwrap().value, Value::Null);
    }

    #[test]
    fn syntax_error_has_span() {
        let err = parse_str("a: [x\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    }
}
