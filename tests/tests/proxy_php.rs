//! PHP through the real proxy program: `tests/clients/php/through_ferry.php` (mysqli and PDO over
//! mysqlnd, PHP's own protocol implementation) against ferry in front of a real MariaDB, in both
//! auth modes.
//!
//! The script covers native prepared statements with NULLs and COM_STMT_SEND_LONG_DATA,
//! multi-statements (mysqlnd turns them on and off around `multi_query` with COM_SET_OPTION, which
//! MariaDB answers with an EOF: before ferry knew that, the session died there), LOAD DATA LOCAL,
//! COM_INIT_DB, transactions, an error followed by more use, a 17 MB blob both ways,
//! COM_CHANGE_USER (to a read-only account, and with a wrong password) and PDO's native prepares.
//!
//! `php_multiplexed` runs the script with multiplexing on (2 backend connections shared with
//! `proxy_common::multiplexed::Neighbours`).
//!
//! A missing `php` (or its MySQL extension) fails the test with the packages to install.

mod proxy_common;

use std::process::Command;

use ferry_tests::{driver_tests, require_executable, Driver, MariaDb};
use proxy_common::multiplexed::{multiplexed_for_clients, Neighbours, NEIGHBOURS};
use proxy_common::{
    backend_with_reader, client_json, ferry_over, PASSWORD, READER, READER_PASSWORD, USER,
};
use serde_json::{json, Value as Json};

driver_tests!(php_passthrough, php_proxy_auth, php_multiplexed);

/// Runs the script against 127.0.0.1:`port` and returns the JSON object it prints last (see
/// [`client_json`]).
fn run_php(port: u16) -> Json {
    let php = require_executable("php", "php-cli php-mysql");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/php/through_ferry.php");
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("rows.csv");
    let rows: String = (2000..3000).map(|i| format!("{i},l{i}\n")).collect();
    std::fs::write(&csv, rows).expect("write the CSV file");
    client_json(
        "the PHP client",
        Command::new(php)
            // PHP refuses LOAD DATA LOCAL unless allowed (php-mysql's default is off).
            .args(["-d", "mysqli.allow_local_infile=1"])
            .arg(script)
            .arg(port.to_string())
            .args([USER, PASSWORD, READER, READER_PASSWORD])
            .arg(&csv),
    )
}

fn assert_run(r: &Json, db: &MariaDb) {
    assert_eq!(r["db"], "php", "COM_INIT_DB: {r}");
    assert_eq!(r["null"], true, "{r}");
    assert_eq!(r["long_data_len"], 360_000, "COM_STMT_SEND_LONG_DATA: {r}");
    assert_eq!(r["multi"], json!([[["1"]], [["2", "two"]]]), "{r}");
    assert_eq!(r["loaded"], 1000, "{r}");
    assert_eq!(r["error"], 1064, "{r}");
    assert_eq!(r["after_error"], 42, "{r}");
    assert_eq!(r["blob_same"], true, "{r}");
    // ids 1..=4, 2000..3000 and 5001 (5000 was rolled back).
    let sum: u64 = 10 + (2000..3000).sum::<u64>() + 5001;
    assert_eq!(r["count"], json!([1005, sum.to_string()]), "{r}");
    assert_eq!(r["changed_ok"], true, "{r}");
    assert_eq!(r["changed"], json!(["reader@%", "1", "php"]), "{r}");
    assert_eq!(
        r["other_denied"], 1142,
        "DROP as the read-only account: {r}"
    );
    assert_eq!(
        r["bad_change"], 1045,
        "COM_CHANGE_USER, wrong password: {r}"
    );
    assert_eq!(r["pdo"], json!(["v3", 13]), "{r}");
    assert_eq!(db.query_scalar("select count(*) from php.t"), "1005");
}

fn php_passthrough(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = ferry_over(driver, &db, false);
    assert_run(&run_php(ferry.port()), &db);
}

fn php_proxy_auth(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = ferry_over(driver, &db, true);
    assert_run(&run_php(ferry.port()), &db);
}

fn php_multiplexed(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = multiplexed_for_clients(driver, &db);
    let crowd = Neighbours::start(&ferry, &db, NEIGHBOURS);
    let r = run_php(ferry.port());
    crowd.finish(&ferry);
    assert_run(&r, &db);
}
