//! Why a session got no backend, or lost it: the typed reasons of
//! [`ProxySession::backend_connect_failed`](super::ProxySession::backend_connect_failed), of
//! [`CloseReason::BackendUnavailable`](super::CloseReason::BackendUnavailable) /
//! [`CloseReason::BackendLost`](super::CloseReason::BackendLost), and of the matching
//! [`MigrationFailure`](super::MigrationFailure)s.
//!
//! Their `Display` texts are what clients see in ERR 1429 ("Can't connect to the backend server
//! (ferry: …)") and what the logs show: they are part of the behaviour, keep them stable.

use crate::backend::BackendError;

/// Why the driver could not open a backend connection
/// ([`ProxySession::backend_connect_failed`](super::ProxySession::backend_connect_failed)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The balancing policy found no backend to use (all down, draining or full).
    #[error("no healthy backend")]
    NoHealthyBackend,
    /// The session asked for a backend by a name that is not configured (e.g. a migration to a
    /// backend removed meanwhile).
    #[error("no backend named {0:?}")]
    UnknownBackend(String),
    /// A backend chooser refused the session, with its own text.
    #[error("{0}")]
    Refused(String),
    /// ferry itself is out of resources (descriptors, memory): not the backend's fault.
    #[error("ferry: {0}")]
    LocalResources(String),
    /// The TCP connect to a backend failed.
    #[error("backend {backend} ({addr}): {error}")]
    Unreachable {
        /// The backend's name.
        backend: String,
        /// The address connected to (as configured: an IP address or a host name).
        addr: crate::backend::BackendAddr,
        /// The OS error.
        error: String,
    },
    /// Multiplexing: the backend's connections are all in use and the queue for them is full
    /// (the client gets MariaDB's ERR 1040 "Too many connections").
    #[error("too many connections")]
    TooManyConnections,
    /// The socket reached end of file before the driver reported it open (what
    /// [`ProxySession::handle_eof`](super::ProxySession::handle_eof) on a connection still
    /// connecting means).
    #[error("connection closed")]
    Closed,
}

/// Why a backend connection ended under the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendLoss {
    /// The backend closed the connection cleanly (no error on ferry's side).
    #[error("backend closed the connection")]
    Closed,
    /// The connection failed: the socket closed or failed mid-exchange
    /// ([`BackendError::PeerClosed`]), the backend sent a bad or oversized packet, TLS broke, a
    /// deadline passed...
    #[error("{0}")]
    Failed(BackendError),
    /// ferry could not send its next statement to a migration's new backend (it was not ready
    /// for one). Only in [`MigrationFailure::BackendLost`](super::MigrationFailure::BackendLost).
    #[error("the new backend is not ready")]
    NotReady,
    /// The health check found the backend down (it stopped answering): the session left a
    /// connection that may still be open. Only in failovers.
    #[error("the health check found the backend down")]
    Down,
}

impl From<Option<BackendError>> for BackendLoss {
    /// What [`backend::Event::Closed`](crate::backend::Event::Closed)'s `error` means.
    fn from(error: Option<BackendError>) -> Self {
        error.map_or(BackendLoss::Closed, BackendLoss::Failed)
    }
}

/// Why the session's backend login did not happen
/// ([`CloseReason::BackendUnavailable`](super::CloseReason::BackendUnavailable); the client got
/// ERR 1429 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginFailure {
    /// The driver could not open the connection.
    #[error("{0}")]
    Connect(ConnectFailure),
    /// Connecting and logging in took longer than the connect timeout.
    #[error("timed out connecting to the backend")]
    Timeout,
    /// The backend cannot serve this client.
    #[error("{0}")]
    Incompatible(Incompatibility),
    /// The connection failed before the backend's OK or ERR.
    #[error("{0}")]
    Lost(BackendLoss),
}

/// Why a backend cannot serve a client (at login: [`LoginFailure::Incompatible`]; as a
/// migration's target: [`MigrationFailure::Incompatible`](super::MigrationFailure::Incompatible)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incompatibility {
    /// The backend's `CLIENT_DEPRECATE_EOF` differs from the client's (result sets would need
    /// rewriting; only servers older than MySQL 5.7 lack the flag).
    #[error("the backend does not support CLIENT_DEPRECATE_EOF")]
    DeprecateEof,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DecodeError;

    /// The texts are what clients saw in ERR 1429 and the logs showed when the reasons were
    /// strings: they must not change.
    #[test]
    fn display_keeps_the_texts_of_the_string_reasons() {
        let unreachable = ConnectFailure::Unreachable {
            backend: "db1".into(),
            addr: std::net::SocketAddr::from(([10, 0, 0, 7], 3306)).into(),
            error: "Connection refused (os error 111)".into(),
        };
        let cases: Vec<(String, &str)> = vec![
            (
                ConnectFailure::NoHealthyBackend.to_string(),
                "no healthy backend",
            ),
            (
                ConnectFailure::UnknownBackend("db9".into()).to_string(),
                "no backend named \"db9\"",
            ),
            (
                ConnectFailure::Refused("tenant is over quota".into()).to_string(),
                "tenant is over quota",
            ),
            (
                ConnectFailure::LocalResources("Too many open files (os error 24)".into())
                    .to_string(),
                "ferry: Too many open files (os error 24)",
            ),
            (
                unreachable.to_string(),
                "backend db1 (10.0.0.7:3306): Connection refused (os error 111)",
            ),
            (ConnectFailure::Closed.to_string(), "connection closed"),
            (
                BackendLoss::Closed.to_string(),
                "backend closed the connection",
            ),
            (
                BackendLoss::Failed(BackendError::PeerClosed).to_string(),
                "backend closed the connection",
            ),
            (
                BackendLoss::NotReady.to_string(),
                "the new backend is not ready",
            ),
            (
                LoginFailure::Connect(unreachable.clone()).to_string(),
                "backend db1 (10.0.0.7:3306): Connection refused (os error 111)",
            ),
            (
                LoginFailure::Timeout.to_string(),
                "timed out connecting to the backend",
            ),
            (
                LoginFailure::Incompatible(Incompatibility::DeprecateEof).to_string(),
                "the backend does not support CLIENT_DEPRECATE_EOF",
            ),
            (
                LoginFailure::Lost(BackendLoss::Closed).to_string(),
                "backend closed the connection",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        let decode = BackendError::Decode(DecodeError::PacketTooLarge { size: 9, max: 8 });
        assert_eq!(
            BackendLoss::Failed(decode.clone()).to_string(),
            decode.to_string()
        );
    }

    #[test]
    fn a_closed_event_maps_to_a_loss() {
        assert_eq!(BackendLoss::from(None), BackendLoss::Closed);
        assert_eq!(
            BackendLoss::from(Some(BackendError::PeerClosed)),
            BackendLoss::Failed(BackendError::PeerClosed)
        );
    }
}
