//! What operators rely on: refusals with MariaDB's ERR packets, failed logins counted and an
//! address blocked after too many, graceful shutdown in the order load balancers expect.

use super::*;

fn accept_from(ep: &mut Endpoint, now: Instant, client: SocketAddr) -> Accept {
    ep.accept(now, client, 0, Box::new(SeededRandom::new(7)))
}

fn refusal(accept: Accept) -> Refusal {
    match accept {
        Accept::Refused(r) => r,
        Accept::Connection(c) => panic!("accepted: {c:?}"),
    }
}

/// The code and message of an ERR framed in place of a greeting (sequence id 0, no SQL state).
fn greeting_err(bytes: &[u8]) -> (u16, String) {
    assert_eq!(usize::from(bytes[0]), bytes.len() - 4, "one frame");
    assert_eq!((bytes[3], bytes[4]), (0, 0xFF), "sequence id 0, an ERR");
    let code = u16::from_le_bytes([bytes[5], bytes[6]]);
    (code, String::from_utf8(bytes[7..].to_vec()).unwrap())
}

// ---- max-connections ----

#[test]
fn a_client_over_max_connections_gets_mariadbs_1040_and_is_counted() {
    let (mut ep, now) = endpoint(|f| f.proxy.max_connections = Some(1), 1);
    let _first = accept(&mut ep, now, 0).unwrap();
    for n in 1..=20 {
        let r = refusal(accept_from(&mut ep, now, client()));
        assert_eq!(r.reason(), RefusalReason::MaxConnections);
        assert_eq!(
            greeting_err(r.bytes()),
            (1040, "Too many connections".into())
        );
        assert_eq!(ep.metrics().errors["max_connections"], n);
    }
    assert_eq!(ep.live_sessions(), 1, "refusals take no place");
    assert_eq!(ep.metrics().sessions_accepted, 1);
}

// ---- failed logins ----

fn other_client() -> SocketAddr {
    "10.1.2.3:40000".parse().unwrap()
}

/// `n` logins as `app` with a wrong password, from the test client's address.
fn fail_logins(ep: &mut Endpoint, now: Instant, n: usize) {
    for _ in 0..n {
        let mut s = Session::connect(ep, now, "wrong");
        s.pump(ep, now);
        assert_eq!(s.login_error().code, 1045);
        assert!(s.conn.is_closed());
        ep.connection_closed(now, &mut s.conn);
    }
}

fn login_failures(ep: &Endpoint, reason: &str) -> u64 {
    ep.metrics().login_failures[reason]
}

#[test]
fn failed_logins_are_counted_by_reason_in_both_auth_modes() {
    for proxy in [true, false] {
        let (mut ep, now) = healthy_endpoint(|f| {
            if proxy {
                proxy_auth(f);
            }
        });
        assert_eq!(login_failures(&ep, "access_denied"), 0);
        // Ferry's user table (proxy) or the backend (passthrough) denies the password.
        fail_logins(&mut ep, now, 2);
        assert_eq!(
            login_failures(&ep, "access_denied"),
            2,
            "proxy auth: {proxy}"
        );
        // Blocking is off by default.
        assert!(accept(&mut ep, now, 0).is_some());
        // A client that leaves before logging in is no failed login; one logged in is none
        // either when it quits.
        let mut gone = Session::connect(&mut ep, now, PASSWORD);
        gone.conn.handle_eof(now, Peer::Client);
        gone.pump(&mut ep, now);
        let mut fine = Session::logged_in(&mut ep, now);
        fine.quit(&mut ep, now);
        let text = admin_text(&mut ep, now);
        assert!(
            text.contains("ferry_login_failures_total{reason=\"access_denied\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("ferry_login_failures_total{reason=\"handshake_timeout\"} 0\n"));
    }
}

#[test]
fn a_handshake_that_never_ends_is_a_failed_login() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut conn = accept(&mut ep, now, 0).unwrap();
    let deadline = conn.poll_timeout().expect("a handshake deadline");
    conn.handle_timeout(deadline);
    assert!(conn.is_closed());
    // The driver dropped it without a sync: still counted.
    ep.connection_closed(deadline, &mut conn);
    assert_eq!(login_failures(&ep, "handshake_timeout"), 1);
}

/// Proxy auth, blocking after 3 failures in 60 s for 30 s.
fn blocking(f: &mut ConfigFile) {
    proxy_auth(f);
    f.proxy.max_auth_failures = Some(3);
    f.proxy.auth_failure_window = Some(ConfigDuration(Duration::from_secs(60)));
    f.proxy.auth_block_duration = Some(ConfigDuration(Duration::from_secs(30)));
}

#[test]
fn an_address_with_too_many_failed_logins_is_refused_until_the_block_expires() {
    let (mut ep, now) = healthy_endpoint(blocking);
    fail_logins(&mut ep, now, 2);
    assert!(accept(&mut ep, now, 0).is_some(), "not blocked after 2");
    fail_logins(&mut ep, now, 1);
    // Blocked: refused at accept with ERR 1129, before any handshake; counted.
    let r = refusal(accept_from(&mut ep, now, client()));
    assert!(
        matches!(r.reason(), RefusalReason::Blocked { until } if until == now + Duration::from_secs(30))
    );
    assert_eq!(
        greeting_err(r.bytes()),
        (
            1129,
            "Host '127.0.0.1' is temporarily blocked due to too many authentication failures."
                .into()
        )
    );
    assert_eq!(ep.metrics().errors["blocked_host"], 1);
    // Other addresses are not blocked, nor is this one on another port.
    assert!(accept_from(&mut ep, now, other_client())
        .into_connection()
        .is_some());
    let same_host: SocketAddr = "127.0.0.1:50001".parse().unwrap();
    assert!(accept_from(&mut ep, now, same_host)
        .into_connection()
        .is_none());
    // Until the block expires; then a correct password logs in.
    let almost = now + Duration::from_secs(30) - Duration::from_millis(1);
    assert!(accept(&mut ep, almost, 0).is_none());
    let later = now + Duration::from_secs(30);
    Session::logged_in(&mut ep, later);
    assert_eq!(login_failures(&ep, "access_denied"), 3);
}

#[test]
fn only_access_denied_counts_toward_a_block_and_the_window_starts_again() {
    let (mut ep, now) = healthy_endpoint(blocking);
    // Handshake timeouts are counted, but never block.
    for _ in 0..5 {
        let mut conn = accept(&mut ep, now, 0).unwrap();
        let deadline = conn.poll_timeout().unwrap();
        conn.handle_timeout(deadline);
        ep.connection_closed(now, &mut conn);
    }
    assert_eq!(login_failures(&ep, "handshake_timeout"), 5);
    assert!(accept(&mut ep, now, 0).is_some());
    // Two failures, then the window ends: two more do not block.
    fail_logins(&mut ep, now, 2);
    let next_window = now + Duration::from_secs(60);
    fail_logins(&mut ep, next_window, 2);
    assert!(accept(&mut ep, next_window, 0).is_some());
    fail_logins(&mut ep, next_window, 1);
    assert!(accept(&mut ep, next_window, 0).is_none());
}

// ---- graceful shutdown ----

/// Proxy auth and a 2 s shutdown delay.
fn with_delay(f: &mut ConfigFile) {
    proxy_auth(f);
    f.proxy.shutdown_delay = Some(ConfigDuration(Duration::from_secs(2)));
}

#[test]
fn during_the_delay_ready_is_503_and_clients_are_still_served_then_the_listener_closes() {
    let (mut ep, now) = healthy_endpoint(with_delay);
    let mut a = Session::logged_in(&mut ep, now);
    ep.begin_shutdown(now);
    // Not ready; alive; still accepting and serving; nobody asked to close yet.
    assert!(!ep.is_serving());
    assert!(ep.is_accepting());
    assert_eq!(ep.shutdown_deadline(), None);
    assert_eq!(ep.handle_admin(now, &get("/health/ready")).status, 503);
    assert_eq!(ep.handle_admin(now, &get("/health")).status, 503);
    assert_eq!(ep.handle_admin(now, &get("/health/live")).status, 200);
    assert!(ep.poll_command(0).is_none());
    let during = now + Duration::from_secs(1);
    let mut b = Session::logged_in(&mut ep, during);
    assert_eq!(a.query(&mut ep, during, "SELECT 1").error, None);
    // Health rounds go on during the delay; the delay's end is a timer too.
    let end = now + Duration::from_secs(2);
    assert!(ep.poll_timeout().is_some_and(|t| t <= end));
    let mut t = ep.poll_timeout().unwrap();
    for _ in 0..100 {
        if !ep.is_accepting() {
            break;
        }
        assert!(t <= end, "the listener closes at the delay's end");
        health_round_or_timeout(&mut ep, t);
        t = ep.poll_timeout().unwrap_or(end);
    }
    assert!(!ep.is_accepting());
    assert_eq!(
        ep.shutdown_deadline(),
        Some(end + ep.config().proxy.shutdown_timeout)
    );
    // Every session, the one that came during the delay too, is asked to close.
    let delivered = deliver(&mut ep, end, &mut [&mut a, &mut b]);
    assert_eq!(delivered.len(), 2);
    assert!(a.conn.is_closed() && b.conn.is_closed());
    // A client accepted now (racing the listener's close) gets ERR 1053.
    let r = refusal(accept_from(&mut ep, end, client()));
    assert_eq!(r.reason(), RefusalReason::ShuttingDown);
    assert_eq!(
        greeting_err(r.bytes()),
        (1053, "Server shutdown in progress".into())
    );
    assert_eq!(
        ep.poll_timeout(),
        None,
        "no timers once the listener is closed"
    );
    assert_eq!(ep.handle_admin(now, &get("/health/live")).status, 200);
}

/// Runs what is due at `t`: the shutdown's step, and a health round if one starts.
fn health_round_or_timeout(ep: &mut Endpoint, t: Instant) {
    ep.handle_timeout(t);
    while let Some(mut p) = ep.poll_probe() {
        p.handle_input(t, &greeting(b"10.11.0-MariaDB"));
        ep.probe_finished(t, p);
    }
}

#[test]
fn without_a_delay_the_listener_closes_at_once() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    ep.begin_shutdown(now);
    assert!(!ep.is_accepting());
    assert_eq!(
        ep.shutdown_deadline(),
        Some(now + ep.config().proxy.shutdown_timeout)
    );
    assert_eq!(deliver(&mut ep, now, &mut [&mut a]).len(), 1);
    assert!(a.conn.is_closed());
    // Calling it again changes nothing.
    ep.begin_shutdown(now + Duration::from_secs(1));
    assert_eq!(
        ep.shutdown_deadline(),
        Some(now + ep.config().proxy.shutdown_timeout)
    );
}

#[test]
fn a_session_in_a_transaction_may_commit_before_it_closes() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut in_tx = Session::logged_in(&mut ep, now);
    let mut idle = Session::logged_in(&mut ep, now);
    in_tx.query(&mut ep, now, "BEGIN");
    ep.begin_shutdown(now);
    deliver(&mut ep, now, &mut [&mut in_tx, &mut idle]);
    assert!(idle.conn.is_closed(), "idle outside a transaction: closed");
    assert!(!in_tx.conn.is_closed(), "inside a transaction: stays");
    assert_eq!(in_tx.query(&mut ep, now, "SELECT 1").error, None);
    assert_eq!(in_tx.query(&mut ep, now, "COMMIT").error, None);
    assert!(in_tx.conn.is_closed(), "closed once the transaction ended");
    ep.connection_closed(now, &mut in_tx.conn);
    ep.connection_closed(now, &mut idle.conn);
    assert_eq!(ep.live_sessions(), 0);
}
