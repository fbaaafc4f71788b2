//! What a [`Frontend`](super::Frontend) is configured with, shared by all connections of a server.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{AuthPlugin, RsaKeyPair};
use crate::wire::{Capabilities, ServerStatus, DEFAULT_MAX_PACKET_SIZE};

use super::users::{Sha2Cache, UserTable};

/// Who checks the client's password.
#[derive(Clone)]
pub enum AuthMode {
    /// ferry checks it against its own user table (MyCat's model); the login reveals
    /// SHA1(password) or the password, which the `Authenticated` event carries for backend logins.
    Proxy {
        /// The accounts.
        users: Arc<UserTable>,
        /// The `caching_sha2_password` cache of verified users (`None`: every caching_sha2 login
        /// of an account with a native hash goes through full authentication).
        sha2_cache: Option<Arc<dyn Sha2Cache>>,
        /// Key pair for `caching_sha2_password` full authentication without TLS (`None`: such
        /// clients are refused).
        rsa: Option<Arc<RsaKeyPair>>,
    },
    /// Someone else (the backend) checks it: the frontend hands out the client's credentials and
    /// relays the exchange the owner drives (TiProxy's model).
    Passthrough,
}

impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Proxy {
                users,
                sha2_cache,
                rsa,
            } => f
                .debug_struct("Proxy")
                .field("users", &users.len())
                .field("sha2_cache", &sha2_cache.is_some())
                .field("rsa", &rsa.is_some())
                .finish(),
            Self::Passthrough => f.write_str("Passthrough"),
        }
    }
}

/// Default handshake deadline: MySQL's `connect_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default cap on input buffered while a command is outstanding (see
/// [`Frontend::wants_input`](super::Frontend::wants_input)).
pub const DEFAULT_INPUT_BUFFER_CAP: usize = 64 * 1024;

/// Cap on a packet before authentication completes: large enough for any handshake response
/// with connection attributes, small enough that an anonymous peer cannot make ferry buffer much.
pub const HANDSHAKE_MAX_PACKET_SIZE: usize = 256 * 1024;

/// Server configuration for [`Frontend`](super::Frontend)s. Build with [`FrontendConfig::new`]
/// and adjust the public fields.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// Server version string in the greeting (clients show it; some pick features from it).
    pub server_version: String,
    /// Capabilities offered. `CLIENT_SSL` is added when `tls` is set and removed otherwise;
    /// `PROTOCOL_41`, `SECURE_CONNECTION` and `PLUGIN_AUTH` are always offered.
    pub capabilities: Capabilities,
    /// Default collation id in the greeting.
    pub collation: u8,
    /// Status flags in the greeting and in OK/EOF packets the frontend writes itself.
    pub status: ServerStatus,
    /// Who checks passwords.
    pub auth: AuthMode,
    /// Plugin named in the greeting (its salt is the greeting's scramble).
    pub default_plugin: AuthPlugin,
    /// TLS server configuration; `None`: TLS is not offered.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse clients that do not upgrade to TLS (ERR 3159).
    pub require_tls: bool,
    /// The whole handshake (greeting to login OK) must finish within this.
    pub handshake_timeout: Duration,
    /// Largest command packet accepted after login (larger: ERR 1153 and close).
    pub max_packet_size: usize,
    /// Input buffered beyond an outstanding command before [`wants_input`] turns false.
    ///
    /// [`wants_input`]: super::Frontend::wants_input
    pub input_buffer_cap: usize,
    /// Send the login OK as soon as credentials check out, without waiting for
    /// [`accept_login`](super::Frontend::accept_login) (for simple servers; the `Authenticated`
    /// event is still emitted).
    pub auto_accept_login: bool,
}

impl FrontendConfig {
    /// A configuration with MySQL-like defaults for `auth`: version `8.0.36-ferry`, utf8mb4
    /// (collation 45), autocommit, `mysql_native_password` greeting, no TLS, 10 s handshake.
    pub fn new(auth: AuthMode) -> Self {
        Self {
            server_version: "8.0.36-ferry".into(),
            capabilities: default_capabilities(),
            collation: 45,
            status: ServerStatus::AUTOCOMMIT,
            auth,
            default_plugin: AuthPlugin::MysqlNativePassword,
            tls: None,
            require_tls: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            input_buffer_cap: DEFAULT_INPUT_BUFFER_CAP,
            auto_accept_login: false,
        }
    }

    /// The capabilities the greeting announces.
    pub fn advertised_capabilities(&self) -> Capabilities {
        let required = Capabilities(
            Capabilities::PROTOCOL_41.0
                | Capabilities::SECURE_CONNECTION.0
                | Capabilities::PLUGIN_AUTH.0,
        );
        let caps = Capabilities(self.capabilities.0 | required.0);
        if self.tls.is_some() {
            Capabilities(caps.0 | Capabilities::SSL.0)
        } else {
            caps.without(Capabilities::SSL)
        }
    }
}

/// What the frontend offers by default: the 4.1 protocol with plugin auth, connection attributes,
/// multi-statements/results, transactions and `CLIENT_DEPRECATE_EOF`. Not offered: compression,
/// LOCAL INFILE, session tracking, optional metadata, query attributes.
pub fn default_capabilities() -> Capabilities {
    let flags = [
        Capabilities::LONG_PASSWORD,
        Capabilities::FOUND_ROWS,
        Capabilities::LONG_FLAG,
        Capabilities::CONNECT_WITH_DB,
        Capabilities::IGNORE_SPACE,
        Capabilities::PROTOCOL_41,
        Capabilities::INTERACTIVE,
        Capabilities::IGNORE_SIGPIPE,
        Capabilities::TRANSACTIONS,
        Capabilities::SECURE_CONNECTION,
        Capabilities::MULTI_STATEMENTS,
        Capabilities::MULTI_RESULTS,
        Capabilities::PS_MULTI_RESULTS,
        Capabilities::PLUGIN_AUTH,
        Capabilities::CONNECT_ATTRS,
        Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA,
        Capabilities::DEPRECATE_EOF,
    ];
    Capabilities(flags.iter().fold(0, |acc, f| acc | f.0))
}
