//! Multiplexing's parked backend sockets: connections no session holds, kept unread under the
//! core's [`PooledId`] until a session on any worker adopts one
//! ([`IoEvent::Adopt`](ferry_core::control::IoEvent::Adopt)) or the endpoint closes it
//! ([`Endpoint::poll_pool_close`](ferry_core::control::Endpoint::poll_pool_close)).
//!
//! Which connection is parked, reused or closed is the endpoint's; this only keeps the sockets.
//! A socket is put here while the endpoint's lock is held (the worker parks it in the same
//! critical section as the sync that told the endpoint), so by the time the endpoint hands its
//! id to another session or asks to close it, it is here.
//!
//! A parked socket stays registered with the poll of the worker that parked it, its [`Home`],
//! under its token there, which that worker keeps reserved: a session takes back its own
//! connection first, nearly always on the same worker, and leaving the poll and joining it again
//! would cost two system calls per statement. Whoever else takes the socket out of its home (a
//! session on another worker deregisters it from the home's poll, a close drops it) tells the
//! home afterwards ([`HomePoll::vacate`]) that the token may be reused.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use ferry_core::control::{PoolClose, PooledId};
use mio::net::TcpStream;
use mio::Registry;

/// A parked socket.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) stream: TcpStream,
    /// Bytes for the backend not yet written when it was parked (the core queues none before a
    /// park; kept so that none is lost if a write would have blocked).
    pub(crate) out: VecDeque<Bytes>,
    /// The poll it is still registered with; `None`: with none.
    pub(crate) home: Option<Home>,
}

/// Where a parked socket is registered: a worker's poll, under that worker's reserved token.
#[derive(Debug)]
pub(crate) struct Home {
    pub(crate) poll: Arc<HomePoll>,
    /// The slot (and token) the home worker keeps reserved for it.
    pub(crate) key: usize,
    /// READABLE is part of the registered interest (WRITABLE always is).
    pub(crate) reading: bool,
}

/// What other threads need of a worker's poll: its registry (a parked socket taken elsewhere is
/// deregistered from it), and the reserved tokens it may reuse now.
#[derive(Debug)]
pub(crate) struct HomePoll {
    registry: Registry,
    vacated: Mutex<Vec<usize>>,
    /// `vacated` is not empty (checked once per loop iteration without the lock).
    any_vacated: AtomicBool,
}

impl HomePoll {
    /// For the poll `registry` belongs to (a clone of it: epoll_ctl may be called from any
    /// thread).
    pub(crate) fn new(registry: &Registry) -> io::Result<Self> {
        Ok(Self {
            registry: registry.try_clone()?,
            vacated: Mutex::new(Vec::new()),
            any_vacated: AtomicBool::new(false),
        })
    }

    /// The socket parked under reserved token `key` left this poll (deregistered or closed):
    /// the home worker may reuse `key`.
    pub(crate) fn vacate(&self, key: usize) {
        lock(&self.vacated).push(key);
        self.any_vacated.store(true, Ordering::Release);
    }

    /// The keys vacated since the last call.
    pub(crate) fn take_vacated(&self) -> Vec<usize> {
        if !self.any_vacated.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.vacated))
    }
}

impl Parked {
    /// Takes the socket out of its home's poll (to join another one), then tells the home. On
    /// an error the socket is closed (which takes it out of every poll) before the home is told:
    /// nothing may reach the reserved token once the home reuses it.
    pub(crate) fn leave_home(self) -> io::Result<(TcpStream, VecDeque<Bytes>)> {
        let Self {
            mut stream,
            out,
            home,
        } = self;
        let Some(home) = home else {
            return Ok((stream, out));
        };
        let result = match home.poll.registry.deregister(&mut stream) {
            Ok(()) => Ok((stream, out)),
            Err(e) => {
                drop(stream);
                Err(e)
            }
        };
        home.poll.vacate(home.key);
        result
    }

    /// Closes the socket, then tells its home the token is free.
    pub(crate) fn close(self) {
        let Self { stream, home, .. } = self;
        drop(stream);
        if let Some(home) = home {
            home.poll.vacate(home.key);
        }
    }
}

/// The parked sockets of every worker.
#[derive(Debug, Default)]
pub(crate) struct ParkedSockets {
    sockets: Mutex<HashMap<PooledId, Parked>>,
}

impl ParkedSockets {
    /// Keeps `parked` under `pooled` (a socket already there is closed: ids are not reused).
    pub(crate) fn park(&self, pooled: PooledId, parked: Parked) {
        if let Some(old) = self.lock().insert(pooled, parked) {
            old.close();
        }
    }

    /// Takes the socket parked under `pooled`, if there is one.
    pub(crate) fn take(&self, pooled: PooledId) -> Option<Parked> {
        self.lock().remove(&pooled)
    }

    /// Closes the sockets the endpoint let go of: each gets its farewell (COM_QUIT) written
    /// once, best-effort (a full send buffer or a dead peer just means no farewell), then is
    /// closed.
    pub(crate) fn close(&self, closes: Vec<PoolClose>) {
        if closes.is_empty() {
            return;
        }
        let taken: Vec<(PooledId, Parked, Bytes)> = {
            let mut sockets = self.lock();
            closes
                .into_iter()
                .filter_map(|c| sockets.remove(&c.pooled).map(|p| (c.pooled, p, c.farewell)))
                .collect()
        };
        for (pooled, mut parked, farewell) in taken {
            parked.out.push_back(farewell);
            let written = write_without_blocking(&mut parked.stream, &mut parked.out);
            tracing::trace!(pooled, farewell = written.is_ok(), "parked socket closed");
            parked.close();
        }
    }

    /// How many sockets are parked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PooledId, Parked>> {
        lock(&self.sockets)
    }
}

/// Nothing here is left half-done by a panic, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `out` until it is empty, the socket would block, or a write fails.
pub(crate) fn write_without_blocking(
    stream: &mut TcpStream,
    out: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    while let Some(front) = out.front_mut() {
        match stream.write(front) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n < front.len() => front.advance(n),
            Ok(_) => {
                out.pop_front();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;

    /// A connected pair: the mio side (non-blocking) and the peer (blocking, with a timeout).
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ours.set_nonblocking(true).unwrap();
        (TcpStream::from_std(ours), peer)
    }

    #[test]
    fn a_parked_socket_is_taken_once() {
        let parked = ParkedSockets::default();
        let (stream, _peer) = pair();
        parked.park(
            7,
            Parked {
                stream,
                out: VecDeque::new(),
                home: None,
            },
        );
        assert_eq!(parked.len(), 1);
        assert!(parked.take(8).is_none());
        assert!(parked.take(7).is_some());
        assert!(parked.take(7).is_none());
        assert_eq!(parked.len(), 0);
    }

    #[test]
    fn closing_writes_unsent_bytes_and_the_farewell_then_closes() {
        let parked = ParkedSockets::default();
        let (stream, mut peer) = pair();
        let (other, _other_peer) = pair();
        parked.park(
            1,
            Parked {
                stream,
                out: VecDeque::from([Bytes::from_static(b"unsent ")]),
                home: None,
            },
        );
        parked.park(
            2,
            Parked {
                stream: other,
                out: VecDeque::new(),
                home: None,
            },
        );
        parked.close(vec![
            PoolClose {
                pooled: 1,
                farewell: Bytes::from_static(b"quit"),
            },
            // Not parked (any more): nothing to do.
            PoolClose {
                pooled: 3,
                farewell: Bytes::from_static(b"quit"),
            },
        ]);
        assert_eq!(parked.len(), 1, "only the closed socket is gone");
        let mut received = Vec::new();
        peer.read_to_end(&mut received).unwrap();
        assert_eq!(
            received, b"unsent quit",
            "then end of file: the socket was closed"
        );
    }

    #[test]
    fn closing_a_socket_whose_peer_is_gone_does_not_fail() {
        let parked = ParkedSockets::default();
        let (stream, peer) = pair();
        drop(peer);
        parked.park(
            1,
            Parked {
                stream,
                out: VecDeque::new(),
                home: None,
            },
        );
        for _ in 0..2 {
            parked.close(vec![PoolClose {
                pooled: 1,
                farewell: Bytes::from(vec![0u8; 1 << 20]),
            }]);
        }
        assert_eq!(parked.len(), 0);
    }
}
