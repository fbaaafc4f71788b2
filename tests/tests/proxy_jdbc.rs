//! JDBC through the real proxy program: MariaDB Connector/J (Debian's `libmariadb-java`) runs
//! `tests/clients/JdbcThroughFerry.java` against ferry in front of real MariaDB servers.
//!
//! Connector/J is the client that pipelines most: it sends its setup queries back to back, and a
//! whole batch before reading any answer. The program covers server-side prepared statements
//! with NULLs and a stream parameter (COM_STMT_SEND_LONG_DATA), batches, multi-statements, LOAD
//! DATA LOCAL from a stream, transactions, an error followed by more use, COM_INIT_DB, a 17 MB
//! blob both ways and COM_RESET_CONNECTION, in plain text and over TLS (the JVM's own TLS stack);
//! in replay mode it then drains its backend and checks that the session moved with its
//! variables and its prepared statement.
//!
//! `jdbc_multiplexed` runs the program with multiplexing on (2 backend connections shared with
//! `proxy_common::multiplexed::Neighbours`).
//!
//! A missing `java` or Connector/J jar fails the test with the package to install.

mod proxy_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::{driver_tests, require_executable, Driver, FerryProcess};
use proxy_common::multiplexed::{multiplexed_for_clients, Neighbours, NEIGHBOURS};
use proxy_common::{backend, client_json, proxy_over_pair, PASSWORD, REPLAY_NO_REBALANCE, USER};
use serde_json::Value as Json;

driver_tests!(
    jdbc_passthrough,
    jdbc_tls_required,
    jdbc_replay_migration,
    jdbc_multiplexed,
);

/// Where Debian's `libmariadb-java` puts Connector/J.
const CONNECTOR_J: &str = "/usr/share/java/mariadb-java-client.jar";

fn connector_j() -> PathBuf {
    let jar = PathBuf::from(CONNECTOR_J);
    assert!(
        jar.is_file(),
        "{CONNECTOR_J} is missing; this test needs MariaDB Connector/J: \
         apt-get install libmariadb-java (or `bash .ci/run`)"
    );
    jar
}

/// Runs the JDBC program with `args` (a JDK runs the single source file directly) and returns the
/// JSON object it prints last (see [`client_json`]).
fn run_jdbc(args: &[String]) -> Json {
    run_jdbc_with(&[], args)
}

/// [`run_jdbc`] with JVM options (`-Dferry.ca=...` for TLS).
fn run_jdbc_with(jvm: &[String], args: &[String]) -> Json {
    // The source launcher needs the JDK's compiler: a JRE alone cannot run a .java file.
    let java = require_executable("java", "default-jdk-headless");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/JdbcThroughFerry.java");
    client_json(
        "the JDBC client",
        Command::new(java)
            .args(jvm)
            .arg("-cp")
            .arg(connector_j())
            .arg(source)
            .args(args),
    )
}

/// What every run must have seen before any migration: ids 1..=4 (prepared; 4 with a stream
/// parameter, sent as COM_STMT_SEND_LONG_DATA), 10..510 (batch),
/// 1000..1100 (text batch), 2000..3000 (LOAD DATA) and 5001 (the committed one; 5000 was rolled
/// back).
fn assert_basics(r: &Json) {
    assert_eq!(r["db"], "mysql", "COM_INIT_DB: {r}");
    assert_eq!(r["batch"], 500, "{r}");
    assert_eq!(r["long_data_same"], true, "{r}");
    assert_eq!(r["text_batch"], 100, "{r}");
    assert_eq!(r["null"], true, "{r}");
    assert_eq!(r["multi"], "1,two", "{r}");
    assert_eq!(r["loaded"], 1000, "{r}");
    assert_eq!(r["error"], 1064, "{r}");
    assert_eq!(r["after_error"], 42, "{r}");
    assert_eq!(r["blob_same"], true, "{r}");
    let sum: u64 =
        10 + (10..510).sum::<u64>() + (1000..1100).sum::<u64>() + (2000..3000).sum::<u64>() + 5001;
    assert_eq!(r["count"], format!("1605/{sum}"), "{r}");
    // Connector/J 2.7 keeps user variables over its reset (it re-runs its own setup); the
    // point is that the connection still answers, in the database it had.
    assert_eq!(r["reset"], "false/jd", "{r}");
}

fn jdbc_passthrough(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .start();
    let r = run_jdbc(&[ferry.port().to_string(), USER.into(), PASSWORD.into()]);
    assert_basics(&r);
    assert_eq!(db.query_scalar("select count(*) from jd.t"), "1605");
    let long_data = db.query_scalar(
        "select variable_value from information_schema.global_status \
         where variable_name = 'COM_STMT_SEND_LONG_DATA'",
    );
    assert_ne!(
        long_data, "0",
        "Connector/J sent no long data: the test lost its point"
    );
}

fn jdbc_multiplexed(driver: Driver) {
    let db = backend(1);
    let ferry = multiplexed_for_clients(driver, &db);
    let crowd = Neighbours::start(&ferry, &db, NEIGHBOURS);
    let r = run_jdbc(&[ferry.port().to_string(), USER.into(), PASSWORD.into()]);
    crowd.finish(&ferry);
    assert_basics(&r);
    assert_eq!(db.query_scalar("select count(*) from jd.t"), "1605");
}

/// TLS from Connector/J (the JVM's own TLS stack) to ferry, which requires it and whose
/// certificate the client checks; the whole scenario, 17 MB blob included, runs encrypted.
fn jdbc_tls_required(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .tls(true)
        .start();
    let ca = ferry.cert_path().expect("TLS configured").display();
    let r = run_jdbc_with(
        &[format!("-Dferry.ca={ca}")],
        &[ferry.port().to_string(), USER.into(), PASSWORD.into()],
    );
    assert_basics(&r);
    assert_eq!(db.query_scalar("select count(*) from jd.t"), "1605");
}

fn jdbc_replay_migration(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    // The session lands on the backend with fewer sessions: db1 on an empty proxy. Its database
    // must exist on db2 too for the move (replay rebuilds the session, not the data).
    db2.sql(
        "create database jd; create table jd.t (id int primary key, v varchar(20), b longblob)",
    );
    let r = run_jdbc(&[
        ferry.port().to_string(),
        USER.into(),
        PASSWORD.into(),
        ferry.admin_addr().port().to_string(),
        "db1".into(),
    ]);
    assert_basics(&r);
    assert_eq!(r["server_before"], 1, "{r}");
    assert_eq!(r["drain_status"], 200, "{r}");
    assert_eq!(r["server_after"], 2, "the session did not move: {r}");
    assert_eq!(r["state_after"], "moved=yes|+05:00|ANSI_QUOTES|jd", "{r}");
    assert_eq!(r["batch_after"], 100, "{r}");
    assert_eq!(db2.query_scalar("select count(*) from jd.t"), "100");
    assert_eq!(db1.query_scalar("select count(*) from jd.t"), "1605");
}
