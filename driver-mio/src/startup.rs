//! What both proxy programs (`ferry` and `ferry-smol`) do before they serve: parse the command
//! line, log to stderr, read the configuration and install the signal handlers. A failure is
//! printed under the program's name and becomes its exit code (2 for a configuration refused).

use std::fmt::Display;
use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;
use crate::config::Config;

/// Parses the command line (exiting on bad flags, as clap does), starts logging to stderr
/// (`RUST_LOG=ferry=debug` etc.; info by default) and reads the configuration it names.
pub fn start(program: &str) -> Result<(Cli, Config), ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let config = cli.config().map_err(|e| refused(program, e))?;
    Ok((cli, config))
}

/// Prints that the configuration was refused and why; the exit code for it (2).
pub fn refused(program: &str, why: impl Display) -> ExitCode {
    eprintln!("{program}: configuration refused:\n{why}");
    ExitCode::from(2)
}

/// The SIGTERM and SIGINT handlers, installed before serving so that no signal is lost in
/// between.
pub fn signals(program: &str) -> Result<Signals, ExitCode> {
    Signals::new([SIGTERM, SIGINT]).map_err(|e| {
        eprintln!("{program}: cannot install signal handlers: {e}");
        ExitCode::FAILURE
    })
}
