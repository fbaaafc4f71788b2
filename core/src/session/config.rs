//! What every session of a proxy shares: the client-facing configuration (greeting, TLS, auth
//! mode), how backend connections are opened, and the session-level limits.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::RsaPublicKey;
use crate::backend::{BackendConfig, BackendTls};
use crate::frontend::{default_capabilities, AuthMode, FrontendConfig};
use crate::wire::{Capabilities, DEFAULT_MAX_PACKET_SIZE};

/// How a session opens its backend connections (the per-connection parts, user and secret, come
/// from the client's login).
#[derive(Debug, Clone)]
pub struct BackendTemplate {
    /// TLS towards the backends, or `None` for clear-text connections.
    pub tls: Option<BackendTls>,
    /// Time allowed from [`Event::ConnectBackend`](super::Event::ConnectBackend) to the end of the
    /// backend login (TCP connect included).
    pub connect_timeout: Duration,
    /// Longest silence allowed from a backend while a command's response is outstanding
    /// (`None`: no limit, as with a direct connection; long queries are legitimate).
    pub command_timeout: Option<Duration>,
    /// Largest packet accepted from a backend (larger: the client gets ERR 1153 and the session
    /// closes).
    pub max_packet_size: usize,
    /// Allow `mysql_clear_password` towards a backend without TLS (trusted networks only).
    pub allow_cleartext_without_tls: bool,
    /// The backends' RSA public key for `caching_sha2_password` full authentication without TLS.
    pub server_public_key: Option<RsaPublicKey>,
}

impl Default for BackendTemplate {
    fn default() -> Self {
        Self {
            tls: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: None,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            allow_cleartext_without_tls: false,
            server_public_key: None,
        }
    }
}

impl BackendTemplate {
    /// A backend configuration for `user` with the template's transport and limits. The backend
    /// mirrors the client's capabilities, `CLIENT_DEPRECATE_EOF` included (so result sets relay
    /// unchanged), and asks for `CLIENT_SESSION_TRACK` whenever the server offers it.
    pub(crate) fn backend_config(
        &self,
        user: String,
        secret: crate::auth::ClientSecret,
        client_capabilities: Capabilities,
    ) -> BackendConfig {
        let mut config = BackendConfig::new(user, secret);
        config.client_capabilities = client_capabilities;
        config.mirror_deprecate_eof = true;
        config.tls = self.tls.clone();
        config.allow_cleartext_without_tls = self.allow_cleartext_without_tls;
        config.server_public_key = self.server_public_key.clone();
        config.connect_timeout = self.connect_timeout;
        config.command_timeout = self.command_timeout;
        config.max_packet_size = self.max_packet_size;
        config
    }
}

/// Configuration shared by all sessions of a proxy (`Arc<SessionConfig>`).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The client-facing side: greeting, TLS, auth mode (`passthrough`, or `proxy` with a user
    /// table). Its `max_packet_size` caps client packets; `auto_accept_login` must stay false
    /// (the session accepts a login only once the backend accepted it).
    pub frontend: Arc<FrontendConfig>,
    /// How backend connections are opened.
    pub backend: BackendTemplate,
    /// A client idle between commands this long gets ERR 4031 and is disconnected (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Largest packet relayed in either direction (applied on top of the frontend's and the
    /// template's own caps: the smallest wins).
    pub max_packet_size: usize,
    /// Live migration (mode `Off` by default; `Replay` needs `proxy` auth, `Tidb` goes with
    /// `passthrough`).
    pub migration: super::MigrationConfig,
    /// Connection multiplexing (`None`: off; needs `Replay` migration and `proxy` auth): the
    /// control plane's pool gives the session a backend connection per statement.
    pub multiplexing: Option<Multiplexing>,
}

/// The session's multiplexing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multiplexing {
    /// How long a statement waits for a backend connection before ERR 1040.
    pub max_wait: std::time::Duration,
}

impl SessionConfig {
    /// A configuration for `auth` with [`proxy_capabilities`], default backend template, no idle
    /// timeout and a 64 MiB packet cap.
    pub fn new(auth: AuthMode) -> Self {
        let mut frontend = FrontendConfig::new(auth);
        frontend.capabilities = proxy_capabilities();
        Self {
            frontend: Arc::new(frontend),
            backend: BackendTemplate::default(),
            idle_timeout: None,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            migration: super::MigrationConfig::default(),
            multiplexing: None,
        }
    }

    /// The cap on client packets.
    pub(crate) fn client_packet_cap(&self) -> usize {
        self.max_packet_size.min(self.frontend.max_packet_size)
    }

    /// The cap on backend packets.
    pub(crate) fn backend_packet_cap(&self) -> usize {
        self.max_packet_size.min(self.backend.max_packet_size)
    }
}

/// What a proxy offers its clients: the frontend's defaults plus `CLIENT_LOCAL_FILES` (LOAD DATA
/// LOCAL is relayed, the client sends the file) — TiProxy's set, without compression.
/// `CLIENT_SESSION_TRACK` is not offered by default; a configuration that offers it relays the
/// backends' session-state information to the clients that ask.
pub fn proxy_capabilities() -> Capabilities {
    default_capabilities() | Capabilities::LOCAL_FILES
}
