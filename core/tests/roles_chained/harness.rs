//! The harness of `roles_chained.rs`: the two roles' configurations (accounts, sha2 cache, test
//! certificate and RSA key), the pump that chains a `Backend` to a `Frontend` on a virtual clock,
//! and the login assertions every case shares.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use ferry_core::auth::caching_sha2::Sha256Stage2Hash;
use ferry_core::auth::{AuthPlugin, ClientSecret, Credential, Password, RsaKeyPair};
use ferry_core::backend::{self, Backend, BackendConfig, BackendError, BackendTls, ConnectedInfo};
use ferry_core::frontend::{
    self, AuthMode, Authenticated, ClientCommand, CloseReason, Frontend, FrontendConfig, Sha2Cache,
    UserEntry, UserTable,
};
use ferry_core::tls::{server_config, ServerTrust};
use ferry_core::wire::{Capabilities, Command, PacketDecoder, ServerStatus};
use ferry_core::{ProtocolError, SeededRandom};

pub(crate) const RSA_PAIR_PEM: &[u8] = include_bytes!("../../src/auth/testdata/rsa2048_pkcs8.pem");
pub(crate) const RSA_PUBLIC_PEM: &[u8] =
    include_bytes!("../../src/auth/testdata/rsa2048_spki_pub.pem");

/// The client's address as the frontend names it in "Access denied for user 'u'@'host'".
pub(crate) const PEER: &str = "10.0.0.7";
pub(crate) const CONNECTION_ID: u32 = 42;

/// `mysql_native_password` account.
pub(crate) const NAT: (&str, &str) = ("nat", "nat-pw");
/// `caching_sha2_password` account. Its stored credential is a native hash, which the sha2 fast
/// path cannot check: a fast-path login succeeds only through the frontend's sha2 cache.
pub(crate) const SHA: (&str, &str) = ("sha", "sha-pw");
/// `mysql_clear_password` account.
pub(crate) const CLR: (&str, &str) = ("clr", "clr-pw");

// ---- the frontend's configuration ----

/// An in-memory `Sha2Cache` (a driver would put a `Mutex<HashMap>` behind it too).
#[derive(Default)]
pub(crate) struct MemCache(Mutex<HashMap<String, Sha256Stage2Hash>>);

impl MemCache {
    pub(crate) fn holds(&self, user: &str) -> Option<Sha256Stage2Hash> {
        self.0.lock().unwrap().get(user).cloned()
    }
}

impl Sha2Cache for MemCache {
    fn get(&self, user: &str) -> Option<Sha256Stage2Hash> {
        self.holds(user)
    }
    fn insert(&self, user: &str, value: Sha256Stage2Hash) {
        self.0.lock().unwrap().insert(user.to_owned(), value);
    }
}

pub(crate) fn users() -> UserTable {
    let mut users = UserTable::new();
    for ((name, password), plugin) in [
        (NAT, AuthPlugin::MysqlNativePassword),
        (SHA, AuthPlugin::CachingSha2Password),
        (CLR, AuthPlugin::MysqlClearPassword),
    ] {
        let entry = UserEntry {
            credential: Credential::native_from_password(password.as_bytes()),
            plugin,
        };
        users.insert(name, entry);
    }
    users
}

/// A self-signed certificate for `localhost` (its own CA).
pub(crate) struct Cert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Cert {
    pub(crate) fn new() -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        Self {
            cert_pem: cert.cert.pem(),
            key_pem: cert.signing_key.serialize_pem(),
        }
    }
}

/// What the frontend is configured with beyond its defaults.
#[derive(Default)]
pub(crate) struct Server<'a> {
    /// The greeting's plugin (default: `mysql_native_password`).
    pub(crate) greeting: Option<AuthPlugin>,
    pub(crate) cache: Option<&'a Arc<MemCache>>,
    pub(crate) rsa: bool,
    pub(crate) tls: Option<&'a Cert>,
}

impl Server<'_> {
    pub(crate) fn config(&self) -> FrontendConfig {
        let mut config = FrontendConfig::new(AuthMode::Proxy {
            users: Arc::new(users()),
            sha2_cache: self.cache.map(|c| Arc::clone(c) as Arc<dyn Sha2Cache>),
            rsa: self
                .rsa
                .then(|| Arc::new(RsaKeyPair::from_pem(RSA_PAIR_PEM).unwrap())),
        });
        if let Some(plugin) = &self.greeting {
            config.default_plugin = plugin.clone();
        }
        config.tls = self
            .tls
            .map(|c| server_config(c.cert_pem.as_bytes(), c.key_pem.as_bytes()).unwrap());
        config
    }
}

// ---- the backend's configuration ----

pub(crate) fn plaintext(password: &str) -> ClientSecret {
    ClientSecret::Plaintext(Password::new(password))
}

pub(crate) fn client(user: &str, secret: ClientSecret) -> BackendConfig {
    BackendConfig::new(user, secret)
}

pub(crate) fn client_tls(user: &str, secret: ClientSecret, cert: &Cert) -> BackendConfig {
    let mut config = client(user, secret);
    config.tls = Some(BackendTls {
        server_name: "localhost".into(),
        trust: ServerTrust::CaPem(cert.cert_pem.clone().into_bytes()),
        required: true,
    });
    config
}

// ---- the pump ----

/// A backend and a frontend connected back to back, with the frontend's owner and a virtual clock.
pub(crate) struct Pair {
    pub(crate) fe: Frontend,
    pub(crate) be: Backend,
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    /// The frontend's owner accepts every login (false: it never decides, a stalled owner).
    pub(crate) accept_logins: bool,
    /// Bytes frontend → backend are held back (the link or the frontend's host stalls).
    pub(crate) hold_to_backend: bool,
    /// Bytes backend → frontend are held back.
    pub(crate) hold_to_frontend: bool,
    /// Everything each side wrote, as it went on the wire (ciphertext under TLS).
    pub(crate) to_backend: Vec<u8>,
    pub(crate) to_frontend: Vec<u8>,
    pub(crate) fe_events: Vec<frontend::Event>,
    pub(crate) be_events: Vec<backend::Event>,
    /// Commands the frontend handed to its owner, not yet answered.
    pub(crate) commands: VecDeque<ClientCommand>,
    /// The frontend's socket close was delivered to the backend as EOF.
    eof_delivered: bool,
}

impl Pair {
    pub(crate) fn new(server: FrontendConfig, client: BackendConfig, seed: u64) -> Self {
        let t0 = Instant::now();
        let fe = Frontend::new(
            Arc::new(server),
            CONNECTION_ID,
            PEER,
            t0,
            Box::new(SeededRandom::new(seed)),
        );
        let be = Backend::new(t0, client, Box::new(SeededRandom::new(seed ^ 0x5EED)));
        Self {
            fe,
            be,
            t0,
            now: t0,
            accept_logins: true,
            hold_to_backend: false,
            hold_to_frontend: false,
            to_backend: Vec::new(),
            to_frontend: Vec::new(),
            fe_events: Vec::new(),
            be_events: Vec::new(),
            commands: VecDeque::new(),
            eof_delivered: false,
        }
    }

    /// Creates the pair and runs it until nothing moves.
    pub(crate) fn run(server: FrontendConfig, client: BackendConfig, seed: u64) -> Self {
        let mut pair = Self::new(server, client, seed);
        pair.pump();
        pair
    }

    /// Moves bytes and drains events until both sides are quiet.
    pub(crate) fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(bytes) = self.fe.poll_transmit() {
                moved = true;
                if !self.hold_to_backend {
                    self.to_backend.extend_from_slice(&bytes);
                    self.be.handle_input(self.now, &bytes);
                }
            }
            while let Some(bytes) = self.be.poll_transmit() {
                moved = true;
                if !self.hold_to_frontend {
                    self.to_frontend.extend_from_slice(&bytes);
                    self.fe.handle_input(self.now, &bytes);
                }
            }
            while let Some(event) = self.fe.poll_event() {
                moved = true;
                assert!(
                    !matches!(self.fe_events.last(), Some(frontend::Event::Closed { .. })),
                    "frontend event after Closed: {event:?}"
                );
                match &event {
                    frontend::Event::Authenticated(_) if self.accept_logins => {
                        self.fe.accept_login(self.now).unwrap()
                    }
                    frontend::Event::Command(cmd) => self.commands.push_back(cmd.clone()),
                    _ => {}
                }
                self.fe_events.push(event);
            }
            while let Some(event) = self.be.poll_event() {
                moved = true;
                assert!(
                    !matches!(self.be_events.last(), Some(backend::Event::Closed { .. })),
                    "backend event after Closed: {event:?}"
                );
                self.be_events.push(event);
            }
            if moved {
                continue;
            }
            // Quiet: the frontend's driver closes the socket once its last bytes are out.
            if self.fe.is_closed() && !self.hold_to_backend && !self.eof_delivered {
                self.eof_delivered = true;
                self.be.handle_eof(self.now);
                continue;
            }
            return;
        }
        panic!("the pair never went quiet");
    }

    /// The earliest deadline of either side.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.fe.poll_timeout(), self.be.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the virtual clock to `t`, fires both sides' timers, and pumps.
    pub(crate) fn advance_to(&mut self, t: Instant) {
        assert!(t >= self.now, "the clock only moves forward");
        self.now = t;
        self.fe.handle_timeout(t);
        self.be.handle_timeout(t);
        self.pump();
    }

    /// The one `Authenticated` event.
    pub(crate) fn authenticated(&self) -> &Authenticated {
        let all: Vec<_> = self
            .fe_events
            .iter()
            .filter_map(|e| match e {
                frontend::Event::Authenticated(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(all.len(), 1, "frontend events: {:?}", self.fe_events);
        all[0]
    }

    /// The one `Connected` event.
    pub(crate) fn connected(&self) -> &ConnectedInfo {
        let all: Vec<_> = self
            .be_events
            .iter()
            .filter_map(|e| match e {
                backend::Event::Connected(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(all.len(), 1, "backend events: {:?}", self.be_events);
        all[0]
    }

    /// Packets the frontend sent (only meaningful without TLS).
    pub(crate) fn packets_to_backend(&self) -> Vec<Bytes> {
        packets(&self.to_backend)
    }

    /// Packets the backend sent (only meaningful without TLS).
    pub(crate) fn packets_to_frontend(&self) -> Vec<Bytes> {
        packets(&self.to_frontend)
    }

    /// Sends `command` from the backend, pumps, and returns the command the frontend's owner got.
    pub(crate) fn command(&mut self, command: &Command<'_>) -> ClientCommand {
        self.be.send_command(self.now, command).unwrap();
        self.pump();
        assert_eq!(
            self.commands.len(),
            1,
            "frontend events: {:?}",
            self.fe_events
        );
        self.commands.pop_front().unwrap()
    }

    /// The backend events since index `from`.
    pub(crate) fn be_events_since(&self, from: usize) -> &[backend::Event] {
        &self.be_events[from..]
    }
}

/// Splits a plaintext byte stream into packet payloads (sequence ids not checked: they restart
/// at every command).
fn packets(stream: &[u8]) -> Vec<Bytes> {
    let mut decoder = PacketDecoder::new(1 << 24);
    decoder.set_check_sequence(false);
    decoder.feed(stream);
    let mut out = Vec::new();
    while let Some(packet) = decoder.next_packet().expect("a plaintext packet stream") {
        out.push(packet.payload);
    }
    assert_eq!(decoder.buffered_len(), 0, "a partial packet was left");
    out
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The first byte of each packet, for comparing exchanges at a glance.
pub(crate) fn headers(packets: &[Bytes]) -> Vec<u8> {
    packets.iter().map(|p| p[0]).collect()
}

// ---- assertions shared by the cases ----

/// Both sides agree the login succeeded for `user` with `plugin`, under TLS or not; returns what
/// the frontend learned.
pub(crate) fn assert_logged_in(
    pair: &Pair,
    user: &str,
    plugin: AuthPlugin,
    tls: bool,
) -> Authenticated {
    let auth = pair.authenticated().clone();
    assert_eq!(auth.user, user);
    assert_eq!(auth.plugin, plugin);
    assert_eq!(auth.tls, tls);
    assert_eq!(auth.database, None);
    let connected = pair.connected();
    assert_eq!(connected.auth_plugin, plugin);
    assert_eq!(connected.tls, tls);
    assert_eq!(connected.connection_id, CONNECTION_ID);
    assert_eq!(connected.server_version, "8.0.36-ferry");
    assert_eq!(connected.status, ServerStatus::AUTOCOMMIT);
    assert_eq!(connected.capabilities.contains(Capabilities::SSL), tls);
    // The frontend intersects what the backend asked for with what it offered: the same set.
    assert_eq!(pair.fe.capabilities(), connected.capabilities);
    assert_eq!(auth.capabilities, connected.capabilities);
    assert!(pair.fe.is_command_phase() && !pair.fe.is_closed());
    assert!(pair.be.is_idle() && !pair.be.is_closed());
    assert_eq!(pair.fe.is_tls(), tls);
    assert_eq!(pair.be.is_tls(), tls);
    assert_eq!(pair.fe.user(), Some(user));
    assert_eq!(pair.be.user(), user);
    // Login deadlines are disarmed on both sides.
    assert_eq!(pair.next_deadline(), None);
    assert_eq!(pair.fe_events.len(), 1, "{:?}", pair.fe_events);
    assert_eq!(pair.be_events.len(), 1, "{:?}", pair.be_events);
    auth
}

/// The frontend refused `user` with 1045; the backend reported exactly that ERR and closed.
pub(crate) fn assert_denied(pair: &Pair, user: &str) {
    let expected = ProtocolError::new(
        1045,
        "28000",
        format!("Access denied for user '{user}'@'{PEER}' (using password: YES)"),
    );
    match pair.be_events.as_slice() {
        [backend::Event::AuthFailed { error, payload }, backend::Event::Closed {
            error: Some(BackendError::AuthFailed(closed)),
        }] => {
            assert_eq!(error, &expected);
            assert_eq!(closed, &expected);
            assert_eq!(payload[0], 0xFF);
            assert_eq!(&payload[1..3], &1045u16.to_le_bytes());
        }
        other => panic!("backend events: {other:?}"),
    }
    assert!(pair.be.is_closed());
    assert_eq!(
        pair.be.error(),
        Some(&BackendError::AuthFailed(expected.clone()))
    );
    match pair.fe_events.as_slice() {
        [frontend::Event::Closed {
            reason: CloseReason::Error(err),
        }] => assert_eq!(err, &expected),
        other => panic!("frontend events: {other:?}"),
    }
    assert!(pair.fe.is_closed());
    assert_eq!(pair.next_deadline(), None);
}
