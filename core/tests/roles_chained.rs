//! Both connection roles chained in memory on a virtual clock: a `Backend` (ferry as a client)
//! logs in to a `Frontend` (ferry as a server) and sends commands through it.
//!
//! A small pump moves each side's `poll_transmit` bytes into the other's `handle_input`, drains
//! both event queues, and plays the frontend's owner (accepting logins, collecting commands).
//! Time is an `Instant` base plus offsets, advanced through `poll_timeout` / `handle_timeout`.
//! Randomness is `SeededRandom` (salts, RSA padding); only the TLS layer (rustls) and the test
//! certificate draw their own, which changes ciphertext bytes but no outcome asserted here.
//!
//! Only the public API of ferry-core is used. Every plugin is driven end to end with the right
//! password and a wrong one; a wrong one must give the backend `AuthFailed` with 1045 and close
//! the frontend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_core::auth::caching_sha2::{Sha256Password, Sha256Stage2Hash};
use ferry_core::auth::native::Sha1Password;
use ferry_core::auth::{AuthPlugin, ClientSecret, RsaKeyPair, RsaPublicKey};
use ferry_core::backend::{self, BackendError, PacketKind};
use ferry_core::frontend::{self, column, CloseReason, Sha2Cache};
use ferry_core::wire::{
    AuthSwitchRequest, Capabilities, ColumnType, Command, ErrPacket, Query, ServerStatus,
};
use ferry_core::{DecodeError, ProtocolError};

#[path = "roles_chained/harness.rs"]
mod harness;

use harness::*;

// ---- mysql_native_password ----

#[test]
fn native_plaintext_login_and_wrong_password() {
    let pair = Pair::run(
        Server::default().config(),
        client(NAT.0, plaintext(NAT.1)),
        1,
    );
    let auth = assert_logged_in(&pair, NAT.0, AuthPlugin::MysqlNativePassword, false);
    assert_eq!(
        auth.secret,
        ClientSecret::Sha1(Sha1Password::from_password(NAT.1.as_bytes()))
    );
    // greeting, OK; one handshake response the other way: no switch, no extra round.
    assert_eq!(headers(&pair.packets_to_backend()), [0x0A, 0x00]);
    assert_eq!(pair.packets_to_frontend().len(), 1);

    let wrong = Pair::run(
        Server::default().config(),
        client(NAT.0, plaintext("nat-pW")),
        1,
    );
    assert_denied(&wrong, NAT.0);
    assert_eq!(headers(&wrong.packets_to_backend()), [0x0A, 0xFF]);
}

#[test]
fn native_unknown_user_gets_the_same_1045() {
    let pair = Pair::run(
        Server::default().config(),
        client("nobody", plaintext(NAT.1)),
        1,
    );
    assert_denied(&pair, "nobody");
}

#[test]
fn native_recovered_sha1_logs_in_again_over_a_new_salt() {
    let first = Pair::run(
        Server::default().config(),
        client(NAT.0, plaintext(NAT.1)),
        1,
    );
    let recovered = assert_logged_in(&first, NAT.0, AuthPlugin::MysqlNativePassword, false).secret;
    assert!(matches!(recovered, ClientSecret::Sha1(_)));

    // A second backend knows only what the first login revealed, never the password.
    let second = Pair::run(
        Server::default().config(),
        client(NAT.0, recovered.clone()),
        2,
    );
    assert_ne!(
        first.fe.salt(),
        second.fe.salt(),
        "the seed must change the salt"
    );
    let again = assert_logged_in(&second, NAT.0, AuthPlugin::MysqlNativePassword, false);
    assert_eq!(again.secret, recovered);
    // Over another salt the scramble differs: the secret answered a new challenge.
    assert_ne!(
        first.packets_to_frontend()[0],
        second.packets_to_frontend()[0]
    );

    // SHA1 of another password is refused.
    let wrong = Pair::run(
        Server::default().config(),
        client(
            NAT.0,
            ClientSecret::Sha1(Sha1Password::from_password(b"nat-pW")),
        ),
        2,
    );
    assert_denied(&wrong, NAT.0);
}

#[test]
fn same_seeds_give_the_same_bytes() {
    let run = |seed| {
        let pair = Pair::run(
            Server::default().config(),
            client(NAT.0, plaintext(NAT.1)),
            seed,
        );
        assert_logged_in(&pair, NAT.0, AuthPlugin::MysqlNativePassword, false);
        (pair.to_backend, pair.to_frontend)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}

// ---- caching_sha2_password ----

#[test]
fn sha2_fast_path_with_the_user_in_the_cache() {
    let cache = Arc::new(MemCache::default());
    cache.insert(SHA.0, Sha256Stage2Hash::from_password(SHA.1.as_bytes()));
    let server = Server {
        greeting: Some(AuthPlugin::CachingSha2Password),
        cache: Some(&cache),
        rsa: true,
        ..Server::default()
    };
    let pair = Pair::run(server.config(), client(SHA.0, plaintext(SHA.1)), 3);
    let auth = assert_logged_in(&pair, SHA.0, AuthPlugin::CachingSha2Password, false);
    // The fast path reveals SHA256(pw), not the password.
    assert_eq!(
        auth.secret,
        ClientSecret::Sha256(Sha256Password::from_password(SHA.1.as_bytes()))
    );
    let to_backend = pair.packets_to_backend();
    assert_eq!(headers(&to_backend), [0x0A, 0x01, 0x00]);
    assert_eq!(&to_backend[1][..], [0x01, 0x03], "fast auth success");
    assert_eq!(pair.packets_to_frontend().len(), 1);

    // A wrong password misses the fast path and fails full authentication (over RSA here); the
    // cache keeps the right value.
    let wrong = Pair::run(server.config(), client(SHA.0, plaintext("sha-pW")), 3);
    assert_denied(&wrong, SHA.0);
    let to_backend = wrong.packets_to_backend();
    assert_eq!(
        &to_backend[1][..],
        [0x01, 0x04],
        "perform full authentication"
    );
    assert_eq!(
        cache.holds(SHA.0),
        Some(Sha256Stage2Hash::from_password(SHA.1.as_bytes()))
    );
}

#[test]
fn sha2_without_cache_tls_or_rsa_is_refused() {
    // Same account, same password as the fast-path case: without the cache entry the frontend
    // needs full authentication, and has neither TLS nor an RSA key for it.
    let server = Server {
        greeting: Some(AuthPlugin::CachingSha2Password),
        ..Server::default()
    };
    let pair = Pair::run(server.config(), client(SHA.0, plaintext(SHA.1)), 3);
    assert_denied(&pair, SHA.0);
    // The backend asked for the public key (0x02) and got the ERR instead.
    assert_eq!(headers(&pair.packets_to_backend()), [0x0A, 0x01, 0xFF]);
    assert_eq!(&pair.packets_to_frontend()[1][..], [0x02]);
    assert!(!contains(&pair.to_frontend, SHA.1.as_bytes()));
}

#[test]
fn sha2_full_path_over_tls() {
    let cert = Cert::new();
    let server = Server {
        greeting: Some(AuthPlugin::CachingSha2Password),
        tls: Some(&cert),
        ..Server::default()
    };
    let pair = Pair::run(
        server.config(),
        client_tls(SHA.0, plaintext(SHA.1), &cert),
        4,
    );
    let auth = assert_logged_in(&pair, SHA.0, AuthPlugin::CachingSha2Password, true);
    // Full authentication reveals the password itself, sent inside TLS only.
    assert_eq!(auth.secret, plaintext(SHA.1));
    assert!(!contains(&pair.to_frontend, SHA.1.as_bytes()));
    assert!(
        !contains(&pair.to_frontend, SHA.0.as_bytes()),
        "the user name is encrypted too"
    );

    let wrong = Pair::run(
        server.config(),
        client_tls(SHA.0, plaintext("sha-pW"), &cert),
        4,
    );
    assert_denied(&wrong, SHA.0);
    assert!(wrong.fe.is_tls() && wrong.be.is_tls());
}

#[test]
fn sha2_full_path_over_rsa_with_the_key_requested() {
    let server = Server {
        greeting: Some(AuthPlugin::CachingSha2Password),
        rsa: true,
        ..Server::default()
    };
    let pair = Pair::run(server.config(), client(SHA.0, plaintext(SHA.1)), 5);
    let auth = assert_logged_in(&pair, SHA.0, AuthPlugin::CachingSha2Password, false);
    assert_eq!(auth.secret, plaintext(SHA.1));

    let to_backend = pair.packets_to_backend();
    assert_eq!(headers(&to_backend), [0x0A, 0x01, 0x01, 0x00]);
    assert_eq!(
        &to_backend[1][..],
        [0x01, 0x04],
        "perform full authentication"
    );
    let pem = RsaKeyPair::from_pem(RSA_PAIR_PEM).unwrap();
    assert_eq!(&to_backend[2][1..], pem.public_key_pem().as_bytes());
    let to_frontend = pair.packets_to_frontend();
    assert_eq!(to_frontend.len(), 3);
    assert_eq!(&to_frontend[1][..], [0x02], "public key request");
    assert_eq!(to_frontend[2].len(), 256, "RSA-2048 ciphertext");
    assert!(!contains(&pair.to_frontend, SHA.1.as_bytes()));

    let wrong = Pair::run(server.config(), client(SHA.0, plaintext("sha-pW")), 5);
    assert_denied(&wrong, SHA.0);
    assert_eq!(
        headers(&wrong.packets_to_backend()),
        [0x0A, 0x01, 0x01, 0xFF]
    );
}

#[test]
fn sha2_full_path_over_rsa_with_the_key_preconfigured() {
    let server = Server {
        greeting: Some(AuthPlugin::CachingSha2Password),
        rsa: true,
        ..Server::default()
    };
    let with_key = |password: &str| {
        let mut config = client(SHA.0, plaintext(password));
        config.server_public_key = Some(RsaPublicKey::from_pem(RSA_PUBLIC_PEM).unwrap());
        config
    };
    let pair = Pair::run(server.config(), with_key(SHA.1), 6);
    let auth = assert_logged_in(&pair, SHA.0, AuthPlugin::CachingSha2Password, false);
    assert_eq!(auth.secret, plaintext(SHA.1));
    // No key request, no PEM: the ciphertext follows the full-auth request directly.
    assert_eq!(headers(&pair.packets_to_backend()), [0x0A, 0x01, 0x00]);
    let to_frontend = pair.packets_to_frontend();
    assert_eq!(to_frontend.len(), 2);
    assert_eq!(to_frontend[1].len(), 256);

    let wrong = Pair::run(server.config(), with_key("sha-pW"), 6);
    assert_denied(&wrong, SHA.0);
    assert_eq!(headers(&wrong.packets_to_backend()), [0x0A, 0x01, 0xFF]);
}

#[test]
fn sha2_cache_filled_by_full_auth_then_used_by_the_fast_path() {
    let cert = Cert::new();
    let cache = Arc::new(MemCache::default());
    let full = Server {
        greeting: Some(AuthPlugin::CachingSha2Password),
        cache: Some(&cache),
        tls: Some(&cert),
        ..Server::default()
    };
    // A failed full authentication caches nothing.
    let wrong = Pair::run(
        full.config(),
        client_tls(SHA.0, plaintext("sha-pW"), &cert),
        7,
    );
    assert_denied(&wrong, SHA.0);
    assert_eq!(cache.holds(SHA.0), None);

    let first = Pair::run(full.config(), client_tls(SHA.0, plaintext(SHA.1), &cert), 7);
    let auth = assert_logged_in(&first, SHA.0, AuthPlugin::CachingSha2Password, true);
    assert_eq!(auth.secret, plaintext(SHA.1));
    assert_eq!(
        cache.holds(SHA.0),
        Some(Sha256Stage2Hash::from_password(SHA.1.as_bytes()))
    );

    // Now a plaintext connection with neither TLS nor RSA gets in, on the fast path only.
    let fast = Server {
        greeting: Some(AuthPlugin::CachingSha2Password),
        cache: Some(&cache),
        ..Server::default()
    };
    let second = Pair::run(fast.config(), client(SHA.0, plaintext(SHA.1)), 8);
    let auth = assert_logged_in(&second, SHA.0, AuthPlugin::CachingSha2Password, false);
    assert_eq!(headers(&second.packets_to_backend()), [0x0A, 0x01, 0x00]);
    assert_eq!(&second.packets_to_backend()[1][..], [0x01, 0x03]);

    // What the fast path revealed, SHA256(pw), is enough for a third backend's fast path.
    assert!(matches!(auth.secret, ClientSecret::Sha256(_)));
    let third = Pair::run(fast.config(), client(SHA.0, auth.secret.clone()), 9);
    let again = assert_logged_in(&third, SHA.0, AuthPlugin::CachingSha2Password, false);
    assert_eq!(again.secret, auth.secret);

    // A wrong password on that server misses the cache and cannot do full authentication.
    let wrong = Pair::run(fast.config(), client(SHA.0, plaintext("sha-pW")), 8);
    assert_denied(&wrong, SHA.0);
}

// ---- mysql_clear_password ----

#[test]
fn clear_password_over_tls_after_a_switch() {
    let cert = Cert::new();
    let server = Server {
        tls: Some(&cert),
        ..Server::default()
    };
    let pair = Pair::run(
        server.config(),
        client_tls(CLR.0, plaintext(CLR.1), &cert),
        10,
    );
    let auth = assert_logged_in(&pair, CLR.0, AuthPlugin::MysqlClearPassword, true);
    assert_eq!(auth.secret, plaintext(CLR.1));
    assert!(!contains(&pair.to_frontend, CLR.1.as_bytes()));

    let wrong = Pair::run(
        server.config(),
        client_tls(CLR.0, plaintext("clr-pW"), &cert),
        10,
    );
    assert_denied(&wrong, CLR.0);
}

#[test]
fn clear_password_without_tls_is_refused_by_each_side() {
    // The backend will not send the password in clear: it stops at the switch.
    let pair = Pair::run(
        Server::default().config(),
        client(CLR.0, plaintext(CLR.1)),
        11,
    );
    match pair.be_events.as_slice() {
        [backend::Event::Closed {
            error: Some(BackendError::Unsupported(why)),
        }] => assert!(why.contains("mysql_clear_password"), "{why}"),
        other => panic!("backend events: {other:?}"),
    }
    let to_backend = pair.packets_to_backend();
    assert_eq!(headers(&to_backend), [0x0A, 0xFE]);
    let switch = AuthSwitchRequest::parse(&to_backend[1]).unwrap();
    assert_eq!(switch.plugin_name, b"mysql_clear_password");
    assert!(!contains(&pair.to_frontend, CLR.1.as_bytes()));
    assert!(pair.fe_events.is_empty(), "{:?}", pair.fe_events);
    assert!(!pair.fe.is_command_phase());

    // A backend allowed to send it in clear does; the frontend still refuses it without TLS.
    let mut allowed = client(CLR.0, plaintext(CLR.1));
    allowed.allow_cleartext_without_tls = true;
    let pair = Pair::run(Server::default().config(), allowed, 11);
    assert_denied(&pair, CLR.0);
    let to_frontend = pair.packets_to_frontend();
    assert_eq!(
        &to_frontend[1][..],
        b"clr-pw\0",
        "the password went in clear"
    );
    assert_eq!(headers(&pair.packets_to_backend()), [0x0A, 0xFE, 0xFF]);
}

// ---- auth switch ----

#[test]
fn switch_from_native_to_caching_sha2() {
    // The greeting names mysql_native_password; the account uses caching_sha2_password.
    let server = Server {
        rsa: true,
        ..Server::default()
    };
    let pair = Pair::run(server.config(), client(SHA.0, plaintext(SHA.1)), 12);
    let auth = assert_logged_in(&pair, SHA.0, AuthPlugin::CachingSha2Password, false);
    assert_eq!(auth.secret, plaintext(SHA.1));
    let to_backend = pair.packets_to_backend();
    // greeting, switch, full auth, PEM, OK
    assert_eq!(headers(&to_backend), [0x0A, 0xFE, 0x01, 0x01, 0x00]);
    let switch = AuthSwitchRequest::parse(&to_backend[1]).unwrap();
    assert_eq!(switch.plugin_name, b"caching_sha2_password");
    assert_eq!(switch.data.len(), 21, "20-byte salt and NUL");
    assert_ne!(
        &switch.data[..20],
        pair.fe.salt(),
        "a fresh salt for the switch"
    );
    // The backend's first response was for the greeting's plugin (a 20-byte native scramble),
    // the second a 32-byte sha2 scramble over the new salt.
    let to_frontend = pair.packets_to_frontend();
    assert_eq!(to_frontend[1].len(), 32);

    let wrong = Pair::run(server.config(), client(SHA.0, plaintext("sha-pW")), 12);
    assert_denied(&wrong, SHA.0);
    assert_eq!(wrong.packets_to_backend()[1][0], 0xFE);
}

#[test]
fn switch_from_caching_sha2_to_native() {
    let server = Server {
        greeting: Some(AuthPlugin::CachingSha2Password),
        ..Server::default()
    };
    let pair = Pair::run(server.config(), client(NAT.0, plaintext(NAT.1)), 13);
    let auth = assert_logged_in(&pair, NAT.0, AuthPlugin::MysqlNativePassword, false);
    assert_eq!(
        auth.secret,
        ClientSecret::Sha1(Sha1Password::from_password(NAT.1.as_bytes()))
    );
    let to_backend = pair.packets_to_backend();
    assert_eq!(headers(&to_backend), [0x0A, 0xFE, 0x00]);
    let switch = AuthSwitchRequest::parse(&to_backend[1]).unwrap();
    assert_eq!(switch.plugin_name, b"mysql_native_password");
    let to_frontend = pair.packets_to_frontend();
    assert_eq!(to_frontend.len(), 2);
    assert_eq!(
        to_frontend[1].len(),
        20,
        "a native scramble over the new salt"
    );

    let wrong = Pair::run(server.config(), client(NAT.0, plaintext("nat-pW")), 13);
    assert_denied(&wrong, NAT.0);
    assert_eq!(headers(&wrong.packets_to_backend()), [0x0A, 0xFE, 0xFF]);
}

// ---- deadlines on the virtual clock ----

#[test]
fn frontend_handshake_deadline_when_the_backend_stalls() {
    let mut config = client(NAT.0, plaintext(NAT.1));
    config.connect_timeout = Duration::from_secs(30);
    let mut pair = Pair::new(Server::default().config(), config, 14);
    // The backend's handshake response never reaches the frontend.
    pair.hold_to_frontend = true;
    pair.pump();
    assert!(pair.fe_events.is_empty() && pair.be_events.is_empty());
    let deadline = pair.t0 + Duration::from_secs(10);
    assert_eq!(pair.fe.poll_timeout(), Some(deadline));
    assert_eq!(
        pair.be.poll_timeout(),
        Some(pair.t0 + Duration::from_secs(30))
    );
    assert_eq!(pair.next_deadline(), Some(deadline));

    pair.advance_to(deadline - Duration::from_millis(1));
    assert!(pair.fe_events.is_empty() && pair.be_events.is_empty());
    assert!(!pair.fe.is_closed());

    pair.advance_to(deadline);
    match pair.fe_events.as_slice() {
        [frontend::Event::Closed {
            reason: CloseReason::HandshakeTimeout,
        }] => {}
        other => panic!("frontend events: {other:?}"),
    }
    // The frontend sent "Bad handshake" after its greeting, with the next sequence id (1).
    let bad_handshake = ProtocolError::new(1043, "08S01", "Bad handshake");
    let sent = pair.packets_to_backend();
    assert_eq!(headers(&sent), [0x0A, 0xFF]);
    let err = ErrPacket::parse(&sent[1], pair.fe.capabilities()).unwrap();
    assert_eq!(err.to_protocol_error(), bad_handshake);
    assert_eq!(pair.to_backend[sent[0].len() + 4 + 3], 1, "ERR sequence id");
    // That ERR crossed the backend's handshake response (sequence 1) in flight, so the backend,
    // which checks sequence ids strictly, expected 2 and stops on the stream, not on the ERR.
    assert_eq!(
        pair.be_events,
        [backend::Event::Closed {
            error: Some(BackendError::Decode(DecodeError::OutOfOrder {
                got: 1,
                expected: 2
            }))
        }]
    );
    assert_eq!(pair.next_deadline(), None);

    // When nothing is in flight (the backend waits for the login OK, the frontend's owner
    // stalls), the frontend's deadline ERR arrives in order and the backend reports it.
    let mut config = client(NAT.0, plaintext(NAT.1));
    config.connect_timeout = Duration::from_secs(30);
    let mut pair = Pair::new(Server::default().config(), config, 14);
    pair.accept_logins = false;
    pair.pump();
    assert_eq!(pair.authenticated().user, NAT.0);
    assert_eq!(pair.next_deadline(), Some(deadline_of(&pair)));
    pair.advance_to(deadline_of(&pair));
    assert!(matches!(
        pair.fe_events.last(),
        Some(frontend::Event::Closed {
            reason: CloseReason::HandshakeTimeout
        })
    ));
    match pair.be_events.as_slice() {
        [backend::Event::AuthFailed { error, .. }, backend::Event::Closed {
            error: Some(BackendError::AuthFailed(closed)),
        }] => {
            assert_eq!(error, &bad_handshake);
            assert_eq!(closed, &bad_handshake);
        }
        other => panic!("backend events: {other:?}"),
    }
    assert_eq!(pair.next_deadline(), None);
}

/// The frontend's handshake deadline under the default configuration.
fn deadline_of(pair: &Pair) -> Instant {
    pair.t0 + frontend::DEFAULT_HANDSHAKE_TIMEOUT
}

#[test]
fn backend_connect_deadline_when_the_frontend_stalls() {
    let timeout = Duration::from_secs(3);
    let connecting = BackendError::Timeout {
        phase: "connecting and authenticating",
    };

    // The frontend's owner never decides on the login.
    let mut config = client(NAT.0, plaintext(NAT.1));
    config.connect_timeout = timeout;
    let mut pair = Pair::new(Server::default().config(), config, 15);
    pair.accept_logins = false;
    pair.pump();
    assert_eq!(pair.authenticated().user, NAT.0);
    assert!(pair.be_events.is_empty());
    assert_eq!(pair.next_deadline(), Some(pair.t0 + timeout));
    pair.advance_to(pair.t0 + timeout - Duration::from_millis(1));
    assert!(pair.be_events.is_empty());
    pair.advance_to(pair.t0 + timeout);
    assert_eq!(
        pair.be_events,
        [backend::Event::Closed {
            error: Some(connecting.clone())
        }]
    );
    assert_eq!(pair.be.poll_timeout(), None);
    // The frontend's own handshake deadline still covers the owner's decision.
    assert!(!pair.fe.is_closed());
    assert_eq!(
        pair.next_deadline(),
        Some(pair.t0 + Duration::from_secs(10))
    );
    pair.advance_to(pair.t0 + Duration::from_secs(10));
    assert!(matches!(
        pair.fe_events.last(),
        Some(frontend::Event::Closed {
            reason: CloseReason::HandshakeTimeout
        })
    ));

    // The frontend's greeting never arrives.
    let mut config = client(NAT.0, plaintext(NAT.1));
    config.connect_timeout = timeout;
    let mut pair = Pair::new(Server::default().config(), config, 16);
    pair.hold_to_backend = true;
    pair.pump();
    assert_eq!(pair.next_deadline(), Some(pair.t0 + timeout));
    pair.advance_to(pair.t0 + timeout);
    assert_eq!(
        pair.be_events,
        [backend::Event::Closed {
            error: Some(connecting)
        }]
    );
    assert!(pair.fe_events.is_empty());
}

// ---- commands after login ----

fn response_kinds(events: &[backend::Event]) -> Vec<PacketKind> {
    events
        .iter()
        .filter_map(|e| match e {
            backend::Event::Response { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

fn summary(events: &[backend::Event]) -> &backend::ResponseSummary {
    match events.last() {
        Some(backend::Event::ResponseComplete(summary)) => summary,
        other => panic!("last backend event: {other:?}"),
    }
}

#[test]
fn commands_through_the_pair() {
    let cert = Cert::new();
    let server = Server {
        tls: Some(&cert),
        ..Server::default()
    };
    let mut pair = Pair::run(
        server.config(),
        client_tls(NAT.0, plaintext(NAT.1), &cert),
        17,
    );
    assert_logged_in(&pair, NAT.0, AuthPlugin::MysqlNativePassword, true);

    // COM_QUERY, answered by the frontend's owner with a text result set.
    let mark = pair.be_events.len();
    let cmd = pair.command(&Command::Query(Query {
        attributes: vec![],
        sql: b"SELECT 1, NULL",
    }));
    assert_eq!(cmd.code(), Command::COM_QUERY);
    match cmd.parse().unwrap() {
        Command::Query(q) => assert_eq!(q.sql, b"SELECT 1, NULL"),
        other => panic!("{other:?}"),
    }
    assert!(pair.be_events_since(mark).is_empty(), "no answer yet");
    pair.fe
        .send_text_result(
            pair.now,
            &[
                column(b"1", ColumnType::LongLong),
                column(b"NULL", ColumnType::VarString),
            ],
            [[Some(&b"1"[..]), None]],
        )
        .unwrap();
    pair.fe.end_response(pair.now).unwrap();
    pair.pump();
    let events = pair.be_events_since(mark);
    // DEPRECATE_EOF was negotiated: no EOF between columns and rows, an OK-as-EOF at the end.
    assert!(pair.be.capabilities().contains(Capabilities::DEPRECATE_EOF));
    assert_eq!(
        response_kinds(events),
        [
            PacketKind::ResultSetHeader,
            PacketKind::ColumnDefinition,
            PacketKind::ColumnDefinition,
            PacketKind::Row,
            PacketKind::Eof,
        ]
    );
    let row = events
        .iter()
        .find_map(|e| match e {
            backend::Event::Response {
                kind: PacketKind::Row,
                payload,
            } => Some(payload.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(&row[..], [1, b'1', 0xFB], "'1' then NULL");
    let done = summary(events);
    assert_eq!(done.command, Command::COM_QUERY);
    assert_eq!((done.result_sets, done.rows), (1, 1));
    assert_eq!(done.error, None);
    assert_eq!(done.status, ServerStatus::AUTOCOMMIT);
    assert!(pair.be.is_idle());

    // COM_QUERY answered with an ERR: the connection goes on.
    let mark = pair.be_events.len();
    pair.command(&Command::Query(Query {
        attributes: vec![],
        sql: b"SELEKT",
    }));
    let syntax = ProtocolError::new(1064, "42000", "You have an error in your SQL syntax");
    pair.fe.send_error(pair.now, &syntax).unwrap();
    pair.fe.end_response(pair.now).unwrap();
    pair.pump();
    let events = pair.be_events_since(mark);
    assert_eq!(response_kinds(events), [PacketKind::Err]);
    assert_eq!(summary(events).error, Some(syntax));
    assert!(pair.be.is_idle() && pair.fe.is_command_phase());

    // COM_PING: OK.
    let mark = pair.be_events.len();
    let cmd = pair.command(&Command::Ping);
    assert_eq!(cmd.parse().unwrap(), Command::Ping);
    pair.fe.send_ok_empty(pair.now).unwrap();
    pair.fe.end_response(pair.now).unwrap();
    pair.pump();
    let events = pair.be_events_since(mark);
    assert_eq!(response_kinds(events), [PacketKind::Ok]);
    let done = summary(events);
    assert_eq!(
        (done.command, done.error.clone()),
        (Command::COM_PING, None)
    );

    // An unknown command: the frontend answers 1047 itself, the owner sees nothing.
    let mark = pair.be_events.len();
    let fe_mark = pair.fe_events.len();
    pair.be
        .send_raw_command(pair.now, Bytes::from_static(&[0x7A, 1, 2, 3]))
        .unwrap();
    pair.pump();
    assert_eq!(pair.fe_events.len(), fe_mark, "{:?}", pair.fe_events);
    assert!(pair.commands.is_empty());
    let events = pair.be_events_since(mark);
    assert_eq!(response_kinds(events), [PacketKind::Err]);
    let done = summary(events);
    assert_eq!(done.command, 0x7A);
    assert_eq!(
        done.error,
        Some(ProtocolError::new(1047, "08S01", "Unknown command"))
    );
    assert!(pair.be.is_idle() && pair.fe.is_command_phase());

    // Still usable afterwards.
    pair.command(&Command::Ping);
    pair.fe.send_ok_empty(pair.now).unwrap();
    pair.fe.end_response(pair.now).unwrap();
    pair.pump();
    assert!(summary(&pair.be_events).is_ok());

    // No deadlines while idle after login (no command timeout configured).
    assert_eq!(pair.next_deadline(), None);

    // COM_QUIT: the frontend closes without answering; the backend sees the orderly EOF.
    let fe_mark = pair.fe_events.len();
    let mark = pair.be_events.len();
    pair.be.send_command(pair.now, &Command::Quit).unwrap();
    pair.pump();
    match &pair.fe_events[fe_mark..] {
        [frontend::Event::Closed {
            reason: CloseReason::Quit,
        }] => {}
        other => panic!("frontend events: {other:?}"),
    }
    assert_eq!(
        pair.be_events_since(mark),
        [backend::Event::Closed { error: None }]
    );
    assert!(pair.fe.is_closed() && pair.be.is_closed());
    assert!(pair.commands.is_empty());
}
