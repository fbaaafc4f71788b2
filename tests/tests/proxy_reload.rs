//! Live reload (issue 14) through the real proxy program of every driver: three MariaDB servers,
//! proxy auth, `replay` migration, and four clients (the Rust `mysql` crate) running statements
//! without a pause, each with its own user variable and two protocol prepared statements whose
//! answers it checks, while the configuration file is rewritten under them:
//!
//! - `SIGHUP` with db1 removed and db3 added: db1's sessions move away, db3 takes sessions
//!   after its first health check (the balancer evens out onto it), db1 leaves `/api/backends`;
//! - `POST /api/config/reload` with db2 removed and db1 added back: the same, and the answer
//!   names what was added and removed;
//! - a file with an unknown key (`POST`: 422 naming it) and one with an invalid value
//!   (`SIGHUP`: the log names the key): the running configuration stays (`GET /api/config`
//!   keeps its version and shows the error);
//! - a new listen address is reported as needing a restart, not applied: clients still connect
//!   where they did;
//!
//! and through all of it, no client sees an error, none loses its session (the same ids stay
//! listed), and every answer carries the client's own variable.

mod proxy_common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ferry_tests::{driver_tests, wait_until, Driver, FerryProcess, MariaDb};
use mysql::prelude::Queryable;
use proxy_common::{backend, mysql_opts, PASSWORD, USER};
use serde_json::{json, Value as Json};

driver_tests!(reload_adds_and_removes_backends_under_running_clients);

/// Clients running statements while the configuration changes.
const CLIENTS: usize = 4;
/// How long a reload's effects (a health check, the drain, the balancer) may take to show.
const SETTLE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- the client loop

/// One client: its own user variable `@v`, incremented by a prepared statement and read back by
/// another (and by a text query now and then); every answer is checked. It records the port of
/// its backend (`@@port`) after every statement and stops at the first error.
struct Client {
    id: u32,
    port: Arc<AtomicU16>,
    rounds: Arc<AtomicU64>,
    thread: JoinHandle<Result<BTreeSet<u16>, String>>,
}

fn start_client(ferry: &FerryProcess, index: usize, stop: &Arc<AtomicBool>) -> Client {
    let mut conn = mysql::Conn::new(mysql_opts(ferry, USER, PASSWORD)).expect("connect");
    let id = conn.connection_id();
    let port = Arc::new(AtomicU16::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let (stop, port_out, rounds_out) = (Arc::clone(stop), Arc::clone(&port), Arc::clone(&rounds));
    let thread = thread::spawn(move || {
        let base = 1_000 * index as i64;
        conn.query_drop(format!("SET @v = {base}"))
            .map_err(|e| e.to_string())?;
        let add = conn.prep("SET @v = @v + ?").map_err(|e| e.to_string())?;
        let read = conn
            .prep("SELECT ?, @v, @@port")
            .map_err(|e| e.to_string())?;
        let mut ports = BTreeSet::new();
        let mut expected = base;
        let mut round: i64 = 0;
        while !stop.load(Ordering::SeqCst) {
            round += 1;
            conn.exec_drop(&add, (1,))
                .map_err(|e| format!("round {round}, SET: {e}"))?;
            expected += 1;
            let row: Option<(i64, i64, u16)> = conn
                .exec_first(&read, (round,))
                .map_err(|e| format!("round {round}, SELECT: {e}"))?;
            let (echo, v, port) = row.ok_or(format!("round {round}: no row"))?;
            if (echo, v) != (round, expected) {
                return Err(format!(
                    "round {round} on port {port}: got ({echo}, {v}), expected ({round}, {expected})"
                ));
            }
            if round % 10 == 0 {
                let text: Option<i64> = conn
                    .query_first("SELECT @v")
                    .map_err(|e| format!("round {round}, text SELECT: {e}"))?;
                if text != Some(expected) {
                    return Err(format!(
                        "round {round}: @v is {text:?}, expected {expected}"
                    ));
                }
            }
            ports.insert(port);
            port_out.store(port, Ordering::SeqCst);
            rounds_out.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(5));
        }
        Ok(ports)
    });
    Client {
        id,
        port,
        rounds,
        thread,
    }
}

/// Waits until every client has run `more` statements pairs since now (they are not stuck).
fn wait_for_rounds(clients: &[Client], more: u64) {
    let start: Vec<u64> = clients
        .iter()
        .map(|c| c.rounds.load(Ordering::SeqCst))
        .collect();
    let ran = wait_until(SETTLE, || {
        clients
            .iter()
            .zip(&start)
            .all(|(c, s)| c.rounds.load(Ordering::SeqCst) >= s + more || c.thread.is_finished())
    });
    assert!(ran, "the clients stopped making progress");
}

// ---------------------------------------------------------------- the configuration file

/// `text` with its `[[backends]]` replaced by `backends` (appended at the end: a `[[backends]]`
/// header closes whatever table came before).
fn with_backends(text: &str, backends: &[(&str, &MariaDb)]) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "[[backends]]" {
            // The builder writes name, addr and a blank line.
            while lines.next_if(|l| !l.trim().is_empty()).is_some() {}
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (name, db) in backends {
        out.push_str(&format!(
            "\n[[backends]]\nname = \"{name}\"\naddr = \"{}\"\n",
            db.addr()
        ));
    }
    out
}

/// `text` with `line` added to its `[proxy]` section.
fn with_proxy_key(text: &str, line: &str) -> String {
    text.replacen("[proxy]\n", &format!("[proxy]\n{line}\n"), 1)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn sighup(ferry: &FerryProcess) {
    let pid = ferry.pid().expect("ferry runs");
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -HUP {pid} failed");
}

// ---------------------------------------------------------------- the admin API

/// The backends `/api/backends` lists: name → healthy.
fn backends(ferry: &FerryProcess) -> Vec<(String, bool)> {
    ferry
        .api("/api/backends")
        .as_array()
        .expect("a list")
        .iter()
        .map(|b| (b["name"].as_str().unwrap().to_owned(), b["healthy"] == true))
        .collect()
}

/// The backend of every listed session, by id.
fn sessions(ferry: &FerryProcess) -> Vec<(u64, String)> {
    ferry
        .api("/api/sessions")
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            let backend = s["backend"].as_str().unwrap_or("-").to_owned();
            (s["id"].as_u64().unwrap(), backend)
        })
        .collect()
}

/// Waits until `/api/backends` lists exactly `names`, all healthy, and no session is on
/// `removed`; panics with the state otherwise.
fn wait_settled(ferry: &FerryProcess, names: &[&str], removed: &str) {
    let settled = wait_until(SETTLE, || {
        let listed = backends(ferry);
        listed.len() == names.len()
            && listed
                .iter()
                .all(|(n, up)| *up && names.contains(&n.as_str()))
            && sessions(ferry).iter().all(|(_, b)| b != removed)
    });
    assert!(
        settled,
        "expected backends {names:?} and no session on {removed}: {} {}",
        ferry.api("/api/backends"),
        ferry.api("/api/sessions")
    );
}

/// Waits until some session is on `backend` (the balancer moved sessions onto a new backend).
fn wait_used(ferry: &FerryProcess, backend: &str) {
    let used = wait_until(SETTLE, || sessions(ferry).iter().any(|(_, b)| b == backend));
    assert!(
        used,
        "no session reached {backend}: {}",
        ferry.api("/api/sessions")
    );
}

// ---------------------------------------------------------------- the scenario

fn reload_adds_and_removes_backends_under_running_clients(driver: Driver) {
    let (db1, db2, db3) = (backend(1), backend(2), backend(3));
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db1.addr())
        .backend("db2", db2.addr())
        .proxy_user(USER, &db1.user_password_hash(USER))
        .extra_toml("[migration]\nmode = \"replay\"\n")
        .start();
    let path = ferry.config_path().to_owned();
    let original = std::fs::read_to_string(&path).expect("the configuration");
    let status = ferry.api("/api/config");
    assert_eq!(status["version"], 1, "{status}");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| start_client(&ferry, i, &stop))
        .collect();
    let ids: BTreeSet<u64> = clients.iter().map(|c| u64::from(c.id)).collect();
    wait_for_rounds(&clients, 20);
    let placed = sessions(&ferry);
    assert!(
        placed.iter().any(|(_, b)| b == "db1"),
        "a session starts on db1: {placed:?}"
    );

    // SIGHUP: db1 removed, db3 added.
    let first = with_backends(&original, &[("db2", &db2), ("db3", &db3)]);
    write(&path, &first);
    sighup(&ferry);
    wait_settled(&ferry, &["db2", "db3"], "db1");
    wait_used(&ferry, "db3");
    let status = ferry.api("/api/config");
    assert_eq!(status["version"], 2, "{status}");
    assert_eq!(status["removing"], json!([]), "{status}");
    wait_for_rounds(&clients, 20);
    let ports = || -> BTreeSet<u16> {
        clients
            .iter()
            .map(|c| c.port.load(Ordering::SeqCst))
            .collect()
    };
    assert!(!ports().contains(&db1.port()), "a client still on db1");

    // POST /api/config/reload: db2 removed, db1 added back.
    write(
        &path,
        &with_backends(&original, &[("db3", &db3), ("db1", &db1)]),
    );
    let (code, body) = ferry.http_post("/api/config/reload", "");
    assert_eq!(code, 200, "{body}");
    let report: Json = serde_json::from_str(&body).expect("JSON");
    assert_eq!(report["version"], 3, "{report}");
    assert_eq!(report["added"], json!(["db1"]), "{report}");
    assert_eq!(report["removed"], json!(["db2"]), "{report}");
    assert_eq!(report["pending_restart"], json!([]), "{report}");
    wait_settled(&ferry, &["db3", "db1"], "db2");
    wait_used(&ferry, "db1");
    wait_for_rounds(&clients, 20);
    assert!(!ports().contains(&db2.port()), "a client still on db2");
    let good = with_backends(&original, &[("db3", &db3), ("db1", &db1)]);

    // An unknown key: refused with the key named, the running configuration stays.
    write(&path, &with_proxy_key(&good, "bogus-key = 1"));
    let (code, body) = ferry.http_post("/api/config/reload", "");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("bogus-key"), "{body}");
    // An invalid value, by SIGHUP: the log names the key.
    write(&path, &with_proxy_key(&good, "max-connections = 0"));
    sighup(&ferry);
    let logged = wait_until(SETTLE, || {
        ferry.log().lines().any(|l| {
            l.contains("configuration reload refused") && l.contains("proxy.max-connections")
        })
    });
    assert!(logged, "no refusal logged:\n{}", ferry.log_tail(30));
    assert!(
        ferry.log().contains("bogus-key"),
        "the first refusal is logged too"
    );
    let status = ferry.api("/api/config");
    assert_eq!(status["version"], 3, "{status}");
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("proxy.max-connections"), "{status}");
    let names: Vec<String> = backends(&ferry).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["db3", "db1"]);
    wait_for_rounds(&clients, 20);

    // A new listen address needs a restart: reported, not applied.
    let moved = good.replace(
        &format!("listen = \"{}\"", ferry.addr()),
        "listen = \"127.0.0.1:1\"",
    );
    assert_ne!(moved, good);
    write(&path, &with_proxy_key(&moved, "max-connections = 500"));
    let (code, body) = ferry.http_post("/api/config/reload", "");
    assert_eq!(code, 200, "{body}");
    let report: Json = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        report["pending_restart"],
        json!(["proxy.listen"]),
        "{report}"
    );
    assert_eq!(
        report["changed"],
        json!(["proxy.max-connections"]),
        "{report}"
    );
    let status = ferry.api("/api/config");
    assert_eq!(
        (status["version"].clone(), status["pending_restart"].clone()),
        (json!(4), json!(["proxy.listen"])),
        "{status}"
    );
    let mut late = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    let port: u16 = late.query_first("SELECT @@port").unwrap().unwrap();
    assert!([db1.port(), db3.port()].contains(&port), "{port}");
    drop(late);

    wait_for_rounds(&clients, 20);
    // Every client kept its session through both moves.
    let listed: BTreeSet<u64> = sessions(&ferry).into_iter().map(|(id, _)| id).collect();
    assert!(
        ids.is_subset(&listed),
        "sessions lost: {ids:?} vs {listed:?}"
    );
    stop.store(true, Ordering::SeqCst);
    let mut seen = BTreeSet::new();
    for c in clients {
        let rounds = c.rounds.load(Ordering::SeqCst);
        match c.thread.join().expect("client thread") {
            Ok(ports) => seen.extend(ports),
            Err(e) => panic!("client {} failed after {rounds} rounds: {e}", c.id),
        }
    }
    for db in [&db1, &db2, &db3] {
        assert!(
            seen.contains(&db.port()),
            "no answer from port {}: {seen:?}",
            db.port()
        );
    }
}
