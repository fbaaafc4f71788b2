//! Why a backend connection failed (fatal, sticky) and why a mutator refused a call (misuse).

use crate::auth::AuthError;
use crate::tls::TlsError;
use crate::{DecodeError, ProtocolError};

/// A fatal failure of a backend connection. Once one happens the [`Backend`](super::Backend)
/// emits [`Event::Closed`](super::Event::Closed) with it and does nothing more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The server's bytes could not be framed or parsed.
    #[error("backend sent an undecodable packet: {0}")]
    Decode(#[from] DecodeError),
    /// TLS failed (bad certificate, broken record, configuration).
    #[error("backend TLS: {0}")]
    Tls(#[from] TlsError),
    /// An auth plugin could not go on (bad RSA key, unexpected plugin packet).
    #[error("backend authentication: {0}")]
    Auth(#[from] AuthError),
    /// The server refused the login with this ERR.
    #[error("backend refused the login: {0}")]
    AuthFailed(ProtocolError),
    /// The server sent a packet that makes no sense in the current state.
    #[error("unexpected packet from the backend while {state}")]
    UnexpectedPacket {
        /// What the machine was waiting for.
        state: &'static str,
    },
    /// A deadline passed.
    #[error("backend timed out while {phase}")]
    Timeout {
        /// What was being waited for.
        phase: &'static str,
    },
    /// The server (or the network) closed the connection.
    #[error("backend closed the connection")]
    PeerClosed,
    /// The server needs something ferry cannot do with this configuration (a plugin it does not
    /// speak, full authentication with only a password hash, TLS it does not offer...).
    #[error("cannot connect to the backend: {0}")]
    Unsupported(String),
}

/// A mutator was called when the connection cannot do what was asked. Not fatal: the connection
/// is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The login has not finished yet.
    #[error("the backend connection is not ready yet")]
    NotConnected,
    /// Another command's response is still outstanding.
    #[error("a command is already in flight")]
    Busy,
    /// The connection is closed.
    #[error("the backend connection is closed")]
    Closed,
    /// LOCAL INFILE data was offered while the server had not asked for a file.
    #[error("no LOCAL INFILE request is pending")]
    NoLocalInfileRequest,
    /// Auth data was offered outside a relayed COM_CHANGE_USER exchange.
    #[error("no relayed authentication exchange is pending")]
    NoAuthExchange,
    /// The command payload is empty (it must start with the command byte).
    #[error("empty command payload")]
    EmptyCommand,
}
