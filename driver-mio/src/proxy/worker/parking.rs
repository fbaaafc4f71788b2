//! Multiplexing's socket moves: a session parks a backend socket between statements (out of this
//! worker, into [`super::super::parked`]) and adopts one, maybe parked by another worker, for its
//! next statement. Which socket and when is the session's and the endpoint's; this only moves it.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use ferry_core::control::PooledId;
use ferry_core::session::{BackendConnId, Peer};
use mio::{Interest, Registry, Token};

use super::super::parked::{write_without_blocking, Parked};
use super::super::slab::Slab;
use super::{Slot, Socket, State, Worker, FIRST_SOCKET};

/// Takes backend connection `conn`'s socket from session `s` and from this worker's poll: after
/// this, no table of the worker names its index (a linger timer cannot: the socket is open).
/// Bytes still queued are written if the socket takes them, and kept with it otherwise. `None`
/// if the session has no socket for `conn` (it closed meanwhile): the endpoint then hands out
/// an id with nothing parked under it, and its adopter sees end of file.
///
/// A free function: the caller holds the endpoint's lock (see [`super::super::parked`]) and the
/// session while it runs.
pub(super) fn park_socket(
    sockets: &mut Slab<Socket>,
    touched: &mut Vec<usize>,
    registry: &Registry,
    s: &mut Slot,
    conn: BackendConnId,
) -> Option<Parked> {
    let i = s.backends.iter().position(|&(c, _)| c == conn)?;
    let (_, key) = s.backends.swap_remove(i);
    touched.retain(|&k| k != key);
    let mut socket = sockets.remove(key)?;
    if socket.state != State::Open {
        // The core parks only connections it logged in with; a socket still connecting or
        // closing is not one (its id stays empty, see above).
        tracing::debug!(session = s.id, ?conn, state = ?socket.state, "not parked: not open");
        return None;
    }
    if let Err(e) = registry.deregister(&mut socket.stream) {
        // Its events would reach this worker under a token another socket may get.
        tracing::warn!(session = s.id, error = %e, "cannot deregister a parked socket");
        return None;
    }
    if !socket.out.is_empty() {
        // A failed write shows at its next use, as an end of file.
        let _ = write_without_blocking(&mut socket.stream, &mut socket.out);
    }
    tracing::trace!(session = s.id, ?conn, "backend socket parked");
    Some(Parked {
        stream: socket.stream,
        out: socket.out,
    })
}

impl Worker {
    /// Makes the socket parked under `pooled` session `slot`'s backend connection `conn`: it
    /// joins this worker's poll, readable and writable as any socket (registering reports data
    /// that arrived while it was parked), and the session's tables, and the connection is told
    /// ([`Connection::adopted`](ferry_core::control::Connection::adopted)). A socket no longer parked
    /// (it failed, or could not be parked) is `conn`'s end of file.
    pub(super) fn adopt_parked(
        &mut self,
        slot: usize,
        conn: BackendConnId,
        pooled: PooledId,
        now: Instant,
    ) {
        let parked = self.shared.parked.take(pooled);
        let generation = self.generation();
        let key = self.sockets.next_key();
        // Without its session (never, inside `after_call`) the socket is dropped: the session's
        // close told the endpoint it no longer holds it.
        let Some(s) = self.sessions.get_mut(slot) else {
            return;
        };
        let Some(Parked { mut stream, out }) = parked else {
            tracing::debug!(session = s.id, ?conn, pooled, "parked socket gone");
            s.conn.handle_eof(now, Peer::Backend(conn));
            return;
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(FIRST_SOCKET + key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(session = s.id, error = %e, "cannot register an adopted socket");
            s.conn.handle_eof(now, Peer::Backend(conn));
            return;
        }
        let queued = out.iter().map(Bytes::len).sum();
        let key = self.sockets.insert(Socket {
            stream,
            session: slot,
            session_id: s.id,
            peer: Peer::Backend(conn),
            state: State::Open,
            out,
            queued,
            reading: true,
            eof: false,
            generation,
            fallback: VecDeque::new(),
        });
        s.backends.push((conn, key));
        if queued > 0 {
            self.touched.push(key);
        }
        tracing::trace!(
            worker = self.index,
            session = s.id,
            ?conn,
            pooled,
            "parked backend socket adopted"
        );
        // The session brings it to its state; `after_call`'s loop sends what that takes.
        s.conn.adopted(now, conn);
    }
}
