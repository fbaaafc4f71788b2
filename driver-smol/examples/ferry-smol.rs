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
//! applies what can change live. Logs go to stderr (`RUST_LOG`, info by default).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::control::admin::{parse_request, Parsed, Request, Response, MAX_BODY, MAX_HEAD};
use ferry_core::control::cli::Cli;
use ferry_core::control::config::{open_files_needed, report_open_files};
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
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
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
        admin::Limits::default(),
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

/// Prints that the configuration was refused and why; the exit code for it (2).
fn refused(why: impl std::fmt::Display) -> ExitCode {
    eprintln!("{PROGRAM}: configuration refused:\n{why}");
    ExitCode::from(2)
}

/// Raises the soft open-file limit towards what `max_connections` needs, up to the hard limit
/// (as Go programs and haproxy do): the usual soft default of 1,024 would otherwise cap the
/// proxy at about 480 sessions, the rest failing to accept. Warns when even the hard limit is
/// short, naming the sessions it leaves room for.
fn raise_open_files_limit(max_connections: usize) {
    let limit = rlimit::increase_nofile_limit(open_files_needed(max_connections));
    report_open_files(max_connections, limit);
}

/// The admin endpoint: one request per connection (`Connection: close`), answered by
/// [`ProxyHandle::handle_admin`]. It cannot hang or slow the proxy: it reads at most
/// `MAX_HEAD + MAX_BODY` bytes per connection, gives each connection a deadline
/// ([`Limits::deadline`]) and serves at most [`Limits::max_concurrent`] connections at once
/// (others get an immediate 503).
///
/// Connections are served by smol tasks, but accepted by a thread of their own with a blocking
/// `accept`, as ferry's admin endpoint does: Linux reserves the new connection's descriptor
/// before a blocking `accept` sleeps, so the admin endpoint still answers (`/metrics`,
/// `/health`) when the proxy has run out of descriptors and its clients wait in the backlog.
mod admin {
    use std::io;

    use smol::channel::Receiver;

    use super::*;

    /// Bounds on what one admin connection may cost.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Limits {
        /// The whole exchange (reading the request, writing the answer) must end within this.
        pub(super) deadline: Duration,
        /// Connections served at once; more are answered 503 and closed.
        pub(super) max_concurrent: usize,
    }

    impl Default for Limits {
        /// 5 seconds per connection, 8 at once.
        fn default() -> Self {
            Self {
                deadline: Duration::from_secs(5),
                max_concurrent: 8,
            }
        }
    }

    /// Serves `listener` until the returned task is dropped (the accept thread then ends at
    /// its next connection, or with the process).
    pub(super) fn start(
        listener: std::net::TcpListener,
        handle: ProxyHandle,
        executor: Arc<Executor<'static>>,
        limits: Limits,
    ) -> io::Result<smol::Task<()>> {
        let local_addr = listener.local_addr()?;
        // One connection handed over at a time: the thread waits while the task is busy.
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
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        tracing::info!(%local_addr, "admin endpoint listening");
        let serving = executor.spawn(serve(accepted, handle, Arc::clone(&executor), limits));
        Ok(serving)
    }

    /// Serves the accepted connections, each by a task of its own.
    async fn serve(
        accepted: Receiver<std::net::TcpStream>,
        handle: ProxyHandle,
        executor: Arc<Executor<'static>>,
        limits: Limits,
    ) {
        let active = Arc::new(AtomicUsize::new(0));
        while let Ok(stream) = accepted.recv().await {
            let mut stream = match TcpStream::try_from(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin connection not served");
                    continue;
                }
            };
            if active.fetch_add(1, Ordering::SeqCst) >= limits.max_concurrent {
                active.fetch_sub(1, Ordering::SeqCst);
                refuse_busy(&mut stream).await;
                continue;
            }
            let handle = handle.clone();
            let done = Arc::clone(&active);
            executor
                .spawn(async move {
                    serve_connection(stream, &handle, limits.deadline).await;
                    done.fetch_sub(1, Ordering::SeqCst);
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

    /// Answers 503 on the accept task, spending at most a few hundred milliseconds. The request
    /// is read (up to 4 KiB) and the socket drained after the answer, because closing a socket
    /// with unread input sends a reset that can destroy the answer before the client reads it.
    async fn refuse_busy(stream: &mut TcpStream) {
        let mut sink = [0u8; 4096];
        let now = Instant::now();
        let _ = until(now + Duration::from_millis(50), stream.read(&mut sink)).await;
        let answer = Response::text(503, "busy\n").to_bytes();
        let _ = until(
            Instant::now() + Duration::from_millis(200),
            stream.write_all(&answer),
        )
        .await;
        let _ = stream.shutdown(std::net::Shutdown::Write);
        drain(stream, Instant::now() + Duration::from_millis(200)).await;
    }

    /// After the answer: reads and discards what the client still sends (at most `MAX_HEAD +
    /// MAX_BODY` bytes, until `end`), so that closing does not reset the connection under the
    /// answer.
    async fn drain(stream: &mut TcpStream, end: Instant) {
        let mut sink = [0u8; 4096];
        let mut left = MAX_HEAD + MAX_BODY;
        while left > 0 {
            match until(end, stream.read(&mut sink)).await {
                Some(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                _ => return,
            }
        }
    }

    /// Serves one request on `stream` and closes it.
    async fn serve_connection(mut stream: TcpStream, handle: &ProxyHandle, deadline: Duration) {
        let end = Instant::now() + deadline;
        let response = match read_request(&mut stream, end).await {
            Ok(req) => {
                let response = handle.handle_admin(&req);
                tracing::debug!(method = %req.method, path = %req.path, status = response.status, "admin request");
                response
            }
            Err(Some(response)) => {
                tracing::debug!(status = response.status, "admin request refused");
                response
            }
            Err(None) => return,
        };
        let write_end = end.max(Instant::now() + Duration::from_millis(100));
        let _ = until(write_end, stream.write_all(&response.to_bytes())).await;
        let _ = stream.shutdown(std::net::Shutdown::Write);
        drain(
            &mut stream,
            end.max(Instant::now() + Duration::from_millis(100)),
        )
        .await;
    }

    /// Reads until a whole request is there, the caps are exceeded or `end` passes. `Err(None)`:
    /// the client went away, nothing to answer.
    async fn read_request(
        stream: &mut TcpStream,
        end: Instant,
    ) -> Result<Request, Option<Response>> {
        let cap = MAX_HEAD + MAX_BODY;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            match parse_request(&buf) {
                Parsed::Complete(req) => return Ok(req),
                Parsed::Invalid(response) => return Err(Some(response)),
                Parsed::Incomplete => {}
            }
            let room = cap.saturating_sub(buf.len()).min(chunk.len());
            if room == 0 {
                return Err(Some(Response::text(413, "request too large\n")));
            }
            match until(end, stream.read(&mut chunk[..room])).await {
                None => return Err(Some(Response::text(408, "request not received in time\n"))),
                Some(Ok(0)) => return Err(None),
                Some(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Some(Err(_)) => return Err(None),
            }
        }
    }
}
