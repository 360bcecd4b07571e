//! `repodata/repomd.xml`: the index of a repository's metadata files (type, location, checksum
//! and size, compressed and open), parsed with quick-xml events; plus the small XML helpers
//! shared with the primary parser.

use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::checksum::Checksum;
use crate::error::RepoError;

/// One `<data>` entry of repomd.xml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoMdData {
    /// `type` (`primary`, `filelists`, `other`, `group`, ...).
    pub kind: String,
    /// Checksum of the file as stored (compressed).
    pub checksum: Checksum,
    /// Checksum after decompression, if listed.
    pub open_checksum: Option<Checksum>,
    /// `location href`, relative to the repository root (or to `base`).
    pub href: String,
    /// `location xml:base`, if the file lives under another URL.
    pub base: Option<String>,
    /// Size as stored, if listed.
    pub size: Option<u64>,
    /// Size after decompression, if listed.
    pub open_size: Option<u64>,
    /// `<timestamp>`: when the file was generated (seconds since the epoch), if listed.
    pub timestamp: Option<u64>,
}

/// A parsed repomd.xml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoMd {
    /// `<revision>`, if any.
    pub revision: Option<String>,
    /// The `<data>` entries, in document order.
    pub data: Vec<RepoMdData>,
}

impl RepoMd {
    /// The entry of type `kind`.
    pub fn get(&self, kind: &str) -> Option<&RepoMdData> {
        self.data.iter().find(|d| d.kind == kind)
    }

    /// The newest `<timestamp>` of any entry (what dnf reports as the metadata's age).
    pub fn newest_timestamp(&self) -> Option<u64> {
        self.data.iter().filter_map(|d| d.timestamp).max()
    }
}

/// Partial `<data>` while parsing.
#[derive(Default)]
struct DataBuilder {
    kind: String,
    checksum: Option<(String, String)>,
    open_checksum: Option<(String, String)>,
    href: Option<String>,
    base: Option<String>,
    size: Option<u64>,
    open_size: Option<u64>,
    timestamp: Option<u64>,
}

/// Parses repomd.xml; `file` names it in errors.
pub fn parse_repomd(xml: &[u8], file: &str) -> Result<RepoMd, RepoError> {
    let bad = |reason: String| RepoError::Xml {
        file: file.to_string(),
        reason,
    };
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut md = RepoMd::default();
    let mut cur: Option<DataBuilder> = None;
    // The element whose text is being collected, and the text.
    let mut field: Option<(Vec<u8>, Option<String>)> = None;
    let mut text = String::new();
    let mut saw_root = false;
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(format!("{e} at byte {}", reader.buffer_position())))?;
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name().as_ref().to_vec();
                match (name.as_slice(), cur.as_mut()) {
                    (b"repomd", _) => saw_root = true,
                    (b"data", None) => {
                        cur = Some(DataBuilder {
                            kind: attr(&e, b"type").map_err(&bad)?.unwrap_or_default(),
                            ..Default::default()
                        })
                    }
                    (b"location", Some(d)) => {
                        d.href = attr(&e, b"href").map_err(&bad)?;
                        d.base = attr(&e, b"base").map_err(&bad)?;
                    }
                    (
                        b"checksum" | b"open-checksum" | b"size" | b"open-size" | b"timestamp",
                        Some(_),
                    )
                    | (b"revision", None) => {
                        field = Some((name, attr(&e, b"type").map_err(&bad)?));
                        text.clear();
                    }
                    _ => {}
                }
            }
            Event::Text(t) if field.is_some() => {
                text.push_str(&t.decode().map_err(|e| bad(e.to_string()))?)
            }
            Event::GeneralRef(r) if field.is_some() => text.push_str(&resolve_ref(&r, file)?),
            Event::End(e) => {
                let name = e.local_name().as_ref().to_vec();
                if let Some((fname, ty)) = field.take_if(|(f, _)| *f == name) {
                    let value = text.trim().to_string();
                    let number = || {
                        value.parse::<u64>().map_err(|_| {
                            bad(format!("<{}> is not a number: {value:?}", str_of(&fname)))
                        })
                    };
                    match (fname.as_slice(), cur.as_mut()) {
                        (b"revision", None) => md.revision = Some(value.clone()),
                        (b"checksum", Some(d)) => {
                            d.checksum = Some((ty.unwrap_or_default(), value))
                        }
                        (b"open-checksum", Some(d)) => {
                            d.open_checksum = Some((ty.unwrap_or_default(), value))
                        }
                        (b"size", Some(d)) => d.size = Some(number()?),
                        (b"open-size", Some(d)) => d.open_size = Some(number()?),
                        (b"timestamp", Some(d)) => d.timestamp = Some(number()?),
                        _ => {}
                    }
                } else if name == b"data"
                    && let Some(d) = cur.take()
                {
                    md.data.push(finish_data(d, &bad)?);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err(bad("no <repomd> element".into()));
    }
    Ok(md)
}

fn finish_data(
    d: DataBuilder,
    bad: &impl Fn(String) -> RepoError,
) -> Result<RepoMdData, RepoError> {
    let kind = d.kind;
    let (ty, hex) = d
        .checksum
        .ok_or_else(|| bad(format!("<data type=\"{kind}\"> has no <checksum>")))?;
    let href = d
        .href
        .ok_or_else(|| bad(format!("<data type=\"{kind}\"> has no <location href>")))?;
    Ok(RepoMdData {
        checksum: Checksum::parse(&ty, &hex)?,
        open_checksum: d
            .open_checksum
            .map(|(t, h)| Checksum::parse(&t, &h))
            .transpose()?,
        href,
        base: d.base,
        size: d.size,
        open_size: d.open_size,
        timestamp: d.timestamp,
        kind,
    })
}

fn str_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The unescaped value of attribute `name` (matched by local name, so `xml:base` is `base`).
pub(crate) fn attr(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, String> {
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        if a.key.local_name().as_ref() == name {
            return Ok(Some(
                a.unescape_value().map_err(|e| e.to_string())?.into_owned(),
            ));
        }
    }
    Ok(None)
}

/// The text of an entity or character reference (`&amp;`, `&#38;`).
pub(crate) fn resolve_ref(r: &BytesRef<'_>, file: &str) -> Result<String, RepoError> {
    let bad = |reason: String| RepoError::Xml {
        file: file.to_string(),
        reason,
    };
    if let Some(c) = r.resolve_char_ref().map_err(|e| bad(e.to_string()))? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| bad(e.to_string()))?;
    Ok(match name.as_ref() {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        other => return Err(bad(format!("unknown entity &{other};"))),
    }
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_createrepo_c_output() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="primary">
    <checksum type="sha256">AB12</checksum>
    <open-checksum type="sha256">cd34</open-checksum>
    <location href="repodata/ab12-primary.xml.gz"/>
    <timestamp>1700000000</timestamp>
    <size>5139</size>
    <open-size>37044</open-size>
  </data>
  <data type="other">
    <checksum type="sha">ef</checksum>
    <location xml:base="http://elsewhere/" href="repodata/o.xml.zst"/>
  </data>
</repomd>"#;
        let md = parse_repomd(xml, "repomd.xml").unwrap();
        assert_eq!(md.revision.as_deref(), Some("1700000000"));
        let p = md.get("primary").unwrap();
        assert_eq!(p.checksum.hex, "ab12");
        assert_eq!(p.open_checksum.as_ref().unwrap().hex, "cd34");
        assert_eq!((p.size, p.open_size), (Some(5139), Some(37044)));
        let o = md.get("other").unwrap();
        assert_eq!(o.base.as_deref(), Some("http://elsewhere/"));
        assert_eq!(o.checksum.kind.name(), "sha1");
    }

    #[test]
    fn rejects_bad_repomd() {
        assert!(parse_repomd(b"<html>nope</html>", "r").is_err());
        assert!(
            parse_repomd(
                b"<repomd><data type=\"primary\"><location href=\"x\"/></data></repomd>",
                "r"
            )
            .is_err()
        );
        assert!(parse_repomd(b"<repomd><data type=\"primary\"><checksum type=\"md5\">x</checksum><location href=\"x\"/></data></repomd>", "r").is_err());
        assert!(parse_repomd(b"<repomd><data", "r").is_err());
    }
}
