//! Closing sockets and sessions, and the worker's part of graceful shutdown.

use std::time::Instant;

use mio::{Interest, Token};

use super::{State, TimerKey, Worker, FIRST_SOCKET, LINGER};

impl Worker {
    /// Closes a socket once its queue is written (lingering at most [`LINGER`]).
    pub(super) fn close_socket(&mut self, key: usize, now: Instant) {
        let Some(socket) = self.sockets.get_mut(key) else {
            return;
        };
        let unsent = !socket.out.is_empty();
        if socket.state == State::Connecting || (!unsent && socket.eof) {
            self.destroy(key);
            return;
        }
        socket.state = State::Closing;
        if !unsent {
            let _ = socket.stream.shutdown(std::net::Shutdown::Write);
        }
        // Keep READABLE to see the peer's FIN; the input is discarded.
        if !socket.reading {
            let _ = self.poll.registry().reregister(
                &mut socket.stream,
                Token(FIRST_SOCKET + key),
                Interest::READABLE | Interest::WRITABLE,
            );
            socket.reading = true;
        }
        let generation = socket.generation;
        self.timers.push(
            now + LINGER,
            TimerKey::Linger {
                socket: key,
                generation,
            },
        );
        self.discard_input(key);
    }

    /// Drops a socket now (closing the descriptor also removes it from the poll).
    pub(super) fn destroy(&mut self, key: usize) {
        self.sockets.remove(key);
    }

    pub(super) fn teardown(&mut self, slot: usize, now: Instant) {
        let Some(mut s) = self.sessions.remove(slot) else {
            return;
        };
        // Closing may free a pooled connection for a waiting session: its worker is woken.
        self.shared
            .with_endpoint(|ep| ep.connection_closed(now, &mut s.conn));
        self.close_socket(s.client, now);
        for (_, key) in s.backends {
            self.close_socket(key, now);
        }
    }

    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        let deadline = self.shared.endpoint().shutdown_deadline();
        self.shutdown_deadline = Some(deadline.unwrap_or(now + self.shutdown_timeout));
        // Closing the listener: new clients are refused by the kernel (or go to a live worker).
        self.listener = None;
        tracing::info!(
            worker = self.index,
            sessions = self.sessions.len(),
            "shutting down"
        );
        // The endpoint asks every session to shut down (commands, delivered by the waker).
        self.run_commands(now);
    }

    /// No session left and every closing socket's last bytes handed to the kernel.
    pub(super) fn shutdown_complete(&self) -> bool {
        self.sessions.is_empty() && self.sockets.iter().all(|(_, s)| s.out.is_empty())
    }

    pub(super) fn close_everything(&mut self, now: Instant) {
        let mut endpoint = self.shared.endpoint();
        for slot in self.sessions.keys() {
            if let Some(mut s) = self.sessions.remove(slot) {
                endpoint.connection_closed(now, &mut s.conn);
            }
        }
        drop(endpoint);
        for key in self.sockets.keys() {
            self.destroy(key);
        }
    }
}
