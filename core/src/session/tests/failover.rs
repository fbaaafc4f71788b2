//! Failover on a virtual clock: the session's backend dies (EOF) or is reported down, and the
//! session is rebuilt on another in-test server from what ferry holds (the snapshot read after
//! each state change), or lost the way a dead server's connection is (closed, no ERR).

use super::migration::{stateful_session, Mig};
use super::*;

fn failover_config(read_retry: bool) -> SessionConfig {
    let mut config = session_config(true);
    config.migration.mode = MigrationMode::Replay;
    config.migration.failover = true;
    config.migration.read_retry = read_retry;
    config
}

fn logged_in(read_retry: bool) -> Mig {
    let mut mig = Mig::new(failover_config(read_retry));
    mig.login();
    mig.pick = "db2".into();
    mig
}

/// The connection id of the session's link to `name`.
fn conn_to(mig: &Mig, name: &str) -> BackendConnId {
    mig.conns.iter().rev().find(|(_, n)| n == name).unwrap().0
}

/// `name`'s server dies: its socket reaches EOF under the session.
fn kill(mig: &mut Mig, name: &str) {
    let conn = conn_to(mig, name);
    mig.servers.get_mut(&conn).unwrap().closed = true;
    mig.session.handle_eof(mig.now, Peer::Backend(conn));
    mig.pump();
}

fn lost(mig: &Mig) -> Option<&LossReason> {
    mig.events.iter().find_map(|e| match e {
        Event::SessionLost { reason, .. } => Some(reason),
        _ => None,
    })
}

fn recovered(mig: &Mig) -> Option<(&str, &str, bool)> {
    mig.events.iter().find_map(|e| match e {
        Event::FailoverDone {
            from, to, retried, ..
        } => Some((from.as_str(), to.as_str(), *retried)),
        _ => None,
    })
}

/// Sends `sql` from the client without waiting for its answer.
fn start(mig: &mut Mig, sql: &[u8]) {
    let query = Command::Query(Query {
        attributes: vec![],
        sql,
    });
    mig.client.send_command(mig.now, &query).unwrap();
    mig.pump();
}

const SNAPSHOT: &str = "SELECT @@character_set_client";

#[test]
fn the_snapshot_is_read_after_state_changes_only() {
    let mut mig = logged_in(false);
    mig.query("SELECT 1");
    mig.query("INSERT INTO t VALUES (1)");
    let reads = |mig: &Mig| {
        mig.server("db1")
            .statements()
            .iter()
            .filter(|s| s.starts_with(SNAPSHOT))
            .count()
    };
    assert_eq!(reads(&mig), 0, "no state change, no read");
    mig.query("SET @a = 1");
    assert_eq!(reads(&mig), 1, "read after the state change");
    let log = mig.server("db1").statements();
    assert!(log[log.len() - 2].starts_with("SET @a"));
    mig.query("SELECT 2");
    assert_eq!(reads(&mig), 1, "not again until the next change");
    mig.query("SET sql_mode = 'ANSI_QUOTES'");
    assert_eq!(
        reads(&mig),
        1,
        "a system variable is tracked: nothing to read"
    );
    mig.query("SET NAMES latin1");
    assert_eq!(reads(&mig), 2, "the character sets are read live");
}

#[test]
fn an_idle_session_is_rebuilt_elsewhere_from_what_ferry_holds() {
    let mut mig = logged_in(false);
    let (a, b) = stateful_session(&mut mig);
    mig.client_events.clear();
    kill(&mut mig, "db1");
    assert_eq!(
        recovered(&mig),
        Some(("db1", "db2", false)),
        "{:?}",
        mig.events
    );
    assert!(
        mig.events
            .iter()
            .any(|e| matches!(e, Event::ConnectBackend { target: None, .. })),
        "the owner picks the failover's backend"
    );
    assert!(mig.client_events.is_empty(), "the client saw nothing");
    let new = mig.server("db2");
    assert_eq!(new.fe.database(), Some("shop"));
    let replayed = new.statements();
    assert_eq!(
        replayed[1..],
        [
            "SET NAMES 'latin1' COLLATE 'latin1_swedish_ci'",
            "SET SESSION autocommit = 'OFF'",
            "SET SESSION sql_mode = 'ANSI_QUOTES'",
            "SET SESSION time_zone = '+02:00'",
            "SET @`i` = 42, @`d` = 3.14, @`f` = 2.5e0, \
             @`s` = _utf8mb4 X'69742773' COLLATE utf8mb4_general_ci, @`n` = NULL, \
             @`e` = _utf8mb4 X'F09F9880206F6B' COLLATE utf8mb4_unicode_ci, @`b` = _binary X'FF', \
             @`u` = CAST(18446744073709551615 AS UNSIGNED), @`ni` = CAST(NULL AS SIGNED)",
            "PREPARE SELECT 'a'",
            "PREPARE SELECT 'b'",
            "SELECT LAST_INSERT_ID(42)",
        ],
        "every piece of state, the user variables from the snapshot"
    );
    assert_eq!(mig.execute(a), "db2:exec:100");
    assert_eq!(mig.execute(b), "db2:exec:101");
    assert_eq!(mig.session.backend_name(), Some("db2"));
}

#[test]
fn a_planned_move_uses_the_snapshot_instead_of_reading_the_old_backend() {
    let mut mig = logged_in(false);
    mig.query("SET @x = 1");
    let before = mig.server("db1").log.len();
    mig.session.start_migration(mig.now, "db2".into()).unwrap();
    mig.pump();
    assert!(mig.done().is_some(), "{:?}", mig.events);
    let after: Vec<String> = mig.server("db1").statements()[before..].to_vec();
    assert!(after.is_empty(), "nothing read at move time: {after:?}");
}

#[test]
fn a_session_in_a_transaction_is_lost_without_an_err() {
    let mut mig = logged_in(false);
    mig.query("BEGIN");
    mig.client_events.clear();
    let before = mig.client_events.len();
    kill(&mut mig, "db1");
    assert_eq!(
        lost(&mig),
        Some(&LossReason::Pinned(PinReason::Transaction))
    );
    assert!(mig.session.is_closed());
    assert_eq!(
        mig.client_events.len(),
        before,
        "no ERR: the client sees the close"
    );
    assert!(
        !mig.conns.iter().any(|(_, n)| n == "db2"),
        "no rebuild tried"
    );
}

#[test]
fn a_statement_in_flight_is_lost_unless_read_retry_sends_it_again() {
    for read_retry in [false, true] {
        let mut mig = logged_in(read_retry);
        mig.scripts.get_mut("db1").unwrap().hold.push("SELECT slow");
        for s in mig.servers.values_mut() {
            s.script.hold.push("SELECT slow");
        }
        mig.client_events.clear();
        start(&mut mig, b"SELECT slow");
        assert!(mig.client_events.is_empty(), "db1 holds it");
        kill(&mut mig, "db1");
        if read_retry {
            assert_eq!(recovered(&mig), Some(("db1", "db2", true)));
            assert_eq!(mig.answer(), "db2:SELECT slow", "answered once, by db2");
        } else {
            assert_eq!(lost(&mig), Some(&LossReason::InFlight));
            assert!(mig.client_events.is_empty(), "no ERR");
        }
    }
    // A write in flight is never sent again.
    let mut mig = logged_in(true);
    for s in mig.servers.values_mut() {
        s.script.hold.push("UPDATE");
    }
    start(&mut mig, b"UPDATE t SET a = 1");
    kill(&mut mig, "db1");
    assert_eq!(lost(&mig), Some(&LossReason::InFlight));
}

#[test]
fn a_snapshot_that_could_not_be_read_makes_the_state_unknown() {
    let mut mig = logged_in(false);
    for s in mig.servers.values_mut() {
        s.script.fail.push(SNAPSHOT);
    }
    mig.query("SET @a = 1");
    kill(&mut mig, "db1");
    assert_eq!(lost(&mig), Some(&LossReason::StateUnknown));
}

#[test]
fn a_backend_reported_down_fails_idle_sessions_over_and_leaves_busy_ones() {
    let mut mig = logged_in(false);
    mig.query("SET @a = 1");
    mig.session.backend_down(mig.now, "db2");
    mig.pump();
    assert!(recovered(&mig).is_none(), "not its backend");
    mig.session.backend_down(mig.now, "db1");
    mig.pump();
    assert_eq!(recovered(&mig), Some(("db1", "db2", false)));
    assert!(mig.server("db1").closed, "the frozen connection is let go");

    let mut busy = logged_in(false);
    for s in busy.servers.values_mut() {
        s.script.hold.push("SELECT slow");
    }
    start(&mut busy, b"SELECT slow");
    busy.session.backend_down(busy.now, "db1");
    busy.pump();
    assert!(recovered(&busy).is_none() && lost(&busy).is_none());
    assert_eq!(busy.session.backend_name(), Some("db1"), "not cut off");
}

#[test]
fn a_failed_rebuild_loses_the_session() {
    let mut mig = logged_in(false);
    mig.connect.insert("db2".into(), super::Connect::Refuse);
    kill(&mut mig, "db1");
    assert!(matches!(
        lost(&mig),
        Some(LossReason::Rebuild(MigrationFailure::ConnectFailed(_)))
    ));
    assert!(mig.session.is_closed());
}

#[test]
fn tidb_mode_cannot_rebuild_and_says_why() {
    let mut mig = Mig::logged_in(MigrationMode::Tidb);
    kill(&mut mig, "db1");
    let reason = lost(&mig).unwrap();
    assert_eq!(reason, &LossReason::NoReplay);
    assert!(reason
        .to_string()
        .contains("tidb mode needs the old backend"));
}

#[test]
fn a_statement_timeout_gives_up_on_a_silent_backend_and_loses_the_session() {
    let mut config = failover_config(false);
    config.backend.command_timeout = Some(Duration::from_secs(30));
    let mut mig = Mig::new(config);
    mig.login();
    mig.pick = "db2".into();
    for s in mig.servers.values_mut() {
        s.script.hold.push("SELECT slow");
    }
    start(&mut mig, b"SELECT slow");
    mig.advance(Duration::from_secs(29));
    assert!(lost(&mig).is_none(), "not before the timeout");
    mig.advance(Duration::from_secs(1));
    assert_eq!(lost(&mig), Some(&LossReason::InFlight));
    assert!(mig.session.is_closed());
    assert!(
        mig.client_events.is_empty(),
        "no ERR: the client sees the close"
    );
}

#[test]
fn without_a_statement_timeout_a_silent_backend_is_waited_for() {
    let mut mig = logged_in(false);
    for s in mig.servers.values_mut() {
        s.script.hold.push("SELECT slow");
    }
    start(&mut mig, b"SELECT slow");
    mig.advance(Duration::from_secs(24 * 3600));
    assert!(lost(&mig).is_none() && !mig.session.is_closed());
}
