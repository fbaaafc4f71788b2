//! The login: the two auth modes, from the client's handshake response to its OK (or ERR).
//!
//! ```text
//! passthrough: ClientLogin ─► ConnectBackend ─► backend_connected ─► Backend (relayed login:
//!   HandshakeResponse41 with the client's user/db/attrs, plugin "ferry_relayed_login")
//!   backend auth switch / more data ─► client (send_auth_packet; 01 03: send_auth_notice)
//!   client answer (AuthPacket) ─► backend (send_auth_data)          … until OK / ERR
//!   backend OK ─► finish_auth(Ok): client OK;   backend ERR ─► finish_auth(Err): client ERR
//! proxy:       Authenticated (user table checked) ─► ConnectBackend ─► backend_connected ─►
//!   Backend logs in as the user with the recovered secret
//!   backend OK ─► accept_login: client OK;      backend ERR ─► reject_login: client ERR
//! either: connect failure / timeout / backend lost ─► client ERR 1429, Closed
//! either: ERR in place of the greeting (1040 too many connections, 1129 host blocked...)
//!   ─► Event::BackendRefused (the driver marks that backend down), CloseBackend,
//!      ConnectBackend { target: None } again (connect deadline re-armed), the same login
//!      … at most MAX_REFUSALS refusals; then, or if the retry reaches no backend at all
//!      (connect failure / timeout): client gets the last refusal's ERR (e.g. 1040), Closed
//! ```
//!
//! The retry is safe because a backend that refuses before its greeting has seen nothing of the
//! login and the client nothing of that backend: for the client it is as if the driver had
//! picked another backend in the first place. The pending login is kept (cloned into each
//! backend's configuration) until the phase ends, so that any attempt can start over.

use std::time::Instant;

use crate::backend::{Backend, ConnectedInfo, PacketKind, RelayedAuth};
use crate::frontend::{Authenticated, ClientLogin};
use crate::wire::Capabilities;
use crate::ProtocolError;

use bytes::Bytes;

use super::{
    BackendLink, CloseReason, Event, Incompatibility, LoginFailure, Phase, ProxySession, Timer,
};

/// Refusals before the greeting one login survives: the `MAX_REFUSALS`-th refusing backend's ERR
/// goes to the client. Enough to get past a full backend or two (each refusal also marks its
/// backend down, so the next pick avoids it) without walking a client through a whole pool of
/// refusing servers.
pub(super) const MAX_REFUSALS: u8 = 3;

/// What the backend login needs, kept from the client's login until the login ends (any backend
/// connection attempt may have to start over on another backend).
#[derive(Debug)]
pub(super) struct PendingLogin {
    login: LoginRequest,
    /// Backends that refused this login before their greeting.
    refusals: u8,
    /// The last such refusal: what the client gets when no other backend can be reached.
    last_refusal: Option<Box<ProtocolError>>,
}

#[derive(Debug)]
enum LoginRequest {
    /// `passthrough`: the client's handshake response.
    Passthrough(Box<ClientLogin>),
    /// `proxy`: the verified login.
    Proxy(Box<Authenticated>),
}

impl PendingLogin {
    fn new(login: LoginRequest) -> Self {
        Self {
            login,
            refusals: 0,
            last_refusal: None,
        }
    }

    fn is_passthrough(&self) -> bool {
        matches!(self.login, LoginRequest::Passthrough(_))
    }
}

/// ERR for a login that could not reach a backend: ER_CONNECT_TO_FOREIGN_DATA_SOURCE, a
/// server-range code (libmariadb shows a client-range code such as 2003 coming from a server as
/// "2027 malformed packet", losing the reason).
pub(super) fn unavailable(reason: &LoginFailure) -> ProtocolError {
    if matches!(
        reason,
        LoginFailure::Connect(super::ConnectFailure::TooManyConnections)
    ) {
        return super::multiplex::too_many_connections();
    }
    ProtocolError::new(
        1429,
        "HY000",
        format!("Can't connect to the backend server (ferry: {reason})"),
    )
}

impl ProxySession {
    pub(super) fn on_client_login(&mut self, now: Instant, login: ClientLogin) {
        self.state.user = Some(login.user.clone());
        self.state.schema = login.database.as_ref().map(|d| d.as_bytes().to_vec());
        self.phase = Phase::Login(PendingLogin::new(LoginRequest::Passthrough(Box::new(
            login,
        ))));
        self.connect_backend(now);
    }

    pub(super) fn on_authenticated(&mut self, now: Instant, auth: Authenticated) {
        self.state.user = Some(auth.user.clone());
        self.state.schema = auth.database.as_ref().map(|d| d.as_bytes().to_vec());
        if self.multiplexing() {
            // A pooled connection, or a new one through the pool's limit.
            return self.start_pooled_login(now);
        }
        self.phase = Phase::Login(PendingLogin::new(LoginRequest::Proxy(Box::new(auth))));
        self.connect_backend(now);
    }

    fn connect_backend(&mut self, now: Instant) {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.backend = Some(BackendLink {
            id: conn,
            conn: None,
        });
        let deadline = now + self.config.backend.connect_timeout;
        self.set_timer(Timer::Connect, Some(deadline));
        self.events
            .push_back(Event::ConnectBackend { conn, target: None });
    }

    /// The socket is open: create the backend role for the pending login.
    pub(super) fn start_backend(&mut self, now: Instant) {
        if self.backend.as_ref().is_none_or(|link| link.conn.is_some()) {
            // No attempt pending, or this one has its role already (a repeated report).
            return;
        }
        let client_caps = self.frontend.capabilities();
        let template = &self.config.backend;
        let Phase::Login(pending) = &self.phase else {
            return;
        };
        // Cloned, not taken: a refusal before the greeting starts over with the same login.
        let config = match &pending.login {
            LoginRequest::Passthrough(login) => {
                let login = ClientLogin::clone(login);
                let mut config = template.backend_config(
                    login.user,
                    crate::auth::ClientSecret::NoPassword,
                    client_caps,
                );
                config.database = login.database;
                config.collation = login.collation;
                config.connect_attrs = login.attributes;
                config.relayed_auth = Some(RelayedAuth {
                    plugin: RelayedAuth::FORCE_SWITCH_PLUGIN.to_owned(),
                    auth_response: login.auth_response.to_vec(),
                });
                config
            }
            LoginRequest::Proxy(auth) => {
                let auth = Authenticated::clone(auth);
                let mut config = template.backend_config(auth.user, auth.secret, client_caps);
                config.database = auth.database;
                config.collation = auth.collation;
                config.connect_attrs = auth.attributes;
                config
            }
        };
        let mut config = config;
        config.max_packet_size = self.config.backend_packet_cap();
        let rng = Box::new(super::rng::HashRandom::from_parent(&mut self.rng));
        let backend = Backend::new(now, config, rng);
        if let Some(link) = self.backend.as_mut() {
            link.conn = Some(backend);
        }
    }

    /// A passthrough login's auth packet from the backend goes to the client.
    pub(super) fn relay_login_packet(&mut self, now: Instant, payload: Bytes, kind: PacketKind) {
        if !matches!(
            kind,
            PacketKind::AuthSwitchRequest | PacketKind::AuthMoreData
        ) {
            return;
        }
        // The frontend refuses only outside passthrough mode's owner phase, which cannot happen
        // for a relayed login; a refusal would leave the client waiting until its deadline.
        let _ = if payload[..] == crate::auth::caching_sha2::FAST_AUTH_SUCCESS {
            self.frontend.send_auth_notice(now, &payload)
        } else {
            self.frontend.send_auth_packet(now, &payload)
        };
    }

    pub(super) fn on_backend_connected(&mut self, now: Instant, info: ConnectedInfo) {
        let Phase::Login(pending) = &self.phase else {
            return;
        };
        let passthrough = pending.is_passthrough();
        self.set_timer(Timer::Connect, None);
        let deprecate_eof = Capabilities::DEPRECATE_EOF;
        if info.capabilities.contains(deprecate_eof)
            != self.frontend.capabilities().contains(deprecate_eof)
        {
            // Result sets would need rewriting; only servers older than MySQL 5.7 lack the flag.
            return self.login_failed(
                now,
                LoginFailure::Incompatible(Incompatibility::DeprecateEof),
            );
        }
        self.state.status = info.status;
        if let Some(schema) = &info.session.schema {
            self.state.schema = (!schema.is_empty()).then(|| schema.clone());
        }
        for (name, value) in &info.session.system_variables {
            self.state.variables.insert(name.clone(), value.clone());
        }
        self.frontend.set_status(now, info.status);
        let result = if passthrough {
            self.frontend.finish_auth(now, Ok(()))
        } else {
            self.frontend.accept_login(now)
        };
        if result.is_err() {
            // The frontend closed meanwhile (handshake deadline); its Closed event follows.
            return;
        }
        let user = self.user().unwrap_or_default().to_owned();
        self.events.push_back(Event::Authenticated { user });
        self.enter_ready(now);
    }

    /// The backend refused the login with `error`. Before its greeting (the server refused the
    /// connection itself) another backend is tried, up to [`MAX_REFUSALS`]; otherwise the client
    /// gets `error`.
    pub(super) fn on_backend_refused(&mut self, now: Instant, error: ProtocolError) {
        // The login's connections are always the driver's pick (`target: None`); a migration's
        // named connections never come here (see `migration::steps`).
        let before_greeting = self.backend().is_some_and(|b| !b.greeted());
        let Phase::Login(pending) = &mut self.phase else {
            return;
        };
        let passthrough = pending.is_passthrough();
        if before_greeting {
            pending.refusals = pending.refusals.saturating_add(1);
            pending.last_refusal = Some(Box::new(error.clone()));
            let retry = pending.refusals < MAX_REFUSALS;
            let backend = self.backend_name.clone().unwrap_or_default();
            self.events.push_back(Event::BackendRefused {
                backend,
                error: error.clone(),
            });
            if retry {
                self.backend_name = None;
                self.release_backend(now);
                self.connect_backend(now);
                return;
            }
        }
        self.set_timer(Timer::Connect, None);
        self.close_reason = Some(CloseReason::LoginRefused(error.clone()));
        self.refuse_login(now, passthrough, error);
    }

    /// No backend login: connect failure, timeout, or the backend failed before OK/ERR. When
    /// earlier backends refused this login and the last attempt reached no backend at all, the
    /// client gets the last refusal (e.g. 1040 "Too many connections"): it says more than
    /// "no healthy backend".
    pub(super) fn login_failed(&mut self, now: Instant, reason: LoginFailure) {
        let reached = self.backend().is_some();
        let Phase::Login(pending) = &self.phase else {
            return;
        };
        let passthrough = pending.is_passthrough();
        let refusal = pending
            .last_refusal
            .as_deref()
            .filter(|_| !reached)
            .cloned();
        self.set_timer(Timer::Connect, None);
        let (err, why) = match refusal {
            Some(refusal) => (refusal.clone(), CloseReason::LoginRefused(refusal)),
            None => (
                unavailable(&reason),
                CloseReason::BackendUnavailable(reason),
            ),
        };
        self.close_reason.get_or_insert(why);
        self.release_backend(now);
        self.refuse_login(now, passthrough, err);
    }

    pub(super) fn refuse_login(&mut self, now: Instant, passthrough: bool, err: ProtocolError) {
        let result = if passthrough {
            self.frontend.finish_auth(now, Err(err.clone()))
        } else {
            self.frontend.reject_login(now, err.clone())
        };
        if result.is_err() {
            // Not at the login decision (e.g. a passthrough client owes an auth answer).
            self.frontend.close_with_error(now, err);
        }
    }
}
