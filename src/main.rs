//! nosa command line: parses arguments and dispatches to one `ops` function per command.

mod cli;
mod exit;
mod ops;
mod render;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ConfigCommand, GraphCommand};
use exit::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Graph(GraphCommand::Build(a)) => ops::graph::build(&cli, a),
        Command::Graph(GraphCommand::Plan(a)) => ops::graph::plan(&cli, a),
        Command::Graph(GraphCommand::Why(a)) => ops::graph::why(&cli, a),
        Command::Graph(GraphCommand::Show(a)) => ops::graph::show(&cli, a),
        Command::Prune(a) => ops::store::prune(&cli, a),
        Command::Clean(a) => ops::store::clean(&cli, a),
        Command::Init(a) => ops::config::init(&cli, a),
        Command::Config(ConfigCommand::Show(a)) => ops::config::show(&cli, a),
        Command::Basearch => ops::config::basearch(),
    };
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(f) => {
            match &f {
                Failure::Config(r) | Failure::Build(Some(r)) => eprintln!("{r:?}"),
                Failure::Build(None) => {}
            }
            f.code()
        }
    }
}
