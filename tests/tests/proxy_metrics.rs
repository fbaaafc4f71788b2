//! `/metrics` through the real proxy program, for every driver, against two real MariaDB
//! servers: statements by command type and backend (following a session across a drain), their
//! errors and latency, the migration counter with its `result` label, `ferry_build_info` and
//! the process metrics, with the older families unchanged.
//!
//! Then every `ferry_*` and `process_*` metric that the Grafana dashboard and the Prometheus
//! alert rules kept in the repository (`driver-mio/packaging/`) name exists in that `/metrics`:
//! declared, with the right type for a histogram's `_bucket`, `_sum` and `_count`, and with a
//! sample, except the families whose series appear only with the event they count.

mod proxy_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_tests::{driver_tests, Driver, FerryProcess};
use mysql::prelude::Queryable;
use proxy_common::{
    backend, drain, mysql_opts, proxy_over_pair, wait_on, PASSWORD, REPLAY_NO_REBALANCE, USER,
};

driver_tests!(statements_latency_build_and_process_metrics);

// ---------------------------------------------------------------- helpers

/// Every sample of `/metrics`: `name{labels}` as written there → value.
fn samples(ferry: &FerryProcess) -> BTreeMap<String, f64> {
    let (status, text) = ferry.http_get("/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("name value");
            let value = value.parse().unwrap_or_else(|_| panic!("bad value: {l}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// `series` in `m`, 0 if absent.
fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// How much `series` grew from `before` to `after`.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    get(after, series) - get(before, series)
}

fn statements(command: &str, backend: &str) -> String {
    format!("ferry_statements_total{{command=\"{command}\",backend=\"{backend}\"}}")
}

fn errors(command: &str, backend: &str) -> String {
    format!("ferry_statement_errors_total{{command=\"{command}\",backend=\"{backend}\"}}")
}

/// The sum of every sample of family `name` (with any labels).
fn family_sum(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(s, _)| s.split('{').next() == Some(name))
        .map(|(_, v)| v)
        .sum()
}

// ---------------------------------------------------------------- the scenario

fn statements_latency_build_and_process_metrics(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    // Before any client: the process and build families, and the migration results at zero.
    let start = samples(&ferry);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let started = get(&start, "process_start_time_seconds");
    assert!(
        started > now.as_secs_f64() - 120.0 && started <= now.as_secs_f64(),
        "process_start_time_seconds {started} vs now {now:?}"
    );
    for gauge in [
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
    ] {
        assert!(
            get(&start, gauge) > 0.0,
            "{gauge} missing or zero: {start:?}"
        );
    }
    // A process with threads, sockets and files open holds more than a few.
    assert!(get(&start, "process_open_fds") >= 5.0);
    assert!(get(&start, "process_resident_memory_bytes") > 1e6);
    assert!(start.contains_key("process_cpu_seconds_total"));
    let build: Vec<&String> = start
        .keys()
        .filter(|s| s.starts_with("ferry_build_info{"))
        .collect();
    assert_eq!(build.len(), 1, "{build:?}");
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(build[0].contains(&version), "{}", build[0]);
    assert_eq!(get(&start, build[0]), 1.0);
    for result in ["succeeded", "failed", "cancelled"] {
        let series = format!("ferry_migrations_total{{result=\"{result}\"}}");
        assert_eq!(start.get(&series), Some(&0.0), "{series}: {start:?}");
    }

    // One session on db1 (the first one placed): queries, an error, a slow query, a
    // prepared statement, a ping.
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).unwrap();
    let id = conn.connection_id();
    wait_on(&ferry, id, "db1");
    let before = samples(&ferry);
    for _ in 0..3 {
        let one: u32 = conn.query_first("SELECT 1").unwrap().unwrap();
        assert_eq!(one, 1);
    }
    assert!(conn.query_drop("SELECT no_such_column").is_err());
    conn.query_drop("SELECT SLEEP(0.3)").unwrap();
    let stmt = conn.prep("SELECT ? + 1").unwrap();
    for n in [1, 2] {
        let r: Option<i64> = conn.exec_first(&stmt, (n,)).unwrap();
        assert_eq!(r, Some(n + 1));
    }
    conn.close(stmt).unwrap();
    assert!(conn.ping().is_ok());
    let after = samples(&ferry);
    let cases = [
        (statements("query", "db1"), 5.0),
        (errors("query", "db1"), 1.0),
        (statements("stmt_prepare", "db1"), 1.0),
        (statements("stmt_execute", "db1"), 2.0),
        (statements("stmt_close", "db1"), 1.0),
        (statements("ping", "db1"), 1.0),
        (errors("stmt_execute", "db1"), 0.0),
        (statements("query", "db2"), 0.0),
    ];
    for (series, expected) in &cases {
        assert_eq!(delta(&before, &after, series), *expected, "{series}");
    }
    // The old unlabelled counter counts the same commands.
    assert_eq!(
        family_sum(&after, "ferry_statements_total"),
        get(&after, "ferry_commands_total"),
        "{after:?}"
    );
    // Latency: five queries, one of them at least 0.3 s, in the right bucket.
    let hist = |suffix: &str| format!("ferry_statement_duration_seconds{suffix}");
    let count = hist("_count{command=\"query\"}");
    assert_eq!(delta(&before, &after, &count), 5.0);
    let sum = delta(&before, &after, &hist("_sum{command=\"query\"}"));
    assert!((0.3..10.0).contains(&sum), "query latency sum {sum}");
    let fast = hist("_bucket{command=\"query\",le=\"0.25\"}");
    let slow = hist("_bucket{command=\"query\",le=\"0.5\"}");
    assert_eq!(
        delta(&before, &after, &fast),
        4.0,
        "the sleep is over 0.25 s"
    );
    assert_eq!(delta(&before, &after, &slow), 5.0);
    assert_eq!(
        delta(&before, &after, &hist("_count{command=\"stmt_execute\"}")),
        2.0
    );

    // A drain moves the session to db2: its statements count there from then on, and the
    // migration counts as succeeded (the old family too).
    drain(&ferry, "db1", true);
    wait_on(&ferry, id, "db2");
    let before = samples(&ferry);
    for _ in 0..2 {
        conn.query_drop("DO 1").unwrap();
    }
    let after = samples(&ferry);
    assert_eq!(delta(&before, &after, &statements("query", "db2")), 2.0);
    assert_eq!(delta(&before, &after, &statements("query", "db1")), 0.0);
    let succeeded = "ferry_migrations_total{result=\"succeeded\"}";
    assert_eq!(get(&after, succeeded), 1.0, "{after:?}");
    assert_eq!(get(&after, "ferry_migrations_succeeded_total"), 1.0);
    assert_eq!(
        get(&after, "ferry_migrations_total{result=\"failed\"}"),
        0.0
    );
    // CPU time only grows.
    let cpu = get(&after, "process_cpu_seconds_total");
    assert!(cpu > 0.0 && cpu >= get(&start, "process_cpu_seconds_total"));

    // With that traffic, what the dashboard and the alerts query is there.
    dashboard_and_alert_metrics_exist(&ferry);
}

// ---------------------------------------------------------------- dashboard and alerts

/// Families whose series appear only once what they count happened (a failed migration, a
/// session lost, a pinned session): declared with their type, without a sample before.
const EVENT_ONLY: [&str; 3] = [
    "ferry_migrations_failed_total",
    "ferry_failover_lost_total",
    "ferry_pinned_sessions",
];

/// Every `ferry_*` and `process_*` name in `text` (queries, legends, descriptions alike: a name
/// anywhere in the file must exist).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = (i == 0 || !word(bytes[i - 1]))
            && (text[i..].starts_with("ferry_") || text[i..].starts_with("process_"));
        if !starts {
            i += 1;
            continue;
        }
        let end = (i..bytes.len())
            .find(|&j| !word(bytes[j]))
            .unwrap_or(bytes.len());
        names.insert(text[i..end].to_owned());
        i = end;
    }
    names
}

/// Every string in a JSON document.
fn json_strings(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

fn dashboard_and_alert_metrics_exist(ferry: &FerryProcess) {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../driver-mio/packaging");
    let read = |p: &str| {
        let path = packaging.join(p);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/ferry-dashboard.json")).expect("the dashboard is JSON");
    let mut dashboard_text = String::new();
    json_strings(&dashboard, &mut dashboard_text);
    let alerts = read("prometheus/ferry-alerts.yml");
    // Every rule has its expression (a file the scan below could misread would fail here).
    let rules = alerts.matches("- alert: ").count();
    assert!(rules >= 8, "{rules} alert rules");
    assert_eq!(
        alerts.matches("\n        expr: ").count(),
        rules,
        "an expr per alert"
    );
    let queried = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty()))
        .count();
    assert!(queried >= 30, "{queried} dashboard queries");

    let (status, text) = ferry.http_get("/metrics");
    assert_eq!(status, 200);
    let mut declared = BTreeMap::new();
    let mut sampled = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            declared.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').expect("name value").0;
            sampled.insert(series.split('{').next().unwrap_or(series).to_owned());
        }
    }
    for (file, names) in [
        ("the dashboard", metric_names(&dashboard_text)),
        ("the alert rules", metric_names(&alerts)),
    ] {
        assert!(names.len() >= 8, "{file} names only {names:?}");
        for name in &names {
            // A histogram's series are its family's name with a suffix.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    let base = name.strip_suffix(s)?;
                    (declared.get(base).map(String::as_str) == Some("histogram")).then_some(base)
                })
                .unwrap_or(name);
            assert!(
                declared.contains_key(family),
                "{file} queries {name}, which /metrics does not declare"
            );
            if family == name {
                assert_ne!(
                    declared[family], "histogram",
                    "{file} queries histogram {name} without _bucket, _sum or _count"
                );
            }
            assert!(
                sampled.contains(name.as_str()) || EVENT_ONLY.contains(&family),
                "{file} queries {name}, which has no sample in /metrics:\n{text}"
            );
        }
    }
}
