//! Go through the real proxy program: `tests/clients/go/main.go` with go-sql-driver/mysql (a pure
//! Go implementation of the protocol, from Debian's packages) against ferry in front of a real
//! MariaDB: passthrough, proxy auth, and TLS with Go's own TLS stack (ferry requiring it, its
//! certificate checked).
//!
//! `go_multiplexed` runs the program with multiplexing on (2 backend connections shared with
//! `proxy_common::multiplexed::Neighbours`).
//!
//! A missing `go` or driver source fails the test with the packages to install.

mod proxy_common;

use std::path::Path;
use std::process::Command;

use ferry_tests::{driver_tests, require_executable, Driver, FerryProcess, MariaDb};
use proxy_common::multiplexed::{multiplexed_for_clients, Neighbours, NEIGHBOURS};
use proxy_common::{backend, backend_with_reader, client_json, ferry_over, PASSWORD, USER};
use serde_json::{json, Value as Json};

driver_tests!(
    go_passthrough,
    go_proxy_auth,
    go_tls_required,
    go_multiplexed
);

/// Where Debian's golang-github-go-sql-driver-mysql-dev puts the driver (GOPATH layout).
const GOPATH: &str = "/usr/share/gocode";

/// Runs the program against 127.0.0.1:`port` (over TLS when `ca` is given) and returns the JSON
/// object it prints last (see [`client_json`]).
fn run_go(port: u16, ca: Option<&Path>) -> Json {
    let go = require_executable("go", "golang-go");
    assert!(
        Path::new(GOPATH)
            .join("src/github.com/go-sql-driver/mysql")
            .is_dir(),
        "go-sql-driver/mysql is missing from {GOPATH}: apt-get install \
         golang-github-go-sql-driver-mysql-dev (or `bash .ci/run`)"
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/go/main.go");
    let cache = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(go);
    command
        // Debian's packaged sources, no module download.
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", cache.path())
        .env("GOFLAGS", "")
        .arg("run")
        .arg(source)
        .arg(port.to_string())
        .args([USER, PASSWORD]);
    if let Some(ca) = ca {
        command.arg(ca);
    }
    client_json("the Go client", &mut command)
}

fn assert_run(r: &Json, db: &MariaDb) {
    assert_eq!(r["null"], true, "{r}");
    assert_eq!(r["multi"], json!([1, 2]), "{r}");
    assert_eq!(r["loaded"], 1000, "{r}");
    assert_eq!(r["blob_same"], true, "{r}");
    assert_eq!(r["error"], 1064, "{r}");
    assert_eq!(r["after_error"], 42, "{r}");
    // ids 1..=3 and 2000..3000; 5000 was rolled back.
    assert_eq!(r["count"], 1003, "{r}");
    assert_eq!(db.query_scalar("select count(*) from gd.t"), "1003");
}

fn go_passthrough(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = ferry_over(driver, &db, false);
    assert_run(&run_go(ferry.port(), None), &db);
}

fn go_proxy_auth(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = ferry_over(driver, &db, true);
    assert_run(&run_go(ferry.port(), None), &db);
}

fn go_multiplexed(driver: Driver) {
    let db = backend_with_reader(1);
    let ferry = multiplexed_for_clients(driver, &db);
    let crowd = Neighbours::start(&ferry, &db, NEIGHBOURS);
    let r = run_go(ferry.port(), None);
    crowd.finish(&ferry);
    assert_run(&r, &db);
}

fn go_tls_required(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .tls(true)
        .start();
    let ca = ferry.cert_path().expect("TLS configured");
    assert_run(&run_go(ferry.port(), Some(ca)), &db);
}
