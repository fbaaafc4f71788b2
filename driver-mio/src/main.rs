//! The `ferry` proxy binary: parses flags and configuration, sets up logging, runs the proxy.
//! The mio event loop lands with the proxy issue; until then the binary checks its configuration
//! (`--check`) and otherwise says that it cannot proxy yet, rather than pretending to.

use std::process::ExitCode;

use clap::Parser;
use ferry_mio::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // RUST_LOG=ferry=debug etc.; info by default. Logs go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let config = match cli.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry: configuration refused:\n{e}");
            return ExitCode::from(2);
        }
    };
    // Debug output of the config never prints credentials or keys (see config.rs).
    tracing::debug!(?config, "configuration");
    if cli.check {
        println!(
            "configuration ok: listen {}, admin {}, {} backend(s), {} worker(s), auth {:?}, migration {:?}",
            config.proxy.listen,
            config.admin.listen,
            config.backends.len(),
            config.proxy.workers,
            config.auth.mode,
            config.migration.mode,
        );
        return ExitCode::SUCCESS;
    }
    tracing::error!("the proxy event loop is not built yet (see README.md)");
    ExitCode::from(2)
}
