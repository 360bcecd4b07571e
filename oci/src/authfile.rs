//! Registry credentials from an authfile in containers-auth.json form (what `podman login`,
//! `skopeo login` and `docker login` write):
//!
//! ```json
//! {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"}}}
//! ```
//!
//! A key is a registry host (`host[:port]`), or a host with a repository namespace
//! (`host/org`, `host/org/repo`); the most specific key that covers the repository wins, as in
//! containers-auth.json(5). Keys written as URLs (`https://host/v1/`, docker's old form) are
//! read as their host and path. Other fields of an entry and other top-level fields
//! (`credHelpers`, ...) are ignored; credential helpers are not run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// Why an authfile gave no credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthfileError {
    /// The file cannot be read.
    #[error("cannot read the authfile {}: {message}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The IO error.
        message: String,
    },
    /// The file is not containers-auth.json.
    #[error("the authfile {} is not containers-auth.json: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No entry covers the registry and repository.
    #[error("the authfile {} has no credentials for {registry}/{repository} (it has: {known})", path.display())]
    NoEntry {
        /// The file.
        path: PathBuf,
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The keys it has, comma-separated (`none` when empty).
        known: String,
    },
}

#[derive(Deserialize)]
struct RawAuthfile {
    #[serde(default)]
    auths: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    auth: Option<String>,
}

/// `https://host/path/` -> `host/path`.
fn normalize_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    // docker's old key for Docker Hub.
    if k == "index.docker.io/v1" {
        return "docker.io";
    }
    k
}

/// The credentials `path` holds for `repository` at `registry`.
pub fn credentials(
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Credentials, AuthfileError> {
    let bytes = fs_err::read(path).map_err(|e| AuthfileError::Unreadable {
        path: path.to_path_buf(),
        message: match e.kind() {
            std::io::ErrorKind::NotFound => "it does not exist".into(),
            _ => e.to_string(),
        },
    })?;
    parse(path, &bytes, registry, repository)
}

/// [`credentials`] from the file's bytes (`path` names it in errors).
pub fn parse(
    path: &Path,
    bytes: &[u8],
    registry: &str,
    repository: &str,
) -> Result<Credentials, AuthfileError> {
    let malformed = |message: String| AuthfileError::Malformed {
        path: path.to_path_buf(),
        message,
    };
    let raw: RawAuthfile = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let entries: BTreeMap<&str, &RawEntry> = raw
        .auths
        .iter()
        .map(|(k, v)| (normalize_key(k), v))
        .collect();
    // The repository's own key, then each shorter namespace, then the host.
    let full = format!("{registry}/{repository}");
    let mut candidates = vec![full.as_str()];
    let mut at = full.as_str();
    while let Some((shorter, _)) = at.rsplit_once('/') {
        candidates.push(shorter);
        at = shorter;
    }
    let Some((key, entry)) = candidates
        .iter()
        .find_map(|c| entries.get(c).map(|e| (*c, *e)))
    else {
        let known: Vec<&str> = entries.keys().copied().collect();
        return Err(AuthfileError::NoEntry {
            path: path.to_path_buf(),
            registry: registry.to_string(),
            repository: repository.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    };
    let auth = entry
        .auth
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| malformed(format!("the entry for {key} has no \"auth\" field")))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| malformed(format!("the \"auth\" of {key} is not base64: {e}")))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| malformed(format!("the \"auth\" of {key} is not UTF-8 text")))?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| {
        malformed(format!(
            "the \"auth\" of {key} does not decode to user:password"
        ))
    })?;
    Ok(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn get(json: &str, registry: &str, repo: &str) -> Result<Credentials, AuthfileError> {
        parse(Path::new("auth.json"), json.as_bytes(), registry, repo)
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn host_entries_and_the_most_specific_key() {
        let json = serde_json::json!({
            "auths": {
                "127.0.0.1:5000": {"auth": b64("alice:pa:ss")},
                "reg.example.com": {"auth": b64("host:h")},
                "reg.example.com/org": {"auth": b64("org:o")},
                "https://reg.example.com/org/nestos/": {"auth": b64("repo:r")},
                "https://index.docker.io/v1/": {"auth": b64("hub:x")},
            },
            "credHelpers": {"other.example.com": "helper"}
        })
        .to_string();
        assert_eq!(
            get(&json, "127.0.0.1:5000", "nestos"),
            Ok(creds("alice", "pa:ss")),
            "the password is everything after the first ':'"
        );
        assert_eq!(
            get(&json, "reg.example.com", "org/nestos"),
            Ok(creds("repo", "r"))
        );
        assert_eq!(
            get(&json, "reg.example.com", "org/other"),
            Ok(creds("org", "o"))
        );
        assert_eq!(
            get(&json, "reg.example.com", "nestos"),
            Ok(creds("host", "h"))
        );
        assert_eq!(
            get(&json, "docker.io", "library/nestos"),
            Ok(creds("hub", "x"))
        );
    }

    #[test]
    fn missing_and_malformed_entries_name_the_file() {
        let json =
            serde_json::json!({"auths": {"a.example.com": {"auth": b64("u:p")}}}).to_string();
        let e = get(&json, "127.0.0.1:5000", "nestos").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the authfile auth.json has no credentials for 127.0.0.1:5000/nestos (it has: a.example.com)"
        );
        let e = get("{}", "h.example.com", "n").unwrap_err();
        assert!(e.to_string().ends_with("(it has: none)"), "{e}");
        for (json, want) in [
            ("not json", "is not containers-auth.json"),
            (r#"{"auths": []}"#, "is not containers-auth.json"),
            (
                r#"{"auths": {"h.example.com": {}}}"#,
                "has no \"auth\" field",
            ),
            (
                r#"{"auths": {"h.example.com": {"auth": "%%%"}}}"#,
                "is not base64",
            ),
            (
                &format!(
                    r#"{{"auths": {{"h.example.com": {{"auth": "{}"}}}}}}"#,
                    b64("nocolon")
                ),
                "does not decode to user:password",
            ),
        ] {
            let e = get(json, "h.example.com", "n").unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("auth.json"), "{json}: {e}");
        }
        let e = credentials(Path::new("/nonexistent/auth.json"), "h", "n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read the authfile /nonexistent/auth.json"),
            "{e}"
        );
    }

    #[test]
    fn credentials_are_not_printed() {
        assert_eq!(
            format!("{:?}", creds("u", "secret")),
            "Credentials(u, <redacted>)"
        );
    }
}
