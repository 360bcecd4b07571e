//! Why a resolution failed: typed, with messages that name the packages and the chain.

/// A resolution failure.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A repository tree is incomplete or unreadable.
    #[error("repository {what}: {msg}")]
    BadRepo {
        /// The dependency node id or directory.
        what: String,
        /// What is wrong.
        msg: String,
    },
    /// libsolv could not load the metadata.
    #[error("repository {repo}: {msg}")]
    Load {
        /// The repository id.
        repo: String,
        /// libsolv's message.
        msg: String,
    },
    /// Requested packages that no enabled repository has (or only excluded ones).
    #[error("{}", render_list("no package matches", .0))]
    NoMatch(Vec<String>),
    /// A package is both requested and in `exclude-packages`.
    #[error("package `{0}` is both requested and in exclude-packages")]
    RequestedAndExcluded(String),
    /// Locked versions that no repository has.
    #[error("{}", render_list("locked package not found in any repository", .0))]
    LockedMissing(Vec<String>),
    /// The request cannot be satisfied; one entry per problem, rendered.
    #[error("cannot resolve the package set for {arch}:\n{}", render_problems(.problems))]
    Unsatisfiable {
        /// The basearch.
        arch: String,
        /// One rendered problem each (first line: the cause and the chain that needs it).
        problems: Vec<String>,
    },
    /// libsolv itself failed.
    #[error("libsolv: {0}")]
    Solv(String),
    /// IO.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn render_list(what: &str, items: &[String]) -> String {
    if items.len() == 1 {
        format!("{what}: {}", items[0])
    } else {
        let mut s = format!("{what}:");
        for i in items {
            s.push_str("\n  ");
            s.push_str(i);
        }
        s
    }
}

fn render_problems(problems: &[String]) -> String {
    let mut s = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let mut lines = p.lines();
        s.push_str(&format!(
            " problem {}: {}",
            i + 1,
            lines.next().unwrap_or_default()
        ));
        for l in lines {
            s.push_str("\n   ");
            s.push_str(l);
        }
    }
    s
}
