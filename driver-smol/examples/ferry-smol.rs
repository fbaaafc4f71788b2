//! `ferry-smol`: the `ferry` proxy run by the smol driver, with the same command line,
//! configuration file and admin endpoint as `ferry` (so the integration tests and the benchmark
//! can start either).
//!
//! ```text
//! cargo run -p ferry-smol --example ferry-smol -- --config ferry.toml
//! ```
//!
//! `proxy.workers` threads run the proxy's tasks; the admin endpoint (`/health`, `/metrics`,
//! `/api/...`) is served on `admin.listen` by tasks of the same executor; SIGTERM/SIGINT shut
//! down gracefully (a second signal exits at once); SIGHUP reads the configuration again and
//! applies what can change live. Logs go to stderr (`--log-level`, `RUST_LOG` or `[log] level`,
//! info by default; `--log-format json` for JSON lines).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::control::cli::Cli;
use ferry_core::control::config::{open_files_needed, report_open_files, LogConfig, LogFormat};
use ferry_smol::{Proxy, ProxyHandle, ShutdownOutcome};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Timer};
use tracing_subscriber::EnvFilter;

const PROGRAM: &str = "ferry-smol";

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    init_logging(&config.log);
    raise_open_files_limit(config.proxy.max_connections);
    // Debug output of the config never prints credentials or keys.
    tracing::debug!(?config, "configuration");
    if cli.check {
        println!("{}", config.summary());
        return ExitCode::SUCCESS;
    }
    let executor = Arc::new(Executor::new());
    // Files the configuration names (a backend CA) are read here, to refuse a bad one as such.
    // Reloads (SIGHUP, POST /api/config/reload) read the same file with the same flags.
    let source = cli.clone();
    let proxy = match Proxy::builder(&config)
        .executor(Arc::clone(&executor))
        .config_source(move || source.config())
        .build()
    {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let handle = proxy.handle();
    // Signals are registered before serving, so that none is lost in between.
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match smol::block_on(TcpListener::bind(config.proxy.listen)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot listen on {}: {e}", config.proxy.listen);
            return ExitCode::FAILURE;
        }
    };
    let admin_listener = match std::net::TcpListener::bind(config.admin.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "{PROGRAM}: cannot serve admin on {}: {e}",
                config.admin.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let admin = match admin::start(
        admin_listener,
        handle.clone(),
        Arc::clone(&executor),
        config.admin.clone(),
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot start the admin endpoint: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Worker threads run the executor until the proxy has stopped; this thread runs it too.
    let (stopped_tx, stopped_rx) = smol::channel::bounded::<()>(1);
    let mut threads = Vec::new();
    for i in 1..config.proxy.workers.get() {
        let (ex, stopped) = (Arc::clone(&executor), stopped_rx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("{PROGRAM}-{i}"))
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
        // SIGHUP reloads (the endpoint logs the outcome); the others shut down.
        let shutdown = signals.find(|&signal| {
            if signal == SIGHUP {
                let _ = shutdown_handle.reload();
            }
            signal != SIGHUP
        });
        if let Some(signal) = shutdown {
            let timeout = shutdown_handle.shutdown_timeout();
            tracing::info!(signal, ?timeout, "shutting down gracefully");
            let outcome = smol::block_on(shutdown_handle.shutdown(timeout));
            if let ShutdownOutcome::DeadlinePassed { aborted } = outcome {
                tracing::warn!(aborted, "sessions dropped at the shutdown deadline");
            }
        }
        if signals.any(|signal| signal != SIGHUP) {
            tracing::warn!("second signal: exiting now");
            std::process::exit(1);
        }
    });
    let result = smol::block_on(executor.run(proxy.run(listener)));
    // Stops serving admin connections (the accept thread ends with the process).
    drop(admin);
    drop(stopped_tx);
    for t in threads {
        let _ = t.join();
    }
    signals_handle.close();
    let _ = watcher.join();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at the level [`LogConfig::filter`] decides (`--log-level`, then `RUST_LOG`,
/// then `[log] level`), as text or as one JSON object per line.
fn init_logging(log: &LogConfig) {
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

/// Prints that the configuration was refused and why; the exit code for it (2).
fn refused(why: impl std::fmt::Display) -> ExitCode {
    eprintln!("{PROGRAM}: configuration refused:\n{why}");
    ExitCode::from(2)
}

/// Raises the soft open-file limit towards what `max_connections` needs, up to the hard limit
/// (as Go programs and haproxy do): the usual soft default of 1,024 would otherwise cap the
/// proxy at about 460 sessions, the rest failing to accept. Warns when even the hard limit is
/// short, naming the sessions it leaves room for.
fn raise_open_files_limit(max_connections: usize) {
    let limit = rlimit::increase_nofile_limit(open_files_needed(max_connections));
    report_open_files(max_connections, limit);
}

/// The admin endpoint: one request per connection (`Connection: close`), answered by
/// [`ProxyHandle::handle_admin`]. What a connection may send, for how long, over TLS or not, is
/// the core's [`AdminConnection`]; how many stay open is the core's [`AdminSlots`]: at
/// `[admin] max-connections` a new connection closes the oldest one still sending its request,
/// so held-open connections cannot lock out `/health/live`. Requests reach the proxy one at a
/// time.
///
/// Connections are served by smol tasks, but accepted by a thread of their own with a blocking
/// `accept`, as ferry's admin endpoint does: Linux reserves the new connection's descriptor
/// before a blocking `accept` sleeps, so the admin endpoint still answers (`/metrics`,
/// `/health`) when the proxy has run out of descriptors and its clients wait in the backlog.
mod admin {
    use std::io;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use ferry_core::control::admin::{AdminConnection, AdminSlots};
    use ferry_core::control::config::{report_admin_listen, AdminConfig};
    use ferry_core::control::ACCEPT_BACKOFF;
    use smol::channel::Receiver;

    use super::*;

    /// What the connection tasks share.
    struct Shared {
        config: AdminConfig,
        handle: ProxyHandle,
        /// The open connections, with the socket to shut down when one must give way.
        slots: Mutex<AdminSlots<TcpStream>>,
        /// Held while the proxy answers: one admin request at a time.
        answering: smol::lock::Mutex<()>,
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `listener` until the returned task is dropped (the accept thread then ends at
    /// its next connection, or with the process).
    pub(super) fn start(
        listener: std::net::TcpListener,
        handle: ProxyHandle,
        executor: Arc<Executor<'static>>,
        config: AdminConfig,
    ) -> io::Result<smol::Task<()>> {
        let local_addr = listener.local_addr()?;
        // One connection handed over at a time: the thread waits while the task admits it.
        let (accepted_tx, accepted) = smol::channel::bounded(1);
        std::thread::Builder::new()
            .name(format!("{PROGRAM}-admin"))
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(stream) => {
                            if accepted_tx.send_blocking(stream).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "admin accept failed");
                            // Out of descriptors and the like: do not spin.
                            std::thread::sleep(ACCEPT_BACKOFF);
                        }
                    }
                }
            })?;
        report_admin_listen(&config, local_addr);
        let shared = Arc::new(Shared {
            slots: Mutex::new(AdminSlots::new(config.limits.max_connections)),
            answering: smol::lock::Mutex::new(()),
            config,
            handle,
        });
        let serving = executor.spawn(serve(accepted, shared, Arc::clone(&executor)));
        Ok(serving)
    }

    /// Admits the accepted connections (closing the one that gives way), each served by a task
    /// of its own.
    async fn serve(
        accepted: Receiver<std::net::TcpStream>,
        shared: Arc<Shared>,
        executor: Arc<Executor<'static>>,
    ) {
        while let Ok(stream) = accepted.recv().await {
            let stream = match TcpStream::try_from(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin connection not served");
                    continue;
                }
            };
            let (id, evicted) = lock(&shared.slots).admit(stream.clone());
            if let Some(old) = evicted {
                // Its task's read or write ends at once.
                let _ = old.shutdown(std::net::Shutdown::Both);
                tracing::debug!("admin connections at the cap: closed the oldest");
            }
            let shared = Arc::clone(&shared);
            executor
                .spawn(async move {
                    serve_connection(stream, id, &shared).await;
                    lock(&shared.slots).release(id);
                })
                .detach();
        }
    }

    /// Runs `f` until `end`; `None` if the time ran out first.
    async fn until<T>(end: Instant, f: impl std::future::Future<Output = T>) -> Option<T> {
        future::or(async { Some(f.await) }, async {
            Timer::at(end).await;
            None
        })
        .await
    }

    /// Moves one connection's bytes through its [`AdminConnection`] until it is closed.
    async fn serve_connection(mut stream: TcpStream, id: u64, shared: &Shared) {
        let mut conn = AdminConnection::new(Instant::now(), &shared.config);
        let mut buf = [0u8; 4096];
        let mut write_shut = false;
        loop {
            while let Some(bytes) = conn.poll_transmit() {
                let end = conn.deadline().unwrap_or_else(Instant::now);
                let end = end.max(Instant::now() + Duration::from_millis(100));
                if !matches!(until(end, stream.write_all(&bytes)).await, Some(Ok(()))) {
                    return;
                }
            }
            if conn.is_closed() {
                return;
            }
            if conn.is_answered() && !write_shut {
                let _ = stream.shutdown(std::net::Shutdown::Write);
                write_shut = true;
            }
            if let Some(req) = conn.poll_request() {
                lock(&shared.slots).answering(id);
                let response = {
                    let _one_at_a_time = shared.answering.lock().await;
                    shared.handle.handle_admin(&req)
                };
                tracing::debug!(method = %req.method, path = %req.path, status = response.status, "admin request");
                conn.respond(Instant::now(), &response);
                continue;
            }
            // Reading (the request, or leftovers after the answer) always has a deadline.
            let Some(deadline) = conn.deadline() else {
                return;
            };
            match until(deadline, stream.read(&mut buf)).await {
                None => conn.handle_timeout(Instant::now().max(deadline)),
                Some(Ok(0)) => conn.handle_eof(Instant::now()),
                Some(Ok(n)) => conn.handle_input(Instant::now(), &buf[..n]),
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(_)) => return,
            }
        }
    }
}
