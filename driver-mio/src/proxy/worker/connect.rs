//! Backend connections of the worker: a non-blocking connect to the address the session's
//! connection names, and its completion. Which backend, and what a failure means (another
//! backend, or an error for the client), is the endpoint's, at the next sync.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use ferry_core::session::{BackendConnId, Peer};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{Socket, State, Worker, FIRST_SOCKET};

impl Worker {
    pub(super) fn connect_backend(
        &mut self,
        slot: usize,
        conn: BackendConnId,
        addr: SocketAddr,
        now: Instant,
    ) {
        let Some(session_id) = self.sessions.get(slot).map(|s| s.id) else {
            return;
        };
        let key = self.sockets.next_key();
        let connected = TcpStream::connect(addr).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                Token(FIRST_SOCKET + key),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match connected {
            Ok(stream) => {
                let generation = self.generation();
                let key = self.sockets.insert(Socket {
                    stream,
                    session: slot,
                    session_id,
                    peer: Peer::Backend(conn),
                    state: State::Connecting,
                    out: VecDeque::new(),
                    queued: 0,
                    reading: true,
                    eof: false,
                    generation,
                });
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.backends.push((conn, key));
                }
            }
            Err(e) => {
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.conn.connect_failed(now, conn, &e);
                    // The caller is after_call's loop, which syncs the connection next.
                }
            }
        }
    }

    /// Judges a connecting socket after an event; true if it is now open.
    pub(super) fn finish_connect(&mut self, key: usize, now: Instant) -> bool {
        let Some(socket) = self.sockets.get_mut(key) else {
            return false;
        };
        if socket.state != State::Connecting {
            return false;
        }
        let result = match socket.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match socket.stream.peer_addr() {
                Ok(_) => Ok(()),
                // Not connected yet (a spurious wake-up): wait for the next event.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
                Err(e) => Err(e),
            },
        };
        let (slot, peer) = (socket.session, socket.peer);
        let Peer::Backend(conn) = peer else {
            return false;
        };
        match result {
            Ok(()) => {
                let _ = socket.stream.set_nodelay(true);
                socket.state = State::Open;
                if !socket.out.is_empty() {
                    self.touched.push(key);
                }
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.conn.connected(now, conn);
                    self.after_call(slot, now);
                }
                true
            }
            Err(e) => {
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.backends.retain(|&(c, _)| c != conn);
                }
                self.destroy(key);
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.conn.connect_failed(now, conn, &e);
                    self.after_call(slot, now);
                }
                false
            }
        }
    }
}
