//! `cargo xtask`: developer tasks for nosa; today `fixture-distro`, which builds the fixture distribution's RPMs and rpm-md repository.

mod busybox;
mod closure;
mod deb;
mod distro;
mod kernel;
mod payload;
mod rpmbuild;
mod sign;
mod spec;
mod stamp;
mod tools;
mod verify;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

/// Errors are rendered once, in `main`.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "nosa developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the fixture distro: RPMs from fixtures/distro/packages.toml and
    /// Debian packages, in an rpm-md repository at OUT/repo/ARCH.
    FixtureDistro(FixtureDistroArgs),
}

#[derive(Debug, Args)]
struct FixtureDistroArgs {
    /// Output directory [default: fixtures/out in the workspace].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Download cache for .deb files [default: OUT/debs].
    #[arg(long)]
    debs: Option<PathBuf>,
    /// Target architecture (only x86_64 is supported).
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// Rebuild even when OUT/stamp says the output is up to date.
    #[arg(long)]
    force: bool,
    /// Only the packages that need no Debian download.
    #[arg(long)]
    small_only: bool,
    /// Check the result with rpm, dnf and a dracut run.
    #[arg(long)]
    verify: bool,
    /// Build everything twice (OUT/repro/a, OUT/repro/b) and compare the
    /// sha256 of every RPM and repodata file.
    #[arg(long)]
    check_reproducible: bool,
}

/// The checkout the command runs in: the nearest directory at or above the current one whose
/// Cargo.toml has a `[workspace]` and an `xtask/` beside it. Not the checkout the binary was
/// compiled in (`CARGO_MANIFEST_DIR`): with a shared target directory those differ.
fn workspace_root() -> PathBuf {
    let start = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    for dir in start.ancestors() {
        let manifest = dir.join("Cargo.toml");
        let is_workspace = fs_err::read_to_string(&manifest)
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"));
        if is_workspace && dir.join("xtask").is_dir() {
            return dir.to_path_buf();
        }
    }
    // Outside a checkout: the one it was compiled in.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::FixtureDistro(args) => fixture_distro(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fixture_distro(args: FixtureDistroArgs) -> Result<()> {
    let root = workspace_root();
    let out = args.out.unwrap_or_else(|| root.join("fixtures/out"));
    let opts = distro::Options {
        spec_dir: root.join("fixtures/distro"),
        debs: args.debs.unwrap_or_else(|| out.join("debs")),
        out,
        arch: args.arch,
        force: args.force,
        small_only: args.small_only,
    };
    if args.check_reproducible {
        return check_reproducible(&opts);
    }
    let started = Instant::now();
    let report = distro::generate(&opts)?;
    print_summary(&opts, &report, started.elapsed().as_secs_f64());
    if args.verify {
        verify::verify(&opts.out, &report.manifest)?;
    }
    Ok(())
}

/// `1.23 MiB` or `6.1 KiB`.
fn human(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The package table and total on stdout (data); the run's state on stderr.
fn print_summary(opts: &distro::Options, report: &distro::Report, secs: f64) {
    let width = report
        .manifest
        .packages
        .iter()
        .map(|p| p.nvra.len())
        .max()
        .unwrap_or(0);
    for p in &report.manifest.packages {
        let from = p
            .from_deb
            .as_deref()
            .map(|d| format!("  (from {d})"))
            .unwrap_or_default();
        println!("{:width$}  {:>10}{from}", p.nvra, human(p.size));
    }
    let total: u64 = report.manifest.packages.iter().map(|p| p.size).sum();
    println!(
        "{} packages, {} in {}",
        report.manifest.packages.len(),
        human(total),
        distro::repo_dir(&opts.out, &opts.arch).display()
    );
    let state = if report.up_to_date {
        "up to date, nothing rebuilt (--force rebuilds)".to_string()
    } else {
        format!(
            "built in {secs:.1}s ({} .deb downloaded)",
            report.downloaded
        )
    };
    eprintln!("fixture-distro: {state}");
}

fn check_reproducible(opts: &distro::Options) -> Result<()> {
    let mut digests = Vec::new();
    for side in ["a", "b"] {
        let o = distro::Options {
            out: opts.out.join("repro").join(side),
            force: true,
            ..opts.clone()
        };
        distro::generate(&o)?;
        digests.push(tree_digests(&o.out.join("repo"))?);
    }
    let (a, b) = (&digests[0], &digests[1]);
    let differing: Vec<_> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.0.clone())
        .collect();
    if a.len() != b.len() || !differing.is_empty() {
        return Err(format!("not reproducible: {differing:?} differ").into());
    }
    println!(
        "reproducible: {} files (RPMs and repodata) byte-identical across two builds",
        a.len()
    );
    Ok(())
}

/// (relative path, sha256) of every file below `dir`, sorted.
pub fn tree_digests(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(dir)?
                .to_string_lossy()
                .into_owned();
            out.push((rel, rpmbuild::sha256_hex(&fs_err::read(entry.path())?)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod cli_tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
