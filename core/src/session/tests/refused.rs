//! A backend that refuses the connection with an ERR in place of its greeting (MariaDB at
//! `max_connections`: 1040; a blocked host: 1129): the login moves on to another backend, in
//! both auth modes, a bounded number of times; a migration target that does the same only fails
//! the migration.

use super::migration::Mig;
use super::*;

const TOO_MANY: u16 = 1040;
const BLOCKED: u16 = 1129;

/// The ERR MariaDB sends in place of its greeting (no SQL state: no capabilities agreed yet).
fn err_greeting(code: u16, message: &str) -> Vec<u8> {
    let mut err = vec![0xFF];
    err.extend_from_slice(&code.to_le_bytes());
    err.extend_from_slice(message.as_bytes());
    frame(0, &err)
}

/// The session's connect deadline in these tests: shorter than the client's own (10 s), so
/// that the client is still waiting when the session's fires.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A login in `proxy` or `passthrough` mode whose first connect is left pending.
fn pending_login(proxy: bool) -> Net {
    let mut config = session_config(proxy);
    config.backend.connect_timeout = CONNECT_TIMEOUT;
    let mut net = Net::new(config, client_config(PASSWORD));
    net.connect = Connect::Ignore;
    net.pump();
    assert!(net.conn.is_some(), "no ConnectBackend: {:?}", net.events);
    net
}

/// The pending connect opens to backend `name`, which answers with ERR `code`.
fn refuse(net: &mut Net, name: &str, code: u16) {
    let conn = net.conn.expect("a pending connect");
    net.session.backend_connected(net.now, conn, name);
    net.pump();
    net.session.handle_input(
        net.now,
        Peer::Backend(conn),
        &err_greeting(code, "Too many connections"),
    );
    net.pump();
}

/// The pending connect opens to backend `name`, a working server.
fn accept(net: &mut Net, name: &str) {
    let conn = net.conn.expect("a pending connect");
    net.server = Some(Frontend::new(
        net.server_config.clone(),
        99,
        "10.9.9.9",
        net.now,
        Box::new(SeededRandom::new(13)),
    ));
    net.session.backend_connected(net.now, conn, name);
    net.pump();
}

fn refused_events(events: &[Event]) -> Vec<(String, u16)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BackendRefused { backend, error } => Some((backend.clone(), error.code)),
            _ => None,
        })
        .collect()
}

fn connects(events: &[Event]) -> Vec<(BackendConnId, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ConnectBackend { conn, target } => Some((*conn, target.clone())),
            _ => None,
        })
        .collect()
}

fn login_error(net: &Net) -> Option<crate::ProtocolError> {
    net.client_events.iter().find_map(|e| match e {
        backend::Event::AuthFailed { error, .. } => Some(error.clone()),
        _ => None,
    })
}

#[test]
fn an_err_greeting_closes_that_backend_and_connects_again_then_logs_in_elsewhere() {
    for proxy in [true, false] {
        let mut net = pending_login(proxy);
        let first = net.conn.unwrap();
        net.now += Duration::from_secs(1);
        let seen_by_client = net.to_client.len();
        let before = net.events.len();
        refuse(&mut net, "db1", TOO_MANY);

        // BackendRefused (for the driver), then the connection closed, then a new pick.
        let second = net.conn.unwrap();
        assert_ne!(second, first);
        let after = &net.events[before..];
        assert!(
            matches!(after, [
                Event::BackendRefused { backend, error },
                Event::CloseBackend { conn },
                Event::ConnectBackend { conn: again, target: None },
            ] if backend == "db1"
                && error.code == TOO_MANY
                && error.message == "Too many connections"
                && *conn == first
                && *again == second),
            "proxy={proxy}: {after:?}"
        );
        // The client heard nothing of it; the connect deadline runs again from the refusal.
        assert_eq!(net.to_client.len(), seen_by_client, "proxy={proxy}");
        assert!(login_error(&net).is_none(), "proxy={proxy}");
        assert!(!net.session.is_closed());
        assert_eq!(net.session.backend_name(), None);
        assert_eq!(
            net.session.poll_timeout(),
            Some(net.now + CONNECT_TIMEOUT),
            "proxy={proxy}"
        );

        accept(&mut net, "db2");
        assert!(
            net.client_connected(),
            "proxy={proxy}: {:?} / {:?}",
            net.client_events,
            net.events
        );
        assert_eq!(net.session.backend_name(), Some("db2"));
        assert!(net
            .events
            .contains(&Event::Authenticated { user: USER.into() }));
        assert_eq!(refused_events(&net.events), [("db1".to_owned(), TOO_MANY)]);
        net.client_events.clear();
        let (_, summary) = net.query(b"SELECT 1");
        assert_eq!(summary.rows, 1, "proxy={proxy}");
    }
}

#[test]
fn the_third_refusal_goes_to_the_client_as_the_backends_own_err() {
    for proxy in [true, false] {
        let mut net = pending_login(proxy);
        refuse(&mut net, "db1", TOO_MANY);
        refuse(&mut net, "db2", TOO_MANY);
        assert!(
            !net.session.is_closed(),
            "proxy={proxy}: two refusals survive"
        );
        refuse(&mut net, "db3", BLOCKED);
        let err = login_error(&net).unwrap_or_else(|| panic!("no ERR: {:?}", net.client_events));
        assert_eq!(err.code, BLOCKED, "proxy={proxy}: the last backend's ERR");
        assert!(matches!(
            net.closed_reason(),
            Some(CloseReason::LoginRefused(e)) if e.code == BLOCKED
        ));
        assert!(net.session.is_closed());
        // Every refusing backend is reported (the driver marks each down); no fourth connect.
        assert_eq!(
            refused_events(&net.events),
            [
                ("db1".to_owned(), TOO_MANY),
                ("db2".to_owned(), TOO_MANY),
                ("db3".to_owned(), BLOCKED)
            ]
        );
        assert_eq!(connects(&net.events).len(), 3, "proxy={proxy}");
        assert!(net
            .events
            .iter()
            .all(|e| !matches!(e, Event::Authenticated { .. })));
    }
}

#[test]
fn a_retry_that_reaches_no_backend_gives_the_refusal_not_1429() {
    for proxy in [true, false] {
        // No healthy backend left for the retry (the driver fails the connect).
        let mut net = pending_login(proxy);
        refuse(&mut net, "db1", TOO_MANY);
        let conn = net.conn.unwrap();
        net.session
            .backend_connect_failed(net.now, conn, ConnectFailure::NoHealthyBackend);
        net.pump();
        let err = login_error(&net).expect("an ERR");
        assert_eq!(
            (err.code, err.message.as_str()),
            (TOO_MANY, "Too many connections"),
            "proxy={proxy}"
        );
        assert!(matches!(
            net.closed_reason(),
            Some(CloseReason::LoginRefused(e)) if e.code == TOO_MANY
        ));

        // The retry's connect never completes: the deadline gives the same ERR.
        let mut net = pending_login(proxy);
        refuse(&mut net, "db1", TOO_MANY);
        net.advance(CONNECT_TIMEOUT - Duration::from_millis(1));
        assert!(
            !net.session.is_closed(),
            "proxy={proxy}: not before the deadline"
        );
        net.advance(Duration::from_millis(1));
        assert_eq!(login_error(&net).expect("an ERR").code, TOO_MANY);
        assert!(net.session.is_closed());
    }
}

#[test]
fn a_retry_that_reaches_a_failing_backend_reports_that_failure() {
    // The refusal is not the latest news any more: the second backend's own failure is.
    let mut net = pending_login(true);
    refuse(&mut net, "db1", TOO_MANY);
    let conn = net.conn.unwrap();
    net.session.backend_connected(net.now, conn, "db2");
    net.session.handle_eof(net.now, Peer::Backend(conn));
    net.pump();
    let err = login_error(&net).expect("an ERR");
    assert_eq!(err.code, 1429, "{err:?}");
    assert_eq!(
        err.message,
        "Can't connect to the backend server (ferry: backend closed the connection)"
    );
    assert_eq!(
        net.closed_reason(),
        Some(&CloseReason::BackendUnavailable(LoginFailure::Lost(
            BackendLoss::Failed(BackendError::PeerClosed)
        )))
    );
}

#[test]
fn a_refused_login_after_the_greeting_is_not_retried() {
    // A wrong password: the backend greeted, then refused; the client gets its ERR at once.
    let mut net = Net::new(session_config(false), client_config("wrong"));
    net.pump();
    assert_eq!(login_error(&net).expect("an ERR").code, 1045);
    assert!(refused_events(&net.events).is_empty());
    assert_eq!(connects(&net.events).len(), 1);
}

#[test]
fn an_err_greeting_from_a_migration_target_only_fails_the_migration() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    mig.connect.insert("db2".into(), Connect::Ignore);
    mig.session.start_migration(mig.now, "db2".into()).unwrap();
    mig.pump();
    let (conn, name) = mig.pending.take().expect("the migration's connect");
    assert_eq!(name, "db2");
    mig.session.backend_connected(mig.now, conn, "db2");
    mig.session.handle_input(
        mig.now,
        Peer::Backend(conn),
        &err_greeting(TOO_MANY, "Too many connections"),
    );
    mig.pump();
    let reason = mig.failure().expect("the migration failed");
    assert_eq!(reason.label(), "login_refused", "{reason}");
    assert!(refused_events(&mig.events).is_empty(), "{:?}", mig.events);
    assert_eq!(
        connects(&mig.events).len(),
        2,
        "the login's and the migration's"
    );
    assert!(mig.events.contains(&Event::CloseBackend { conn }));
    assert_eq!(mig.session.backend_name(), Some("db1"));
    assert_eq!(mig.query("SELECT @@port"), "db1:SELECT @@port");
}
