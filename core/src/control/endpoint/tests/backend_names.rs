//! Backends given by host name: a name that does not resolve is a backend that is down (health
//! check or session connect alike), with the reason in the listing; sessions go elsewhere; a
//! named backend's PROXY header names the address its lookup gave.

use super::*;

const UNRESOLVABLE: &str = "no-such-host.invalid:3306";

/// `db1` at `db1_addr`, `db2` at 127.0.0.1:3307.
fn named_db1(db1_addr: &'static str) -> impl FnOnce(&mut ConfigFile) {
    move |f: &mut ConfigFile| f.backends[0].addr = db1_addr.into()
}

/// What a driver reports for a name its lookup could not resolve.
fn lookup_failed(addr: &BackendAddr) -> io::Error {
    let error = io::Error::other("failed to lookup address information: Name or service not known");
    addr.resolved::<Vec<SocketAddr>>(Err(error)).unwrap_err()
}

/// One health round: a named backend in `unresolvable` fails its lookup, the others greet.
fn round(ep: &mut Endpoint, now: Instant, unresolvable: &[usize]) {
    ep.handle_timeout(now);
    let probes: Vec<HealthProbe> = std::iter::from_fn(|| ep.poll_probe()).collect();
    assert!(!probes.is_empty());
    for mut p in probes {
        if unresolvable.contains(&p.backend()) {
            assert!(p.addr().name().is_some(), "only a name fails to resolve");
            let error = lookup_failed(p.addr());
            p.connect_failed(now, &error);
        } else {
            p.handle_input(now, &greeting(b"10.11.0-MariaDB"));
        }
        assert!(p.is_done());
        ep.probe_finished(now, p);
    }
}

#[test]
fn an_unresolvable_backend_is_down_with_its_reason_and_gets_no_session() {
    let (mut ep, now) = endpoint(
        |f| {
            proxy_auth(f);
            named_db1(UNRESOLVABLE)(f);
        },
        1,
    );
    assert_eq!(
        ep.config().backends[0].addr.name(),
        Some("no-such-host.invalid")
    );
    round(&mut ep, now, &[0]);
    let infos = ep.backends();
    assert_eq!(infos[0].addr, UNRESOLVABLE);
    assert!(!infos[0].healthy);
    let reason = infos[0]
        .down_reason
        .as_deref()
        .expect("a reason while down");
    assert!(
        reason.starts_with("cannot resolve \"no-such-host.invalid\": ")
            && reason.contains("Name or service not known"),
        "{reason}"
    );
    assert!(
        infos[1].healthy && infos[1].down_reason.is_none(),
        "{infos:?}"
    );
    let json = serde_json::to_value(&infos).unwrap();
    assert!(json[0]["down_reason"]
        .as_str()
        .unwrap()
        .contains("cannot resolve"));
    assert!(json[1].get("down_reason").is_none(), "{json}");
    // Sessions all go to db2; none even tries the name.
    for _ in 0..3 {
        let s = Session::logged_in(&mut ep, now);
        assert_eq!(s.connects, [db2()]);
    }
    assert_eq!(sessions_on(&ep), [0, 3]);
    // A migration to it is refused: it is not healthy.
    let id = ep.sessions()[0].id;
    assert!(matches!(
        ep.migrate(now, id, "db1"),
        Err(ApiError::Conflict(_))
    ));
}

#[test]
fn a_name_that_stops_resolving_at_a_sessions_connect_sends_it_to_another_backend() {
    let (mut ep, now) = healthy_endpoint(|f| {
        proxy_auth(f);
        named_db1("db1.internal:3306")(f);
    });
    let named: BackendAddr = "db1.internal:3306".parse().unwrap();
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.dial.insert(named.clone(), Dial::Unresolvable);
    s.pump(&mut ep, now);
    assert_eq!(s.connects, [named.clone(), db2()]);
    assert!(s.is_logged_in(), "{:?}", s.client_events);
    assert_eq!(s.conn.session().backend_name(), Some("db2"));
    let infos = ep.backends();
    assert!(!infos[0].healthy, "skipped until a health check passes");
    let reason = infos[0].down_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("cannot resolve \"db1.internal\""),
        "{reason}"
    );
    assert_eq!(ep.metrics().errors["backend_connect"], 1);
    // The next session does not try it.
    let t = Session::logged_in(&mut ep, now);
    assert_eq!(t.connects, [db2()]);
    // The name resolves again: the next check brings it back, without a reason.
    round(&mut ep, now + Duration::from_secs(1), &[]);
    let infos = ep.backends();
    assert!(
        infos[0].healthy && infos[0].down_reason.is_none(),
        "{infos:?}"
    );
    let u = Session::logged_in(&mut ep, now + Duration::from_secs(1));
    assert_eq!(u.connects, [named]);
}

#[test]
fn a_lookup_ferry_had_no_room_for_leaves_the_backend_up() {
    let (mut ep, now) = healthy_endpoint(|f| {
        proxy_auth(f);
        named_db1("db1.internal:3306")(f);
    });
    let named: BackendAddr = "db1.internal:3306".parse().unwrap();
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.pump(&mut ep, now);
    assert_eq!(s.connects, [named]);
    assert!(s.is_logged_in());
    // A probe the driver's resolver was too busy for says nothing about the backend.
    ep.handle_timeout(now + Duration::from_secs(1));
    while let Some(mut p) = ep.poll_probe() {
        if p.backend() == 0 {
            let busy = p.addr().resolver_busy();
            p.connect_failed(now, &busy);
            assert!(p.verdict().unwrap().as_ref().unwrap_err().local);
        } else {
            p.handle_input(now, &greeting(b"10.11.0-MariaDB"));
        }
        ep.probe_finished(now, p);
    }
    let infos = ep.backends();
    assert!(
        infos[0].healthy && infos[0].down_reason.is_none(),
        "{infos:?}"
    );
}

#[test]
fn a_named_backends_proxy_header_names_the_address_it_resolved_to() {
    let (mut ep, now) = healthy_endpoint(|f| {
        proxy_auth(f);
        f.backends[0].addr = "db1.internal:3306".into();
        f.backends[0].proxy_protocol = true;
    });
    let s = Session::logged_in(&mut ep, now);
    assert_eq!(s.conn.session().backend_name(), Some("db1"));
    let server = s.servers.values().next().unwrap();
    let sent = server.proxy_header.expect("a PROXY header");
    assert_eq!(sent.source, Some(client()));
    assert_eq!(
        sent.destination,
        Some(SocketAddr::from((RESOLVED_IP, 3306))),
        "where the name led, not an unspecified address"
    );
}
