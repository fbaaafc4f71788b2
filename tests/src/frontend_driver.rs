//! The blocking driver shared by the test servers built on [`Frontend`]: a loopback listener with
//! one thread per connection, and the frontend's run loop over a blocking socket.
//!
//! The run loop is what any embedder of the frontend writes: feed socket bytes in while
//! `wants_input()`, drain `poll_transmit` / `poll_event` after every call, honour the handshake
//! deadline with `handle_timeout`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_core::frontend::{Event, Frontend};

/// One accepted connection, as handed to the per-connection closure.
pub(crate) struct Accepted {
    /// The socket.
    pub(crate) stream: TcpStream,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// A connection id, 1, 2, 3... per listener.
    pub(crate) id: u32,
    /// Set when the listener stops: the connection should end.
    pub(crate) stop: Arc<AtomicBool>,
}

/// A loopback listener on a free port that runs `on_connection` on a new thread for each
/// connection; stops accepting (and tells connections to end) on drop.
#[derive(Debug)]
pub(crate) struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds `127.0.0.1:0` and starts accepting.
    pub(crate) fn start(on_connection: impl Fn(Accepted) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        // Non-blocking so that the accept loop notices `stop`.
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let on_connection = Arc::new(on_connection);
        let accept = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let next_id = AtomicU32::new(1);
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let accepted = Accepted {
                                stream,
                                peer,
                                id: next_id.fetch_add(1, Ordering::SeqCst),
                                stop: stop.clone(),
                            };
                            let on_connection = on_connection.clone();
                            std::thread::spawn(move || on_connection(accepted));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Self {
            addr,
            stop,
            accept: Some(accept),
        }
    }

    /// The listening address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

/// Runs `frontend` over `stream` until it closes, the peer goes away or `stop` is set. Every
/// event but [`Event::Closed`] goes to `on_event` with the time it was taken, which answers it
/// through the frontend.
pub(crate) fn drive_frontend(
    mut stream: TcpStream,
    frontend: &mut Frontend,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&mut Frontend, Instant, Event),
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    // A short timeout so that the loop checks `stop` and the handshake deadline.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut closed = false;
        loop {
            while let Some(bytes) = frontend.poll_transmit() {
                if stream.write_all(&bytes).is_err() {
                    return;
                }
            }
            let Some(event) = frontend.poll_event() else {
                break;
            };
            match event {
                Event::Closed { .. } => closed = true,
                other => on_event(frontend, Instant::now(), other),
            }
        }
        if closed || frontend.is_closed() || stop.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if frontend.wants_input() {
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => frontend.handle_input(Instant::now(), &buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
        frontend.handle_timeout(Instant::now());
    }
}
