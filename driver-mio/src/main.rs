//! The `ferry` proxy binary: parses flags and configuration, sets up logging, runs the proxy
//! until SIGTERM or SIGINT, then shuts down gracefully (a second signal exits at once). SIGHUP
//! reads the configuration again and applies what can change live.

use std::process::ExitCode;
use std::time::Duration;

use ferry_core::control::session_config;
use ferry_mio::proxy::Proxy;
use ferry_mio::startup;
use signal_hook::consts::SIGHUP;

fn main() -> ExitCode {
    let (cli, config) = match startup::start("ferry") {
        Ok(started) => started,
        Err(code) => return code,
    };
    // Debug output of the config never prints credentials or keys (see config.rs).
    tracing::debug!(?config, "configuration");
    if cli.check {
        println!("{}", config.summary());
        return ExitCode::SUCCESS;
    }
    // Files the configuration names (a backend CA) are read here, to refuse a bad one as such.
    if let Err(e) = session_config(&config) {
        return startup::refused("ferry", e);
    }
    // Signals are registered before serving, so that none is lost in between.
    let mut signals = match startup::signals("ferry") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let proxy = match Proxy::start(&config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "ferry: cannot start (listen {}, admin {}): {e}",
                config.proxy.listen, config.admin.listen
            );
            return ExitCode::FAILURE;
        }
    };
    // Reloads read the same file with the same flags.
    let source = cli.clone();
    proxy.set_config_source(Box::new(move || source.config()));
    let signals_handle = signals.handle();
    for signal in signals.forever() {
        if signal == SIGHUP {
            // The endpoint logs what was applied or why it was refused.
            let _ = proxy.reload();
            continue;
        }
        tracing::info!(signal, delay = ?config.proxy.shutdown_delay, timeout = ?config.proxy.shutdown_timeout, "shutting down gracefully");
        break;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        proxy.shutdown();
        let _ = done_tx.send(());
    });
    // Wait for the graceful shutdown, a second signal, or the deadline (plus slack for the
    // health checker and admin endpoint to stop).
    let watcher = std::thread::spawn(move || {
        if signals.forever().any(|signal| signal != SIGHUP) {
            tracing::warn!("second signal: exiting now");
            std::process::exit(1);
        }
    });
    let limit =
        config.proxy.shutdown_delay + config.proxy.shutdown_timeout + Duration::from_secs(5);
    let code = match done_rx.recv_timeout(limit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => {
            tracing::error!("shutdown did not finish in time; exiting");
            ExitCode::FAILURE
        }
    };
    signals_handle.close();
    let _ = watcher.join();
    code
}
