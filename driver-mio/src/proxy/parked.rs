//! Multiplexing's parked backend sockets: connections no session holds, kept unread (in no
//! worker's poll) under the core's [`PooledId`] until a session on any worker adopts one
//! ([`IoEvent::Adopt`](ferry_core::control::IoEvent::Adopt)) or the endpoint closes it
//! ([`Endpoint::poll_pool_close`](ferry_core::control::Endpoint::poll_pool_close)).
//!
//! Which connection is parked, reused or closed is the endpoint's; this only keeps the sockets.
//! A socket is put here while the endpoint's lock is held (the worker parks it in the same
//! critical section as the sync that told the endpoint), so by the time the endpoint hands its
//! id to another session or asks to close it, it is here.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::{Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use ferry_core::control::{PoolClose, PooledId};
use mio::net::TcpStream;

/// A parked socket: deregistered from its worker's poll.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) stream: TcpStream,
    /// Bytes for the backend not yet written when it was parked (the core queues none before a
    /// park; kept so that none is lost if a write would have blocked).
    pub(crate) out: VecDeque<Bytes>,
}

/// The parked sockets of every worker.
#[derive(Debug, Default)]
pub(crate) struct ParkedSockets {
    sockets: Mutex<HashMap<PooledId, Parked>>,
}

impl ParkedSockets {
    /// Keeps `parked` under `pooled` (a socket already there is dropped: ids are not reused).
    pub(crate) fn park(&self, pooled: PooledId, parked: Parked) {
        self.lock().insert(pooled, parked);
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
            // Dropping the stream closes it.
        }
    }

    /// How many sockets are parked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Nothing here is left half-done by a panic, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, HashMap<PooledId, Parked>> {
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
            },
        );
        parked.park(
            2,
            Parked {
                stream: other,
                out: VecDeque::new(),
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
