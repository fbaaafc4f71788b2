//! Backend connections of the worker: non-blocking connect, completion, and failover to another
//! backend when the driver chose the one that refused (the connect here; an ERR in place of the
//! greeting in the session, which reports it for [`Worker::backend_refused`]).

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use ferry_core::ProtocolError;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::super::health::{is_local_exhaustion, record_refusal};
use super::super::session::{BackendConnId, Peer, Session, SessionFactory};
use super::super::shared::WorkerStats;
use super::{Socket, State, Worker, FIRST_SOCKET};

impl<F: SessionFactory> Worker<F> {
    pub(super) fn connect_backend(
        &mut self,
        slot: usize,
        conn: BackendConnId,
        target: Option<&str>,
        attempts: usize,
        now: Instant,
    ) {
        let registry = &self.shared.registry;
        let refused = self.sessions.get(slot).is_some_and(|s| s.refused);
        let index = match target {
            None if refused => registry.pick(),
            None => registry.pick_or_refusing(),
            Some(name) => registry.find(name).inspect(|&i| registry.claim(i)),
        };
        let Some(index) = index else {
            let reason = match target {
                None => "no healthy backend".to_owned(),
                Some(name) => format!("no backend named {name:?}"),
            };
            self.connect_failed(slot, conn, &reason, now);
            return;
        };
        let Some(addr) = registry.get(index).map(|b| b.addr) else {
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
        let Some(session_id) = self.sessions.get(slot).map(|s| s.id) else {
            registry.release(index);
            return;
        };
        match connected {
            Ok(stream) => {
                let generation = self.generation();
                let key = self.sockets.insert(Socket {
                    stream,
                    session: slot,
                    session_id,
                    peer: Peer::Backend(conn),
                    state: State::Connecting {
                        picked: target.is_none(),
                        attempts: attempts + 1,
                    },
                    backend: Some(index),
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
                self.shared.registry.release(index);
                self.backend_unreachable(
                    slot,
                    conn,
                    index,
                    target.is_none(),
                    attempts + 1,
                    &e,
                    now,
                );
            }
        }
    }

    /// Judges a connecting socket after an event; true if it is now open.
    pub(super) fn finish_connect(&mut self, key: usize, now: Instant) -> bool {
        let Some(socket) = self.sockets.get_mut(key) else {
            return false;
        };
        let State::Connecting { picked, attempts } = socket.state else {
            return false;
        };
        let result = match socket.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match socket.stream.peer_addr() {
                Ok(_) => Ok(()),
                // Not connected yet (a spurious wake-up): wait for the next event.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
                Err(e) => Err(e),
            },
        };
        let (slot, peer, index) = (socket.session, socket.peer, socket.backend);
        let (Peer::Backend(conn), Some(index)) = (peer, index) else {
            return false;
        };
        match result {
            Ok(()) => {
                let _ = socket.stream.set_nodelay(true);
                socket.state = State::Open;
                if !socket.out.is_empty() {
                    self.touched.push(key);
                }
                let name = self
                    .shared
                    .registry
                    .get(index)
                    .map(|b| b.name.clone())
                    .unwrap_or_default();
                if let Some(s) = self.sessions.get_mut(slot) {
                    tracing::debug!(session = s.id, backend = %name, "backend connected");
                    s.session.backend_connected(now, conn, &name);
                    self.after_call(slot, now);
                }
                true
            }
            Err(e) => {
                if let Some(s) = self.sessions.get_mut(slot) {
                    s.backends.retain(|&(c, _)| c != conn);
                }
                self.destroy(key);
                self.backend_unreachable(slot, conn, index, picked, attempts, &e, now);
                self.after_call(slot, now);
                false
            }
        }
    }

    /// A connection to backend `index` failed: mark it down, and try another backend if the
    /// driver chose this one, before telling the session.
    #[allow(clippy::too_many_arguments)]
    fn backend_unreachable(
        &mut self,
        slot: usize,
        conn: BackendConnId,
        index: usize,
        picked: bool,
        attempts: usize,
        error: &io::Error,
        now: Instant,
    ) {
        WorkerStats::add(&self.stats().backend_connect_errors, 1);
        let registry = &self.shared.registry;
        let (name, addr) = registry
            .get(index)
            .map(|b| (b.name.clone(), b.addr.to_string()))
            .unwrap_or_default();
        if is_local_exhaustion(error) {
            // ferry is out of descriptors: not the backend's fault, and no other would do better.
            tracing::warn!(backend = %name, %error, "cannot open a backend connection");
            self.connect_failed(slot, conn, &format!("ferry: {error}"), now);
            return;
        }
        if registry.set_health(index, false) {
            tracing::warn!(backend = %name, %addr, %error, "backend unreachable; skipped until a health check passes");
        }
        if picked && attempts < registry.backends().len() {
            self.connect_backend(slot, conn, None, attempts, now);
        } else {
            let reason = format!("backend {name} ({addr}): {error}");
            self.connect_failed(slot, conn, &reason, now);
        }
    }

    /// Backend `name` answered session `slot`'s connection with `error` in place of its greeting
    /// (`Event::BackendRefused`): down until a health check passes, as if the connect had been
    /// refused. The session closes that connection and asks for another backend by itself.
    pub(super) fn backend_refused(&mut self, slot: usize, name: &str, error: &ProtocolError) {
        WorkerStats::add(&self.stats().backend_connect_errors, 1);
        if let Some(s) = self.sessions.get_mut(slot) {
            s.refused = true;
            tracing::debug!(session = s.id, backend = %name, code = error.code, "backend refused the session's connection");
        }
        record_refusal(&self.shared.registry, name, error);
    }

    fn connect_failed(&mut self, slot: usize, conn: BackendConnId, reason: &str, now: Instant) {
        if let Some(s) = self.sessions.get_mut(slot) {
            tracing::info!(session = s.id, %reason, "backend connection failed");
            s.session.backend_connect_failed(now, conn, reason);
            // The caller is (indirectly) after_call's event loop, which drains the session next.
        }
    }
}
