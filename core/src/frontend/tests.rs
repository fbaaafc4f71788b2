//! Frontend unit tests on a virtual clock: a hand-driven client talks to one [`Frontend`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::auth::caching_sha2::{self, Sha256Password, Sha256Stage2Hash};
use crate::auth::native::Sha1Password;
use crate::auth::{native, Credential, Password, RsaKeyPair, RsaPublicKey};
use crate::tls::{client_config, server_config, ServerTrust, TlsSession};
use crate::wire::{
    encode_packet, AuthSwitchRequest, ColumnType, Command, ErrPacket, HandshakeResponse41,
    HandshakeV10, OkPacket, SslRequest,
};
use crate::SeededRandom;

const RSA_PEM: &[u8] = include_bytes!("../auth/testdata/rsa2048_pkcs8.pem");

#[derive(Default)]
struct MemCache(Mutex<HashMap<String, Sha256Stage2Hash>>);

impl Sha2Cache for MemCache {
    fn get(&self, user: &str) -> Option<Sha256Stage2Hash> {
        self.0.lock().unwrap().get(user).cloned()
    }
    fn insert(&self, user: &str, value: Sha256Stage2Hash) {
        self.0.lock().unwrap().insert(user.into(), value);
    }
}

fn users() -> UserTable {
    let mut t = UserTable::new();
    t.insert_native_hash(
        "nat",
        native::NativeStage2Hash::from_password(b"pw")
            .to_hex()
            .as_bytes(),
    )
    .unwrap();
    t.insert(
        "sha",
        UserEntry {
            credential: Credential::native_from_password(b"pw"),
            plugin: AuthPlugin::CachingSha2Password,
        },
    );
    t.insert(
        "nopw",
        UserEntry {
            credential: Credential::NoPassword,
            plugin: AuthPlugin::MysqlNativePassword,
        },
    );
    t
}

fn proxy_config(cache: Option<Arc<MemCache>>, rsa: bool) -> FrontendConfig {
    FrontendConfig::new(AuthMode::Proxy {
        users: Arc::new(users()),
        sha2_cache: cache.map(|c| c as Arc<dyn Sha2Cache>),
        rsa: rsa.then(|| Arc::new(RsaKeyPair::from_pem(RSA_PEM).unwrap())),
    })
}

fn self_signed() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

/// The client's end: frames what it sends, decodes what the frontend sent, optionally over TLS.
struct Client {
    fe: Frontend,
    now: Instant,
    inbox: BytesMut,
    tls: Option<TlsSession>,
    caps: Capabilities,
}

impl Client {
    fn new(config: FrontendConfig) -> Self {
        let now = Instant::now();
        let fe = Frontend::new(
            Arc::new(config),
            42,
            "10.0.0.9",
            now,
            Box::new(SeededRandom::new(3)),
        );
        Self {
            fe,
            now,
            inbox: BytesMut::new(),
            tls: None,
            caps: default_capabilities(),
        }
    }

    /// Moves the frontend's output to the client, through TLS if on.
    fn pump(&mut self) {
        while let Some(bytes) = self.fe.poll_transmit() {
            match &mut self.tls {
                Some(tls) => tls.read_ciphertext(&bytes, &mut self.inbox).unwrap(),
                None => self.inbox.extend_from_slice(&bytes),
            }
        }
    }

    /// All packets received so far, as (seq, payload).
    fn packets(&mut self) -> Vec<(u8, Bytes)> {
        self.pump();
        let mut out = Vec::new();
        loop {
            if self.inbox.len() < 4 {
                return out;
            }
            let len = usize::from(self.inbox[0])
                | usize::from(self.inbox[1]) << 8
                | usize::from(self.inbox[2]) << 16;
            if self.inbox.len() < 4 + len {
                return out;
            }
            let frame = self.inbox.split_to(4 + len);
            out.push((frame[3], Bytes::copy_from_slice(&frame[4..])));
        }
    }

    fn packet(&mut self) -> (u8, Bytes) {
        let mut p = self.packets();
        assert_eq!(p.len(), 1, "expected one packet, got {p:?}");
        p.remove(0)
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.tls {
            Some(tls) => {
                tls.write_plaintext(bytes).unwrap();
                let mut out = Vec::new();
                tls.take_ciphertext(&mut out);
                self.fe.handle_input(self.now, &out);
            }
            None => self.fe.handle_input(self.now, bytes),
        }
    }

    fn send(&mut self, seq: u8, payload: &[u8]) {
        let mut out = BytesMut::new();
        let mut seq = seq;
        encode_packet(&mut out, &mut seq, payload);
        self.send_raw(&out);
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.fe.poll_event()).collect()
    }

    fn greeting_salt(&mut self) -> Vec<u8> {
        let (seq, payload) = self.packet();
        assert_eq!(seq, 0);
        HandshakeV10::parse(&payload).unwrap().scramble()
    }

    fn response(&self, user: &str, plugin: Option<&str>, auth: &[u8], db: Option<&str>) -> Vec<u8> {
        let mut caps = self.caps;
        if plugin.is_none() {
            caps = caps.without(Capabilities::PLUGIN_AUTH);
        }
        if self.tls.is_some() {
            caps = Capabilities(caps.0 | Capabilities::SSL.0);
        }
        let mut out = Vec::new();
        HandshakeResponse41 {
            capabilities: caps,
            max_packet_size: 1 << 24,
            collation: 45,
            mariadb_capabilities: 0,
            username: user.as_bytes(),
            auth_response: auth,
            database: db.map(str::as_bytes),
            auth_plugin_name: plugin.map(str::as_bytes),
            connect_attrs: vec![(b"_client_name", b"unit")],
            zstd_compression_level: None,
        }
        .encode(&mut out);
        out
    }

    /// Logs in as native user `nat` and enters the command phase.
    fn logged_in(config: FrontendConfig) -> Self {
        let mut c = Client::new(config);
        let salt = c.greeting_salt();
        let r = c.response(
            "nat",
            Some("mysql_native_password"),
            &native::scramble(b"pw", &salt),
            None,
        );
        c.send(1, &r);
        assert!(matches!(c.events()[..], [Event::Authenticated(_)]));
        c.fe.accept_login(c.now).unwrap();
        let (seq, ok) = c.packet();
        assert_eq!((seq, ok[0]), (2, 0));
        c
    }
}

fn err_of(payload: &[u8]) -> (u16, String, String) {
    let e = ErrPacket::parse(payload, Capabilities::PROTOCOL_41).unwrap();
    (
        e.code,
        String::from_utf8(e.sql_state.unwrap_or(*b"-----").to_vec()).unwrap(),
        String::from_utf8_lossy(e.message).into_owned(),
    )
}

fn closed_reason(events: &[Event]) -> &CloseReason {
    match events.last() {
        Some(Event::Closed { reason }) => reason,
        other => panic!("expected Closed last, got {other:?}"),
    }
}

#[test]
fn greeting_has_printable_salt_and_configured_fields() {
    let mut config = proxy_config(None, false);
    config.server_version = "9.9.9-test".into();
    let mut c = Client::new(config);
    let (seq, payload) = c.packet();
    assert_eq!(seq, 0);
    let g = HandshakeV10::parse(&payload).unwrap();
    assert_eq!(g.server_version, b"9.9.9-test");
    assert_eq!(g.connection_id, 42);
    assert_eq!(g.auth_plugin_name, b"mysql_native_password");
    assert_eq!(g.collation, 45);
    assert!(g.status.contains(ServerStatus::AUTOCOMMIT));
    assert!(
        !g.capabilities.contains(Capabilities::SSL),
        "no TLS configured"
    );
    assert!(g.capabilities.contains(Capabilities::PROTOCOL_41));
    let salt = g.scramble();
    assert_eq!(salt.len(), 20);
    assert!(salt.iter().all(|&b| (1..=127).contains(&b)), "{salt:?}");
    assert_eq!(&salt[..], c.fe.salt());

    let (cert, key) = self_signed();
    let mut config = proxy_config(None, false);
    config.tls = Some(server_config(cert.as_bytes(), key.as_bytes()).unwrap());
    let mut c = Client::new(config);
    let (_, payload) = c.packet();
    assert!(HandshakeV10::parse(&payload)
        .unwrap()
        .capabilities
        .contains(Capabilities::SSL));
}

#[test]
fn native_login_waits_for_accept_and_exposes_sha1() {
    let mut c = Client::new(proxy_config(None, false));
    let salt = c.greeting_salt();
    let r = c.response(
        "nat",
        Some("mysql_native_password"),
        &native::scramble(b"pw", &salt),
        Some("shop"),
    );
    c.send(1, &r);
    let events = c.events();
    let [Event::Authenticated(a)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(a.user, "nat");
    assert_eq!(a.database.as_deref(), Some("shop"));
    assert_eq!(a.plugin, AuthPlugin::MysqlNativePassword);
    assert_eq!(a.secret.sha1(), Some(Sha1Password::from_password(b"pw")));
    assert_eq!(
        a.attributes,
        vec![("_client_name".to_string(), "unit".to_string())]
    );
    assert!(!a.tls);
    // No OK until the owner accepts.
    assert!(c.packets().is_empty());
    assert!(!c.fe.is_command_phase());
    c.fe.accept_login(c.now).unwrap();
    let (seq, ok) = c.packet();
    assert_eq!(seq, 2);
    OkPacket::parse(&ok, c.fe.capabilities()).unwrap();
    assert!(c.fe.is_command_phase());
    assert_eq!(c.fe.poll_timeout(), None, "no deadline after login");
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_1045() {
    for (user, pw, using) in [
        ("nat", &b"nope"[..], "YES"),
        ("ghost", b"pw", "YES"),
        ("nat", b"", "NO"),
    ] {
        let mut c = Client::new(proxy_config(None, false));
        let salt = c.greeting_salt();
        let r = c.response(
            user,
            Some("mysql_native_password"),
            &native::scramble(pw, &salt),
            None,
        );
        c.send(1, &r);
        let (seq, err) = c.packet();
        assert_eq!(seq, 2);
        assert_eq!(
            err_of(&err),
            (
                1045,
                "28000".into(),
                format!("Access denied for user '{user}'@'10.0.0.9' (using password: {using})")
            )
        );
        let events = c.events();
        assert!(matches!(closed_reason(&events), CloseReason::Error(e) if e.code == 1045));
        assert!(c.fe.is_closed() && !c.fe.wants_input());
        // Nothing more after Closed.
        c.send(2, b"\x03select 1");
        assert!(c.packets().is_empty() && c.events().is_empty());
    }
}

#[test]
fn account_without_password_accepts_only_empty_response() {
    let mut c = Client::new(proxy_config(None, false));
    c.greeting_salt();
    let r = c.response("nopw", Some("mysql_native_password"), b"", None);
    c.send(1, &r);
    let events = c.events();
    assert!(
        matches!(&events[..], [Event::Authenticated(a)] if a.secret == ClientSecret::NoPassword)
    );
}

#[test]
fn client_without_plugin_auth_is_treated_as_native() {
    let mut c = Client::new(proxy_config(None, false));
    let salt = c.greeting_salt();
    let r = c.response("nat", None, &native::scramble(b"pw", &salt), None);
    c.send(1, &r);
    assert!(matches!(c.events()[..], [Event::Authenticated(_)]));
}

#[test]
fn switch_from_caching_sha2_to_native_uses_a_fresh_salt() {
    let mut c = Client::new(proxy_config(None, false));
    let salt = c.greeting_salt();
    let r = c.response(
        "nat",
        Some("caching_sha2_password"),
        &caching_sha2::scramble(b"pw", &salt),
        None,
    );
    c.send(1, &r);
    let (seq, switch) = c.packet();
    assert_eq!(seq, 2);
    let req = AuthSwitchRequest::parse(&switch).unwrap();
    assert_eq!(req.plugin_name, b"mysql_native_password");
    let new_salt = crate::auth::auth_salt(req.data).to_vec();
    assert_eq!(req.data.len(), 21, "salt and NUL");
    assert_ne!(new_salt, salt);
    // The answer to the old salt would fail; the answer to the new one passes.
    c.send(3, &native::scramble(b"pw", &new_salt));
    let events = c.events();
    assert!(
        matches!(&events[..], [Event::Authenticated(a)] if a.plugin == AuthPlugin::MysqlNativePassword)
    );
    c.fe.accept_login(c.now).unwrap();
    assert_eq!(c.packet().0, 4);
}

#[test]
fn switch_from_native_to_caching_sha2_then_wrong_password() {
    let mut c = Client::new(proxy_config(None, true));
    let salt = c.greeting_salt();
    let r = c.response(
        "sha",
        Some("mysql_native_password"),
        &native::scramble(b"pw", &salt),
        None,
    );
    c.send(1, &r);
    let (_, switch) = c.packet();
    let req = AuthSwitchRequest::parse(&switch).unwrap();
    assert_eq!(req.plugin_name, b"caching_sha2_password");
    let new_salt = crate::auth::auth_salt(req.data).to_vec();
    c.send(3, &caching_sha2::scramble(b"bad", &new_salt));
    let (_, more) = c.packet();
    assert_eq!(&more[..], &caching_sha2::PERFORM_FULL_AUTH);
    c.send(5, &caching_sha2::REQUEST_PUBLIC_KEY);
    let (_, key) = c.packet();
    let public = RsaPublicKey::from_pem(&key[1..]).unwrap();
    let enc = public
        .encrypt_password(b"bad", &new_salt, &mut SeededRandom::new(1))
        .unwrap();
    c.send(7, &enc);
    let (_, err) = c.packet();
    assert_eq!(err_of(&err).0, 1045);
}

#[test]
fn caching_sha2_rsa_full_path_fills_cache_then_fast_path() {
    let cache = Arc::new(MemCache::default());
    let mut c = Client::new(proxy_config(Some(cache.clone()), true));
    let salt = c.greeting_salt();
    let r = c.response(
        "sha",
        Some("caching_sha2_password"),
        &caching_sha2::scramble(b"pw", &salt),
        None,
    );
    c.send(1, &r);
    assert_eq!(&c.packet().1[..], &caching_sha2::PERFORM_FULL_AUTH);
    c.send(3, &caching_sha2::REQUEST_PUBLIC_KEY);
    let (seq, key) = c.packet();
    assert_eq!((seq, key[0]), (4, 0x01));
    let public = RsaPublicKey::from_pem(&key[1..]).unwrap();
    c.send(
        5,
        &public
            .encrypt_password(b"pw", &salt, &mut SeededRandom::new(1))
            .unwrap(),
    );
    let events = c.events();
    let [Event::Authenticated(a)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(a.secret, ClientSecret::Plaintext(Password::new("pw")));
    assert_eq!(
        cache.get("sha"),
        Some(Sha256Stage2Hash::from_password(b"pw"))
    );
    c.fe.accept_login(c.now).unwrap();
    assert_eq!(c.packet().0, 6);

    // Second connection: the cached user passes on the fast path, no TLS, no RSA round trip.
    let mut config = proxy_config(Some(cache.clone()), false);
    config.auto_accept_login = true;
    let mut c = Client::new(config);
    let salt = c.greeting_salt();
    let r = c.response(
        "sha",
        Some("caching_sha2_password"),
        &caching_sha2::scramble(b"pw", &salt),
        None,
    );
    c.send(1, &r);
    let p = c.packets();
    assert_eq!(p.len(), 2, "fast-auth-success then OK: {p:?}");
    assert_eq!(
        (p[0].0, &p[0].1[..]),
        (2, &caching_sha2::FAST_AUTH_SUCCESS[..])
    );
    assert_eq!((p[1].0, p[1].1[0]), (3, 0x00));
    let events = c.events();
    assert!(matches!(&events[..], [Event::Authenticated(a)]
        if a.secret == ClientSecret::Sha256(Sha256Password::from_password(b"pw"))));
    assert!(c.fe.is_command_phase(), "auto_accept_login");

    // A wrong password for a cached user falls back to full authentication.
    let mut c = Client::new(proxy_config(Some(cache), false));
    let salt = c.greeting_salt();
    let r = c.response(
        "sha",
        Some("caching_sha2_password"),
        &caching_sha2::scramble(b"px", &salt),
        None,
    );
    c.send(1, &r);
    assert_eq!(&c.packet().1[..], &caching_sha2::PERFORM_FULL_AUTH);
    // ...and without TLS or an RSA key there is no way to finish it.
    c.send(3, &caching_sha2::REQUEST_PUBLIC_KEY);
    assert_eq!(err_of(&c.packet().1).0, 1045);
}

/// Runs the TLS upgrade: SSLRequest in clear, then the TLS handshake.
fn upgrade(c: &mut Client, cert: &str) {
    let mut req = Vec::new();
    SslRequest {
        capabilities: Capabilities(c.caps.0 | Capabilities::SSL.0),
        max_packet_size: 1 << 24,
        collation: 45,
        mariadb_capabilities: 0,
    }
    .encode(&mut req);
    let mut framed = BytesMut::new();
    encode_packet(&mut framed, &mut 1, &req);
    let trust = ServerTrust::CaPem(cert.as_bytes().to_vec());
    let mut tls = TlsSession::client(client_config(&trust).unwrap(), "localhost").unwrap();
    // The ClientHello arrives in the same read as the SSLRequest.
    let mut hello = Vec::new();
    tls.take_ciphertext(&mut hello);
    framed.extend_from_slice(&hello);
    c.fe.handle_input(c.now, &framed);
    c.tls = Some(tls);
    for _ in 0..10 {
        c.pump();
        let tls = c.tls.as_mut().unwrap();
        let mut out = Vec::new();
        tls.take_ciphertext(&mut out);
        if out.is_empty() && !tls.is_handshaking() {
            break;
        }
        c.fe.handle_input(c.now, &out);
    }
    assert!(c.fe.is_tls());
    assert!(!c.tls.as_ref().unwrap().is_handshaking());
}

#[test]
fn tls_upgrade_then_caching_sha2_cleartext_full_path() {
    let (cert, key) = self_signed();
    let mut config = proxy_config(None, false);
    config.tls = Some(server_config(cert.as_bytes(), key.as_bytes()).unwrap());
    config.require_tls = true;
    let mut c = Client::new(config);
    let salt = c.greeting_salt();
    upgrade(&mut c, &cert);
    let r = c.response(
        "sha",
        Some("caching_sha2_password"),
        &caching_sha2::scramble(b"pw", &salt),
        None,
    );
    c.send(2, &r);
    let (seq, more) = c.packet();
    assert_eq!((seq, &more[..]), (3, &caching_sha2::PERFORM_FULL_AUTH[..]));
    c.send(4, b"pw\0");
    let events = c.events();
    assert!(matches!(&events[..], [Event::Authenticated(a)] if a.tls
        && a.secret == ClientSecret::Plaintext(Password::new("pw"))));
    c.fe.accept_login(c.now).unwrap();
    assert_eq!(c.packet().0, 5);
    // Commands flow over TLS too.
    c.send(0, b"\x0e");
    assert!(matches!(&c.events()[..], [Event::Command(cmd)] if cmd.code() == Command::COM_PING));
}

#[test]
fn require_tls_refuses_plaintext_clients() {
    let (cert, key) = self_signed();
    let mut config = proxy_config(None, false);
    config.tls = Some(server_config(cert.as_bytes(), key.as_bytes()).unwrap());
    config.require_tls = true;
    let mut c = Client::new(config);
    let salt = c.greeting_salt();
    let r = c.response(
        "nat",
        Some("mysql_native_password"),
        &native::scramble(b"pw", &salt),
        None,
    );
    c.send(1, &r);
    let (code, state, msg) = err_of(&c.packet().1);
    assert_eq!((code, state.as_str()), (3159, "HY000"));
    assert!(msg.contains("--require_secure_transport=ON"), "{msg}");
    assert!(c.fe.is_closed());
}

#[test]
fn ssl_request_without_tls_configured_is_a_bad_handshake() {
    let mut c = Client::new(proxy_config(None, false));
    c.greeting_salt();
    let mut req = Vec::new();
    SslRequest {
        capabilities: Capabilities(c.caps.0 | Capabilities::SSL.0),
        max_packet_size: 1 << 24,
        collation: 45,
        mariadb_capabilities: 0,
    }
    .encode(&mut req);
    c.send(1, &req);
    assert_eq!(err_of(&c.packet().1).0, 1043);
}

#[test]
fn pre_41_client_is_refused_in_the_old_format() {
    let mut c = Client::new(proxy_config(None, false));
    c.greeting_salt();
    // 2 bytes of capabilities without PROTOCOL_41, then max packet (3) and a user.
    c.send(1, b"\x85\x24\x00\x00\x00nat\x00");
    let (_, err) = c.packet();
    let e = ErrPacket::parse(&err, Capabilities::EMPTY).unwrap();
    assert_eq!(e.code, 1251);
    assert!(
        !err.windows(1).any(|w| w == b"#"),
        "no SQL state marker for an old client"
    );
    assert!(matches!(closed_reason(&c.events()), CloseReason::Error(e) if e.code == 1251));
}

#[test]
fn garbage_hello_is_a_bad_handshake_not_a_panic() {
    let mut c = Client::new(proxy_config(None, false));
    c.greeting_salt();
    c.send(1, b"\x00\x02");
    assert_eq!(err_of(&c.packet().1).0, 1043);
    assert!(c.fe.is_closed());
}

#[test]
fn handshake_deadline_closes_with_1043() {
    let mut c = Client::new(proxy_config(None, false));
    let t0 = c.now;
    c.greeting_salt();
    assert_eq!(c.fe.poll_timeout(), Some(t0 + DEFAULT_HANDSHAKE_TIMEOUT));
    c.fe.handle_timeout(t0 + Duration::from_secs(9));
    assert!(c.packets().is_empty() && c.events().is_empty());
    c.fe.handle_timeout(t0 + Duration::from_secs(10));
    let (code, state, msg) = err_of(&c.packet().1);
    assert_eq!(
        (code, state.as_str(), msg.as_str()),
        (1043, "08S01", "Bad handshake")
    );
    assert_eq!(closed_reason(&c.events()), &CloseReason::HandshakeTimeout);
    assert_eq!(c.fe.poll_timeout(), None);
}

#[test]
fn deadline_also_covers_the_owner_decision() {
    let mut config = proxy_config(None, false);
    config.handshake_timeout = Duration::from_secs(2);
    let mut c = Client::new(config);
    let t0 = c.now;
    let salt = c.greeting_salt();
    let r = c.response(
        "nat",
        Some("mysql_native_password"),
        &native::scramble(b"pw", &salt),
        None,
    );
    c.now = t0 + Duration::from_secs(1);
    c.send(1, &r);
    assert!(matches!(c.events()[..], [Event::Authenticated(_)]));
    c.fe.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(closed_reason(&c.events()), &CloseReason::HandshakeTimeout);
    assert!(c.fe.accept_login(c.now).is_err(), "too late");
}

#[test]
fn reject_login_sends_the_owners_error() {
    let mut c = Client::new(proxy_config(None, false));
    let salt = c.greeting_salt();
    let r = c.response(
        "nat",
        Some("mysql_native_password"),
        &native::scramble(b"pw", &salt),
        Some("nodb"),
    );
    c.send(1, &r);
    c.events();
    c.fe.reject_login(
        c.now,
        ProtocolError::new(1049, "42000", "Unknown database 'nodb'"),
    )
    .unwrap();
    assert_eq!(
        err_of(&c.packet().1),
        (1049, "42000".into(), "Unknown database 'nodb'".into())
    );
    assert!(c.fe.is_closed());
}

#[test]
fn passthrough_relays_the_exchange() {
    let mut c = Client::new(FrontendConfig::new(AuthMode::Passthrough));
    let salt = c.greeting_salt();
    let r = c.response(
        "u",
        Some("caching_sha2_password"),
        b"scrambled",
        Some("db1"),
    );
    c.send(1, &r);
    let events = c.events();
    let [Event::ClientLogin(login)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(login.user, "u");
    assert_eq!(login.database.as_deref(), Some("db1"));
    assert_eq!(login.plugin, Some(AuthPlugin::CachingSha2Password));
    assert_eq!(&login.auth_response[..], b"scrambled");
    assert_eq!(&login.salt[..], &salt[..]);
    assert!(login
        .client_capabilities
        .contains(Capabilities::DEPRECATE_EOF));
    assert_eq!(login.attributes.len(), 1);
    // The backend asks for full authentication; the client answers.
    c.fe.send_auth_packet(c.now, &caching_sha2::PERFORM_FULL_AUTH)
        .unwrap();
    assert_eq!(
        c.packet(),
        (2, Bytes::from_static(&caching_sha2::PERFORM_FULL_AUTH))
    );
    c.send(3, b"\x02");
    assert!(matches!(&c.events()[..], [Event::AuthPacket(p)] if &p[..] == b"\x02"));
    assert!(c.fe.send_auth_packet(c.now, b"x").is_ok());
    c.packet();
    // Only one relayed packet at a time.
    assert!(c.fe.finish_auth(c.now, Ok(())).is_err());
    c.send(5, b"ciphertext");
    c.events();
    c.fe.finish_auth(c.now, Ok(())).unwrap();
    assert_eq!(c.packet().0, 6);
    assert!(c.fe.is_command_phase());

    let mut c = Client::new(FrontendConfig::new(AuthMode::Passthrough));
    c.greeting_salt();
    let r = c.response("u", Some("mysql_native_password"), b"x", None);
    c.send(1, &r);
    c.events();
    c.fe.finish_auth(c.now, Err(crate::auth::access_denied("u", "h", true)))
        .unwrap();
    assert_eq!(err_of(&c.packet().1).0, 1045);
    assert!(c.fe.is_closed());
}

#[test]
fn commands_come_one_at_a_time() {
    let mut config = proxy_config(None, false);
    config.input_buffer_cap = 16;
    let mut c = Client::logged_in(config);
    // Two pipelined queries in one read.
    let mut both = BytesMut::new();
    encode_packet(&mut both, &mut 0, b"\x03select 1");
    encode_packet(&mut both, &mut 0, b"\x03select 2 -- a long comment");
    c.send_raw(&both);
    let events = c.events();
    let [Event::Command(cmd)] = &events[..] else {
        panic!("{events:?}")
    };
    assert!(matches!(cmd.parse().unwrap(), Command::Query(q) if q.sql == b"select 1"));
    assert_eq!(&cmd.payload()[..], b"\x03select 1");
    assert!(!c.fe.wants_input(), "pipelined bytes over the cap");
    c.fe.send_ok_empty(c.now).unwrap();
    c.fe.end_response(c.now).unwrap();
    let (seq, ok) = c.packet();
    assert_eq!((seq, ok[0]), (1, 0));
    let events = c.events();
    assert!(matches!(&events[..], [Event::Command(cmd)]
        if matches!(cmd.parse().unwrap(), Command::Query(q) if q.sql.starts_with(b"select 2"))));
    assert!(c.fe.wants_input());
    c.fe.send_error(c.now, &ProtocolError::new(1064, "42000", "syntax"))
        .unwrap();
    c.fe.end_response(c.now).unwrap();
    assert_eq!(err_of(&c.packet().1).0, 1064);
    assert!(c.fe.end_response(c.now).is_err(), "nothing outstanding");
    assert!(c.fe.send_ok_empty(c.now).is_err(), "nothing outstanding");
}

#[test]
fn unknown_command_gets_1047_and_the_connection_goes_on() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(0, b"\x00"); // COM_SLEEP: not for clients
    let (seq, err) = c.packet();
    assert_eq!(seq, 1);
    assert_eq!(
        err_of(&err),
        (1047, "08S01".into(), "Unknown command".into())
    );
    assert!(c.events().is_empty());
    c.send(0, b"\x0e");
    assert!(matches!(&c.events()[..], [Event::Command(cmd)] if cmd.code() == Command::COM_PING));
}

#[test]
fn quit_closes_without_a_response() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(0, b"\x01");
    assert!(c.packets().is_empty());
    assert_eq!(closed_reason(&c.events()), &CloseReason::Quit);
    assert!(c.fe.is_closed());
}

#[test]
fn text_result_set_with_and_without_deprecate_eof() {
    for deprecate_eof in [true, false] {
        let mut config = proxy_config(None, false);
        if !deprecate_eof {
            config.capabilities = config.capabilities.without(Capabilities::DEPRECATE_EOF);
        }
        let mut c = Client::logged_in(config);
        c.send(0, b"\x03select");
        c.events();
        let cols = [
            column(b"id", ColumnType::LongLong),
            column(b"name", ColumnType::VarString),
        ];
        let rows: Vec<Vec<Option<&[u8]>>> =
            vec![vec![Some(b"1"), Some(b"a")], vec![Some(b"2"), None]];
        c.fe.send_text_result(c.now, &cols, &rows).unwrap();
        c.fe.end_response(c.now).unwrap();
        let p = c.packets();
        let seqs: Vec<u8> = p.iter().map(|(s, _)| *s).collect();
        let expected_len = if deprecate_eof { 6 } else { 7 };
        assert_eq!(seqs, (1..=expected_len).collect::<Vec<u8>>());
        assert_eq!(&p[0].1[..], b"\x02");
        assert_eq!(
            crate::wire::ColumnDefinition41::parse(&p[2].1)
                .unwrap()
                .name,
            b"name"
        );
        let first_row = if deprecate_eof { 3 } else { 4 };
        assert_eq!(&p[first_row + 1].1[..], b"\x012\xfb");
        let last = &p.last().unwrap().1;
        assert_eq!(last[0], 0xFE);
        if deprecate_eof {
            assert!(OkPacket::parse(last, c.fe.capabilities()).unwrap().eof);
        } else {
            assert_eq!(&p[3].1[..1], b"\xfe");
        }
    }
}

#[test]
fn prepare_ok_teaches_the_parameter_count_for_execute() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(0, b"\x16select ?");
    c.events();
    // PrepareOk: statement 7, 0 columns, 1 parameter.
    c.fe.send_packet(c.now, b"\x00\x07\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00")
        .unwrap();
    c.fe.end_response(c.now).unwrap();
    c.packets();
    // COM_STMT_EXECUTE stmt 7, no cursor, 1 iteration, null bitmap 0, bound, LONGLONG, 5.
    let exec =
        b"\x17\x07\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x08\x00\x05\x00\x00\x00\x00\x00\x00\x00";
    c.send(0, exec);
    let events = c.events();
    let [Event::Command(cmd)] = &events[..] else {
        panic!("{events:?}")
    };
    let Command::StmtExecute(e) = cmd.parse().unwrap() else {
        panic!()
    };
    assert_eq!(e.header.statement_id, 7);
    assert_eq!(e.params.len(), 1);
    c.fe.end_response(c.now).unwrap();
    // An execute of a statement the frontend never saw is still handed out.
    c.send(0, b"\x17\x09\x00\x00\x00\x00\x01\x00\x00\x00");
    let events = c.events();
    assert!(
        matches!(&events[..], [Event::Command(cmd)] if cmd.code() == Command::COM_STMT_EXECUTE)
    );
}

#[test]
fn execute_after_long_data_is_handed_out_not_refused() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(0, b"\x16insert into t values (?)");
    c.events();
    // PrepareOk: statement 1, 0 columns, 1 parameter.
    c.fe.send_packet(c.now, b"\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00")
        .unwrap();
    c.fe.end_response(c.now).unwrap();
    c.packets();
    // COM_STMT_SEND_LONG_DATA for parameter 0: no response.
    c.send(0, b"\x18\x01\x00\x00\x00\x00\x00yyyy");
    assert!(matches!(&c.events()[..], [Event::Command(cmd)] if cmd.code() == 0x18));
    c.fe.end_response(c.now).unwrap();
    // COM_STMT_EXECUTE as mysql-connector-python sends it then: bound, BLOB, and no value,
    // since the value went as long data.
    let exec = b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\xfc\x00";
    c.send(0, exec);
    let events = c.events();
    let [Event::Command(cmd)] = &events[..] else {
        panic!("execute after long data refused: {events:?}")
    };
    assert_eq!(&cmd.payload()[..], exec);
    assert!(c.packets().is_empty(), "the frontend answered itself");
    // A packet too short for the header goes too: MariaDB answers it with 1835 and goes on.
    c.fe.end_response(c.now).unwrap();
    c.send(0, b"\x17\x01\x00");
    assert!(matches!(&c.events()[..], [Event::Command(cmd)] if cmd.code() == 0x17));
}

#[test]
fn input_split_byte_by_byte_gives_the_same_result() {
    let mut c = Client::new(proxy_config(None, false));
    let salt = c.greeting_salt();
    let r = c.response(
        "nat",
        Some("mysql_native_password"),
        &native::scramble(b"pw", &salt),
        None,
    );
    let mut framed = BytesMut::new();
    encode_packet(&mut framed, &mut 1, &r);
    for b in framed.iter() {
        c.fe.handle_input(c.now, &[*b]);
    }
    assert!(matches!(c.events()[..], [Event::Authenticated(_)]));
}

#[test]
fn close_by_owner() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.fe.close(c.now);
    assert_eq!(closed_reason(&c.events()), &CloseReason::Local);
    assert!(c.fe.poll_event().is_none());
}

#[test]
fn a_result_set_under_retained_buffer_reuses_one_buffer() {
    // 100 rows of 125 bytes, as sysbench's range queries: encoded straight into the wire buffer,
    // which keeps its allocation from one response to the next (no regrowth, no copy of what
    // was encoded so far).
    let mut c = Client::logged_in(proxy_config(None, false));
    let row = [7u8; 125];
    let mut starts = Vec::new();
    for _ in 0..3 {
        c.send(0, b"\x03select c from t");
        assert!(matches!(c.events()[..], [Event::Command(_)]));
        for _ in 0..100 {
            c.fe.send_packet(c.now, &row).unwrap();
        }
        c.fe.end_response(c.now).unwrap();
        let chunks: Vec<Bytes> = std::iter::from_fn(|| c.fe.poll_transmit()).collect();
        assert_eq!(chunks.len(), 1, "one chunk for the whole result");
        assert_eq!(chunks[0].len(), 100 * 129);
        assert_eq!(&chunks[0][..4], &[125, 0, 0, 1]);
        starts.push(chunks[0].as_ptr());
        drop(chunks);
        assert!(c.fe.wire.capacity() > 0, "the wire buffer was released");
    }
    assert_eq!(
        starts[1], starts[2],
        "the second and third results share one allocation"
    );
}

mod malformed;
