//! Errors of repository sync and package download: each names the repository or package, the
//! file and URL involved and, for a verification failure, the expected and actual values.

use std::path::PathBuf;

use nosa_engine::RunError;

/// Why fetching, verifying or reading repository data failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A URL could not be fetched.
    #[error("cannot fetch {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong (HTTP status, connection error, missing file).
        reason: String,
    },

    /// No candidate base URL served a usable `repodata/repomd.xml`.
    #[error(
        "repo {repo}: no base URL served a usable repodata/repomd.xml{}\nhint: check the repo's baseurl/mirrorlist/metalink and that the server is reachable",
        list(.attempts)
    )]
    NoMirror {
        /// The repository id.
        repo: String,
        /// One line per URL tried.
        attempts: Vec<String>,
    },

    /// The repository has no `baseurl`, and neither a mirrorlist nor a metalink gave one.
    #[error("repo {repo} has no base URL (baseurl is empty and no mirrorlist/metalink gave one)")]
    NoBaseUrl {
        /// The repository id.
        repo: String,
    },

    /// The repository's `repomd.xml` differs from the one `nosa fetch` pinned.
    #[error(
        "repo {repo} changed since it was pinned by `nosa fetch`: repodata/repomd.xml at {url} has blake3 {actual}, the pin is {pinned}\nhint: run `nosa fetch` to pin the repository as it is now (this re-resolves the packages)"
    )]
    PinMismatch {
        /// The repository id.
        repo: String,
        /// Where the repomd.xml was fetched (the last URL tried).
        url: String,
        /// The pinned blake3 (hex).
        pinned: String,
        /// The blake3 of what was fetched (hex).
        actual: String,
    },

    /// A metadata file's checksum (compressed or decompressed) is not the one repomd.xml lists.
    #[error(transparent)]
    MetadataChecksum(Box<ChecksumMismatch>),

    /// A metadata file's size (compressed or decompressed) is not the one repomd.xml lists.
    #[error(
        "repo {repo}: {href} from {url} is truncated or too long: expected {what} {expected} bytes, got {actual}\nhint: the mirror is corrupt or was updated while syncing; retry, or use another baseurl"
    )]
    MetadataSize {
        /// The repository id.
        repo: String,
        /// The `location href`.
        href: String,
        /// The URL.
        url: String,
        /// `size` or `open-size`.
        what: &'static str,
        /// Expected bytes.
        expected: u64,
        /// Actual bytes (`more than N` when reading stopped past the expected size).
        actual: String,
    },

    /// A metadata file does not decompress.
    #[error(
        "repo {repo}: {href} from {url} does not decompress: {reason}\nhint: the file is corrupt or truncated on the mirror; retry, or use another baseurl"
    )]
    Decompress {
        /// The repository id.
        repo: String,
        /// The `location href`.
        href: String,
        /// The URL.
        url: String,
        /// The decoder's message.
        reason: String,
    },

    /// Every URL of one metadata file failed.
    #[error("repo {repo}: cannot get {href} from any base URL{}", list(.errors))]
    AllMirrorsFailed {
        /// The repository id.
        repo: String,
        /// The `location href`.
        href: String,
        /// One message per URL tried.
        errors: Vec<String>,
    },

    /// A downloaded package does not match the checksum or size its repository lists.
    #[error(
        "package {package} from {url} does not match its repository metadata: expected {what} {expected}, got {actual}\nhint: the mirror is corrupt or changed since the repo was synced; run `nosa fetch`, or retry"
    )]
    PackageMismatch {
        /// The NEVRA.
        package: String,
        /// The URL.
        url: String,
        /// `checksum` or `size`.
        what: &'static str,
        /// Expected value.
        expected: String,
        /// Actual value.
        actual: String,
    },

    /// Every URL of a package failed.
    #[error("package {package}: cannot download it from any URL{}", list(.errors))]
    PackageFailed {
        /// The NEVRA.
        package: String,
        /// One message per URL tried (or a note that there is none).
        errors: Vec<String>,
    },

    /// XML that is not what rpm-md says.
    #[error("{file}: invalid rpm-md XML: {reason}")]
    Xml {
        /// Which file (href, URL or path).
        file: String,
        /// The parser's message.
        reason: String,
    },

    /// A `location href` that would escape the output directory.
    #[error("repo {repo}: refusing unsafe location href {href:?} (absolute, or contains `..`)")]
    UnsafeHref {
        /// The repository id.
        repo: String,
        /// The href.
        href: String,
    },

    /// A checksum type nosa does not implement.
    #[error("unsupported checksum type {0:?} (supported: sha1, sha224, sha256, sha384, sha512)")]
    UnsupportedChecksum(String),

    /// A compression nosa does not implement.
    #[error("{0}: unsupported compression (supported: .gz, .xz, .zst, uncompressed)")]
    UnsupportedCompression(String),

    /// A synced repository output lacks something.
    #[error("synced repository at {dir}: {reason}")]
    BadSyncedRepo {
        /// The directory (or tree) read.
        dir: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },

    /// IO, with the path in the message (fs-err).
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// The store failed.
    #[error(transparent)]
    Store(#[from] nosa_cache::Error),
}

/// A metadata file whose checksum is not the one repomd.xml lists (boxed: it is large).
#[derive(Debug, thiserror::Error)]
#[error(
    "repo {repo}: {href} from {url} is corrupt: expected {what} {expected}, got {actual}\nhint: the mirror is corrupt or was updated while syncing; retry, or use another baseurl"
)]
pub struct ChecksumMismatch {
    /// The repository id.
    pub repo: String,
    /// The `location href`.
    pub href: String,
    /// The URL it was downloaded from.
    pub url: String,
    /// `checksum` or `open-checksum`.
    pub what: &'static str,
    /// `type:hex` expected.
    pub expected: String,
    /// `type:hex` computed.
    pub actual: String,
}

fn list(items: &[String]) -> String {
    let mut s = String::new();
    if items.len() == 1 {
        s.push_str(": ");
        s.push_str(&items[0]);
    } else {
        s.push(':');
        for i in items {
            s.push_str("\n  - ");
            s.push_str(&i.replace('\n', "\n    "));
        }
    }
    s
}

impl From<RepoError> for RunError {
    fn from(e: RepoError) -> Self {
        RunError::msg(e.to_string())
    }
}
