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
    assert_eq!(s.parked.len(), 1);
    assert_eq!(pool_of_db1(&ep), (0, 1));
    assert_eq!(s.query(&mut ep, now, "SELECT 1").rows, 1);
    assert_eq!(s.parked.len(), 1, "the same connection, parked again");
    assert_eq!(s.connects.len(), 1, "no second connection");
    assert_eq!(pool_of_db1(&ep), (0, 1));
    let m = ep.metrics();
    assert_eq!(m.pool.acquires["reused"], 1);
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
    // B is told to try again: the idle connection is not its (a login never reuses one), so
    // it is closed and B opens its own.
    deliver(&mut ep, now, &mut [&mut a, &mut b]);
    assert!(b.is_logged_in(), "{:?}", b.client_events);
    let a_parked: Vec<_> = a.parked.drain().map(|(id, _)| id).collect();
    assert_eq!(ep.poll_pool_close().map(|c| vec![c.pooled]), Some(a_parked));
    assert_eq!(ep.poll_pool_close(), None);
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
