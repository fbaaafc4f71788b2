//! The PROXY protocol through the real proxy program, for every driver, against real MariaDB
//! servers started with `--proxy-protocol-networks=127.0.0.0/8`:
//!
//! - a client behind a load balancer (a relay connecting from 127.0.0.2, which ferry trusts, and
//!   sending a v1 or v2 header first) is that client everywhere: in MariaDB's process list on its
//!   backend, before and after a drain moves it to the other backend, and in `/api/sessions`;
//! - host-based grants see that address too (passthrough auth: an account for `10.1.2.3` only
//!   logs in through the balancer, and not directly);
//! - a header from an address ferry does not trust is refused with MariaDB's ERR 1130 and a log
//!   line; a trusted address must send one; other clients are served as before.

mod proxy_common;

use std::net::{IpAddr, Ipv4Addr};

use ferry_tests::{
    driver_tests, mariadb_cli, Driver, FerryProcess, MariaDb, ProxyHeader, ProxyHeaderRelay,
};
use mysql::prelude::Queryable;
use proxy_common::{
    client_opts, drain, mysql_code, session, wait_on, PASSWORD, REPLAY_NO_REBALANCE, USER,
};

driver_tests!(
    backends_see_the_balancers_client_before_and_after_a_migration,
    grants_by_host_and_refusals,
);

/// ferry trusts this address (the balancer's) and no other.
const BALANCER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const TRUST_BALANCER: &str = "proxy-protocol-from = [\"127.0.0.2\"]";

/// A MariaDB that takes PROXY headers from ferry (any loopback address), with [`USER`].
fn backend(server_id: u32) -> MariaDb {
    let db = MariaDb::builder()
        .server_id(server_id)
        .arg("--proxy-protocol-networks=127.0.0.0/8")
        .start();
    db.create_user(USER, PASSWORD);
    db
}

/// `host` of this connection in the backend's process list (MariaDB writes `IP:port`).
const PROCESSLIST_HOST: &str =
    "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()";

fn connect(port: u16, user: &str, password: &str) -> Result<mysql::Conn, mysql::Error> {
    mysql::Conn::new(client_opts(port, user, password))
}

fn host_and_server(conn: &mut mysql::Conn) -> (String, u32) {
    let host: String = conn.query_first(PROCESSLIST_HOST).unwrap().unwrap();
    let server: u32 = conn.query_first("SELECT @@server_id").unwrap().unwrap();
    (host, server)
}

fn backends_see_the_balancers_client_before_and_after_a_migration(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db1.addr())
        .backend("db2", db2.addr())
        .backend_toml("db1", "proxy-protocol = true")
        .backend_toml("db2", "proxy-protocol = true")
        .proxy_user(USER, &db1.user_password_hash(USER))
        .proxy_toml(TRUST_BALANCER)
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    let client = Ipv4Addr::new(10, 1, 2, 3);
    let balancer = ProxyHeaderRelay::start(
        ferry.addr(),
        IpAddr::V4(BALANCER),
        ProxyHeader::V1 { client },
    );

    let mut conn = connect(balancer.port(), USER, PASSWORD).expect("login through the balancer");
    let id = conn.connection_id();
    let (host, server) = host_and_server(&mut conn);
    // The port is the one the balancer saw the client on: the same in ferry's listing.
    assert!(host.starts_with("10.1.2.3:"), "processlist host {host}");
    assert_eq!(session(&ferry, id)["client"], host.as_str());
    let (from, to) = if server == 1 {
        ("db1", "db2")
    } else {
        ("db2", "db1")
    };

    // A drain moves the session: its new backend connection carries the header too.
    conn.query_drop("SET @kept = 'yes'").unwrap();
    drain(&ferry, from, true);
    wait_on(&ferry, id, to);
    let (host_after, server_after) = host_and_server(&mut conn);
    assert_ne!(server_after, server, "moved");
    assert_eq!(
        host_after, host,
        "the backend after the migration sees the same client"
    );
    let kept: String = conn.query_first("SELECT @kept").unwrap().unwrap();
    assert_eq!(kept, "yes");
    assert_eq!(session(&ferry, id)["client"], host.as_str());
    drain(&ferry, from, false);

    // A v2 header works alike.
    let balancer_v2 = ProxyHeaderRelay::start(
        ferry.addr(),
        IpAddr::V4(BALANCER),
        ProxyHeader::V2 {
            client: Ipv4Addr::new(10, 4, 5, 6),
        },
    );
    let mut conn2 = connect(balancer_v2.port(), USER, PASSWORD).expect("login through v2");
    let (host2, _) = host_and_server(&mut conn2);
    assert!(host2.starts_with("10.4.5.6:"), "processlist host {host2}");
    assert_eq!(
        session(&ferry, conn2.connection_id())["client"],
        host2.as_str()
    );

    // A client connecting directly (not trusted, no header): its own address, everywhere.
    let mut direct = connect(ferry.port(), USER, PASSWORD).expect("direct login");
    let (host3, _) = host_and_server(&mut direct);
    assert!(host3.starts_with("127.0.0.1:"), "processlist host {host3}");
    assert_eq!(
        session(&ferry, direct.connection_id())["client"],
        host3.as_str()
    );
}

fn grants_by_host_and_refusals(driver: Driver) {
    let db = backend(1);
    // An account for one client address only: passthrough auth leaves the check to MariaDB.
    db.sql(
        "CREATE USER lb_only@'10.1.2.3' IDENTIFIED BY 'pw'; \
         GRANT SELECT ON *.* TO lb_only@'10.1.2.3'",
    );
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .backend_toml("db1", "proxy-protocol = true")
        .proxy_toml(TRUST_BALANCER)
        .start();
    let behind = ProxyHeaderRelay::start(
        ferry.addr(),
        IpAddr::V4(BALANCER),
        ProxyHeader::V1 {
            client: Ipv4Addr::new(10, 1, 2, 3),
        },
    );
    let mut conn = connect(behind.port(), "lb_only", "pw").expect("lb_only from 10.1.2.3");
    let user: String = conn.query_first("SELECT CURRENT_USER()").unwrap().unwrap();
    assert_eq!(user, "lb_only@10.1.2.3");
    // Directly, MariaDB sees 127.0.0.1 (ferry's header says so): no such account there.
    let e = connect(ferry.port(), "lb_only", "pw").expect_err("lb_only from 127.0.0.1");
    assert_eq!(mysql_code(&e), Some(1045), "{e}");
    assert!(e.to_string().contains("'lb_only'@'127.0.0.1'"), "{e}");

    // A header from an address ferry does not trust: MariaDB's ERR 1130, and a log line.
    let untrusted = ProxyHeaderRelay::start(
        ferry.addr(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        ProxyHeader::V1 {
            client: Ipv4Addr::new(10, 1, 2, 3),
        },
    );
    let e = connect(untrusted.port(), USER, PASSWORD).expect_err("untrusted header");
    assert_eq!(mysql_code(&e), Some(1130), "{e}");
    assert!(
        e.to_string()
            .contains("Proxy header is not accepted from 127.0.0.1"),
        "{e}"
    );
    let out = mariadb_cli(untrusted.port(), USER, PASSWORD, "SELECT 1");
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("ERROR 1130 (HY000): Proxy header is not accepted from 127.0.0.1"),
        "{}",
        out.stderr
    );
    let log = ferry.log();
    assert!(
        log.contains("PROXY protocol header from an address not in proxy.proxy-protocol-from"),
        "{log}"
    );

    // The trusted address must send one.
    let no_header = ProxyHeaderRelay::start(ferry.addr(), IpAddr::V4(BALANCER), ProxyHeader::None);
    let e = connect(no_header.port(), USER, PASSWORD).expect_err("no header from the balancer");
    assert_eq!(mysql_code(&e), Some(1130), "{e}");
    assert!(
        e.to_string()
            .contains("Host '127.0.0.2' must send a PROXY protocol header"),
        "{e}"
    );

    // Nothing changed for a plain client.
    let mut plain = connect(ferry.port(), USER, PASSWORD).expect("plain client");
    let one: u32 = plain.query_first("SELECT 1").unwrap().unwrap();
    assert_eq!(one, 1);
}
