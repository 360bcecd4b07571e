//! Reading a synced repository (the output of a `repo-sync` node, as a directory or as a store
//! tree): `repomd.xml`, `repo.json` and the package list of `primary.xml`, which maps resolved
//! NEVRAs to download nodes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use nosa_cache::{EntryKind, Store, Tree};
use quick_xml::events::Event;

use crate::checksum::Checksum;
use crate::decompress::decoder;
use crate::error::RepoError;
use crate::fetch::join;
use crate::repomd::{RepoMd, attr, parse_repomd, resolve_ref};
use crate::sync::RepoJson;

/// One package of `primary.xml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// `name`.
    pub name: String,
    /// `version epoch`; `0` when absent.
    pub epoch: String,
    /// `version ver`.
    pub version: String,
    /// `version rel`.
    pub release: String,
    /// `arch` (`x86_64`, `noarch`, `src`).
    pub arch: String,
    /// `location href`, relative to the repository root (or to `base`).
    pub href: String,
    /// `location xml:base`, if the package lives under another URL.
    pub base: Option<String>,
    /// The package file's checksum (`pkgid`).
    pub checksum: Checksum,
    /// `size package`: the file's size in bytes.
    pub size: u64,
}

impl Package {
    /// `name-[epoch:]version-release.arch`, the epoch left out when it is 0 (dnf's form).
    pub fn nevra(&self) -> String {
        let e = if self.epoch.is_empty() || self.epoch == "0" {
            String::new()
        } else {
            format!("{}:", self.epoch)
        };
        format!(
            "{}-{e}{}-{}.{}",
            self.name, self.version, self.release, self.arch
        )
    }

    /// Every URL the package can be downloaded from: `xml:base` + href if set, else each base
    /// URL (in order, as in `repo.json`) + href.
    pub fn urls(&self, baseurls: &[String]) -> Vec<String> {
        match &self.base {
            Some(b) => vec![join(b, &self.href)],
            None => baseurls.iter().map(|b| join(b, &self.href)).collect(),
        }
    }
}

/// Where a synced repository's files are.
#[derive(Debug, Clone)]
enum Files {
    Dir(PathBuf),
    /// Relative path -> blob path in the store.
    Blobs(BTreeMap<String, PathBuf>),
}

/// A synced repository: the output of a `repo-sync` node.
#[derive(Debug, Clone)]
pub struct SyncedRepo {
    /// The parsed repomd.xml.
    pub repomd: RepoMd,
    /// The parsed repo.json.
    pub repo: RepoJson,
    files: Files,
    origin: PathBuf,
}

impl SyncedRepo {
    /// Reads the output materialized in `dir`.
    pub fn open(dir: &Path) -> Result<SyncedRepo, RepoError> {
        Self::load(Files::Dir(dir.to_path_buf()), dir.to_path_buf())
    }

    /// Reads the output tree `tree` from `store` (what a dependent node gets as `DepOutput`).
    pub fn from_tree(store: &Store, tree: &Tree) -> Result<SyncedRepo, RepoError> {
        let mut files = BTreeMap::new();
        for e in &tree.entries {
            if let EntryKind::File { digest, .. } = &e.kind {
                files.insert(e.path.clone(), store.blob_path(digest));
            }
        }
        Self::load(Files::Blobs(files), store.root().to_path_buf())
    }

    fn load(files: Files, origin: PathBuf) -> Result<SyncedRepo, RepoError> {
        let mut r = SyncedRepo {
            repomd: RepoMd::default(),
            repo: RepoJson {
                id: String::new(),
                arch: String::new(),
                baseurl: Vec::new(),
                priority: 0,
                cost: 0,
                exclude: Vec::new(),
                includepkgs: Vec::new(),
            },
            files,
            origin,
        };
        let repomd = fs_err::read(r.path("repomd.xml")?)?;
        r.repomd = parse_repomd(&repomd, "repomd.xml")?;
        let json = fs_err::read(r.path("repo.json")?)?;
        r.repo = serde_json::from_slice(&json).map_err(|e| r.bad(format!("repo.json: {e}")))?;
        Ok(r)
    }

    fn bad(&self, reason: String) -> RepoError {
        RepoError::BadSyncedRepo {
            dir: self.origin.clone(),
            reason,
        }
    }

    /// The file at `rel` (`repomd.xml`, `repo.json`, an href of repomd.xml).
    pub fn path(&self, rel: &str) -> Result<PathBuf, RepoError> {
        let p = match &self.files {
            Files::Dir(d) => Some(d.join(rel)).filter(|p| p.is_file()),
            Files::Blobs(m) => m.get(rel).cloned(),
        };
        p.ok_or_else(|| self.bad(format!("{rel} is missing")))
    }

    /// The decompressed content of metadata type `kind` (`primary`, `filelists`, `other`).
    pub fn open_metadata(&self, kind: &str) -> Result<Box<dyn BufRead>, RepoError> {
        let d = self
            .repomd
            .get(kind)
            .ok_or_else(|| self.bad(format!("repomd.xml lists no {kind}")))?;
        let f = BufReader::new(fs_err::File::open(self.path(&d.href)?)?);
        Ok(Box::new(BufReader::new(decoder(&d.href, f)?)))
    }

    /// The packages of primary.xml, in document order.
    pub fn packages(&self) -> Result<Vec<Package>, RepoError> {
        let href = self.repomd.get("primary").map(|d| d.href.clone());
        parse_primary_xml(
            self.open_metadata("primary")?,
            href.as_deref().unwrap_or("primary"),
        )
    }
}

/// The packages of the synced repository materialized in `dir` (see [`SyncedRepo`]).
pub fn parse_primary(dir: &Path) -> Result<Vec<Package>, RepoError> {
    SyncedRepo::open(dir)?.packages()
}

/// A `<package>` being read.
#[derive(Default)]
struct PackageBuilder {
    name: Option<String>,
    arch: Option<String>,
    evr: Option<(String, String, String)>,
    checksum: Option<(String, String)>,
    size: Option<u64>,
    location: Option<(String, Option<String>)>,
}

/// Parses decompressed primary.xml; `file` names it in errors.
pub fn parse_primary_xml(r: impl BufRead, file: &str) -> Result<Vec<Package>, RepoError> {
    let bad = |reason: String| RepoError::Xml {
        file: file.to_string(),
        reason,
    };
    let mut reader = quick_xml::Reader::from_reader(r);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut depth = 0usize;
    // The open <package>, and its depth.
    let mut cur: Option<(PackageBuilder, usize)> = None;
    // A direct child of <package> whose text is collected, with its `type` attribute.
    let mut field: Option<(Vec<u8>, Option<String>)> = None;
    let mut text = String::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(format!("{e} at byte {}", reader.buffer_position())))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_start = matches!(ev, Event::Start(_));
                let name = e.local_name().as_ref().to_vec();
                match cur.as_mut() {
                    None if name == b"package" && is_start => {
                        cur = Some((PackageBuilder::default(), depth));
                    }
                    Some((p, d)) if *d + 1 == depth => match name.as_slice() {
                        b"version" => {
                            let a = |n: &[u8]| attr(e, n).map_err(&bad);
                            p.evr = Some((
                                a(b"epoch")?.unwrap_or_else(|| "0".into()),
                                a(b"ver")?.unwrap_or_default(),
                                a(b"rel")?.unwrap_or_default(),
                            ));
                        }
                        b"size" => {
                            let v = attr(e, b"package").map_err(&bad)?.unwrap_or_default();
                            p.size = Some(v.parse().map_err(|_| {
                                bad(format!("<size package={v:?}> is not a number"))
                            })?);
                        }
                        b"location" => {
                            p.location = Some((
                                attr(e, b"href").map_err(&bad)?.unwrap_or_default(),
                                attr(e, b"base").map_err(&bad)?,
                            ));
                        }
                        b"name" | b"arch" | b"checksum" if is_start => {
                            field = Some((name, attr(e, b"type").map_err(&bad)?));
                            text.clear();
                        }
                        _ => {}
                    },
                    _ => {}
                }
                if is_start {
                    depth += 1;
                }
            }
            Event::Text(t) if field.is_some() => {
                text.push_str(&t.decode().map_err(|e| bad(e.to_string()))?)
            }
            Event::GeneralRef(r) if field.is_some() => text.push_str(&resolve_ref(&r, file)?),
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                let name = e.local_name().as_ref().to_vec();
                if let Some((fname, ty)) = field.take_if(|(f, _)| *f == name) {
                    if let Some((p, _)) = cur.as_mut() {
                        let v = text.trim().to_string();
                        match fname.as_slice() {
                            b"name" => p.name = Some(v),
                            b"arch" => p.arch = Some(v),
                            _ => p.checksum = Some((ty.unwrap_or_default(), v)),
                        }
                    }
                } else if name == b"package"
                    && let Some((p, d)) = cur.take_if(|(_, d)| *d == depth)
                {
                    debug_assert_eq!(d, depth);
                    out.push(finish(p, &bad)?);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

fn finish(p: PackageBuilder, bad: &impl Fn(String) -> RepoError) -> Result<Package, RepoError> {
    let name = p
        .name
        .ok_or_else(|| bad("a <package> has no <name>".into()))?;
    let missing = |what: &str| bad(format!("package {name} has no {what}"));
    let (epoch, version, release) = p.evr.ok_or_else(|| missing("<version>"))?;
    let (ty, hex) = p.checksum.ok_or_else(|| missing("<checksum>"))?;
    let (href, base) = p.location.ok_or_else(|| missing("<location>"))?;
    Ok(Package {
        arch: p.arch.ok_or_else(|| missing("<arch>"))?,
        epoch,
        version,
        release,
        href,
        base,
        checksum: Checksum::parse(&ty, &hex)?,
        size: p.size.ok_or_else(|| missing("<size package>"))?,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_packages_and_ignores_format() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>a&amp;b</name>
  <arch>x86_64</arch>
  <version epoch="2" ver="1.0" rel="1"/>
  <checksum type="sha256" pkgid="YES">ABCD</checksum>
  <summary>s &lt;x&gt;</summary>
  <size package="42" installed="1" archive="0"/>
  <location href="Packages/a.rpm"/>
  <format>
    <rpm:provides><rpm:entry name="name" flags="EQ" ver="9"/></rpm:provides>
    <file>/usr/bin/a</file>
  </format>
</package>
<package type="rpm"><name>c</name><arch>noarch</arch><version epoch="0" ver="2" rel="3.x"></version>
  <checksum type="sha">ff</checksum><size package="7"/><location xml:base="http://b/" href="c.rpm"/></package>
</metadata>"#;
        let p = parse_primary_xml(xml.as_bytes(), "primary.xml").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "a&b");
        assert_eq!(p[0].nevra(), "a&b-2:1.0-1.x86_64");
        assert_eq!(p[0].checksum.to_string(), "sha256:abcd");
        assert_eq!(p[0].size, 42);
        assert_eq!(
            p[0].urls(&["http://m/r/".into()]),
            ["http://m/r/Packages/a.rpm"]
        );
        assert_eq!(p[1].nevra(), "c-2-3.x.noarch");
        assert_eq!(p[1].urls(&["http://m/".into()]), ["http://b/c.rpm"]);
    }

    #[test]
    fn rejects_incomplete_packages() {
        let xml = "<metadata><package><name>x</name><arch>a</arch></package></metadata>";
        let e = parse_primary_xml(xml.as_bytes(), "p").unwrap_err();
        assert!(e.to_string().contains("package x has no <version>"), "{e}");
    }
}
