//! A **TiDB-style test server**: not TiDB, not a database, not a product. It exists so that ferry's
//! `tidb` migration mode can be tested here, where no TiDB can run. It speaks just enough of what
//! TiDB offers a migrating proxy (`reference/tidb-migration-protocol.md`):
//!
//! - logins with `mysql_native_password` against a user table of plaintext passwords (a client
//!   offering any other plugin, e.g. a relaying proxy's unknown one, gets an auth switch), or with
//!   plugin `tidb_session_token`, whose auth data is a token validated with a
//!   [`CertStore`] shared by every instance; every failure is ERR 1045;
//! - a tiny session: current database, user variables, a few session variables, prepared
//!   `SELECT` lists (COM_STMT_PREPARE / EXECUTE / CLOSE), `BEGIN` / `COMMIT` (the
//!   `SERVER_STATUS_IN_TRANS` flag), `SELECT @@port` / `@@server_id` to tell instances apart;
//! - `SHOW SESSION_STATES` (the session as JSON, see `tidb_server/session.rs`, and a token signed
//!   for the session's user) and `SET SESSION_STATES '…'`, which restores all of it, prepared
//!   statements under their original ids;
//! - [`TidbFaults`] to make those fail on demand, and [`TidbStats`] to see what happened.
//!
//! It runs on ferry's own frontend role in `passthrough` auth mode (the owner decides logins from
//! [`Event::ClientLogin`]), over the blocking driver shared with [`crate::TestServer`]. Wall-clock
//! time is read here: it is a test server, not the sans-IO core.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ferry_tests::{TidbTestServer, TidbTestServerConfig, TidbUsers, TokenCertificate};
//!
//! let certs = Arc::new(TokenCertificate::generate().cert_store());
//! let users: Arc<TidbUsers> = Arc::new([("app".to_owned(), "pw".to_owned())].into());
//! let a = TidbTestServer::start(TidbTestServerConfig::new(1, users.clone(), certs.clone()));
//! let b = TidbTestServer::start(TidbTestServerConfig::new(2, users, certs));
//! // A session on `a` can move to `b`: SHOW SESSION_STATES on a, token login and
//! // SET SESSION_STATES on b.
//! # let _ = (a.addr(), b.addr());
//! ```

mod client;
mod commands;
mod session;
mod sql;

pub use client::{RawClient, RawResult};
pub use commands::tidb_token_text;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command as Process;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferry_core::auth::native::{self, NativeStage2Hash};
use ferry_core::auth::{access_denied, AuthPlugin};
use ferry_core::frontend::{AuthMode, ClientLogin, Event, Frontend, FrontendConfig};
use ferry_core::token::CertStore;
use ferry_core::wire::AuthSwitchRequest;
use ferry_core::{ProtocolError, RandomSource};

use crate::frontend_driver::{drive_frontend, Accepted, Listener};
use crate::{require_executable, run_with_deadline, OsRandom};

use self::session::Session;

/// User name → plaintext password, shared by the instances of a test.
pub type TidbUsers = HashMap<String, String>;

/// The databases a [`TidbTestServerConfig::new`] server knows.
pub const TIDB_TEST_DATABASES: &[&str] = &["test", "db1", "db2"];

/// A signing certificate and key made by `openssl` for the test, as PEM.
#[derive(Debug, Clone)]
pub struct TokenCertificate {
    /// The self-signed certificate (RSA 2048, SHA-256).
    pub cert_pem: Vec<u8>,
    /// Its private key (PKCS#8).
    pub key_pem: Vec<u8>,
}

impl TokenCertificate {
    /// Runs `openssl req -x509 -newkey rsa:2048 -sha256 -nodes` in a temporary directory. Panics
    /// with the package to install when `openssl` is missing, or with its output when it fails.
    pub fn generate() -> Self {
        let openssl = require_executable("openssl", "openssl");
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let out = run_with_deadline(
            Process::new(openssl)
                .args(["req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes"])
                .args([
                    "-days",
                    "1",
                    "-subj",
                    "/CN=ferry-tidb-test-server",
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
            Duration::from_secs(60),
        )
        .expect("openssl ran");
        assert!(
            out.status.success(),
            "openssl req failed: {}\n{}",
            out.stdout,
            out.stderr
        );
        Self {
            cert_pem: std::fs::read(&cert).expect("read openssl certificate"),
            key_pem: std::fs::read(&key).expect("read openssl key"),
        }
    }

    /// A [`CertStore`] with this certificate loaded now (it signs and verifies for 25 minutes).
    pub fn cert_store(&self) -> CertStore {
        let mut store = CertStore::new();
        store
            .load(SystemTime::now(), &self.cert_pem, &self.key_pem)
            .expect("openssl certificate loads into the CertStore");
        store
    }
}

/// Configures one [`TidbTestServer`]; instances that should accept each other's sessions share
/// `users` and `certs`.
#[derive(Debug, Clone)]
pub struct TidbTestServerConfig {
    /// What `SELECT @@server_id` answers: tells instances apart.
    pub server_id: u32,
    /// The accounts (`mysql_native_password`).
    pub users: Arc<TidbUsers>,
    /// Signs the tokens of `SHOW SESSION_STATES`, validates `tidb_session_token` logins.
    pub certs: Arc<CertStore>,
    /// Databases that `USE`, COM_INIT_DB, a login and `SET SESSION_STATES` may name.
    pub databases: Vec<String>,
    /// The version string of the greeting.
    pub server_version: String,
}

impl TidbTestServerConfig {
    /// Instance `server_id` with [`TIDB_TEST_DATABASES`] and a TiDB-like version string.
    pub fn new(server_id: u32, users: Arc<TidbUsers>, certs: Arc<CertStore>) -> Self {
        Self {
            server_id,
            users,
            certs,
            databases: TIDB_TEST_DATABASES.iter().map(|d| d.to_string()).collect(),
            server_version: "8.0.11-TiDB-v7.5.0-ferry-test".into(),
        }
    }
}

/// How `SHOW SESSION_STATES` misbehaves ([`TidbFaults::set_show_states`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowStatesFault {
    /// It works.
    None,
    /// It answers ERR 8146 (TiDB's "cannot migrate the current session").
    Error,
    /// `Session_token` is the empty string.
    EmptyToken,
    /// `Session_token` is NULL.
    NullToken,
}

/// Failures to inject, switchable while the server runs.
#[derive(Debug, Default)]
pub struct TidbFaults {
    show_states: AtomicU8,
    refuse_token_login: AtomicBool,
    fail_set_states: AtomicBool,
}

impl TidbFaults {
    /// Makes `SHOW SESSION_STATES` fail as `fault` says.
    pub fn set_show_states(&self, fault: ShowStatesFault) {
        self.show_states.store(fault as u8, Ordering::SeqCst);
    }

    /// The current `SHOW SESSION_STATES` fault.
    pub fn show_states(&self) -> ShowStatesFault {
        match self.show_states.load(Ordering::SeqCst) {
            1 => ShowStatesFault::Error,
            2 => ShowStatesFault::EmptyToken,
            3 => ShowStatesFault::NullToken,
            _ => ShowStatesFault::None,
        }
    }

    /// Refuses every `tidb_session_token` login with 1045, valid token or not.
    pub fn set_refuse_token_login(&self, refuse: bool) {
        self.refuse_token_login.store(refuse, Ordering::SeqCst);
    }

    /// Makes `SET SESSION_STATES` answer ERR 1105 without changing anything.
    pub fn set_fail_set_states(&self, fail: bool) {
        self.fail_set_states.store(fail, Ordering::SeqCst);
    }
}

/// Counters of what a server did, for tests to check which path a proxy took.
#[derive(Debug, Default)]
struct Counters {
    password_logins: AtomicU64,
    token_logins: AtomicU64,
    refused_logins: AtomicU64,
    states_shown: AtomicU64,
    states_restored: AtomicU64,
    open_sessions: AtomicU64,
}

/// A snapshot of a server's counters ([`TidbTestServer::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TidbStats {
    /// Logins accepted with `mysql_native_password`.
    pub password_logins: u64,
    /// Logins accepted with `tidb_session_token`.
    pub token_logins: u64,
    /// Logins refused (any plugin).
    pub refused_logins: u64,
    /// `SHOW SESSION_STATES` answered with states.
    pub states_shown: u64,
    /// `SET SESSION_STATES` applied.
    pub states_restored: u64,
    /// Connections past login and not yet closed.
    pub open_sessions: u64,
}

/// What every connection of one instance shares.
#[derive(Debug)]
struct Shared {
    config: TidbTestServerConfig,
    port: u16,
    faults: Arc<TidbFaults>,
    counters: Counters,
}

/// A running TiDB-style test server on 127.0.0.1; stopped on drop.
#[derive(Debug)]
pub struct TidbTestServer {
    listener: Listener,
    shared: Arc<Shared>,
}

impl TidbTestServer {
    /// Binds a free loopback port and starts accepting, a thread per connection.
    pub fn start(config: TidbTestServerConfig) -> Self {
        let mut frontend_config = FrontendConfig::new(AuthMode::Passthrough);
        frontend_config.server_version = config.server_version.clone();
        let frontend_config = Arc::new(frontend_config);
        // The port is known only once bound: connections read it through this slot.
        let shared_slot: Arc<std::sync::OnceLock<Arc<Shared>>> = Arc::default();
        let listener = {
            let slot = shared_slot.clone();
            Listener::start(move |accepted| {
                // Set right after binding; a connection that races it waits a moment.
                let shared = loop {
                    if let Some(s) = slot.get() {
                        break s.clone();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                serve(accepted, frontend_config.clone(), shared);
            })
        };
        let shared = Arc::new(Shared {
            port: listener.addr().port(),
            config,
            faults: Arc::default(),
            counters: Counters::default(),
        });
        // The slot is fresh: this is its only `set`.
        let _ = shared_slot.set(shared.clone());
        Self { listener, shared }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// The listening port (what `SELECT @@port` answers).
    pub fn port(&self) -> u16 {
        self.listener.addr().port()
    }

    /// What `SELECT @@server_id` answers.
    pub fn server_id(&self) -> u32 {
        self.shared.config.server_id
    }

    /// The failures to inject.
    pub fn faults(&self) -> &TidbFaults {
        &self.shared.faults
    }

    /// What the server did so far.
    pub fn stats(&self) -> TidbStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        TidbStats {
            password_logins: get(&c.password_logins),
            token_logins: get(&c.token_logins),
            refused_logins: get(&c.refused_logins),
            states_shown: get(&c.states_shown),
            states_restored: get(&c.states_restored),
            open_sessions: get(&c.open_sessions),
        }
    }
}

/// One connection's owner-side state.
struct Conn {
    shared: Arc<Shared>,
    host: String,
    connection_id: u32,
    /// The salt of an auth switch we sent, while waiting for the client's answer.
    switch_salt: Option<[u8; 20]>,
    /// The login being decided (user, database).
    login: Option<ClientLogin>,
    logged_in: bool,
    session: Session,
}

fn serve(accepted: Accepted, config: Arc<FrontendConfig>, shared: Arc<Shared>) {
    let host = accepted.peer.ip().to_string();
    let mut frontend = Frontend::new(
        config,
        accepted.id,
        host.clone(),
        Instant::now(),
        Box::new(OsRandom),
    );
    let mut conn = Conn {
        shared,
        host,
        connection_id: accepted.id,
        switch_salt: None,
        login: None,
        logged_in: false,
        session: Session::default(),
    };
    drive_frontend(
        accepted.stream,
        &mut frontend,
        &accepted.stop,
        |frontend, now, event| conn.on_event(frontend, now, event),
    );
    if conn.logged_in {
        conn.shared
            .counters
            .open_sessions
            .fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    fn on_event(&mut self, frontend: &mut Frontend, now: Instant, event: Event) {
        match event {
            Event::ClientLogin(login) => self.on_login(frontend, now, login),
            Event::AuthPacket(response) => {
                // Only sent after our auth switch; the frontend never emits it otherwise.
                let salt = self.switch_salt.take().unwrap_or(*frontend.salt());
                let result = self.verify_password(&response, &salt);
                self.finish_login(frontend, now, result);
            }
            Event::Command(cmd) => {
                self.on_command(frontend, now, &cmd);
                frontend
                    .end_response(now)
                    .expect("end_response after answering the outstanding command");
            }
            // `passthrough` mode never authenticates by itself; nothing else is asked of us.
            _ => {}
        }
    }

    fn on_login(&mut self, frontend: &mut Frontend, now: Instant, login: ClientLogin) {
        let plugin = login.plugin.clone();
        let salt = login.salt;
        let response = login.auth_response.clone();
        self.login = Some(login);
        let result = match plugin {
            None | Some(AuthPlugin::MysqlNativePassword) => self.verify_password(&response, &salt),
            Some(AuthPlugin::TidbSessionToken) => self.verify_token(&response),
            Some(_) => {
                // Another plugin (caching_sha2, a proxy's unknown one): switch to ours with a
                // fresh salt, as a server does for an account on mysql_native_password.
                let mut salt = [0u8; 20];
                OsRandom.fill(&mut salt);
                for b in &mut salt {
                    *b = *b % 127 + 1; // never NUL: clients read the salt as a C string
                }
                let mut data = salt.to_vec();
                data.push(0);
                let mut payload = Vec::new();
                AuthSwitchRequest {
                    plugin_name: AuthPlugin::MysqlNativePassword.name().as_bytes(),
                    data: &data,
                }
                .encode(&mut payload);
                self.switch_salt = Some(salt);
                frontend
                    .send_auth_packet(now, &payload)
                    .expect("send_auth_packet right after ClientLogin");
                return;
            }
        };
        self.finish_login(frontend, now, result);
    }

    fn user(&self) -> &str {
        self.login.as_ref().map_or("", |l| l.user.as_str())
    }

    fn verify_password(&self, response: &[u8], salt: &[u8; 20]) -> Result<(), ProtocolError> {
        let denied = || access_denied(self.user(), &self.host, !response.is_empty());
        let password = self
            .shared
            .config
            .users
            .get(self.user())
            .ok_or_else(denied)?;
        let ok = if password.is_empty() {
            response.is_empty()
        } else {
            native::verify(
                response,
                salt,
                &NativeStage2Hash::from_password(password.as_bytes()),
            )
        };
        ok.then_some(()).ok_or_else(denied)
    }

    fn verify_token(&self, token: &[u8]) -> Result<(), ProtocolError> {
        let user = self.user().as_bytes();
        let denied = || access_denied(self.user(), &self.host, true);
        if self.shared.faults.refuse_token_login.load(Ordering::SeqCst) {
            return Err(denied());
        }
        // TiDB checks that the account exists before validating the token.
        if !self.shared.config.users.contains_key(self.user()) {
            return Err(denied());
        }
        self.shared
            .config
            .certs
            .validate(SystemTime::now(), token, user)
            .map(|_| ())
            .map_err(|e| e.access_denied(user, &self.host))
    }

    fn finish_login(
        &mut self,
        frontend: &mut Frontend,
        now: Instant,
        mut result: Result<(), ProtocolError>,
    ) {
        let database = self.login.as_ref().and_then(|l| l.database.clone());
        if result.is_ok() {
            if let Some(db) = &database {
                if !self.shared.config.databases.contains(db) {
                    result = Err(commands::unknown_database(db));
                }
            }
        }
        let counters = &self.shared.counters;
        match &result {
            Ok(()) => {
                let by_token = self.login.as_ref().and_then(|l| l.plugin.clone())
                    == Some(AuthPlugin::TidbSessionToken);
                match by_token {
                    true => &counters.token_logins,
                    false => &counters.password_logins,
                }
                .fetch_add(1, Ordering::SeqCst);
                self.logged_in = true;
                counters.open_sessions.fetch_add(1, Ordering::SeqCst);
                self.session.user = self.user().to_owned();
                self.session.db = database;
            }
            Err(e) if e.code == 1045 => {
                counters.refused_logins.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {}
        }
        frontend
            .finish_auth(now, result)
            .expect("finish_auth while the owner decides the login");
    }
}
