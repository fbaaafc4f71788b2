//! The endpoint on a virtual clock: accepting, placement and failover, the listing, drain and
//! migrate requests, health rounds.

use std::time::{Duration, Instant};

use super::*;
use crate::control::config::ConfigFile;
use crate::SeededRandom;

fn endpoint(extra: &str, shards: usize) -> (Endpoint, Instant) {
    let text = format!(
        "[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n\
         [[backends]]\nname = \"db2\"\naddr = \"127.0.0.1:3307\"\n{extra}"
    );
    let config = Config::from_file(&ConfigFile::parse(&text, None).unwrap()).unwrap();
    let now = Instant::now();
    (Endpoint::new(now, &config, shards).unwrap(), now)
}

fn client() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

fn accept(ep: &mut Endpoint, now: Instant, by: usize) -> Option<Connection> {
    ep.accept(now, client(), by, Box::new(SeededRandom::new(7)))
}

/// A MariaDB greeting, framed.
fn greeting(version: &[u8]) -> Vec<u8> {
    let g = crate::wire::HandshakeV10::new(
        version,
        7,
        &[b'a'; 20],
        crate::frontend::default_capabilities(),
        45,
        crate::wire::ServerStatus::AUTOCOMMIT,
        b"mysql_native_password",
    );
    let mut payload = Vec::new();
    g.encode(&mut payload);
    let mut frame = bytes::BytesMut::new();
    crate::wire::encode_packet(&mut frame, &mut 0, &payload);
    frame.to_vec()
}

/// Runs one health round: each backend answers with `answers[i]` (a greeting's version, or
/// `None`: connection refused).
fn health_round(ep: &mut Endpoint, now: Instant, answers: &[Option<&[u8]>]) {
    ep.handle_timeout(now);
    let mut probes = Vec::new();
    while let Some(p) = ep.poll_probe() {
        probes.push(p);
    }
    assert_eq!(probes.len(), answers.len());
    for mut p in probes {
        match answers[p.backend()] {
            Some(version) => p.handle_input(&greeting(version)),
            None => p.connect_failed(&io::Error::from(io::ErrorKind::ConnectionRefused)),
        }
        assert!(p.is_done());
        ep.probe_finished(now, p);
    }
}

#[test]
fn the_first_health_round_is_due_at_once_and_sets_the_advertised_version() {
    let (mut ep, now) = endpoint("", 1);
    assert_eq!(ep.poll_timeout(), Some(now));
    health_round(&mut ep, now, &[None, Some(b"5.5.5-10.11.19-MariaDB")]);
    assert_eq!(ep.session_config.frontend.server_version, "5.5.5-10.11.19-MariaDB");
    let infos = ep.backends();
    assert!(!infos[0].healthy && infos[1].healthy);
    // The next round comes an interval later, and does not change the version.
    let next = ep.poll_timeout().unwrap();
    assert_eq!(next, now + ep.config().health.interval);
    health_round(&mut ep, next, &[Some(b"other"), Some(b"other")]);
    assert_eq!(ep.session_config.frontend.server_version, "5.5.5-10.11.19-MariaDB");
    assert!(ep.backends()[0].healthy);
}

#[test]
fn a_configured_server_version_wins() {
    let (mut ep, now) = endpoint("[proxy]\nserver-version = \"8.0.40\"\n", 1);
    health_round(&mut ep, now, &[Some(b"10.11"), Some(b"10.11")]);
    assert_eq!(ep.session_config.frontend.server_version, "8.0.40");
}

#[test]
fn new_clients_go_to_the_shard_with_the_fewest_sessions() {
    let (mut ep, now) = endpoint("", 2);
    let shards: Vec<usize> = (0..4)
        .map(|_| accept(&mut ep, now, 1).unwrap().shard())
        .collect();
    assert_eq!(shards, [1, 0, 1, 0]);
    assert_eq!(ep.live_sessions(), 4);
    assert_eq!(ep.metrics().sessions_accepted, 4);
}

#[test]
fn max_connections_refuses_and_a_closed_connection_frees_its_place() {
    let (mut ep, now) = endpoint("[proxy]\nmax-connections = 2\n", 1);
    let mut a = accept(&mut ep, now, 0).unwrap();
    let b = accept(&mut ep, now, 0).unwrap();
    assert_ne!(a.id(), b.id());
    assert!(accept(&mut ep, now, 0).is_none());
    assert_eq!(ep.metrics().errors["max_connections"], 1);
    ep.connection_closed(&mut a);
    ep.connection_closed(&mut a);
    assert_eq!(ep.live_sessions(), 1);
    assert!(accept(&mut ep, now, 0).is_some());
    ep.begin_shutdown(now);
    assert!(!ep.is_serving());
    assert!(accept(&mut ep, now, 0).is_none(), "refused while shutting down");
    // Every live session is asked to shut down.
    let mut commands = Vec::new();
    while let Some(c) = ep.poll_command(0) {
        commands.push(c);
    }
    assert_eq!(commands.len(), 2);
    assert!(commands.iter().all(|(_, c)| *c == Command::Shutdown));
    assert_eq!(ep.take_wakeups(), [0]);
}

#[test]
fn connection_ids_are_never_zero() {
    let (mut ep, _) = endpoint("", 1);
    ep.next_connection_id = u32::MAX;
    assert_eq!(ep.next_connection_id(), u32::MAX);
    assert_eq!(ep.next_connection_id(), 1);
}

#[test]
fn accept_failures_are_counted_and_back_off() {
    let (mut ep, now) = endpoint("", 1);
    let e = io::Error::from_raw_os_error(libc::EMFILE);
    assert_eq!(ep.accept_failed(now, 0, &e), now + ACCEPT_BACKOFF);
    ep.accept_failed(now, 0, &e);
    assert_eq!(ep.metrics().errors["accept"], 2);
}

#[test]
fn migrate_is_checked_before_any_session_is_asked() {
    let (mut ep, now) = endpoint("", 1);
    // Passthrough auth: migration is off by default.
    assert_eq!(ep.migrate(now, 5, "db2"), Err(ApiError::UnknownSession(5)));
    let conn = accept(&mut ep, now, 0).unwrap();
    let id = conn.id();
    // Not logged in yet: not listed.
    assert_eq!(ep.migrate(now, id, "db2"), Err(ApiError::UnknownSession(id)));
    ep.sessions.get_mut(&id).unwrap().user = Some("app".into());
    ep.sessions.get_mut(&id).unwrap().backend = Some("db1".into());
    assert_eq!(ep.migrate(now, id, "db9"), Err(ApiError::UnknownBackend("db9".into())));
    assert!(matches!(ep.migrate(now, id, "db2"), Err(ApiError::Conflict(m)) if m.contains("not healthy")));
    health_round(&mut ep, now, &[Some(b"10.11"), Some(b"10.11")]);
    assert!(matches!(ep.migrate(now, id, "db2"), Err(ApiError::Conflict(m)) if m.contains("disabled")));
    ep.set_draining(now, "db2", true).unwrap();
    assert!(matches!(ep.migrate(now, id, "db2"), Err(ApiError::Conflict(m)) if m.contains("draining")));
    assert!(ep.poll_command(0).is_none());
}
