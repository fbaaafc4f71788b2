//! What a [`Backend`](super::Backend) needs to log in: who, with what secret, over what transport,
//! with which capabilities, and how long it may take.

use std::time::Duration;

use crate::auth::{ClientSecret, RsaPublicKey};
use crate::tls::ServerTrust;
use crate::wire::{Capabilities, DEFAULT_MAX_PACKET_SIZE};

/// `utf8mb4_general_ci`, the collation most clients ask for.
pub const DEFAULT_COLLATION: u8 = 45;

/// TLS towards the backend server.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// Name the certificate must carry (SNI and verification), e.g. `db1.internal` or `localhost`.
    pub server_name: String,
    /// How the certificate is checked: CA PEM, or (tests only) trust-all.
    pub trust: ServerTrust,
    /// Fail when the server does not offer TLS, rather than continuing in clear.
    pub required: bool,
}

/// Configuration of one backend connection.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// User name to log in as.
    pub user: String,
    /// What ferry knows of the user's password: the plaintext, a recovered `SHA1(password)`, a
    /// `SHA256(password)`, or no password.
    pub secret: ClientSecret,
    /// Initial schema (`CLIENT_CONNECT_WITH_DB`).
    pub database: Option<String>,
    /// Collation id sent in the handshake response.
    pub collation: u8,
    /// Capabilities the client side asked for, to mirror towards the server (so that commands
    /// relayed untouched mean the same thing). ferry adds what it needs itself (protocol 4.1,
    /// plugin auth, session tracking, DEPRECATE_EOF, ...) and drops what it cannot speak
    /// (compression, optional result-set metadata).
    pub client_capabilities: Capabilities,
    /// Connection attributes (`CLIENT_CONNECT_ATTRS`), in order.
    pub connect_attrs: Vec<(String, String)>,
    /// TLS, or `None` for a clear-text connection.
    pub tls: Option<BackendTls>,
    /// Allow `mysql_clear_password` without TLS (only on trusted networks).
    pub allow_cleartext_without_tls: bool,
    /// The server's RSA public key for `caching_sha2_password` full authentication without TLS;
    /// without it the key is requested from the server.
    pub server_public_key: Option<RsaPublicKey>,
    /// Time allowed from creation to the end of authentication.
    pub connect_timeout: Duration,
    /// Longest silence allowed from the server while a command's response is outstanding.
    pub command_timeout: Option<Duration>,
    /// Largest packet accepted from the server.
    pub max_packet_size: usize,
    /// Ask for `CLIENT_DEPRECATE_EOF` only when [`client_capabilities`](Self::client_capabilities)
    /// has it, so that a proxy's backend connection frames result sets exactly as its client
    /// expects them (relayed untouched). `false` (the default): ask whenever the server offers it.
    pub mirror_deprecate_eof: bool,
    /// `Some`: a *relayed* login (a proxy in `passthrough` mode): send this plugin name and auth
    /// response instead of answering the server with [`secret`](Self::secret); every auth packet
    /// of the server then comes out as an [`Event::Response`](super::Event::Response)
    /// (`AuthSwitchRequest` / `AuthMoreData`) for the owner to relay, and the owner answers with
    /// [`Backend::send_auth_data`](super::Backend::send_auth_data).
    pub relayed_auth: Option<RelayedAuth>,
    /// `Some`: a *fixed* login (TiDB's `tidb_session_token` for a migrated session): send exactly
    /// this plugin name and auth data, and accept only an OK in reply; an ERR fails the login as
    /// usual, and anything else (an auth switch, more data) fails it too
    /// ([`BackendError::UnexpectedPacket`](super::BackendError::UnexpectedPacket)).
    /// [`secret`](Self::secret) is not used. Takes precedence over
    /// [`relayed_auth`](Self::relayed_auth).
    pub fixed_auth: Option<FixedAuth>,
}

/// The one auth response of a fixed login ([`BackendConfig::fixed_auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedAuth {
    /// Plugin name written in the HandshakeResponse41 (e.g. `tidb_session_token`).
    pub plugin: String,
    /// Auth data written unchanged (length-encoded, which needs the server to offer
    /// `CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA` when it is 251 bytes or longer).
    pub auth_data: Vec<u8>,
}

/// The first auth response of a relayed login ([`BackendConfig::relayed_auth`]).
///
/// A proxy that relays its client's login (TiProxy's model) names a plugin the server does not
/// know, so that the server answers with an AuthSwitchRequest carrying its own salt, which the
/// client then answers (its first response was computed over the proxy's salt, not the server's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedAuth {
    /// Plugin name written in the HandshakeResponse41.
    pub plugin: String,
    /// Auth response written in the HandshakeResponse41.
    pub auth_response: Vec<u8>,
}

impl RelayedAuth {
    /// A plugin name no server knows: forces the server to switch to the account's plugin.
    pub const FORCE_SWITCH_PLUGIN: &'static str = "ferry_relayed_login";
}

impl BackendConfig {
    /// What a typical modern client asks for: multi-statements and multi-results, LOCAL INFILE,
    /// found-rows off, long flags, transactions.
    pub const DEFAULT_CLIENT_CAPABILITIES: Capabilities = Capabilities(
        Capabilities::LONG_PASSWORD.0
            | Capabilities::LONG_FLAG.0
            | Capabilities::LOCAL_FILES.0
            | Capabilities::PROTOCOL_41.0
            | Capabilities::TRANSACTIONS.0
            | Capabilities::SECURE_CONNECTION.0
            | Capabilities::MULTI_STATEMENTS.0
            | Capabilities::MULTI_RESULTS.0
            | Capabilities::PS_MULTI_RESULTS.0
            | Capabilities::PLUGIN_AUTH.0
            | Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA.0,
    );

    /// A configuration for `user` with `secret`, no schema, no TLS, default capabilities, a 10 s
    /// connect timeout and no command timeout.
    pub fn new(user: impl Into<String>, secret: ClientSecret) -> Self {
        Self {
            user: user.into(),
            secret,
            database: None,
            collation: DEFAULT_COLLATION,
            client_capabilities: Self::DEFAULT_CLIENT_CAPABILITIES,
            connect_attrs: Vec::new(),
            tls: None,
            allow_cleartext_without_tls: false,
            server_public_key: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: None,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            mirror_deprecate_eof: false,
            relayed_auth: None,
            fixed_auth: None,
        }
    }

    /// The capabilities to request from a server offering `server`, with `tls` decided.
    pub(crate) fn negotiate(&self, server: Capabilities, tls: bool) -> Capabilities {
        // Needed by the parsers and the auth code; the server must offer them (checked later).
        let mut want = self.client_capabilities
            | Capabilities::PROTOCOL_41
            | Capabilities::SECURE_CONNECTION
            | Capabilities::PLUGIN_AUTH
            | Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA
            | Capabilities::TRANSACTIONS
            | Capabilities::SESSION_TRACK
            | Capabilities::DEPRECATE_EOF;
        want = want.without(
            Capabilities::COMPRESS
                | Capabilities::ZSTD_COMPRESSION_ALGORITHM
                | Capabilities::OPTIONAL_RESULTSET_METADATA
                | Capabilities::MULTI_FACTOR_AUTHENTICATION
                | Capabilities::SSL
                | Capabilities::CONNECT_WITH_DB
                | Capabilities::CONNECT_ATTRS
                | Capabilities::SSL_VERIFY_SERVER_CERT
                | Capabilities::CAPABILITY_EXTENSION,
        );
        if self.mirror_deprecate_eof
            && !self
                .client_capabilities
                .contains(Capabilities::DEPRECATE_EOF)
        {
            want = want.without(Capabilities::DEPRECATE_EOF);
        }
        if tls {
            want |= Capabilities::SSL;
        }
        if self.database.is_some() {
            want |= Capabilities::CONNECT_WITH_DB;
        }
        if !self.connect_attrs.is_empty() {
            want |= Capabilities::CONNECT_ATTRS;
        }
        want.intersect(server)
    }
}
