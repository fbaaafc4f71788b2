//! A **test server** built on [`ferry_core::frontend::Frontend`]: not a database, not a proxy.
//!
//! It exists to show the frontend working against real clients (the `mariadb` CLI, PyMySQL,
//! mysql-connector-python, the Rust `mysql` crate). It is a blocking `std::net` accept loop with
//! one thread per connection, authenticates in `proxy` mode against a user table built from
//! plaintext passwords, and answers a handful of queries:
//!
//! | query | answer |
//! |---|---|
//! | `SELECT 1` | one BIGINT row `1` |
//! | `SELECT @@version`, `SELECT @@a, @@b` (any system variables) | their values (unknown: NULL) |
//! | `SELECT USER()` / `CURRENT_USER()` | `user@host` of the login |
//! | `SELECT DATABASE()` | the current database or NULL |
//! | `SELECT * FROM people` | two rows, one with a NULL |
//! | `USE db` / COM_INIT_DB | switch database (known: `test`, `db1`) or ERR 1049 |
//! | `SET ...` | OK |
//! | anything else | ERR 1064 |
//!
//! The driver loop (shared with the TiDB test server, in `frontend_driver.rs`) is what any
//! embedder of the frontend writes: feed socket bytes in while `wants_input()`, drain
//! `poll_transmit` / `poll_event` after every call, honour `poll_timeout`.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry_core::auth::caching_sha2::Sha256Stage2Hash;
use ferry_core::auth::{AuthPlugin, Credential, RsaKeyPair};
use ferry_core::frontend::{
    column, AuthMode, Event, Frontend, FrontendConfig, Sha2Cache, UserEntry, UserTable,
};
use ferry_core::wire::{ColumnType, Command};
use ferry_core::{ProtocolError, RandomSource};

use crate::frontend_driver::{drive_frontend, Accepted, Listener};

/// Databases the test server knows.
pub const TEST_SERVER_DATABASES: &[&str] = &["test", "db1"];

/// The RSA key pair for `caching_sha2_password` over plain TCP (a test key, checked in).
const RSA_KEY_PEM: &[u8] = include_bytes!("../../core/src/auth/testdata/rsa2048_pkcs8.pem");

/// OS randomness from `/dev/urandom`, as a real driver supplies it.
#[derive(Debug)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        let mut f = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
        f.read_exact(buf).expect("read /dev/urandom");
    }
}

/// The `caching_sha2_password` cache shared by the server's connections.
#[derive(Debug, Default)]
pub struct MemorySha2Cache(Mutex<HashMap<String, Sha256Stage2Hash>>);

impl Sha2Cache for MemorySha2Cache {
    fn get(&self, user: &str) -> Option<Sha256Stage2Hash> {
        self.0.lock().expect("cache lock").get(user).cloned()
    }
    fn insert(&self, user: &str, value: Sha256Stage2Hash) {
        self.0
            .lock()
            .expect("cache lock")
            .insert(user.to_owned(), value);
    }
}

/// Configures a [`TestServer`].
#[derive(Debug, Default)]
pub struct TestServerBuilder {
    users: Vec<(String, String, AuthPlugin)>,
    tls: bool,
    require_tls: bool,
    rsa: bool,
    default_plugin: Option<AuthPlugin>,
}

impl TestServerBuilder {
    /// Adds an account with a plaintext `password`, stored as its native stage-2 hash, verified
    /// with `plugin` (`mysql_native_password` or `caching_sha2_password`).
    pub fn user(mut self, name: &str, password: &str, plugin: AuthPlugin) -> Self {
        self.users.push((name.into(), password.into(), plugin));
        self
    }

    /// Offers TLS with a fresh self-signed certificate for `localhost` / `127.0.0.1`.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Refuses clients that do not upgrade to TLS (implies [`Self::tls`]).
    pub fn require_tls(mut self) -> Self {
        self.tls = true;
        self.require_tls = true;
        self
    }

    /// Gives the server an RSA key pair for `caching_sha2_password` full authentication.
    pub fn rsa(mut self) -> Self {
        self.rsa = true;
        self
    }

    /// The plugin the greeting names (default `mysql_native_password`).
    pub fn default_plugin(mut self, plugin: AuthPlugin) -> Self {
        self.default_plugin = Some(plugin);
        self
    }

    /// Binds a free loopback port and starts accepting.
    pub fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut users = UserTable::new();
        for (name, password, plugin) in &self.users {
            users.insert(
                name.clone(),
                UserEntry {
                    credential: Credential::native_from_password(password.as_bytes()),
                    plugin: plugin.clone(),
                },
            );
        }
        let rsa = self
            .rsa
            .then(|| Arc::new(RsaKeyPair::from_pem(RSA_KEY_PEM).expect("test RSA key")));
        let rsa_public_pem = rsa.as_ref().map(|k| {
            let path = dir.path().join("rsa_public.pem");
            std::fs::write(&path, k.public_key_pem()).expect("write RSA public key");
            path
        });
        let mut config = FrontendConfig::new(AuthMode::Proxy {
            users: Arc::new(users),
            sha2_cache: Some(Arc::new(MemorySha2Cache::default())),
            rsa,
        });
        if let Some(plugin) = self.default_plugin {
            config.default_plugin = plugin;
        }
        let mut cert_path = None;
        if self.tls {
            let cert = rcgen::generate_simple_self_signed(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ])
            .expect("rcgen self-signed certificate");
            let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
            let path = dir.path().join("cert.pem");
            std::fs::write(&path, &cert_pem).expect("write certificate");
            cert_path = Some(path);
            config.tls = Some(
                ferry_core::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes())
                    .expect("TLS server config"),
            );
            config.require_tls = self.require_tls;
        }
        let version = config.server_version.clone();
        let config = Arc::new(config);
        let listener = Listener::start(move |accepted| serve(accepted, config.clone(), &version));
        TestServer {
            listener,
            cert_path,
            rsa_public_pem,
            _dir: dir,
        }
    }
}

/// A running test server; stopped on drop.
#[derive(Debug)]
pub struct TestServer {
    listener: Listener,
    cert_path: Option<PathBuf>,
    rsa_public_pem: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts configuring a test server.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// The listening address (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.listener.addr().port()
    }

    /// The self-signed certificate (PEM file), when TLS is on: clients use it as their CA.
    pub fn cert_path(&self) -> Option<&Path> {
        self.cert_path.as_deref()
    }

    /// The RSA public key (PEM file), when RSA is on: for clients' `server_public_key` option.
    pub fn rsa_public_key_path(&self) -> Option<&Path> {
        self.rsa_public_pem.as_deref()
    }
}

/// Per-connection state the test server keeps.
struct Session {
    user: String,
    host: String,
    database: Option<String>,
    version: String,
}

/// One connection: the shared frontend run loop, answering with [`handle_event`].
fn serve(accepted: Accepted, config: Arc<FrontendConfig>, version: &str) {
    let host = accepted.peer.ip().to_string();
    let mut frontend = Frontend::new(
        config,
        accepted.id,
        host.clone(),
        Instant::now(),
        Box::new(OsRandom),
    );
    let mut session = Session {
        user: String::new(),
        host,
        database: None,
        version: version.to_owned(),
    };
    drive_frontend(
        accepted.stream,
        &mut frontend,
        &accepted.stop,
        |frontend, now, event| handle_event(frontend, now, &mut session, event),
    );
}

fn handle_event(frontend: &mut Frontend, now: Instant, session: &mut Session, event: Event) {
    match event {
        Event::Authenticated(login) => {
            session.user = login.user.clone();
            match login.database {
                Some(db) if !TEST_SERVER_DATABASES.contains(&db.as_str()) => {
                    let err = unknown_database(&db);
                    frontend
                        .reject_login(now, err)
                        .expect("reject in AwaitLogin");
                }
                db => {
                    session.database = db;
                    frontend.accept_login(now).expect("accept in AwaitLogin");
                }
            }
        }
        Event::Command(cmd) => {
            match cmd.parse() {
                Ok(Command::Query(q)) => answer_query(frontend, now, session, q.sql),
                Ok(Command::InitDb { schema }) => {
                    let db = String::from_utf8_lossy(schema).into_owned();
                    use_database(frontend, now, session, &db);
                }
                Ok(Command::Ping | Command::ResetConnection) => ok(frontend, now),
                _ => err(
                    frontend,
                    now,
                    ProtocolError::new(
                        1235,
                        "42000",
                        "This command is not supported by the test server",
                    ),
                ),
            }
            frontend
                .end_response(now)
                .expect("a command is outstanding");
        }
        // Proxy mode: no passthrough events.
        _ => {}
    }
}

fn unknown_database(db: &str) -> ProtocolError {
    ProtocolError::new(1049, "42000", format!("Unknown database '{db}'"))
}

fn ok(frontend: &mut Frontend, now: Instant) {
    frontend
        .send_ok_empty(now)
        .expect("a command is outstanding");
}

fn err(frontend: &mut Frontend, now: Instant, e: ProtocolError) {
    frontend
        .send_error(now, &e)
        .expect("a command is outstanding");
}

fn use_database(frontend: &mut Frontend, now: Instant, session: &mut Session, db: &str) {
    if TEST_SERVER_DATABASES.contains(&db) {
        session.database = Some(db.to_owned());
        ok(frontend, now);
    } else {
        err(frontend, now, unknown_database(db));
    }
}

fn single(frontend: &mut Frontend, now: Instant, name: &str, ty: ColumnType, value: Option<&str>) {
    let cols = [column(name.as_bytes(), ty)];
    let row = [value.map(str::as_bytes)];
    frontend
        .send_text_result(now, &cols, [&row[..]])
        .expect("a command is outstanding");
}

fn answer_query(frontend: &mut Frontend, now: Instant, session: &mut Session, sql: &[u8]) {
    let text = String::from_utf8_lossy(sql);
    let norm = text
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_ascii_lowercase();
    let norm = norm.split_whitespace().collect::<Vec<_>>().join(" ");
    if norm == "select 1" {
        return single(frontend, now, "1", ColumnType::LongLong, Some("1"));
    }
    if matches!(
        norm.as_str(),
        "select user()" | "select current_user()" | "select current_user"
    ) {
        let name = if norm.contains("current") {
            "CURRENT_USER()"
        } else {
            "USER()"
        };
        let value = format!("{}@{}", session.user, session.host);
        return single(frontend, now, name, ColumnType::VarString, Some(&value));
    }
    if norm == "select database()" {
        let db = session.database.clone();
        return single(
            frontend,
            now,
            "DATABASE()",
            ColumnType::VarString,
            db.as_deref(),
        );
    }
    if norm == "select * from people" {
        let cols = [
            column(b"id", ColumnType::LongLong),
            column(b"name", ColumnType::VarString),
        ];
        let rows: [[Option<&[u8]>; 2]; 2] = [[Some(b"1"), Some(b"alice")], [Some(b"2"), None]];
        return frontend
            .send_text_result(now, &cols, rows.iter().map(|r| &r[..]))
            .expect("a command is outstanding");
    }
    if let Some(db) = norm.strip_prefix("use ") {
        let db = db.trim_matches('`').to_owned();
        return use_database(frontend, now, session, &db);
    }
    if norm.starts_with("set ") {
        return ok(frontend, now);
    }
    if let Some(vars) = system_variables(&norm) {
        let names: Vec<String> = vars.iter().map(|v| format!("@@{v}")).collect();
        let values: Vec<Option<String>> = vars.iter().map(|v| variable(session, v)).collect();
        let cols: Vec<_> = names
            .iter()
            .map(|n| column(n.as_bytes(), ColumnType::VarString))
            .collect();
        let row: Vec<Option<&[u8]>> = values
            .iter()
            .map(|v| v.as_deref().map(str::as_bytes))
            .collect();
        return frontend
            .send_text_result(now, &cols, [&row[..]])
            .expect("a command is outstanding");
    }
    err(
        frontend,
        now,
        ProtocolError::new(
            1064,
            "42000",
            format!("You have an error in your SQL syntax: the test server does not know '{text}'"),
        ),
    );
}

/// `select @@a, @@session.b [limit 1]` → `["a", "b"]`.
fn system_variables(norm: &str) -> Option<Vec<String>> {
    let rest = norm.strip_prefix("select ")?;
    let rest = rest.strip_suffix(" limit 1").unwrap_or(rest);
    rest.split(',')
        .map(|v| {
            let v = v.trim().strip_prefix("@@")?;
            let v = v
                .strip_prefix("session.")
                .or_else(|| v.strip_prefix("global."))
                .unwrap_or(v);
            let v = v.split_whitespace().next()?; // drop an `AS alias`
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                .then(|| v.to_owned())
        })
        .collect()
}

fn variable(session: &Session, name: &str) -> Option<String> {
    Some(match name {
        "version" => session.version.clone(),
        "version_comment" => "ferry test server".into(),
        "max_allowed_packet" => "67108864".into(),
        "wait_timeout" | "interactive_timeout" => "28800".into(),
        "autocommit" => "1".into(),
        "sql_mode" => "".into(),
        "character_set_client" | "character_set_connection" | "character_set_results" => {
            "utf8mb4".into()
        }
        "collation_connection" => "utf8mb4_general_ci".into(),
        "transaction_isolation" | "tx_isolation" => "REPEATABLE-READ".into(),
        "lower_case_table_names" => "0".into(),
        "time_zone" | "system_time_zone" => "UTC".into(),
        _ => return None,
    })
}
