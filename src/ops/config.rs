//! `nosa init`, `nosa config show` and `nosa basearch`.

use nosa_config::{Arch, ConfigSource, init_workdir};

use crate::cli::{Cli, ConfigShowArgs, InitArgs};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::start_dir;

/// `nosa init SOURCE`: makes the current directory (or `-C DIR`) a workdir.
pub fn init(cli: &Cli, a: &InitArgs) -> OpResult {
    let dest = start_dir(cli)?;
    let report = init_workdir(&dest, &a.source, a.branch.as_deref(), a.force)
        .map_err(|e| Failure::Config(e.into()))?;
    match &report.config {
        ConfigSource::Cloned { url, branch } => eprintln!(
            "cloned {url}{} into src/config",
            branch
                .as_ref()
                .map(|b| format!(" (branch {b})"))
                .unwrap_or_default()
        ),
        ConfigSource::Symlink { target } => {
            eprintln!("src/config -> {}", target.display())
        }
    }
    eprintln!("wrote {}", report.build_toml.display());
    eprintln!(
        "hint: `nosa graph plan` shows what a build would do; `nosa fetch` then `nosa build`"
    );
    Ok(())
}

/// `nosa config show`.
pub fn show(cli: &Cli, a: &ConfigShowArgs) -> OpResult {
    // Showing a config is for inspecting it: an undefined repo is a warning here, not an error.
    let s = crate::ops::open_with(cli, None, a.arch.as_deref(), false)?;
    let Some(c) = s.ws.configs.first() else {
        return Err(Failure::Config(miette::miette!(
            help = "add a [nestos] table with `config = \"path/to/nestos-config\"`, or run `nosa init`",
            "{} has no [nestos] table: there is no configuration to show",
            s.ws.file.path.display()
        )));
    };
    if a.json {
        let text = serde_json::to_string_pretty(&c.show_json()).map_err(runtime)?;
        println!("{text}");
    } else {
        print!("{}", c.show_yaml());
    }
    Ok(())
}

/// `nosa basearch`.
pub fn basearch() -> OpResult {
    match Arch::host() {
        Some(a) => {
            println!("{a}");
            Ok(())
        }
        None => Err(Failure::Build(Some(miette::miette!(
            "this machine's architecture ({}) is not one NestOS builds",
            std::env::consts::ARCH
        )))),
    }
}
