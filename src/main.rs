//! nosa command line: parses arguments and dispatches to one `ops` function per command.

mod cli;
mod exit;
mod ops;
mod render;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ConfigCommand, GraphCommand, KolaCommand, TagCommand};
use exit::Failure;

/// Restores the default SIGPIPE action, so `nosa ... | head` ends quietly like other Unix
/// tools instead of panicking on a closed stdout.
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Renders diagnostics the same way everywhere: unicode drawing, colour only on a terminal
/// and without `NO_COLOR` (miette's own detection depends on build features).
fn diagnostics_hook() {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .unicode(true)
                .color(colour)
                .build(),
        )
    }));
}

fn main() -> ExitCode {
    default_sigpipe();
    diagnostics_hook();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Graph(GraphCommand::Build(a)) => ops::graph::build(&cli, a),
        Command::Graph(GraphCommand::Plan(a)) => ops::graph::plan(&cli, a),
        Command::Graph(GraphCommand::Why(a)) => ops::graph::why(&cli, a),
        Command::Graph(GraphCommand::Show(a)) => ops::graph::show(&cli, a),
        Command::Graph(GraphCommand::Output(a)) => ops::graph::output(&cli, a),
        Command::Prune(a) => ops::store::prune(&cli, a),
        Command::Clean(a) => ops::store::clean(&cli, a),
        Command::List(a) => ops::store::list(&cli, a),
        Command::Tag(TagCommand::Update(a)) => ops::store::tag_update(&cli, a),
        Command::Tag(TagCommand::Delete(a)) => ops::store::tag_delete(&cli, a),
        Command::Tag(TagCommand::List(a)) => ops::store::tag_list(&cli, a),
        Command::Meta(a) => ops::meta::meta(&cli, a),
        Command::Compress(a) => ops::compress::compress(&cli, a),
        Command::Uncompress(a) => ops::compress::uncompress(&cli, a),
        Command::PushContainer(a) => ops::push::push_container(&cli, a),
        Command::Runc(a) => ops::runc::runc(&cli, a),
        Command::Shell(a) => ops::runc::shell(&cli, a),
        Command::Init(a) => ops::config::init(&cli, a),
        Command::Config(ConfigCommand::Show(a)) => ops::config::show(&cli, a),
        Command::Basearch => ops::config::basearch(),
        Command::ExecNode(a) => ops::run::exec_node(a),
        Command::Fetch(a) => ops::fetch::fetch(&cli, a),
        Command::Build(a) => ops::build::build(&cli, a),
        Command::BuildFast(a) => ops::build::build_fast(&cli, a),
        Command::BuildextendQemu(a) => ops::build::buildextend(&cli, a, "qemu"),
        Command::BuildextendMetal(a) => ops::build::buildextend(&cli, a, "metal"),
        Command::BuildextendMetal4k(a) => ops::build::buildextend(&cli, a, "metal4k"),
        Command::BuildextendOpenstack(a) => ops::build::buildextend(&cli, a, "openstack"),
        Command::BuildextendLive(a) => ops::build::buildextend(&cli, a, "live"),
        Command::Kola(KolaCommand::Run(a)) => ops::kola::run(&cli, a, false),
        Command::Kola(KolaCommand::List(a)) => ops::kola::list(&cli, a),
        Command::KolaRun(a) => ops::kola::run(&cli, a, true),
        Command::Run(a) => ops::run::run(&cli, a),
        Command::VirtInstall(a) => ops::run::virt_install(&cli, a),
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
