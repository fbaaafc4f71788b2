//! Live migration through the real proxy program, for every driver: real MariaDB servers (or the
//! TiDB-style test server), real clients, and the admin endpoint's triggers (`drain`, `undrain`,
//! `migrate`) and reports (`/api/sessions` `pinned`, `/metrics`).
//!
//! - `replay` mode, proxy auth, three MariaDB servers: a session's user variables (typed), session
//!   variables, character set, database, `LAST_INSERT_ID()` and prepared statements survive a
//!   drain and then an admin `migrate`, read back identical, and the statements run under their
//!   old ids;
//! - pins: a transaction waits for COMMIT, a temporary table keeps the session pinned (visible in
//!   `/api/sessions` and `/metrics`) until dropped, undrain cancels a waiting migration;
//! - sysbench `oltp_read_write` (8 threads) while its backends are drained and undrained: zero
//!   errors, and every session ends where it must;
//! - `tidb` mode against two TiDB-style test servers sharing a certificate.

mod proxy_common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::{
    driver_tests, require_executable, run_with_deadline, wait_until, Driver, FerryProcess, MariaDb,
    TidbTestServer, TidbTestServerConfig, TidbUsers, TokenCertificate,
};
use mysql::prelude::Queryable;
use proxy_common::{
    backend, drain, metric, mysql_code, mysql_opts, proxy_over_pair, session, session_backend,
    wait_on, MOVE_TIMEOUT, PASSWORD, REPLAY_NO_REBALANCE, USER,
};
use serde_json::{json, Value as Json};

driver_tests!(
    replay_state_survives_drain_and_migrate,
    transaction_and_temporary_table_pins,
    changed_user_moves_as_that_user,
    migrate_requests_are_checked,
    sysbench_through_drains_and_undrains,
    tidb_mode_moves_sessions_between_test_servers,
);

// ---------------------------------------------------------------- helpers

/// The name of the backend listening on `port`.
fn name_of(backends: &[(&str, &MariaDb)], port: u16) -> String {
    backends
        .iter()
        .find(|(_, db)| db.port() == port)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| panic!("no backend on port {port}"))
}

fn port_of(backends: &[(&str, &MariaDb)], name: &str) -> u16 {
    backends
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, db)| db.port())
        .unwrap_or_else(|| panic!("no backend {name}"))
}

/// A backend with the `migr` database and its table (identical on every server).
fn migration_backend(server_id: u32) -> MariaDb {
    let db = backend(server_id);
    db.sql(
        "create database migr; \
         create table migr.t (id int auto_increment primary key, v varchar(40)) engine=InnoDB",
    );
    db
}

// ---------------------------------------------------------------- replay: state

/// Everything the session set, read with the text protocol.
const STATE_SQL: &str = "select @i, @neg, @d, @f, @s, @n, @big, @@sql_mode, @@time_zone, \
    @@autocommit, @@character_set_client, @@character_set_results, @@collation_connection, \
    database(), last_insert_id(), @@div_precision_increment, @big + 0, HEX(@emoji), \
    COLLATION(@emoji), HEX(@bin), COLLATION(@s)";

fn replay_state_survives_drain_and_migrate(driver: Driver) {
    let (db1, db2, db3) = (
        migration_backend(1),
        migration_backend(2),
        migration_backend(3),
    );
    let backends = [("db1", &db1), ("db2", &db2), ("db3", &db3)];
    // The same password hashes the same on every server (mysql_native_password has no salt).
    let hash = db1.user_password_hash(USER);
    let mut builder = FerryProcess::builder(driver).proxy_user(USER, &hash);
    for (name, db) in backends {
        builder = builder.backend(name, db.addr());
    }
    let ferry = builder.extra_toml(REPLAY_NO_REBALANCE).start();

    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    let id = conn.connection_id();
    let port: u16 = conn.query_first("select @@port").unwrap().unwrap();
    let first = name_of(&backends, port);
    assert_eq!(session_backend(&ferry, id), first);

    // MariaDB 10.11 does not report collation_connection after `SET NAMES … COLLATE`, and its
    // information_schema.USER_VARIABLES is utf8mb3 (4-byte characters and binary bytes read
    // back as '?') and says `INT UNSIGNED`: the replay reads what it needs on the old backend.
    conn.query_drop("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci")
        .unwrap();
    conn.query_drop("USE migr").unwrap();
    conn.query_drop(
        "SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES,NO_ZERO_DATE', \
         time_zone = '+05:30', div_precision_increment = 9",
    )
    .unwrap();
    conn.query_drop(
        "SET @i = 42, @neg = -7, @d = 3.14159, @f = 1.5e300, @s = 'zoë 日本語 ½ \\'q\\'', \
         @n = NULL, @big = 18446744073709551615, @emoji = 'ok 😀🚀 fin' COLLATE utf8mb4_bin, \
         @bin = X'00FF80', @ni = CAST(NULL AS SIGNED)",
    )
    .unwrap();
    conn.query_drop("insert into t (v) values ('before')")
        .unwrap();
    let insert = conn.prep("insert into t (v) values (?)").unwrap();
    let echo = conn.prep("select ?, @s, @@port").unwrap();
    let typed = conn
        .prep("select @i, @neg, @d, @f, @s, @n, @big, @emoji, @bin, @ni")
        .unwrap();
    // autocommit=0 opens no transaction until a statement touches a table: still movable.
    conn.query_drop("SET autocommit = 0").unwrap();

    // As SQL literals: a difference shows whole in the failure message.
    let state = |conn: &mut mysql::Conn| -> Vec<String> {
        let row: mysql::Row = conn.query_first(STATE_SQL).unwrap().unwrap();
        row.unwrap().iter().map(|v| v.as_sql(false)).collect()
    };
    // Binary protocol: the column types say the variables kept their types.
    let types = |conn: &mut mysql::Conn| -> (Vec<mysql::consts::ColumnType>, Vec<mysql::Value>) {
        let row: mysql::Row = conn.exec_first(&typed, ()).unwrap().unwrap();
        let types = row.columns_ref().iter().map(|c| c.column_type()).collect();
        (types, row.unwrap())
    };
    let before = state(&mut conn);
    let typed_before = types(&mut conn);
    assert_eq!(before[4], r"'zoë 日本語 ½ \'q\''");
    assert_eq!(before[5], "NULL");
    assert_eq!(before[9], "'0'");
    assert_eq!(before[12], "'utf8mb4_unicode_ci'");
    assert_eq!(
        before[16], "'18446744073709551615'",
        "@big + 0 is an unsigned integer"
    );
    assert_eq!(before[17], "'6F6B20F09F9880F09F9A802066696E'");
    assert_eq!(before[18], "'utf8mb4_bin'");
    assert_eq!(before[19], "'00FF80'");
    assert_eq!(
        before[20], "'utf8mb4_unicode_ci'",
        "@s has the connection's collation"
    );
    assert_eq!(session(&ferry, id)["pinned"], Json::Null);

    // Drain: the idle session moves at once, to one of the two others.
    drain(&ferry, &first, true);
    let backends_json = ferry.api("/api/backends");
    let drained = backends_json
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == json!(first))
        .unwrap();
    assert_eq!(drained["draining"], true, "{backends_json}");
    assert!(
        wait_until(MOVE_TIMEOUT, || session_backend(&ferry, id) != first),
        "the session did not leave {first}: {}",
        ferry.api("/api/sessions")
    );
    let second = session_backend(&ferry, id);
    let port: u16 = conn.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, port_of(&backends, &second), "@@port after the drain");
    assert_eq!(state(&mut conn), before, "state after the drain");
    assert_eq!(types(&mut conn), typed_before, "typed user variables");
    // The statements prepared on the first backend run under their old ids.
    let row: (i64, String, u16) = conn.exec_first(&echo, (7,)).unwrap().unwrap();
    assert_eq!(row, (7, "zoë 日本語 ½ 'q'".to_owned(), port));
    conn.exec_drop(&insert, ("after drain",)).unwrap();
    // autocommit=0: that INSERT opened a transaction, which pins the session. Workers publish
    // a pin change after writing the reply, so /api/sessions may lag the client by a moment.
    assert!(
        wait_until(MOVE_TIMEOUT, || session(&ferry, id)["pinned"]
            == "transaction"),
        "{}",
        session(&ferry, id)
    );
    conn.query_drop("COMMIT").unwrap();
    assert!(
        wait_until(MOVE_TIMEOUT, || session(&ferry, id)["pinned"] == Json::Null),
        "{}",
        session(&ferry, id)
    );
    let second_db = backends.iter().find(|(n, _)| *n == second).unwrap().1;
    assert_eq!(
        second_db.sql("select v from migr.t order by id"),
        "after drain\n"
    );
    let first_db = backends.iter().find(|(n, _)| *n == first).unwrap().1;
    assert_eq!(first_db.sql("select v from migr.t order by id"), "before\n");
    // LAST_INSERT_ID() is now the new backend's own.
    let last: u64 = conn
        .query_first("select last_insert_id()")
        .unwrap()
        .unwrap();
    assert_eq!(last, 1);

    // An admin migrate to the third backend (the drained one is refused).
    let third = ["db1", "db2", "db3"]
        .into_iter()
        .find(|n| *n != first && *n != second)
        .unwrap();
    let (status, body) = ferry.http_post(
        &format!("/api/sessions/{id}/migrate"),
        &format!(r#"{{"to": "{first}"}}"#),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("draining"), "{body}");
    let (status, body) = ferry.http_post(
        &format!("/api/sessions/{id}/migrate"),
        &format!(r#"{{"to": "{third}"}}"#),
    );
    assert_eq!(status, 202, "{body}");
    wait_on(&ferry, id, third);
    let port: u16 = conn.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, port_of(&backends, third));
    let mut expected = before.clone();
    expected[14] = "'1'".to_owned();
    assert_eq!(state(&mut conn), expected, "state after the second move");
    assert_eq!(types(&mut conn), typed_before);
    let row: (i64, String, u16) = conn.exec_first(&echo, (8,)).unwrap().unwrap();
    assert_eq!(row.0, 8);
    assert_eq!(row.2, port);

    assert_eq!(metric(&ferry, "ferry_migrations_succeeded_total"), 2.0);
    assert_eq!(metric(&ferry, "ferry_migrations_started_total"), 2.0);
    assert_eq!(metric(&ferry, "ferry_migration_pause_seconds_count"), 2.0);
    drop(conn);
    assert!(wait_until(MOVE_TIMEOUT, || ferry
        .api("/api/backends")
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["sessions"] == 0)));
}

// ---------------------------------------------------------------- replay: pins

fn transaction_and_temporary_table_pins(driver: Driver) {
    let (db1, db2) = (migration_backend(1), migration_backend(2));
    let backends = [("db1", &db1), ("db2", &db2)];
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    // Both sessions on db1: db2 takes no new sessions while draining.
    drain(&ferry, "db2", true);
    let opts = mysql_opts(&ferry, USER, PASSWORD).db_name(Some("migr"));
    let mut tx = mysql::Conn::new(opts.clone()).expect("connect");
    let mut tmp = mysql::Conn::new(opts).expect("connect");
    drain(&ferry, "db2", false);
    let (tx_id, tmp_id) = (tx.connection_id(), tmp.connection_id());
    assert_eq!(session_backend(&ferry, tx_id), "db1");
    assert_eq!(session_backend(&ferry, tmp_id), "db1");

    tx.query_drop("BEGIN").unwrap();
    tx.query_drop("insert into t (v) values ('in transaction')")
        .unwrap();
    tmp.query_drop("CREATE TEMPORARY TABLE scratch (x int)")
        .unwrap();
    tmp.query_drop("insert into scratch values (1)").unwrap();
    // Pins are published after the reply is written: wait for /api/sessions to catch up.
    assert!(
        wait_until(MOVE_TIMEOUT, || session(&ferry, tx_id)["pinned"]
            == "transaction"
            && session(&ferry, tmp_id)["pinned"] == "temporary_tables"),
        "{}",
        ferry.api("/api/sessions")
    );
    assert_eq!(
        metric(&ferry, "ferry_pinned_sessions{reason=\"transaction\"}"),
        1.0
    );

    drain(&ferry, "db1", true);
    // Pinned sessions wait: still on db1 after several balancer ticks, and still usable.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(session_backend(&ferry, tx_id), "db1");
    assert_eq!(session_backend(&ferry, tmp_id), "db1");
    assert_eq!(session(&ferry, tmp_id)["pinned"], "temporary_tables");
    let n: u32 = tx.query_first("select count(*) from t").unwrap().unwrap();
    assert_eq!(n, 1, "the transaction sees its own row");

    // COMMIT ends the transaction: the waiting migration runs right after it.
    tx.query_drop("COMMIT").unwrap();
    wait_on(&ferry, tx_id, "db2");
    let port: u16 = tx.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, db2.port());
    assert_eq!(db1.sql("select v from migr.t"), "in transaction\n");
    assert_eq!(db2.sql("select count(*) from migr.t"), "0\n");

    // Undrain cancels the temporary-table session's waiting migration.
    let cancelled = metric(
        &ferry,
        "ferry_migrations_failed_total{reason=\"cancelled\"}",
    );
    drain(&ferry, "db1", false);
    assert!(
        wait_until(MOVE_TIMEOUT, || metric(
            &ferry,
            "ferry_migrations_failed_total{reason=\"cancelled\"}"
        ) == cancelled + 1.0),
        "{}",
        ferry.http_get("/metrics").1
    );
    // Drained again, then the table dropped: the pin lifts and the session moves.
    drain(&ferry, "db1", true);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(session_backend(&ferry, tmp_id), "db1");
    let x: u32 = tmp.query_first("select x from scratch").unwrap().unwrap();
    assert_eq!(x, 1);
    tmp.query_drop("DROP TEMPORARY TABLE scratch").unwrap();
    assert!(
        wait_until(MOVE_TIMEOUT, || session(&ferry, tmp_id)["pinned"]
            == Json::Null
            || session_backend(&ferry, tmp_id) == "db2"),
        "{}",
        session(&ferry, tmp_id)
    );
    wait_on(&ferry, tmp_id, "db2");
    let port: u16 = tmp.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, port_of(&backends, "db2"));
    assert_eq!(
        metric(&ferry, "ferry_pinned_sessions{reason=\"temporary_tables\"}"),
        0.0
    );
    assert!(metric(&ferry, "ferry_migrations_succeeded_total") >= 2.0);
}

// ---------------------------------------------------------------- replay: COM_CHANGE_USER

/// Under proxy auth ferry verifies a COM_CHANGE_USER against its table and keeps the new user's
/// credential: the session then moves as that user, with that user's rights, and
/// `/api/sessions` names it. A user missing from ferry's table is refused even though the
/// backend knows it, and the session stays the old user's.
fn changed_user_moves_as_that_user(driver: Driver) {
    let (db1, db2) = (migration_backend(1), migration_backend(2));
    for db in [&db1, &db2] {
        db.sql(
            "CREATE USER reader@'%' IDENTIFIED VIA mysql_native_password \
             USING PASSWORD('r3ad-only'); GRANT SELECT ON *.* TO reader@'%'; \
             CREATE USER outsider@'%' IDENTIFIED VIA mysql_native_password \
             USING PASSWORD('0uts1de'); GRANT ALL ON *.* TO outsider@'%'",
        );
    }
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .proxy_user("reader", &db1.user_password_hash("reader"))
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    let id = conn.connection_id();
    assert_eq!(session_backend(&ferry, id), "db1");

    // Not in ferry's table: refused, though db1 has the account; the session goes on as app.
    let change_to = |user: &str, pass: &str| {
        mysql::ChangeUserOpts::default()
            .with_user(Some(user.into()))
            .with_pass(Some(pass.into()))
            .with_db_name(Some("migr".into()))
    };
    let refused = conn
        .change_user(change_to("outsider", "0uts1de"))
        .unwrap_err();
    assert_eq!(mysql_code(&refused), Some(1045), "{refused}");
    let user: String = conn.query_first("select current_user()").unwrap().unwrap();
    assert_eq!(user, "app@%", "after the refused change");
    // A wrong password for a user in the table: refused too.
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    let id = conn.connection_id();
    let refused = conn.change_user(change_to("reader", "wrong")).unwrap_err();
    assert_eq!(mysql_code(&refused), Some(1045), "{refused}");

    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    let id2 = conn.connection_id();
    assert_ne!(id, id2);
    let id = id2;
    conn.change_user(change_to("reader", "r3ad-only"))
        .expect("COM_CHANGE_USER to reader");
    conn.query_drop("SET @v = 'kept', time_zone = '+03:00'")
        .unwrap();
    let echo = conn
        .prep("select ?, @v, @@time_zone, current_user(), database()")
        .unwrap();
    assert!(
        wait_until(MOVE_TIMEOUT, || session(&ferry, id)["user"] == "reader"),
        "{}",
        session(&ferry, id)
    );
    assert_eq!(
        session(&ferry, id)["pinned"],
        Json::Null,
        "{}",
        session(&ferry, id)
    );

    let first = session_backend(&ferry, id);
    let second = if first == "db1" { "db2" } else { "db1" };
    drain(&ferry, &first, true);
    wait_on(&ferry, id, second);
    let port: u16 = conn.query_first("select @@port").unwrap().unwrap();
    let second_db = if second == "db1" { &db1 } else { &db2 };
    assert_eq!(port, second_db.port());
    let row: (String, String, String, String, String) =
        conn.exec_first(&echo, ("x",)).unwrap().unwrap();
    assert_eq!(
        row,
        (
            "x".into(),
            "kept".into(),
            "+03:00".into(),
            "reader@%".into(),
            "migr".into()
        )
    );
    // The reader's rights, not the original user's, on the new backend.
    let denied = conn
        .query_drop("insert into t (v) values ('no')")
        .unwrap_err();
    assert_eq!(mysql_code(&denied), Some(1142), "{denied}");
    conn.reset().expect("COM_RESET_CONNECTION after the move");
    let user: String = conn.query_first("select current_user()").unwrap().unwrap();
    assert_eq!(user, "reader@%");
}

// ---------------------------------------------------------------- admin refusals

fn migrate_requests_are_checked(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    // Migration off (passthrough auth's default): the session answers 409, never moves.
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db1.addr())
        .backend("db2", db2.addr())
        .start();
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    let id = conn.connection_id();
    let on = session_backend(&ferry, id);
    let other = if on == "db1" { "db2" } else { "db1" };
    let path = format!("/api/sessions/{id}/migrate");
    let (status, body) = ferry.http_post(&path, &format!(r#"{{"to": "{other}"}}"#));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("disabled"), "{body}");
    let (status, _) = ferry.http_post(&path, r#"{"to": "nope"}"#);
    assert_eq!(status, 404);
    let (status, _) = ferry.http_post("/api/sessions/999999/migrate", r#"{"to": "db1"}"#);
    assert_eq!(status, 404);
    let (status, _) = ferry.http_post(&path, r#"{"where": "db1"}"#);
    assert_eq!(status, 400);
    // A drain without migration only stops new sessions.
    drain(&ferry, &on, true);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(session_backend(&ferry, id), on);
    let one: u32 = conn.query_first("select 1").unwrap().unwrap();
    assert_eq!(one, 1);
    let err = mysql::Conn::new(mysql_opts(&ferry, USER, "wrong")).expect_err("wrong password");
    assert_eq!(mysql_code(&err), Some(1045));
}

// ---------------------------------------------------------------- sysbench

/// What sysbench printed, and the deadlocks the servers counted over the run.
#[derive(Debug)]
struct SysbenchSummary {
    transactions: u64,
    ignored_errors: u64,
    reconnects: u64,
}

fn parse_sysbench(stdout: &str) -> SysbenchSummary {
    let count = |label: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` in sysbench's output:\n{stdout}"))
    };
    SysbenchSummary {
        transactions: count("transactions:"),
        ignored_errors: count("ignored errors:"),
        reconnects: count("reconnects:"),
    }
}

fn innodb_deadlocks(db: &MariaDb) -> u64 {
    db.query_scalar(
        "select variable_value from information_schema.global_status \
         where variable_name = 'INNODB_DEADLOCKS'",
    )
    .parse()
    .expect("Innodb_deadlocks is a number")
}

/// The backends of the sessions listed now.
fn session_backends(ferry: &FerryProcess) -> Vec<String> {
    ferry
        .api("/api/sessions")
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["backend"].as_str().unwrap_or("-").to_owned())
        .collect()
}

/// sysbench `oltp_read_write`, 8 threads for 24 s through ferry, while db1 is drained (all
/// sessions to db2), undrained (the balancer evens them out again), then db2 is drained (all to
/// db1). Zero errors: as in `proxy_clients::sysbench_oltp_read_write` (read its comment), every
/// "ignored error" sysbench reports must be a deadlock one of the servers counted; a direct run
/// on these tables has a few of those, and a migration must add none, nor any other error.
fn sysbench_through_drains_and_undrains(driver: Driver) {
    let sysbench = require_executable("sysbench", "sysbench");
    let (db1, db2) = (backend(1), backend(2));
    let common = |port: u16| {
        vec![
            "oltp_read_write".to_owned(),
            "--db-driver=mysql".to_owned(),
            "--mysql-host=127.0.0.1".to_owned(),
            format!("--mysql-port={port}"),
            format!("--mysql-user={USER}"),
            format!("--mysql-password={PASSWORD}"),
            "--mysql-db=sbtest".to_owned(),
            "--tables=4".to_owned(),
            "--table-size=1000".to_owned(),
        ]
    };
    // The same tables on both servers, prepared directly.
    for db in [&db1, &db2] {
        db.create_database("sbtest");
        let out = run_with_deadline(
            Command::new(&sysbench)
                .args(common(db.port()))
                .args(["--threads=4", "prepare"]),
            Duration::from_secs(120),
        )
        .expect("sysbench prepare ran");
        assert!(out.status.success(), "sysbench prepare: {out:?}");
    }
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .extra_toml("[migration]\nmode = \"replay\"\nrebalance-interval = \"500ms\"\n")
        .start();
    let deadlocks_before = innodb_deadlocks(&db1) + innodb_deadlocks(&db2);
    let mut run = Command::new(&sysbench);
    run.args(common(ferry.port()))
        .args(["--threads=8", "--time=24", "--report-interval=0", "run"]);
    let runner = std::thread::spawn(move || run_with_deadline(&mut run, Duration::from_secs(90)));

    let all_on = |backend: &str| {
        let list = session_backends(&ferry);
        list.len() == 8 && list.iter().all(|b| b == backend)
    };
    let check = |ok: bool, what: &str| -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: {}", ferry.api("/api/sessions")))
        }
    };
    // The phases; a failure is reported after sysbench's own output is in.
    let phases = || -> Result<f64, String> {
        let appeared = wait_until(Duration::from_secs(10), || {
            session_backends(&ferry).len() == 8
        });
        check(appeared, "sysbench's 8 sessions did not appear")?;
        let initial = session_backends(&ferry);
        let on_db1 = initial.iter().filter(|b| *b == "db1").count();
        check(on_db1 == 4, "new sessions are not spread evenly")?;
        std::thread::sleep(Duration::from_secs(2));
        let t0 = Instant::now();
        drain(&ferry, "db1", true);
        check(
            wait_until(Duration::from_secs(6), || all_on("db2")),
            "not all on db2 after draining db1",
        )?;
        eprintln!("drain db1: every session on db2 after {:?}", t0.elapsed());
        std::thread::sleep(Duration::from_secs(2));
        let t0 = Instant::now();
        drain(&ferry, "db1", false);
        let even = || {
            let list = session_backends(&ferry);
            list.iter().filter(|b| *b == "db1").count() == 4 && list.len() == 8
        };
        check(
            wait_until(Duration::from_secs(6), even),
            "undrain did not rebalance",
        )?;
        eprintln!("undrain db1: 4 + 4 after {:?}", t0.elapsed());
        std::thread::sleep(Duration::from_secs(2));
        let t0 = Instant::now();
        drain(&ferry, "db2", true);
        check(
            wait_until(Duration::from_secs(6), || all_on("db1")),
            "not all on db1 after draining db2",
        )?;
        eprintln!("drain db2: every session on db1 after {:?}", t0.elapsed());
        // Still there later (db2 drains: the balancer must not move any back).
        std::thread::sleep(Duration::from_secs(1));
        check(all_on("db1"), "sessions left db1")?;
        Ok(metric(
            &ferry,
            "ferry_pinned_sessions{reason=\"unattributed_state_change\"}",
        ))
    };
    let phases = phases();
    let out = runner
        .join()
        .expect("runner thread")
        .expect("sysbench run finished in time");
    let deadlocks = innodb_deadlocks(&db1) + innodb_deadlocks(&db2) - deadlocks_before;
    let pinned_unattributed =
        phases.unwrap_or_else(|e| panic!("{e}\nsysbench: {out:?}\nferry:\n{}", ferry.log_tail(80)));
    assert!(
        out.status.success() && !out.stdout.contains("FATAL") && !out.stderr.contains("FATAL"),
        "sysbench run failed: {out:?}\n{}",
        ferry.log_tail(40)
    );
    let s = parse_sysbench(&out.stdout);
    let succeeded = metric(&ferry, "ferry_migrations_succeeded_total");
    let metrics = ferry.http_get("/metrics").1;
    let failed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("ferry_migrations_failed_total{"))
        .collect();
    eprintln!(
        "sysbench through ferry ({driver}) with drains: {s:?}, server deadlocks: {deadlocks}, \
         migrations succeeded: {succeeded}, failed: {failed:?}"
    );
    assert_eq!(s.reconnects, 0, "{}", out.stdout);
    assert_eq!(
        s.ignored_errors, deadlocks,
        "every ignored error must be a deadlock a server reported:\n{}",
        out.stdout
    );
    assert!(s.transactions >= 100, "{}", out.stdout);
    // 4 away from db1, 4 back to even the counts, 4 away from db2; none failed.
    assert_eq!(succeeded, 12.0, "{metrics}");
    assert!(failed.is_empty(), "{metrics}");
    assert_eq!(pinned_unattributed, 0.0, "{metrics}");
}

// ---------------------------------------------------------------- tidb mode

fn tidb_mode_moves_sessions_between_test_servers(driver: Driver) {
    let certs = Arc::new(TokenCertificate::generate().cert_store());
    let users: TidbUsers = [("app".to_owned(), "pw".to_owned())].into_iter().collect();
    let users = Arc::new(users);
    let a = TidbTestServer::start(TidbTestServerConfig::new(11, users.clone(), certs.clone()));
    let b = TidbTestServer::start(TidbTestServerConfig::new(12, users, certs));
    let ferry = FerryProcess::builder(driver)
        .backend("a", a.addr())
        .backend("b", b.addr())
        .extra_toml("[migration]\nmode = \"tidb\"\nrebalance-max-moves = 0\n")
        .start();
    // Passthrough auth: the test server checks the password (a wrong one is its 1045).
    let err = mysql::Conn::new(mysql_opts(&ferry, "app", "wrong")).expect_err("wrong password");
    assert_eq!(mysql_code(&err), Some(1045), "{err}");
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, "app", "pw")).expect("connect");
    let id = conn.connection_id();
    let server_id: u32 = conn.query_first("SELECT @@server_id").unwrap().unwrap();
    let (first, second, second_id) = match server_id {
        11 => ("a", "b", 12),
        12 => ("b", "a", 11),
        other => panic!("server id {other}"),
    };
    assert_eq!(session_backend(&ferry, id), first);
    conn.query_drop("USE db1").unwrap();
    conn.query_drop("SET @a = 'hello', @n = 7").unwrap();
    conn.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .unwrap();
    let echo = conn.prep("SELECT ?").unwrap();
    let pair = conn.prep("SELECT ?, @a AS a").unwrap();
    let state_sql = "SELECT @a, @n, @@sql_mode, DATABASE()";
    let before: Vec<mysql::Value> = conn
        .query_first::<mysql::Row, _>(state_sql)
        .unwrap()
        .unwrap()
        .unwrap();

    drain(&ferry, first, true);
    wait_on(&ferry, id, second);
    let server_id: u32 = conn.query_first("SELECT @@server_id").unwrap().unwrap();
    assert_eq!(server_id, second_id, "@@server_id after the drain");
    let after: Vec<mysql::Value> = conn
        .query_first::<mysql::Row, _>(state_sql)
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(after, before);
    let got: Option<i64> = conn.exec_first(&echo, (42,)).unwrap();
    assert_eq!(got, Some(42), "old statement id on the new server");
    let got: Option<(String, String)> = conn.exec_first(&pair, ("p",)).unwrap();
    assert_eq!(got, Some(("p".into(), "hello".into())));
    assert_eq!(metric(&ferry, "ferry_migrations_succeeded_total"), 1.0);
    assert!(a.stats().token_logins + b.stats().token_logins >= 1);
}
