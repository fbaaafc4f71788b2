//! Backend connections of the worker: a non-blocking connect to the address the session's
//! connection names (a host name: looked up by the resolver threads first, its addresses tried
//! in order), and its completion. Which backend, and what a failure means (another backend, or
//! an error for the client), is the endpoint's, at the next sync.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use ferry_core::control::config::BackendAddr;
use ferry_core::session::{BackendConnId, Peer};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::super::resolver::Lookup;
use super::{Socket, State, Worker, FIRST_SOCKET};

impl Worker {
    /// Connects `conn` to `addr`: an IP address at once, a host name once the resolver threads
    /// have looked it up ([`Worker::resolved`]).
    pub(super) fn connect_backend(
        &mut self,
        slot: usize,
        conn: BackendConnId,
        addr: BackendAddr,
        now: Instant,
    ) {
        if let Some(ip) = addr.ip() {
            return self.connect_to(slot, conn, ip, VecDeque::new(), now);
        }
        let Some(s) = self.sessions.get_mut(slot) else {
            return;
        };
        let lookup = Lookup {
            worker: self.index,
            slot,
            session: s.id,
            conn,
            addr,
        };
        match self.resolver.lookup(lookup) {
            Ok(()) => s.resolving.push(conn),
            // The caller is after_call's loop, which syncs the connection next.
            Err(lookup) => s
                .conn
                .connect_failed(now, conn, &lookup.addr.resolver_busy()),
        }
    }

    /// The resolver threads looked up `conn`'s host name (the waker rang).
    pub(super) fn resolved(
        &mut self,
        slot: usize,
        session: u64,
        conn: BackendConnId,
        result: io::Result<Vec<SocketAddr>>,
        now: Instant,
    ) {
        let Some(s) = self.sessions.get_mut(slot).filter(|s| s.id == session) else {
            return;
        };
        let Some(i) = s.resolving.iter().position(|&c| c == conn) else {
            // The attempt ended meanwhile (its deadline passed, the session closed).
            return;
        };
        s.resolving.swap_remove(i);
        match result.map(VecDeque::from) {
            Ok(mut rest) => match rest.pop_front() {
                Some(first) => self.connect_to(slot, conn, first, rest, now),
                // `BackendAddr::resolved` makes a lookup that found nothing an error already.
                None => {
                    let e = io::Error::from(io::ErrorKind::AddrNotAvailable);
                    s.conn.connect_failed(now, conn, &e);
                }
            },
            Err(e) => s.conn.connect_failed(now, conn, &e),
        }
        self.after_call(slot, now);
    }

    /// Starts a non-blocking connect to the first of `addr`, then `rest` (a host name's other
    /// addresses), that takes one; the rest wait on the socket in case it fails. None does: the
    /// last error is the connect's.
    fn connect_to(
        &mut self,
        slot: usize,
        conn: BackendConnId,
        addr: SocketAddr,
        mut rest: VecDeque<SocketAddr>,
        now: Instant,
    ) {
        let Some(session_id) = self.sessions.get(slot).map(|s| s.id) else {
            return;
        };
        let key = self.sockets.next_key();
        let mut connected = Err(io::Error::from(io::ErrorKind::AddrNotAvailable));
        let mut next = Some(addr);
        while let Some(addr) = next.take() {
            connected = TcpStream::connect(addr).and_then(|mut stream| {
                self.poll.registry().register(
                    &mut stream,
                    Token(FIRST_SOCKET + key),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(stream)
            });
            if connected.is_ok() {
                break;
            }
            next = rest.pop_front();
        }
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
                    unread: false,
                    generation,
                    fallback: rest,
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
                Ok(peer) => Ok(peer),
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
            Ok(peer) => {
                let _ = socket.stream.set_nodelay(true);
                socket.state = State::Open;
                socket.fallback = VecDeque::new();
                if !socket.out.is_empty() {
                    self.touched.push(key);
                }
                if let Some(s) = self.sessions.get_mut(slot) {
                    // Where a host name led (the PROXY header's destination).
                    s.conn.connected_to(now, conn, peer);
                    self.after_call(slot, now);
                }
                true
            }
            Err(e) => {
                let fallback = std::mem::take(&mut socket.fallback);
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.backends.retain(|&(c, _)| c != conn);
                }
                self.destroy(key);
                if self.sessions.get(slot).is_none() {
                    return false;
                }
                if fallback.is_empty() {
                    if let Some(s) = self.sessions.get_mut(slot) {
                        s.conn.connect_failed(now, conn, &e);
                    }
                } else {
                    // The host name's next address.
                    let mut rest = fallback;
                    if let Some(next) = rest.pop_front() {
                        self.connect_to(slot, conn, next, rest, now);
                    }
                }
                self.after_call(slot, now);
                false
            }
        }
    }
}
