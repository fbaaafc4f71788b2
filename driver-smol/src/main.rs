//! `ferry-smol`: the `ferry` proxy run by the smol driver, with the same command line and
//! configuration as `ferry` (so the integration tests and the benchmark can start either).
//! `proxy.workers` threads run the session tasks; SIGTERM/SIGINT shut down gracefully (a second
//! signal exits at once).

use std::process::ExitCode;
use std::sync::Arc;

use ferry_mio::admin::AdminServer;
use ferry_mio::startup;
use ferry_smol::{Proxy, ShutdownOutcome};
use smol::Executor;

fn main() -> ExitCode {
    let (cli, config) = match startup::start("ferry-smol") {
        Ok(started) => started,
        Err(code) => return code,
    };
    if cli.check {
        println!(
            "configuration ok: listen {}, admin {}, {} backend(s), {} worker(s)",
            config.proxy.listen,
            config.admin.listen,
            config.backends.len(),
            config.proxy.workers,
        );
        return ExitCode::SUCCESS;
    }
    let executor = Arc::new(Executor::new());
    let proxy = match Proxy::builder(&config)
        .executor(Arc::clone(&executor))
        .build()
    {
        Ok(p) => p,
        Err(e) => return startup::refused("ferry-smol", e),
    };
    let handle = proxy.handle();
    let mut signals = match startup::signals("ferry-smol") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let listener = match smol::block_on(smol::net::TcpListener::bind(config.proxy.listen)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ferry-smol: cannot listen on {}: {e}", config.proxy.listen);
            return ExitCode::FAILURE;
        }
    };
    let admin = match AdminServer::start(config.admin.listen, handle.admin_api()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "ferry-smol: cannot serve admin on {}: {e}",
                config.admin.listen
            );
            return ExitCode::FAILURE;
        }
    };
    // Worker threads run the executor until the proxy has stopped; this thread runs it too.
    let (stopped_tx, stopped_rx) = smol::channel::bounded::<()>(1);
    let mut threads = Vec::new();
    for i in 1..config.proxy.workers.get() {
        let (ex, stopped) = (Arc::clone(&executor), stopped_rx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("ferry-smol-{i}"))
            .spawn(move || {
                smol::block_on(ex.run(async {
                    let _ = stopped.recv().await;
                }))
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => tracing::warn!(error = %e, "cannot start a worker thread"),
        }
    }
    let shutdown_handle = handle.clone();
    let signals_handle = signals.handle();
    let watcher = std::thread::spawn(move || {
        let mut signals = signals.forever();
        if let Some(signal) = signals.next() {
            tracing::info!(signal, "shutting down gracefully");
            let timeout = shutdown_handle.shutdown_timeout();
            let outcome = smol::block_on(shutdown_handle.shutdown(timeout));
            if let ShutdownOutcome::DeadlinePassed { aborted } = outcome {
                tracing::warn!(aborted, "sessions dropped at the shutdown deadline");
            }
        }
        if signals.next().is_some() {
            tracing::warn!("second signal: exiting now");
            std::process::exit(1);
        }
    });
    let result = smol::block_on(executor.run(proxy.run(listener)));
    drop(stopped_tx);
    for t in threads {
        let _ = t.join();
    }
    admin.stop();
    signals_handle.close();
    let _ = watcher.join();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-smol: {e}");
            ExitCode::FAILURE
        }
    }
}
