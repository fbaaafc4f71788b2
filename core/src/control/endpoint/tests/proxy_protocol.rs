//! The PROXY protocol through the endpoint and its connections: a trusted balancer's header names
//! the client for the session, the listing and every backend configured for it (login and
//! migration); headers from elsewhere, and a trusted peer without one, are refused.

use super::*;
use crate::proxy_protocol::encode_v2;

/// Trusts 127.0.0.0/8 (the harness's client is 127.0.0.1:50000); proxy auth; `db2` (only) gets
/// PROXY headers, or both with `both`.
fn balanced(both: bool) -> impl FnOnce(&mut ConfigFile) {
    move |f: &mut ConfigFile| {
        proxy_auth(f);
        f.proxy.proxy_protocol_from = Some(vec!["10.0.0.0/8".into(), "127.0.0.0/8".into()]);
        f.backends[1].proxy_protocol = true;
        f.backends[0].proxy_protocol = both;
    }
}

fn real_client() -> SocketAddr {
    "10.1.2.3:4000".parse().unwrap()
}

/// A client behind a balancer that sent `header` first.
fn behind_balancer(ep: &mut Endpoint, now: Instant, password: &str, header: &[u8]) -> Session {
    let mut s = Session::connect(ep, now, password);
    s.conn.handle_input(now, Peer::Client, header);
    s.pump(ep, now);
    s
}

fn v1_header() -> &'static [u8] {
    b"PROXY TCP4 10.1.2.3 127.0.0.1 4000 6000\r\n"
}

/// The PROXY header the server at `addr` got, if any (`None`: it got none).
fn header_seen(s: &Session, addr: BackendAddr) -> Option<Option<SocketAddr>> {
    let server = s.servers.values().find(|srv| srv.addr == addr)?;
    Some(server.proxy_header.and_then(|h| h.source))
}

#[test]
fn a_trusted_balancers_header_names_the_client_to_the_session_listing_and_backends() {
    let (mut ep, now) = healthy_endpoint(balanced(false));
    let mut s = behind_balancer(&mut ep, now, PASSWORD, v1_header());
    assert!(s.is_logged_in(), "{:?}", s.client_events);
    assert_eq!(s.conn.client(), real_client());
    assert_eq!(s.conn.peer(), client());
    assert_eq!(ep.sessions()[0].client, "10.1.2.3:4000");
    // db1 (the first pick) is not configured for it: no header.
    assert_eq!(s.connects, [db1()]);
    assert_eq!(header_seen(&s, db1()), Some(None));
    // The migration's connection to db2 starts with the client's address.
    let id = s.conn.id();
    ep.migrate(now, id, "db2").unwrap();
    deliver(&mut ep, now, &mut [&mut s]);
    assert_eq!(s.conn.session().backend_name(), Some("db2"));
    assert_eq!(header_seen(&s, db2()), Some(Some(real_client())));
    let summary = s.query(&mut ep, now, "SELECT 1");
    assert!(summary.error.is_none());
}

#[test]
fn backends_get_the_header_at_login_and_its_destination_is_the_backend() {
    let (mut ep, now) = healthy_endpoint(balanced(true));
    // v2 from the balancer this time, split over two reads.
    let header = encode_v2(real_client(), "127.0.0.1:6000".parse().unwrap());
    // (Before the client's own bytes, which the balancer relays after it.)
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.conn.handle_input(now, Peer::Client, &header[..7]);
    assert!(!s.conn.needs_sync() && s.conn.poll_event().is_none());
    s.conn.handle_input(now, Peer::Client, &header[7..]);
    s.pump(&mut ep, now);
    assert!(s.is_logged_in(), "{:?}", s.client_events);
    let server = s.servers.values().next().unwrap();
    let sent = server.proxy_header.unwrap();
    assert_eq!(sent.version, 2);
    assert_eq!(sent.source, Some(real_client()));
    assert_eq!(sent.destination, server.addr.ip());
}

#[test]
fn access_denied_names_the_headers_host() {
    let (mut ep, now) = healthy_endpoint(balanced(true));
    let s = behind_balancer(&mut ep, now, "wrong", v1_header());
    let e = s.login_error();
    assert_eq!(e.code, 1045);
    assert!(e.message.contains("'app'@'10.1.2.3'"), "{}", e.message);
}

#[test]
fn a_header_without_a_client_address_keeps_the_peers() {
    let (mut ep, now) = healthy_endpoint(balanced(true));
    let s = behind_balancer(&mut ep, now, PASSWORD, b"PROXY UNKNOWN\r\n");
    assert!(s.is_logged_in(), "{:?}", s.client_events);
    assert_eq!(s.conn.client(), client());
    assert_eq!(
        header_seen(&s, s.backend_addr().unwrap()),
        Some(Some(client()))
    );
}

/// The client got ERR `code` with `message` after the greeting, the session closed, and no
/// backend was ever asked for.
fn assert_refused(s: &Session, ep: &Endpoint, code: u16, message: &str) {
    let e = s.login_error();
    assert_eq!((e.code, e.message.as_str()), (code, message));
    assert!(s.conn.is_closed());
    assert!(s.connects.is_empty());
    assert!(ep.sessions().is_empty());
}

#[test]
fn a_header_from_an_untrusted_peer_is_refused() {
    let (mut ep, now) = healthy_endpoint(|f| {
        balanced(true)(f);
        f.proxy.proxy_protocol_from = Some(vec!["10.0.0.0/8".into()]);
    });
    let s = behind_balancer(&mut ep, now, PASSWORD, v1_header());
    assert_refused(&s, &ep, 1130, "Proxy header is not accepted from 127.0.0.1");
    // Without proxy-protocol-from at all, alike.
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let header = encode_v2(real_client(), db1().ip().unwrap());
    let s = behind_balancer(&mut ep, now, PASSWORD, &header);
    assert_refused(&s, &ep, 1130, "Proxy header is not accepted from 127.0.0.1");
    // Its clients without a header are served as before.
    let s = Session::logged_in(&mut ep, now);
    assert_eq!(s.conn.client(), client());
}

#[test]
fn a_trusted_peer_must_send_a_valid_header() {
    let (mut ep, now) = healthy_endpoint(balanced(true));
    // The client's handshake response comes first.
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.pump(&mut ep, now);
    assert_refused(
        &s,
        &ep,
        1130,
        "Host '127.0.0.1' must send a PROXY protocol header",
    );

    let s = behind_balancer(
        &mut ep,
        now,
        PASSWORD,
        b"PROXY TCP4 10.1.2 127.0.0.1 1 2\r\n",
    );
    assert_refused(&s, &ep, 1105, "Failed to parse proxy header");
}
