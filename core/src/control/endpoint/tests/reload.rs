//! Live reload on the virtual clock: backends added (after their first check) and removed
//! (drained by migration, then gone), what new and open sessions get, keys that need a
//! restart, refused configurations, and the admin routes.

use super::*;

fn db3() -> BackendAddr {
    "127.0.0.1:3308".parse().unwrap()
}

fn section(name: &str, addr: BackendAddr) -> BackendSection {
    BackendSection {
        name: name.into(),
        addr: addr.to_string(),
        proxy_protocol: false,
    }
}

/// The configuration [`endpoint`] starts with (db1, db2), then `edit`.
fn config(edit: impl FnOnce(&mut ConfigFile)) -> Config {
    let mut file = ConfigFile {
        backends: vec![section("db1", db1()), section("db2", db2())],
        ..ConfigFile::default()
    };
    edit(&mut file);
    Config::from_file(&file).unwrap()
}

/// Proxy auth, and the backends `names` (of db1, db2, db3).
fn with_backends(names: &'static [&'static str]) -> impl FnOnce(&mut ConfigFile) {
    move |f| {
        proxy_auth(f);
        f.backends = names
            .iter()
            .map(|&n| {
                let addr = match n {
                    "db1" => db1(),
                    "db2" => db2(),
                    _ => db3(),
                };
                section(n, addr)
            })
            .collect();
    }
}

/// Runs the health round due at `now`: backend `i` answers if `up(name)`.
fn round(ep: &mut Endpoint, now: Instant, up: impl Fn(&str) -> bool) {
    ep.handle_timeout(now);
    let probes: Vec<HealthProbe> = std::iter::from_fn(|| ep.poll_probe()).collect();
    assert!(!probes.is_empty(), "a round was due at {now:?}");
    for mut p in probes {
        let name = ep.registry.get(p.backend()).unwrap().name.clone();
        if up(&name) {
            p.handle_input(now, &greeting(b"10.11.0-MariaDB"));
        } else {
            p.connect_failed(now, &io::Error::from(io::ErrorKind::ConnectionRefused));
        }
        ep.probe_finished(now, p);
    }
}

fn names(ep: &Endpoint) -> Vec<String> {
    ep.backends().into_iter().map(|b| b.name).collect()
}

fn backend_of(s: &Session) -> &str {
    s.conn.session().backend_name().unwrap_or("-")
}

#[test]
fn an_added_backend_takes_sessions_after_its_first_passing_check() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let _a = Session::logged_in(&mut ep, now);
    let _b = Session::logged_in(&mut ep, now);
    let report = ep
        .reload(now, config(with_backends(&["db1", "db2", "db3"])))
        .unwrap();
    assert_eq!(report.added, ["db3"]);
    assert!(report.removed.is_empty() && report.pending_restart.is_empty());
    assert_eq!(report.version, 2);
    assert_eq!(names(&ep), ["db1", "db2", "db3"]);
    assert!(!ep.backends()[2].healthy, "unchecked");
    // Not chosen before its check, though it has the fewest sessions.
    let c = Session::logged_in(&mut ep, now);
    assert_ne!(backend_of(&c), "db3");
    // A round started at once for it: its probes wait for the driver.
    assert_eq!(ep.health.queued.len(), 3);
    round(&mut ep, now, |_| true);
    assert!(ep.backends()[2].healthy);
    let d = Session::logged_in(&mut ep, now);
    assert_eq!(backend_of(&d), "db3");
    assert_eq!(d.connects, [db3()]);
}

#[test]
fn a_removed_backend_is_drained_by_migration_then_leaves() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    assert_eq!((backend_of(&a), backend_of(&b)), ("db1", "db2"));
    a.query(&mut ep, now, "SET @x = 1");
    let report = ep
        .reload(now, config(with_backends(&["db2", "db3"])))
        .unwrap();
    assert_eq!(report.added, ["db3"]);
    assert_eq!(report.removed, ["db1"]);
    // db1 drains at once: its session moves to the only healthy backend left.
    let listed = ep.backends();
    assert!(listed[0].draining && listed[0].name == "db1");
    assert_eq!(ep.config_status(now).removing, ["db1"]);
    let delivered = deliver(&mut ep, now, &mut [&mut a, &mut b]);
    assert_eq!(
        delivered,
        [(a.conn.id(), Command::Migrate { to: "db2".into() })]
    );
    assert_eq!(backend_of(&a), "db2");
    assert_eq!(a.query(&mut ep, now, "SELECT 1").rows, 1);
    assert!(a.client_events.is_empty(), "the client saw nothing else");
    // No connection is left on db1: it is gone at the next tick (here, the round the reload
    // started for db3), and its name is free.
    let tick = now;
    round(&mut ep, tick, |_| true);
    assert_eq!(names(&ep), ["db2", "db3"]);
    assert!(ep.config_status(tick).removing.is_empty());
    assert_eq!(
        ep.set_draining(tick, "db1", true),
        Err(ApiError::UnknownBackend("db1".into()))
    );
    // The balancer evens out onto db3 once it is healthy.
    let later = tick + ep.config().migration.rebalance_interval;
    ep.handle_timeout(later);
    let delivered = deliver(&mut ep, later, &mut [&mut a, &mut b]);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(sessions_on(&ep), [1, 1]);
    // A backend of the same name may come back, as a new backend.
    ep.reload(later, config(with_backends(&["db1", "db2", "db3"])))
        .unwrap();
    assert_eq!(names(&ep), ["db2", "db3", "db1"]);
}

#[test]
fn a_removed_backend_with_sessions_stays_until_they_end_without_migration() {
    // Passthrough auth: migration is off.
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut a = Session::logged_in(&mut ep, now);
    assert_eq!(backend_of(&a), "db1");
    let report = ep
        .reload(
            now,
            config(|f| {
                f.backends.remove(0);
            }),
        )
        .unwrap();
    assert_eq!(report.removed, ["db1"]);
    assert!(ep.poll_command(0).is_none(), "nothing moves");
    ep.handle_timeout(now + Duration::from_secs(5));
    assert!(ep.poll_command(0).is_none(), "nothing moves");
    assert_eq!(names(&ep), ["db1", "db2"], "db1 still serves a");
    assert_eq!(a.query(&mut ep, now, "SELECT 1").rows, 1);
    // New sessions avoid it; undraining it is refused.
    let b = Session::logged_in(&mut ep, now);
    assert_eq!(backend_of(&b), "db2");
    assert!(matches!(
        ep.set_draining(now, "db1", false),
        Err(ApiError::Conflict(_))
    ));
    a.quit(&mut ep, now);
    ep.connection_closed(now, &mut a.conn);
    ep.handle_timeout(now + Duration::from_secs(6));
    assert_eq!(names(&ep), ["db2"]);
}

#[test]
fn a_backend_put_back_before_it_is_gone_is_kept() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let _a = Session::logged_in(&mut ep, now);
    ep.reload(
        now,
        config(|f| {
            f.backends.remove(0);
        }),
    )
    .unwrap();
    assert!(ep.backends()[0].draining);
    let report = ep.reload(now, config(defaults)).unwrap();
    assert!(report.added.is_empty() && report.removed.is_empty());
    assert_eq!(names(&ep), ["db1", "db2"]);
    assert!(!ep.backends()[0].draining);
    assert!(ep.backends()[0].healthy, "it kept its health");
    // At another address it is refused while it still has sessions.
    ep.reload(
        now,
        config(|f| {
            f.backends.remove(0);
        }),
    )
    .unwrap();
    let moved = config(|f| f.backends[0].addr = "127.0.0.1:3999".into());
    let err = ep.reload(now, moved).unwrap_err();
    assert!(err.to_string().contains("backends[0].addr"), "{err}");
    assert_eq!(ep.config_status(now).version, 4, "refused: not counted");
}

#[test]
fn new_sessions_get_the_new_session_configuration_and_open_ones_keep_theirs() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut old = Session::logged_in(&mut ep, now);
    let eight_hours = Some(now + Duration::from_secs(8 * 3600));
    // Once idle for a moment a session releases its buffers; then only its idle deadline is left.
    let released = now + crate::session::IDLE_RELEASE;
    old.conn.handle_timeout(released);
    assert_eq!(old.conn.poll_timeout(), eight_hours);
    let report = ep
        .reload(
            now,
            config(|f| {
                proxy_auth(f);
                f.proxy.idle_timeout = Some(ConfigDuration(Duration::from_secs(10)));
                f.proxy.max_connections = Some(2);
                f.auth.users.push(UserSection {
                    name: "other".into(),
                    password_hash: String::new(),
                });
            }),
        )
        .unwrap();
    assert_eq!(
        report.changed,
        ["proxy.max-connections", "proxy.idle-timeout", "auth.users"]
    );
    let mut new = Session::logged_in(&mut ep, now);
    new.conn.handle_timeout(released);
    assert_eq!(new.conn.poll_timeout(), Some(now + Duration::from_secs(10)));
    assert_eq!(old.conn.poll_timeout(), eight_hours, "kept its own");
    match &ep.session_config.frontend.auth {
        ServerAuth::Proxy { users, .. } => assert!(users.get("other").is_some()),
        other => panic!("{other:?}"),
    }
    // max-connections is the endpoint's own: at once.
    assert!(accept(&mut ep, now, 0).is_none());
    // The version the backends gave is still the one advertised.
    assert_eq!(ep.session_config.frontend.server_version, "10.11.0-MariaDB");
}

#[test]
fn keys_that_need_a_restart_are_reported_and_not_applied() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let running = ep.config().clone();
    let report = ep
        .reload(
            now,
            config(|f| {
                f.proxy.listen = Some("127.0.0.1:7777".into());
                f.proxy.max_connections = Some(5);
            }),
        )
        .unwrap();
    assert_eq!(report.pending_restart, ["proxy.listen"]);
    assert_eq!(ep.config().proxy.listen, running.proxy.listen);
    assert_eq!(ep.config().proxy.max_connections, 5);
    let r = ep.handle_admin(now, &get("/api/config"));
    assert_eq!(r.status, 200);
    let status = json(&r);
    assert_eq!(status["version"], 2);
    assert_eq!(
        status["pending_restart"],
        serde_json::json!(["proxy.listen"])
    );
    assert_eq!(status["last_error"], serde_json::Value::Null);
    // Put back, it is no longer pending.
    ep.reload(now, config(defaults)).unwrap();
    assert!(ep.config_status(now).pending_restart.is_empty());
}

#[test]
fn a_refused_configuration_keeps_the_running_one_and_names_the_key() {
    let (mut ep, now) = healthy_endpoint(defaults);
    // Without a source, the route says so.
    let r = ep.handle_admin(now, &post("/api/config/reload", ""));
    assert_eq!(r.status, 501, "{}", String::from_utf8_lossy(&r.body));
    let source = std::sync::Arc::new(std::sync::Mutex::new(Err(ConfigError::Invalid(vec![
        crate::control::config::Problem {
            key: "proxy.max-connections".into(),
            reason: "must be at least 1".into(),
        },
    ]))));
    let shared = std::sync::Arc::clone(&source);
    ep.set_config_source(Box::new(move || shared.lock().unwrap().clone()));
    let r = ep.handle_admin(now, &post("/api/config/reload", ""));
    assert_eq!(r.status, 422);
    let body = json(&r);
    assert_eq!(body["problems"][0]["key"], "proxy.max-connections");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("proxy.max-connections"));
    let status = ep.config_status(now);
    assert_eq!(status.version, 1);
    assert!(status.last_error.unwrap().contains("proxy.max-connections"));
    assert_eq!(ep.config().proxy.max_connections, 10_000);
    assert_eq!(names(&ep), ["db1", "db2"]);
    // A good file is applied and clears the error.
    *source.lock().unwrap() = Ok(config(|f| f.backends.push(section("db3", db3()))));
    let r = ep.handle_admin(now, &post("/api/config/reload", ""));
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["added"], serde_json::json!(["db3"]));
    assert_eq!(ep.config_status(now).last_error, None);
    assert_eq!(ep.handle_admin(now, &get("/api/config/reload")).status, 405);
    // Nothing changes once shutdown began.
    ep.begin_shutdown(now);
    assert_eq!(
        ep.handle_admin(now, &post("/api/config/reload", "")).status,
        503
    );
}

#[test]
fn routes_follow_the_file_but_an_embedders_chooser_stays() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    ep.reload(
        now,
        config(|f| {
            proxy_auth(f);
            f.routes = vec![crate::control::config::RouteSection {
                user: Some(USER.into()),
                database: None,
                backend: "db2".into(),
            }];
        }),
    )
    .unwrap();
    let a = Session::logged_in(&mut ep, now);
    let b = Session::logged_in(&mut ep, now);
    assert_eq!((backend_of(&a), backend_of(&b)), ("db2", "db2"));
    ep.reload(now, config(proxy_auth)).unwrap();
    let c = Session::logged_in(&mut ep, now);
    assert_eq!(backend_of(&c), "db1", "the route is gone");
    ep.set_chooser(Box::new(|_: &ChooseRequest<'_>| {
        Choice::Backend("db2".into())
    }));
    ep.reload(now, config(proxy_auth)).unwrap();
    let d = Session::logged_in(&mut ep, now);
    assert_eq!(backend_of(&d), "db2", "the embedder's chooser decides");
}
