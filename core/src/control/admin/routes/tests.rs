//! The routing and rendering against a fake proxy.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;
use crate::control::admin::{BackendInfo, Metrics, SessionInfo};

/// A fake proxy: two backends, two sessions, and a log of the requests it received.
struct FakeApi {
    serving: bool,
    starting: bool,
    backends: Mutex<Vec<BackendInfo>>,
    migrations: Mutex<Vec<(u64, String)>>,
}

impl FakeApi {
    fn new() -> Self {
        let backend = |name: &str, port: u16, sessions| BackendInfo {
            name: name.into(),
            addr: format!("127.0.0.1:{port}"),
            healthy: true,
            sessions,
            draining: false,
            health_warning: None,
            down_reason: None,
        };
        Self {
            serving: true,
            starting: false,
            backends: Mutex::new(vec![backend("db1", 3306, 1), backend("db2", 3307, 1)]),
            migrations: Mutex::new(Vec::new()),
        }
    }
}

/// Through a shared reference: the fake keeps its state behind locks.
impl AdminApi for &FakeApi {
    fn serving(&self) -> bool {
        self.serving
    }
    fn starting(&self) -> bool {
        self.starting
    }
    fn backends(&self) -> Result<Vec<BackendInfo>, ApiError> {
        Ok(self.backends.lock().unwrap().clone())
    }
    fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError> {
        Ok(vec![
            SessionInfo {
                id: 7,
                user: "app".into(),
                backend: Some("db1".into()),
                pinned: None,
                client: "10.1.2.3:5000".into(),
            },
            SessionInfo {
                id: 9,
                user: "app".into(),
                backend: Some("db2".into()),
                pinned: Some("transaction".into()),
                client: "10.1.2.4:5001".into(),
            },
        ])
    }
    fn metrics(&self) -> Result<Metrics, ApiError> {
        Ok(Metrics {
            sessions: 2,
            backends: self.backends()?,
            ..Metrics::default()
        })
    }
    fn set_draining(&mut self, backend: &str, draining: bool) -> Result<(), ApiError> {
        let mut list = self.backends.lock().unwrap();
        let b = list
            .iter_mut()
            .find(|b| b.name == backend)
            .ok_or_else(|| ApiError::UnknownBackend(backend.into()))?;
        b.draining = draining;
        Ok(())
    }
    fn migrate(&mut self, session: u64, to: &str) -> Result<(), ApiError> {
        if !self.backends.lock().unwrap().iter().any(|b| b.name == to) {
            return Err(ApiError::UnknownBackend(to.into()));
        }
        match session {
            7 => {
                self.migrations.lock().unwrap().push((session, to.into()));
                Ok(())
            }
            9 => Err(ApiError::Conflict("session is pinned: transaction".into())),
            _ => Err(ApiError::UnknownSession(session)),
        }
    }
}

fn request(method: &str, path: &str, body: &str) -> Request {
    Request::new(method, path, body)
}

fn call(api: &FakeApi, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = route(&request(method, path, body), &mut &*api);
    (r.status, String::from_utf8(r.body).unwrap())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn health_follows_serving_state() {
    let mut api = FakeApi::new();
    for path in ["/health", "/health/ready", "/health/live"] {
        assert_eq!(call(&api, "GET", path, ""), (200, "ok\n".into()), "{path}");
    }
    api.serving = false;
    // Ready (and plain /health) turn to 503 when shutdown begins; live stays 200.
    assert_eq!(call(&api, "GET", "/health", "").0, 503);
    assert_eq!(
        call(&api, "GET", "/health/ready", ""),
        (503, "shutting down\n".into())
    );
    assert_eq!(call(&api, "GET", "/health/live", ""), (200, "ok\n".into()));
}

#[test]
fn not_ready_before_the_first_health_round() {
    let mut api = FakeApi::new();
    api.starting = true;
    // Clients are not served before the first round fixes the backends' verdicts and version.
    assert_eq!(call(&api, "GET", "/health", "").0, 503);
    assert_eq!(
        call(&api, "GET", "/health/ready", ""),
        (503, "starting\n".into())
    );
    assert_eq!(call(&api, "GET", "/health/live", ""), (200, "ok\n".into()));
}

#[test]
fn health_live_answers_while_the_process_runs() {
    let mut api = FakeApi::new();
    api.serving = false;
    assert_eq!(call(&api, "GET", "/health/live", ""), (200, "ok\n".into()));
    assert!(is_live(&request("GET", "/health/live", "")));
    assert!(!is_live(&request("POST", "/health/live", "")));
    assert!(!is_live(&request("GET", "/health", "")));
    assert_eq!(call(&api, "POST", "/health/live", "").0, 405);
}

#[cfg(feature = "toml")]
#[test]
fn serve_checks_access_before_routing() {
    use crate::control::config::{Config, ConfigFile};
    let text = "[admin]\ntoken = \"admin-token-0123456789\"\n\
                [[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n";
    let admin = Config::from_file(&ConfigFile::parse(text, None).unwrap())
        .unwrap()
        .admin;
    let api = FakeApi::new();
    let mut req = request("POST", "/api/backends/db2/drain", "");
    let refused = serve(&req, &admin, &mut &api);
    assert_eq!(refused.status, 401);
    assert!(String::from_utf8(refused.to_bytes())
        .unwrap()
        .contains("\r\nWWW-Authenticate: Bearer realm=\"ferry\"\r\n"));
    assert!(
        !api.backends.lock().unwrap()[1].draining,
        "refused: not done"
    );
    req.headers.authorization = Some("Bearer admin-token-0123456789".into());
    assert_eq!(serve(&req, &admin, &mut &api).status, 200);
    assert!(api.backends.lock().unwrap()[1].draining);
    // Health needs no token.
    assert_eq!(
        serve(&request("GET", "/health", ""), &admin, &mut &api).status,
        200
    );
}

#[test]
fn metrics_are_prometheus_text() {
    let api = FakeApi::new();
    let r = route(&request("GET", "/metrics", ""), &mut &api);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.lines().any(|l| l == "ferry_sessions 2"), "{text}");
    assert!(
        text.contains("ferry_backend_sessions{backend=\"db2\",addr=\"127.0.0.1:3307\"} 1"),
        "{text}"
    );
}

#[test]
fn lists_backends_and_sessions_as_json() {
    let api = FakeApi::new();
    let (status, body) = call(&api, "GET", "/api/backends", "");
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&body),
        json!([
            {"name": "db1", "addr": "127.0.0.1:3306", "healthy": true, "sessions": 1, "draining": false},
            {"name": "db2", "addr": "127.0.0.1:3307", "healthy": true, "sessions": 1, "draining": false},
        ])
    );
    let (status, body) = call(&api, "GET", "/api/sessions", "");
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&body),
        json!([
            {"id": 7, "user": "app", "backend": "db1", "pinned": null, "client": "10.1.2.3:5000"},
            {"id": 9, "user": "app", "backend": "db2", "pinned": "transaction", "client": "10.1.2.4:5001"},
        ])
    );
}

#[test]
fn drain_and_undrain() {
    let api = FakeApi::new();
    let (status, body) = call(&api, "POST", "/api/backends/db2/drain", "");
    assert_eq!(status, 200);
    assert_eq!(json_of(&body), json!({"backend": "db2", "draining": true}));
    assert!(api.backends.lock().unwrap()[1].draining);
    let (status, _) = call(&api, "POST", "/api/backends/db2/undrain", "");
    assert_eq!(status, 200);
    assert!(!api.backends.lock().unwrap()[1].draining);
    let (status, body) = call(&api, "POST", "/api/backends/nope/drain", "");
    assert_eq!(status, 404);
    assert!(json_of(&body)["error"].as_str().unwrap().contains("nope"));
}

#[test]
fn migrate_requests() {
    let api = FakeApi::new();
    let (status, body) = call(&api, "POST", "/api/sessions/7/migrate", r#"{"to": "db2"}"#);
    assert_eq!(status, 202, "{body}");
    assert_eq!(json_of(&body), json!({"session": 7, "to": "db2"}));
    assert_eq!(
        *api.migrations.lock().unwrap(),
        vec![(7, "db2".to_string())]
    );

    for (path, body, want) in [
        ("/api/sessions/7/migrate", "", 400),
        ("/api/sessions/7/migrate", "{\"to\": 5}", 400),
        (
            "/api/sessions/7/migrate",
            "{\"to\": \"db2\", \"now\": true}",
            400,
        ),
        ("/api/sessions/7/migrate", "not json", 400),
        ("/api/sessions/7/migrate", r#"{"to": "db9"}"#, 404),
        ("/api/sessions/8/migrate", r#"{"to": "db2"}"#, 404),
        ("/api/sessions/x/migrate", r#"{"to": "db2"}"#, 404),
        ("/api/sessions/+7/migrate", r#"{"to": "db2"}"#, 404),
        ("/api/sessions/9/migrate", r#"{"to": "db2"}"#, 409),
    ] {
        let (status, text) = call(&api, "POST", path, body);
        assert_eq!(status, want, "{path} {body}: {text}");
        assert!(json_of(&text)["error"].is_string(), "{text}");
    }
    // Only the one accepted request reached the proxy.
    assert_eq!(api.migrations.lock().unwrap().len(), 1);
}

#[test]
fn unknown_paths_and_wrong_methods() {
    let api = FakeApi::new();
    for path in [
        "/",
        "/healthz",
        "/api",
        "/api/backends/db1",
        "/api/backends/db1/drain/x",
        "/health/",
        "/health/live/x",
        "/health/started",
    ] {
        assert_eq!(call(&api, "GET", path, "").0, 404, "{path}");
    }
    for (method, path, allow) in [
        ("POST", "/health", "GET"),
        ("POST", "/health/live", "GET"),
        ("POST", "/health/ready", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("PUT", "/api/backends", "GET"),
        ("GET", "/api/backends/db1/drain", "POST"),
        ("GET", "/api/sessions/7/migrate", "POST"),
    ] {
        let r = route(&request(method, path, ""), &mut &api);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.allow, Some(allow));
    }
    // A refused method changed nothing.
    assert!(!api.backends.lock().unwrap()[0].draining);
}

#[test]
fn api_errors_map_to_statuses() {
    struct Down;
    impl AdminApi for Down {
        fn serving(&self) -> bool {
            false
        }
        fn backends(&self) -> Result<Vec<BackendInfo>, ApiError> {
            Err(ApiError::Unavailable("event loop did not answer".into()))
        }
        fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError> {
            Err(ApiError::Unavailable("x".into()))
        }
        fn metrics(&self) -> Result<Metrics, ApiError> {
            Err(ApiError::Unavailable("x".into()))
        }
        fn set_draining(&mut self, _: &str, _: bool) -> Result<(), ApiError> {
            Err(ApiError::Conflict("x".into()))
        }
        fn migrate(&mut self, s: u64, _: &str) -> Result<(), ApiError> {
            Err(ApiError::UnknownSession(s))
        }
    }
    let status = |m: &str, p: &str, b: &str| route(&request(m, p, b), &mut Down).status;
    assert_eq!(status("GET", "/api/backends", ""), 503);
    assert_eq!(status("GET", "/api/sessions", ""), 503);
    assert_eq!(status("GET", "/metrics", ""), 503);
    assert_eq!(status("POST", "/api/backends/a/drain", ""), 409);
    assert_eq!(
        status("POST", "/api/sessions/1/migrate", r#"{"to":"a"}"#),
        404
    );
}
