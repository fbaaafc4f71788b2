//! Multiplexing through the endpoint's pool: sessions give their backend connection back
//! between statements, take a pooled one (theirs if it is still idle) for the next, wait when
//! the backend's connections are all in use, and get ERR 1040 after `max-wait`.

use super::*;
use crate::control::config::MultiplexingSection;

fn multiplexed(max: usize) -> impl FnOnce(&mut ConfigFile) {
    move |f: &mut ConfigFile| {
        proxy_auth(f);
        f.multiplexing = MultiplexingSection {
            enabled: Some(true),
            max_backend_connections: Some(max),
            max_wait: Some(ConfigDuration(Duration::from_millis(500))),
            ..MultiplexingSection::default()
        };
    }
}

/// (in use, idle) connections of `db1`.
fn pool_of_db1(ep: &Endpoint) -> (u64, u64) {
    let m = ep.metrics();
    let (_, in_use, idle) = m.pool.connections[0].clone();
    (in_use, idle)
}

#[test]
fn a_session_parks_between_statements_and_takes_its_connection_back() {
    let (mut ep, now) = healthy_endpoint(multiplexed(4));
    let mut s = Session::logged_in(&mut ep, now);
    // After the login (and ferry's session tracking) the connection went to the pool.
    assert!(s.servers.is_empty(), "parked after login");
    assert_eq!(parked().len(), 1);
    assert_eq!(pool_of_db1(&ep), (0, 1));
    assert_eq!(s.query(&mut ep, now, "SELECT 1").rows, 1);
    assert_eq!(parked().len(), 1, "the same connection, parked again");
    assert_eq!(s.connects.len(), 1, "no second connection");
    assert_eq!(pool_of_db1(&ep), (0, 1));
    let m = ep.metrics();
    assert_eq!(m.pool.acquires["reused"], 1);
}

#[test]
fn a_session_takes_back_its_own_connection_before_a_newer_one_in_the_same_state() {
    let (mut ep, now) = healthy_endpoint(multiplexed(4));
    ep.set_draining(now, "db2", true).unwrap();
    let mut a = Session::logged_in(&mut ep, now);
    a.query(&mut ep, now, "BEGIN");
    // A holds the first connection: B's login opens a second, which B gives back.
    let mut b = Session::logged_in(&mut ep, now);
    let [own] = parked()[..] else {
        panic!("B's connection parked: {:?}", parked())
    };
    a.query(&mut ep, now, "COMMIT");
    let newer = *parked().iter().find(|&&id| id != own).expect("A's, parked");
    // A's connection, parked last, holds the same state as B's: B still takes its own
    // (untouched, it needs no fix-up and its statement ids stand).
    b.query(&mut ep, now, "SELECT 1");
    let after = parked();
    assert!(
        after.contains(&newer) && !after.contains(&own),
        "B's was {own}, A's {newer}, parked now {after:?}"
    );
}

#[test]
fn a_transaction_keeps_its_connection_and_others_wait_then_get_1040() {
    let (mut ep, now) = healthy_endpoint(multiplexed(1));
    // One backend: B cannot go elsewhere.
    ep.set_draining(now, "db2", true).unwrap();
    let mut a = Session::logged_in(&mut ep, now);
    a.query(&mut ep, now, "BEGIN");
    assert_eq!(a.servers.len(), 1, "in a transaction: attached");
    assert_eq!(pool_of_db1(&ep), (1, 0));
    // B's login needs a connection too: it waits, the only one is A's.
    let mut b = Session::connect(&mut ep, now, PASSWORD);
    b.pump(&mut ep, now);
    assert!(!b.is_logged_in());
    assert_eq!(ep.metrics().pool.waiting, 1);
    a.query(&mut ep, now, "COMMIT");
    assert_eq!(pool_of_db1(&ep), (0, 1), "parked after COMMIT");
    // B is told to try again and takes the connection A parked (same user, a fresh session's
    // state: nothing to fix up), without a second connection.
    deliver(&mut ep, now, &mut [&mut a, &mut b]);
    assert!(b.is_logged_in(), "{:?}", b.client_events);
    assert_eq!(ep.poll_pool_close(), None);
    assert_eq!(
        a.connects.len() + b.connects.len(),
        1,
        "one backend connection in all"
    );
    assert_eq!(pool_of_db1(&ep), (0, 1));
    // Now A in a transaction again, and B's statement waits for max-wait: ERR 1040.
    a.query(&mut ep, now, "BEGIN");
    b.client_events.clear();
    b.client
        .send_command(
            now,
            &WireCommand::Query(Query {
                attributes: vec![],
                sql: b"SELECT 1",
            }),
        )
        .unwrap();
    b.pump(&mut ep, now);
    assert!(b.client_events.is_empty(), "waiting: {:?}", b.client_events);
    let later = now + Duration::from_millis(600);
    b.conn.handle_timeout(later);
    b.pump(&mut ep, later);
    let err = b
        .client_events
        .iter()
        .find_map(|e| match e {
            backend::Event::ResponseComplete(s) => s.error.clone(),
            _ => None,
        })
        .expect("an ERR");
    assert_eq!((err.code, &err.sql_state), (1040, b"08004"));
    assert_eq!(ep.metrics().pool.timeouts, 1);
    assert_eq!(ep.metrics().pool.waiting, 0);
    // B goes on: after A's COMMIT its statement runs.
    a.query(&mut ep, later, "COMMIT");
    assert_eq!(b.query(&mut ep, later, "SELECT 1").rows, 1);
}

#[test]
fn a_parked_connection_goes_to_the_first_waiter_not_back_to_the_session_that_parked_it() {
    let (mut ep, now) = healthy_endpoint(multiplexed(1));
    ep.set_draining(now, "db2", true).unwrap();
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    a.query(&mut ep, now, "BEGIN");
    // B waits for the only connection, which A holds.
    let select = WireCommand::Query(Query {
        attributes: vec![],
        sql: b"SELECT 1",
    });
    b.client_events.clear();
    b.client.send_command(now, &select).unwrap();
    b.pump(&mut ep, now);
    assert_eq!(ep.metrics().pool.waiting, 1);
    a.query(&mut ep, now, "COMMIT");
    // A comes back at once, before B heard that the connection is free: A waits its turn.
    a.client_events.clear();
    a.client.send_command(now, &select).unwrap();
    a.pump(&mut ep, now);
    assert!(
        a.client_events.is_empty(),
        "A jumped the queue: {:?}",
        a.client_events
    );
    deliver(&mut ep, now, &mut [&mut a, &mut b]);
    let answered = |s: &Session| {
        s.client_events
            .iter()
            .any(|e| matches!(e, backend::Event::ResponseComplete(r) if r.rows == 1))
    };
    assert!(answered(&b), "B got the connection: {:?}", b.client_events);
    // Then A's turn comes when B parks it.
    deliver(&mut ep, now, &mut [&mut a, &mut b]);
    assert!(answered(&a), "A served after B: {:?}", a.client_events);
    assert_eq!(ep.metrics().pool.waiting, 0);
    assert_eq!(ep.metrics().pool.timeouts, 0);
}

#[test]
fn connections_are_shared_only_between_sessions_asking_the_same_capabilities() {
    let (mut ep, now) = healthy_endpoint(multiplexed(4));
    ep.set_draining(now, "db2", true).unwrap();
    let mut a = Session::logged_in(&mut ep, now);
    assert_eq!(parked().len(), 1);
    // B's client asks for FOUND_ROWS (affected rows count matched rows): A's connection, opened
    // without it, would answer B's UPDATEs with the wrong count.
    let mut b = Session::connect(&mut ep, now, PASSWORD);
    b.client = backend::Backend::new(
        now,
        {
            let mut config =
                backend::BackendConfig::new(USER, ClientSecret::Plaintext(Password::new(PASSWORD)));
            config.client_capabilities |= Capabilities::FOUND_ROWS;
            config
        },
        Box::new(SeededRandom::new(12)),
    );
    b.pump(&mut ep, now);
    assert!(b.is_logged_in(), "{:?}", b.client_events);
    assert_eq!(b.connects.len(), 1, "B opened its own connection");
    assert_eq!(parked().len(), 2);
    // A, asking what it asked before, takes its own back; so does B.
    assert_eq!(a.query(&mut ep, now, "SELECT 1").rows, 1);
    assert_eq!(b.query(&mut ep, now, "SELECT 1").rows, 1);
    assert_eq!(
        a.connects.len() + b.connects.len(),
        2,
        "no third connection"
    );
    assert_eq!(ep.metrics().pool.acquires["reused"], 2);
}
