//! Multiplexing's socket moves: a session parks a backend socket between statements (into
//! [`super::super::parked`]) and adopts one, maybe parked by another worker, for its next
//! statement. Which socket and when is the session's and the endpoint's; this only moves it.
//!
//! A parked socket stays in this worker's poll, under its token, whose slot stays reserved
//! ([`ParkedHere`]): taking it back (the common case: a session is given its own connection
//! first, and sessions stay on their worker) then costs no system call, where leaving the poll
//! and joining it again cost two per statement. Another worker's session takes it out of this
//! poll; this worker reuses the slot once told ([`ParkedHere::vacated`], before its next poll,
//! so no event already collected for the old socket reaches a new one).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_core::control::PooledId;
use ferry_core::session::{BackendConnId, Peer};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::super::parked::{write_without_blocking, Home, HomePoll, Parked};
use super::super::slab::Slab;
use super::{Slot, Socket, State, Worker, FIRST_SOCKET};

/// The sockets this worker parked that are still in its poll, by reserved slot.
#[derive(Debug)]
pub(super) struct ParkedHere {
    poll: Arc<HomePoll>,
    /// Reserved slot: whether the socket may hold input no edge will report again, because its
    /// edge came while it was parked (and was dropped) or it was parked before a read drained it.
    slots: HashMap<usize, bool>,
}

impl ParkedHere {
    /// For the poll `registry` belongs to.
    pub(super) fn new(registry: &Registry) -> io::Result<Self> {
        Ok(Self {
            poll: Arc::new(HomePoll::new(registry)?),
            slots: HashMap::new(),
        })
    }

    /// Records that the socket in reserved slot `key` is parked, registered with READABLE in
    /// its interest if `reading`; `unread`: input may be waiting with its edge gone.
    pub(super) fn park(&mut self, key: usize, reading: bool, unread: bool) -> Home {
        self.slots.insert(key, unread);
        Home {
            poll: Arc::clone(&self.poll),
            key,
            reading,
        }
    }

    /// An event for slot `key`, which holds no socket: true if a parked socket's (ignored now;
    /// a readable or error edge is remembered for its adoption).
    pub(super) fn event(&mut self, key: usize, readable: bool) -> bool {
        match self.slots.get_mut(&key) {
            Some(unread) => {
                *unread |= readable;
                true
            }
            None => false,
        }
    }

    /// The reserved slots whose sockets left this poll since the last call (taken by another
    /// worker, or closed): free now. Called between polls only.
    pub(super) fn vacated(&mut self) -> Vec<usize> {
        let mut keys = self.poll.take_vacated();
        keys.retain(|key| self.slots.remove(key).is_some());
        keys
    }

    /// How many parked sockets are in this poll.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// An adopted socket, in this worker's poll.
#[derive(Debug)]
pub(super) struct Moored {
    pub(super) stream: TcpStream,
    pub(super) out: VecDeque<Bytes>,
    /// Its slot: the reserved one it was parked from, or the next free one.
    pub(super) key: usize,
    /// `key` is a reserved slot (to fill) rather than the next free one (to insert into).
    pub(super) reserved: bool,
    /// READABLE is part of its registered interest.
    pub(super) reading: bool,
    /// It was re-registered to report input that came while it was parked.
    pub(super) rearmed: bool,
}

/// Brings `parked` into the poll `here` and `registry` belong to: back into its reserved slot
/// if it was parked here, else out of its home's poll and into this one under slot `next_key`.
///
/// Input (or an end of file) that came while it was parked must be seen: edge-triggered polling
/// reports an edge once. Registering with this poll reports what is already waiting. A socket
/// taken back is still registered, and only edges collected by this worker's poll while it was
/// parked were dropped: if one was (or it was parked before a read drained it), `reregister`
/// (one system call) re-arms it and the poll reports the waiting input again; if not, whatever
/// comes is reported by the next poll under the same token, and nothing is called. Trying a read
/// instead would cost a system call each time, the common case being nothing to read. A socket
/// not read now (READABLE out of its interest) is re-registered when reading resumes, which
/// reports it too.
pub(super) fn moor(
    parked: Parked,
    here: &mut ParkedHere,
    registry: &Registry,
    next_key: usize,
) -> io::Result<Moored> {
    let Parked {
        mut stream,
        out,
        home,
    } = parked;
    let ours = home
        .as_ref()
        .and_then(|h| Arc::ptr_eq(&h.poll, &here.poll).then_some(h.key))
        .and_then(|key| here.slots.remove(&key));
    if let (Some(unread), Some(home)) = (ours, &home) {
        let rearmed = unread && home.reading;
        if rearmed {
            if let Err(e) = registry.reregister(
                &mut stream,
                Token(FIRST_SOCKET + home.key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                // Closed before its slot is freed (before the next poll).
                drop(stream);
                here.poll.vacate(home.key);
                here.slots.insert(home.key, false);
                return Err(e);
            }
        }
        return Ok(Moored {
            stream,
            out,
            key: home.key,
            reserved: true,
            reading: home.reading,
            rearmed,
        });
    }
    let (mut stream, out) = Parked { stream, out, home }.leave_home()?;
    registry.register(
        &mut stream,
        Token(FIRST_SOCKET + next_key),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(Moored {
        stream,
        out,
        key: next_key,
        reserved: false,
        reading: true,
        rearmed: false,
    })
}

/// Takes backend connection `conn`'s socket from session `s`: after this, no table of the worker
/// names its slot, which stays reserved while the socket stays in this worker's poll (see
/// [`ParkedHere`]; a linger timer cannot name it: the socket is open). Bytes still queued are
/// written if the socket takes them, and kept with it otherwise. `None` if the session has no
/// open socket for `conn` (it closed meanwhile): the endpoint then hands out an id with nothing
/// parked under it, and its adopter sees end of file.
///
/// A free function: the caller holds the endpoint's lock (see [`super::super::parked`]) and the
/// session while it runs.
pub(super) fn park_socket(
    sockets: &mut Slab<Socket>,
    touched: &mut Vec<usize>,
    here: &mut ParkedHere,
    s: &mut Slot,
    conn: BackendConnId,
) -> Option<Parked> {
    let i = s.backends.iter().position(|&(c, _)| c == conn)?;
    let (_, key) = s.backends.swap_remove(i);
    touched.retain(|&k| k != key);
    let state = sockets.get(key)?.state;
    if state != State::Open {
        // The core parks only connections it logged in with; a socket still connecting or
        // closing is not one (its id stays empty, see above). Dropping it closes it.
        sockets.remove(key);
        tracing::debug!(session = s.id, ?conn, ?state, "not parked: not open");
        return None;
    }
    let mut socket = sockets.reserve(key)?;
    if !socket.out.is_empty() {
        // A failed write shows at its next use, as an end of file.
        let _ = write_without_blocking(&mut socket.stream, &mut socket.out);
    }
    let home = here.park(key, socket.reading, socket.unread || socket.eof);
    tracing::trace!(session = s.id, ?conn, key, "backend socket parked");
    Some(Parked {
        stream: socket.stream,
        out: socket.out,
        home: Some(home),
    })
}

impl Worker {
    /// Makes the socket parked under `pooled` session `slot`'s backend connection `conn`: it
    /// joins this worker's poll (or is taken back, see [`moor`]), readable and writable as any
    /// socket, and the session's tables, and the connection is told
    /// ([`Connection::adopted`](ferry_core::control::Connection::adopted)). A socket no longer
    /// parked (it failed, or could not be parked) is `conn`'s end of file.
    pub(super) fn adopt_parked(
        &mut self,
        slot: usize,
        conn: BackendConnId,
        pooled: PooledId,
        now: Instant,
    ) {
        let parked = self.shared.parked.take(pooled);
        let generation = self.generation();
        // Without its session (never, inside `after_call`) the socket is closed: the session's
        // close told the endpoint it no longer holds it.
        let Some(s) = self.sessions.get_mut(slot) else {
            if let Some(parked) = parked {
                parked.close();
            }
            return;
        };
        let Some(parked) = parked else {
            tracing::debug!(session = s.id, ?conn, pooled, "parked socket gone");
            s.conn.handle_eof(now, Peer::Backend(conn));
            return;
        };
        let next_key = self.sockets.next_key();
        let moored = match moor(
            parked,
            &mut self.parked_here,
            self.poll.registry(),
            next_key,
        ) {
            Ok(moored) => moored,
            Err(e) => {
                tracing::warn!(session = s.id, error = %e, "cannot adopt a parked socket");
                s.conn.handle_eof(now, Peer::Backend(conn));
                return;
            }
        };
        let queued = moored.out.iter().map(Bytes::len).sum();
        let socket = Socket {
            stream: moored.stream,
            session: slot,
            session_id: s.id,
            peer: Peer::Backend(conn),
            state: State::Open,
            out: moored.out,
            queued,
            reading: moored.reading,
            eof: false,
            // Whatever waits is reported by the poll (see `moor`).
            unread: false,
            generation,
            fallback: VecDeque::new(),
        };
        let key = if moored.reserved {
            // `moor` found the slot reserved by this worker's `park_socket`.
            if self.sockets.fill(moored.key, socket).is_err() {
                tracing::error!(session = s.id, key = moored.key, "parked slot not reserved");
                s.conn.handle_eof(now, Peer::Backend(conn));
                return;
            }
            moored.key
        } else {
            self.sockets.insert(socket)
        };
        debug_assert_eq!(key, moored.key);
        s.backends.push((conn, key));
        if queued > 0 {
            self.touched.push(key);
        }
        tracing::trace!(
            worker = self.index,
            session = s.id,
            ?conn,
            pooled,
            key,
            taken_back = moored.reserved,
            rearmed = moored.rearmed,
            "parked backend socket adopted"
        );
        // The session brings it to its state; `after_call`'s loop sends what that takes.
        s.conn.adopted(now, conn);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use bytes::Bytes;
    use ferry_core::control::PoolClose;
    use mio::{Events, Poll};

    use super::super::super::parked::ParkedSockets;
    use super::*;

    /// A worker's poll, its slots (streams only) and its parked-socket bookkeeping.
    struct Home {
        poll: Poll,
        slots: Slab<TcpStream>,
        here: ParkedHere,
    }

    impl Home {
        fn new() -> Self {
            let poll = Poll::new().unwrap();
            let here = ParkedHere::new(poll.registry()).unwrap();
            Self {
                poll,
                slots: Slab::default(),
                here,
            }
        }

        /// A connected socket in this poll (as a backend socket in use), and its peer.
        fn connect(&mut self) -> (usize, std::net::TcpStream) {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (peer, _) = listener.accept().unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            ours.set_nonblocking(true).unwrap();
            let mut stream = TcpStream::from_std(ours);
            let key = self.slots.next_key();
            self.poll
                .registry()
                .register(
                    &mut stream,
                    Token(FIRST_SOCKET + key),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .unwrap();
            assert_eq!(self.slots.insert(stream), key);
            // The first (writable) edge, as a socket in use has had.
            self.events(Duration::from_millis(50));
            (key, peer)
        }

        /// Parks slot `key` under `pooled`, as `park_socket` does.
        fn park(&mut self, key: usize, pooled: PooledId, parked: &ParkedSockets) {
            let stream = self.slots.reserve(key).unwrap();
            let home = self.here.park(key, true, false);
            let out = VecDeque::new();
            let home = Some(home);
            parked.park(pooled, Parked { stream, out, home });
        }

        /// Adopts `pooled`, as `Worker::adopt_parked` does: where it went.
        fn adopt(&mut self, pooled: PooledId, parked: &ParkedSockets) -> Adopted {
            let p = parked.take(pooled).unwrap();
            let next = self.slots.next_key();
            let moored = moor(p, &mut self.here, self.poll.registry(), next).unwrap();
            let adopted = Adopted {
                key: moored.key,
                reserved: moored.reserved,
                reading: moored.reading,
                rearmed: moored.rearmed,
            };
            if moored.reserved {
                self.slots.fill(moored.key, moored.stream).unwrap();
            } else {
                assert_eq!(self.slots.insert(moored.stream), moored.key);
            }
            adopted
        }

        /// One poll: the slots with an event, readable ones flagged; parked ones go to
        /// `ParkedHere` as the worker's loop does.
        fn events(&mut self, timeout: Duration) -> Vec<(usize, bool)> {
            let mut events = Events::with_capacity(16);
            self.poll.poll(&mut events, Some(timeout)).unwrap();
            let mut seen = Vec::new();
            for e in events.iter() {
                let key = e.token().0 - FIRST_SOCKET;
                let readable = e.is_readable() || e.is_read_closed();
                if self.slots.get(key).is_none() {
                    assert!(self.here.event(key, readable), "event for an unknown slot");
                    continue;
                }
                seen.push((key, readable));
            }
            seen
        }

        /// Frees the vacated slots, as the worker does before each poll.
        fn release_vacated(&mut self) -> Vec<usize> {
            let keys = self.here.vacated();
            for &key in &keys {
                assert!(self.slots.release(key));
            }
            keys
        }
    }

    /// A [`Moored`] without its socket.
    struct Adopted {
        key: usize,
        reserved: bool,
        reading: bool,
        rearmed: bool,
    }

    const SHORT: Duration = Duration::from_millis(100);

    #[test]
    fn taken_back_by_its_worker_a_socket_keeps_its_slot_and_token() {
        let parked = ParkedSockets::default();
        let mut w = Home::new();
        let (key, mut peer) = w.connect();
        w.park(key, 7, &parked);
        assert_eq!(w.here.len(), 1);
        // Its slot is not given to another socket meanwhile.
        let (other, _other_peer) = w.connect();
        assert_ne!(other, key);
        assert!(w.events(SHORT).is_empty(), "nothing came while parked");
        let moored = w.adopt(7, &parked);
        assert!(moored.reserved && !moored.rearmed, "no system call");
        assert_eq!((moored.key, moored.reading), (key, true));
        assert_eq!(w.here.len(), 0);
        assert!(w.release_vacated().is_empty());
        // Still in the poll, under the same token.
        peer.write_all(b"row").unwrap();
        assert_eq!(w.events(Duration::from_secs(5)), [(key, true)]);
        let mut buf = [0u8; 8];
        let n = w.slots.get_mut(key).unwrap().read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"row");
    }

    #[test]
    fn input_that_came_while_parked_is_reported_after_the_take_back() {
        let parked = ParkedSockets::default();
        let mut w = Home::new();
        let (key, mut peer) = w.connect();
        w.park(key, 7, &parked);
        peer.write_all(b"late").unwrap();
        // The edge reaches the parked slot, and is not reported again by itself.
        assert!(w.events(Duration::from_secs(5)).is_empty());
        let moored = w.adopt(7, &parked);
        assert!(
            moored.reserved && moored.rearmed,
            "re-armed: its edge was taken"
        );
        assert_eq!(w.events(Duration::from_secs(5)), [(key, true)]);
        let mut buf = [0u8; 8];
        let n = w.slots.get_mut(key).unwrap().read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"late");

        // An end of file too, and input the poll had not collected yet needs no re-arming.
        let (key, peer) = w.connect();
        w.park(key, 8, &parked);
        drop(peer);
        assert!(w.events(Duration::from_secs(5)).is_empty());
        assert!(w.adopt(8, &parked).rearmed);
        assert_eq!(w.events(Duration::from_secs(5)), [(key, true)]);
        let n = w.slots.get_mut(key).unwrap().read(&mut buf).unwrap();
        assert_eq!(n, 0, "end of file");

        let (key, mut peer) = w.connect();
        w.park(key, 9, &parked);
        peer.write_all(b"x").unwrap();
        std::thread::sleep(SHORT);
        let moored = w.adopt(9, &parked);
        assert!(!moored.rearmed);
        assert_eq!(w.events(Duration::from_secs(5)), [(key, true)]);
    }

    #[test]
    fn parked_before_a_read_drained_it_a_socket_is_re_armed() {
        let parked = ParkedSockets::default();
        let mut w = Home::new();
        let (key, _peer) = w.connect();
        let stream = w.slots.reserve(key).unwrap();
        let home = Some(w.here.park(key, true, true));
        let out = VecDeque::new();
        parked.park(7, Parked { stream, out, home });
        assert!(w.adopt(7, &parked).rearmed);
        // Not reading (back-pressure): re-registering with READABLE, later, reports it.
        let stream = w.slots.reserve(key).unwrap();
        let home = Some(w.here.park(key, false, true));
        let out = VecDeque::new();
        parked.park(7, Parked { stream, out, home });
        let moored = w.adopt(7, &parked);
        assert!(!moored.rearmed && !moored.reading);
    }

    #[test]
    fn adopted_by_another_worker_a_socket_leaves_its_home_poll() {
        let parked = ParkedSockets::default();
        let (mut home, mut other) = (Home::new(), Home::new());
        let (key, mut peer) = home.connect();
        home.park(key, 7, &parked);
        peer.write_all(b"before").unwrap();
        std::thread::sleep(SHORT);
        let moored = other.adopt(7, &parked);
        assert!(!moored.reserved);
        assert_eq!(moored.key, 0, "the adopter's next slot");
        // Registering reports what waited; the home's poll reports nothing any more.
        assert_eq!(other.events(Duration::from_secs(5)), [(0, true)]);
        peer.write_all(b" after").unwrap();
        assert!(home.events(SHORT).is_empty());
        assert_eq!(other.events(Duration::from_secs(5)), [(0, true)]);
        let mut buf = [0u8; 32];
        let n = other.slots.get_mut(0).unwrap().read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"before after");
        // The home frees the slot before its next poll, and no sooner.
        assert_eq!(home.here.len(), 1);
        assert_eq!(home.release_vacated(), [key]);
        assert_eq!(home.here.len(), 0);
        assert_eq!(home.slots.next_key(), key);
    }

    #[test]
    fn closed_by_the_endpoint_a_parked_socket_frees_its_slot() {
        let parked = ParkedSockets::default();
        let mut w = Home::new();
        let (key, mut peer) = w.connect();
        w.park(key, 7, &parked);
        // Closed on another thread, as an endpoint's lock released elsewhere does.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                parked.close(vec![PoolClose {
                    pooled: 7,
                    farewell: Bytes::from_static(b"quit"),
                }]);
            });
        });
        assert_eq!(parked.len(), 0);
        let mut received = Vec::new();
        peer.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"quit");
        assert!(w.events(SHORT).is_empty());
        assert_eq!(w.release_vacated(), [key]);
        assert!(w.release_vacated().is_empty(), "once");
        assert_eq!(w.slots.next_key(), key);
    }

    #[test]
    fn a_parked_socket_whose_adopter_is_gone_is_closed_and_frees_its_slot() {
        let parked = ParkedSockets::default();
        let mut w = Home::new();
        let (key, mut peer) = w.connect();
        w.park(key, 7, &parked);
        parked.take(7).unwrap().close();
        let mut received = Vec::new();
        peer.read_to_end(&mut received).unwrap();
        assert!(received.is_empty());
        assert_eq!(w.release_vacated(), [key]);
    }
}
