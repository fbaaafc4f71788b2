//! What the `ferry` program does before it serves: parse the command line, read the
//! configuration, log to stderr as it says, raise the open-file limit to what `max-connections`
//! needs and install the signal handlers. A failure is
//! printed under the program's name and becomes its exit code (2 for a configuration refused).

use std::fmt::Display;
use std::io::IsTerminal;
use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::EnvFilter;

use ferry_core::control::cli::Cli;
use ferry_core::control::config::{open_files_needed, report_open_files, LogConfig, LogFormat};
use ferry_core::control::Config;

/// Parses the command line (exiting on bad flags, as clap does), reads the configuration it
/// names and starts logging to stderr as they say ([`init_logging`]).
pub fn start(program: &str) -> Result<(Cli, Config), ExitCode> {
    let cli = Cli::from_env();
    let config = cli.config().map_err(|e| refused(program, e))?;
    init_logging(&config.log);
    raise_open_files_limit(config.proxy.max_connections);
    Ok((cli, config))
}

/// Logs to stderr at the level [`LogConfig::filter`] decides (`--log-level`, then `RUST_LOG`,
/// then `[log] level`), as text or as one JSON object per line.
pub fn init_logging(log: &LogConfig) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = EnvFilter::try_new(log.filter(rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => logger.json().flatten_event(true).init(),
        // Colours only on a terminal: a log file or journal gets plain text.
        LogFormat::Text => logger.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Raises the soft open-file limit towards what `max_connections` needs, up to the hard limit
/// (as Go programs and haproxy do): the usual soft default of 1,024 would otherwise cap the
/// proxy at about 460 sessions, the rest failing to accept. Warns when even the hard limit is
/// short, naming the sessions it leaves room for.
fn raise_open_files_limit(max_connections: usize) {
    let limit = rlimit::increase_nofile_limit(open_files_needed(max_connections));
    report_open_files(max_connections, limit);
}

/// Prints that the configuration was refused and why; the exit code for it (2).
pub fn refused(program: &str, why: impl Display) -> ExitCode {
    eprintln!("{program}: configuration refused:\n{why}");
    ExitCode::from(2)
}

/// The SIGTERM and SIGINT handlers (shutdown) and the SIGHUP one (reload), installed before
/// serving so that no signal is lost in between (and SIGHUP no longer ends the process).
pub fn signals(program: &str) -> Result<Signals, ExitCode> {
    Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| {
        eprintln!("{program}: cannot install signal handlers: {e}");
        ExitCode::FAILURE
    })
}
