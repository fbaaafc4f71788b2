//! Logging set-up through the real proxy programs, for every driver: `--log-format json` writes
//! one JSON object per line; the level comes from `--log-level` or `FERRY_LOG_LEVEL` (which win
//! over `RUST_LOG`), then `RUST_LOG`, then `[log] level`.

mod proxy_common;

use ferry_tests::{driver_tests, Driver, FerryProcess};
use proxy_common::{backend, PASSWORD, USER};

driver_tests!(
    json_lines_at_the_level_of_ferry_log_level,
    the_config_level_applies_unless_rust_log_is_set,
);

/// One query through `ferry`, so that sessions log (at debug: "client connected").
fn query(ferry: &FerryProcess) {
    let out = ferry.mariadb(USER, PASSWORD, &[], "select 1");
    assert!(out.status.success(), "{out:?}\n{}", ferry.log_tail(30));
}

fn json_lines_at_the_level_of_ferry_log_level(driver: Driver) {
    let db = backend(1);
    // RUST_LOG says info; FERRY_LOG_LEVEL (the --log-level flag's variable) wins.
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .arg("--log-format")
        .arg("json")
        .env("FERRY_LOG_LEVEL", "debug")
        .rust_log("info")
        .start();
    query(&ferry);
    let log = ferry.log();
    let mut levels = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(event["message"].is_string(), "{line}");
        levels.push(
            event["level"]
                .as_str()
                .unwrap_or_else(|| panic!("{line}"))
                .to_owned(),
        );
    }
    assert!(levels.iter().any(|l| l == "INFO"), "{log}");
    assert!(
        levels.iter().any(|l| l == "DEBUG"),
        "FERRY_LOG_LEVEL=debug: {log}"
    );
    // The session's fields are JSON fields.
    assert!(
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| e["message"] == "client connected" && e["session"].is_u64()),
        "{log}"
    );
}

fn the_config_level_applies_unless_rust_log_is_set(driver: Driver) {
    let db = backend(1);
    // No RUST_LOG: `[log] level` decides.
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .extra_toml("[log]\nlevel = \"debug\"\nformat = \"text\"")
        .rust_log("")
        .start();
    query(&ferry);
    let log = ferry.log();
    assert!(log.contains(" DEBUG "), "[log] level = debug: {log}");
    assert!(
        !log.lines().any(|l| l.trim_start().starts_with('{')),
        "text: {log}"
    );
    drop(ferry);
    // RUST_LOG wins over the file: warn and above only.
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .extra_toml("[log]\nlevel = \"debug\"")
        .rust_log("warn")
        .start();
    query(&ferry);
    let log = ferry.log();
    assert!(
        !log.contains(" DEBUG ") && !log.contains(" INFO "),
        "RUST_LOG=warn: {log}"
    );
    // And --log-level over RUST_LOG.
    drop(ferry);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .arg("--log-level")
        .arg("info")
        .rust_log("warn")
        .start();
    query(&ferry);
    let log = ferry.log();
    assert!(log.contains(" INFO "), "--log-level info: {log}");
    assert!(!log.contains(" DEBUG "), "{log}");
}
