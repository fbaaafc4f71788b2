//! mysql2 (Node.js) through the real proxy program: `tests/clients/node/through_ferry.js` against
//! ferry in front of a real MariaDB, in both auth modes.
//!
//! mysql2 is a pure-JavaScript client with its own protocol code. The script covers prepared
//! statements (`execute`, NULLs, re-executed), multi-statements, LOAD DATA LOCAL from a stream,
//! transactions, an error followed by more use, a 17 MB blob both ways, and the commands no
//! other client test drives through ferry: COM_CHANGE_USER (to a second, read-only account, and
//! with a wrong password) and COM_RESET_CONNECTION.
//!
//! MariaDB Connector/Node.js (npm `mariadb`) pipelines: rounds of 100 commands in flight at once
//! run while the test drains the session's backend, so the replay migration happens with commands
//! queued behind the one running (`tests/clients/node/pipelined.js`).
//!
//! `node_mysql2_multiplexed` runs the mysql2 script with multiplexing on (2 backend connections
//! shared with `proxy_common::multiplexed::Neighbours`).
//!
//! A missing `node` or npm install fails the test with what to run.

mod proxy_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::{driver_tests, require_executable, Driver, MariaDb};
use proxy_common::multiplexed::{multiplexed_for_clients, Neighbours, NEIGHBOURS};
use proxy_common::{
    backend, backend_with_reader, client_json, ferry_over, proxy_over_pair, PASSWORD, READER,
    READER_PASSWORD, REPLAY_NO_REBALANCE, USER,
};
use serde_json::{json, Value as Json};

driver_tests!(
    node_mysql2_passthrough,
    node_mysql2_proxy_auth,
    node_mariadb_pipelined_through_a_drain,
    node_mysql2_multiplexed,
);

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/node")
}

/// `node` and the directory holding the scripts, with their npm packages installed.
fn node_and_dir() -> (std::path::PathBuf, PathBuf) {
    let node = require_executable("node", "nodejs");
    let dir = client_dir();
    for package in ["mysql2", "mariadb"] {
        assert!(
            dir.join("node_modules")
                .join(package)
                .join("package.json")
                .is_file(),
            "{package} is not installed: run `npm ci` in {} (or `bash .ci/run`)",
            dir.display()
        );
    }
    (node, dir)
}

/// Runs the script against 127.0.0.1:`port` and returns the JSON object it prints last (see
/// [`client_json`]).
fn run_node(port: u16) -> Json {
    let (node, dir) = node_and_dir();
    client_json(
        "the mysql2 client",
        Command::new(node)
            .current_dir(&dir)
            .arg("through_ferry.js")
            .arg(port.to_string())
            .args([USER, PASSWORD, READER, READER_PASSWORD]),
    )
}

fn assert_run(r: &Json, db: &MariaDb) {
    assert_eq!(
        r["db"],
        json!(["nd"]),
        "COM_CHANGE_USER with a database: {r}"
    );
    assert_eq!(r["null"], true, "{r}");
    assert_eq!(r["multi"], json!([[[1]], [[2, "two"]]]), "{r}");
    assert_eq!(r["loaded"], 1000, "{r}");
    assert_eq!(r["error"], 1064, "{r}");
    assert_eq!(r["after_error"], 42, "{r}");
    assert_eq!(r["blob_same"], true, "{r}");
    // ids 1..=3, 2000..3000 and 5001 (5000 was rolled back).
    let sum: u64 = 6 + (2000..3000).sum::<u64>() + 5001;
    assert_eq!(r["count"], json!([1004, sum.to_string()]), "{r}");
    // After COM_CHANGE_USER the session is the reader's, with the old user variables gone, and
    // the reader's rights apply.
    assert_eq!(r["changed"], json!(["reader@%", 1, "nd"]), "{r}");
    assert_eq!(
        r["other_denied"], 1142,
        "DROP as the read-only account: {r}"
    );
    assert_eq!(r["still_there"], 1004, "{r}");
    assert_eq!(
        r["reset"],
        json!([1, "reader@%"]),
        "COM_RESET_CONNECTION: {r}"
    );
    assert_eq!(
        r["bad_change"], 1045,
        "COM_CHANGE_USER, wrong password: {r}"
    );
    assert_eq!(db.query_scalar("select count(*) from nd.t"), "1004");
}

fn node_mysql2_passthrough(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = ferry_over(driver, &db, false);
    assert_run(&run_node(ferry.port()), &db);
}

fn node_mysql2_proxy_auth(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = ferry_over(driver, &db, true);
    assert_run(&run_node(ferry.port()), &db);
}

fn node_mysql2_multiplexed(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = multiplexed_for_clients(driver, &db);
    let crowd = Neighbours::start(&ferry, &db, NEIGHBOURS);
    let r = run_node(ferry.port());
    crowd.finish(&ferry);
    assert_run(&r, &db);
}

fn node_mariadb_pipelined_through_a_drain(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    let (node, dir) = node_and_dir();
    // The session lands on db1 (fewest sessions, first listed); the script drains it.
    let r = client_json(
        "the MariaDB Connector/Node.js client",
        Command::new(node)
            .current_dir(&dir)
            .arg("pipelined.js")
            .arg(ferry.port().to_string())
            .args([USER, PASSWORD])
            .arg(ferry.admin_addr().port().to_string())
            .arg("db1"),
    );
    assert_eq!(r["drain_status"], 200, "{r}");
    assert_eq!(r["wrong"], 0, "answers out of order or state lost: {r}");
    assert_eq!(r["servers"], json!([1, 2]), "the session did not move: {r}");
    assert!(r["rounds"].as_u64().unwrap() > 6, "{r}");
}
