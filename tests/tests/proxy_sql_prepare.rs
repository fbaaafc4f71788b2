//! SQL-level prepared statements (`PREPARE name FROM …`, `EXECUTE`, `DEALLOCATE PREPARE`) through
//! a `replay` migration, for every driver: proxy auth, two MariaDB servers, a drain.
//!
//! - statements prepared from literals (quotes, backslashes, non-ASCII) move with the session and
//!   answer from the new backend, `EXECUTE … USING @v` included; a deallocated one stays gone
//!   (MariaDB's ERROR 1243); none of it pins;
//! - a statement prepared from a variable (text unknown to ferry) pins the session
//!   (`sql_prepare_unknown_text` in `/api/sessions` and `/metrics`) until it is deallocated.

mod proxy_common;

use std::time::Duration;

use ferry_tests::{driver_tests, wait_until, Driver};
use mysql::prelude::Queryable;
use proxy_common::{
    backend, drain, metric, mysql_code, mysql_opts, proxy_over_pair, session, session_backend,
    wait_on, MOVE_TIMEOUT, PASSWORD, REPLAY_NO_REBALANCE, USER,
};
use serde_json::Value as Json;

driver_tests!(sql_prepared_statements_move_with_the_session,);

/// What `greet` answers for `@v = 'zoë'`.
const GREETING: &str = r#"zoë ½ 'q' "d" \ it's"#;

fn sql_prepared_statements_move_with_the_session(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    // Both sessions on db1: db2 takes no new sessions while draining.
    drain(&ferry, "db2", true);
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    let mut dynamic = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    drain(&ferry, "db2", false);
    let (id, dynamic_id) = (conn.connection_id(), dynamic.connection_id());
    assert_eq!(session_backend(&ferry, id), "db1");
    assert_eq!(session_backend(&ferry, dynamic_id), "db1");

    // The prepared text: SELECT CONCAT(?, ' ½ \'q\' "d" \\ it''s'), @@port
    conn.query_drop("SET NAMES utf8mb4").unwrap();
    conn.query_drop(
        r#"PREPARE greet FROM 'SELECT CONCAT(?, '' ½ \\''q\\'' "d" \\\\ it''''s''), @@port'"#,
    )
    .unwrap();
    conn.query_drop("SET @v = 'zoë'").unwrap();
    conn.query_drop("PREPARE Port FROM \"SELECT @@port\"")
        .unwrap();
    conn.query_drop("PREPARE setx FROM 'SET @x = ?'").unwrap();
    conn.query_drop("EXECUTE setx USING 5").unwrap();
    conn.query_drop("PREPARE gone FROM 'SELECT 1'").unwrap();
    conn.query_drop("DEALLOCATE PREPARE gone").unwrap();
    let greet = |conn: &mut mysql::Conn| -> (String, u16) {
        conn.query_first("EXECUTE greet USING @v").unwrap().unwrap()
    };
    assert_eq!(greet(&mut conn), (GREETING.to_owned(), db1.port()));
    let port: u16 = conn.query_first("EXECUTE port").unwrap().unwrap();
    assert_eq!(port, db1.port());

    dynamic.query_drop("SET @q = 'SELECT @@port'").unwrap();
    dynamic.query_drop("PREPARE dyn FROM @q").unwrap();
    let port: u16 = dynamic.query_first("EXECUTE dyn").unwrap().unwrap();
    assert_eq!(port, db1.port());
    // Pins are published after the reply is written: wait for /api/sessions to catch up.
    assert!(
        wait_until(MOVE_TIMEOUT, || session(&ferry, dynamic_id)["pinned"]
            == "sql_prepare_unknown_text"),
        "{}",
        ferry.api("/api/sessions")
    );
    assert_eq!(session(&ferry, id)["pinned"], Json::Null);
    assert_eq!(
        metric(
            &ferry,
            "ferry_pinned_sessions{reason=\"sql_prepare_unknown_text\"}"
        ),
        1.0
    );

    // Drain db1: the literal statements move, the one from a variable waits.
    drain(&ferry, "db1", true);
    wait_on(&ferry, id, "db2");
    assert_eq!(greet(&mut conn), (GREETING.to_owned(), db2.port()));
    let port: u16 = conn.query_first("EXECUTE PORT").unwrap().unwrap();
    assert_eq!(port, db2.port());
    conn.query_drop("EXECUTE setx USING 6").unwrap();
    let x: u32 = conn.query_first("SELECT @x").unwrap().unwrap();
    assert_eq!(x, 6);
    let gone = conn.query_drop("EXECUTE gone").unwrap_err();
    assert_eq!(mysql_code(&gone), Some(1243), "{gone}");
    assert_eq!(session(&ferry, id)["pinned"], Json::Null);

    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(session_backend(&ferry, dynamic_id), "db1");
    let port: u16 = dynamic.query_first("EXECUTE dyn").unwrap().unwrap();
    assert_eq!(port, db1.port(), "still on db1");
    dynamic.query_drop("DEALLOCATE PREPARE dyn").unwrap();
    wait_on(&ferry, dynamic_id, "db2");
    let port: u16 = dynamic.query_first("SELECT @@port").unwrap().unwrap();
    assert_eq!(port, db2.port());
    assert_eq!(session(&ferry, dynamic_id)["pinned"], Json::Null);
    let dropped = dynamic.query_drop("EXECUTE dyn").unwrap_err();
    assert_eq!(mysql_code(&dropped), Some(1243), "{dropped}");
    assert_eq!(metric(&ferry, "ferry_migrations_succeeded_total"), 2.0);
}
