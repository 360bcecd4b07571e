//! Image references as `nosa push-container` takes them: `HOST[:PORT]/REPO[:TAG]`, where only
//! the tag may hold a `:` after the registry host, checked with a message that says what is
//! wrong and how to write it.
//!
//! The grammar is the distribution spec's (docker's `reference` package) without digests: the
//! first `/`-separated component is a registry host when it contains `.` or `:` or is
//! `localhost`; path components are lowercase `[a-z0-9]+` joined by `.`, `_`, `__` or `-`;
//! a tag is `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.

/// How a registry reference is written, for error messages.
pub const REFERENCE_FORM: &str = "HOST[:PORT]/REPO[:TAG], e.g. 127.0.0.1:5000/nestos:v1 \
     (without :TAG the tag is <buildid>-<arch>)";

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host, with its port (`127.0.0.1:5000`); empty for a local name without
    /// one (containers-storage, docker-daemon).
    pub registry: String,
    /// The repository path (`nestos`, `org/nestos`).
    pub repository: String,
    /// The tag, when the reference names one.
    pub tag: Option<String>,
}

/// Why a reference was refused: what is wrong, for the message; the form goes in the help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reference:?} is not an image reference: {problem}")]
pub struct RefError {
    /// The reference as given.
    pub reference: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ImageRef {
    /// Parses a registry reference: the registry host is required.
    pub fn parse(s: &str) -> Result<ImageRef, RefError> {
        let r = Self::parse_local(s)?;
        if r.registry.is_empty() {
            return Err(bad(
                s,
                "it names no registry host (the first component must be a host, with a '.' or \
                 a port, or `localhost`)",
            ));
        }
        Ok(r)
    }

    /// Parses a reference whose registry host may be left out (a local image name).
    pub fn parse_local(s: &str) -> Result<ImageRef, RefError> {
        if s.is_empty() {
            return Err(bad(s, "it is empty"));
        }
        if s.contains('@') {
            return Err(bad(
                s,
                "it names a digest ('@'): a push names a tag, the digest is the registry's answer",
            ));
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(s, &format!("it contains {c:?}")));
        }
        let (registry, rest) = match s.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                check_host(s, first)?;
                (first.to_string(), rest)
            }
            _ => (String::new(), s),
        };
        if rest.is_empty() {
            return Err(bad(s, "it names no repository after the registry host"));
        }
        let (path, tag) = match rest.split_once(':') {
            None => (rest, None),
            Some((path, tag)) => {
                if tag.contains(':') {
                    return Err(bad(
                        s,
                        "it has more than one ':' after the registry host; only the tag may \
                         contain one",
                    ));
                }
                if tag.contains('/') {
                    return Err(bad(
                        s,
                        &format!(
                            "the ':' in {:?} is followed by a '/': after the registry host a ':' \
                             starts the tag, which comes last (a port belongs to the first \
                             component, which then needs a '/' after it)",
                            rest
                        ),
                    ));
                }
                (path, Some(tag))
            }
        };
        for comp in path.split('/') {
            check_component(s, comp)?;
        }
        if let Some(t) = tag {
            check_tag(s, t)?;
        }
        Ok(ImageRef {
            registry,
            repository: path.to_string(),
            tag: tag.map(str::to_string),
        })
    }

    /// `registry/repository` (or `repository` without a registry): the image without its tag,
    /// as meta.json's `base-oscontainer.image` records it.
    pub fn name(&self) -> String {
        if self.registry.is_empty() {
            self.repository.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The tag, or `default`.
    pub fn tag_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.tag.as_deref().unwrap_or(default)
    }
}

fn bad(s: &str, problem: &str) -> RefError {
    RefError {
        reference: s.to_string(),
        problem: problem.to_string(),
    }
}

fn check_host(s: &str, host: &str) -> Result<(), RefError> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return Err(bad(
            s,
            &format!(
                "the registry host {host:?} has port {p:?}, which is not a port number \
                 (only the tag may contain ':' after the host)"
            ),
        ));
    }
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || !name.split('.').all(ok_label) {
        return Err(bad(
            s,
            &format!("{name:?} is not a host name (letters, digits, '-' and '.')"),
        ));
    }
    Ok(())
}

fn check_component(s: &str, comp: &str) -> Result<(), RefError> {
    if comp.is_empty() {
        return Err(bad(
            s,
            "its repository has an empty path component ('//' or a '/' at an end)",
        ));
    }
    if comp.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad(
            s,
            &format!("repository component {comp:?} has capitals: repositories are lowercase"),
        ));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let sep = |c: char| matches!(c, '.' | '_' | '-');
    let chars: Vec<char> = comp.chars().collect();
    let well_formed = chars.iter().all(|&c| alnum(c) || sep(c))
        && alnum(chars[0])
        && alnum(chars[chars.len() - 1])
        // Separators: one '.', one or two '_', or any number of '-'.
        && comp
            .split(|c: char| alnum(c))
            .filter(|g| !g.is_empty())
            .all(|g| g == "." || g == "_" || g == "__" || g.chars().all(|c| c == '-'));
    if !well_formed {
        return Err(bad(
            s,
            &format!(
                "repository component {comp:?} is not lowercase letters and digits joined by \
                 '.', '_', '__' or '-'"
            ),
        ));
    }
    Ok(())
}

fn check_tag(s: &str, tag: &str) -> Result<(), RefError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !tag.starts_with(['.', '-']);
    if !ok {
        return Err(bad(
            s,
            &format!(
                "tag {tag:?} is not letters, digits, '.', '_' and '-' (at most 128, not starting \
                 with '.' or '-')"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, String, Option<String>) {
        let r = ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (r.registry, r.repository, r.tag)
    }

    fn refused(s: &str) -> String {
        ImageRef::parse(s)
            .expect_err(&format!("{s} was accepted"))
            .problem
    }

    #[test]
    fn references_with_and_without_tags() {
        let cases = [
            ("127.0.0.1:5000/nestos", "127.0.0.1:5000", "nestos", None),
            (
                "127.0.0.1:5000/nestos:v1",
                "127.0.0.1:5000",
                "nestos",
                Some("v1"),
            ),
            (
                "registry.example.com/org/nestos:42.1-x86_64",
                "registry.example.com",
                "org/nestos",
                Some("42.1-x86_64"),
            ),
            (
                "localhost/a.b_c__d-e---f",
                "localhost",
                "a.b_c__d-e---f",
                None,
            ),
            (
                "localhost:5000/n:Tag_1.x",
                "localhost:5000",
                "n",
                Some("Tag_1.x"),
            ),
        ];
        for (s, reg, repo, tag) in cases {
            assert_eq!(
                ok(s),
                (reg.to_string(), repo.to_string(), tag.map(str::to_string)),
                "{s}"
            );
        }
        let r = ImageRef::parse("127.0.0.1:5000/nestos").unwrap();
        assert_eq!(r.name(), "127.0.0.1:5000/nestos");
        assert_eq!(r.tag_or("42.1-x86_64"), "42.1-x86_64");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("nestos:v1", "no registry host"),
            ("nestos", "no registry host"),
            ("127.0.0.1:5000/", "no repository"),
            ("127.0.0.1:5000/nestos:v1:v2", "more than one ':'"),
            ("127.0.0.1:5000/a:b/c", "followed by a '/'"),
            ("127.0.0.1:x/nestos", "not a port number"),
            ("127.0.0.1:99999/nestos", "not a port number"),
            ("reg.example.com/NestOS", "capitals"),
            ("reg.example.com/a//b", "empty path component"),
            ("reg.example.com/a/", "empty path component"),
            ("reg.example.com/-a", "not lowercase letters"),
            ("reg.example.com/a..b", "not lowercase letters"),
            ("reg.example.com/a___b", "not lowercase letters"),
            ("reg.example.com/a:", "tag \"\""),
            ("reg.example.com/a:-x", "tag \"-x\""),
            ("reg.example.com/a:b+c", "tag \"b+c\""),
            ("reg.example.com/a@sha256:00", "digest"),
            ("reg.example.com/a b", "contains ' '"),
            ("bad_host.com/a", "not a host name"),
        ];
        for (s, want) in cases {
            let p = refused(s);
            assert!(p.contains(want), "{s:?}: {p:?} should say {want:?}");
        }
        let long = format!("reg.example.com/a:{}", "t".repeat(129));
        assert!(refused(&long).contains("at most 128"));
    }

    #[test]
    fn local_names_need_no_registry() {
        let r = ImageRef::parse_local("nestos:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.name(), r.tag.as_deref()),
            ("", "nestos".into(), Some("v1"))
        );
        assert_eq!(
            ImageRef::parse_local("localhost/nestos").unwrap().name(),
            "localhost/nestos"
        );
        assert!(ImageRef::parse_local("nestos:v1:v2").is_err());
    }
}
