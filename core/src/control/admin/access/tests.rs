//! The access checks against configurations read from TOML.

use super::*;
use crate::control::config::{Config, ConfigFile};

const ADMIN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";

fn admin(keys: &str) -> AdminConfig {
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:6080\"\n{keys}\n\
         [[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n"
    );
    let file = ConfigFile::parse(&text, None).unwrap();
    Config::from_file(&file).unwrap().admin
}

fn with_tokens() -> AdminConfig {
    admin(&format!("token = \"{ADMIN}\"\nread-token = \"{READ}\""))
}

/// A request as curl sends it to 127.0.0.1:6080, with `headers` (`name: value`) added.
fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    let mut r = Request::new(method, path, "");
    r.headers.host = Some("127.0.0.1:6080".into());
    for (name, value) in headers {
        let value = Some((*value).to_owned());
        match *name {
            "host" => r.headers.host = value,
            "content-type" => r.headers.content_type = value,
            "authorization" => r.headers.authorization = value,
            "origin" => r.headers.origin = value,
            other => panic!("{other}"),
        }
    }
    r
}

/// The status of the refusal, or 0 if the request may go on.
fn status(req: &Request, admin: &AdminConfig) -> u16 {
    match check_access(req, admin) {
        Ok(()) => 0,
        Err(r) => {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert!(body["error"].is_string(), "{body}");
            // The token is never echoed.
            let text = String::from_utf8(r.body).unwrap();
            assert!(!text.contains(ADMIN) && !text.contains(READ), "{text}");
            assert_eq!(r.challenge.is_some(), r.status == 401);
            r.status
        }
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const BEARER_ADMIN: (&str, &str) = ("authorization", "Bearer admin-token-0123456789");
const BEARER_READ: (&str, &str) = ("authorization", "Bearer read-token-0123456789");

#[test]
fn without_tokens_a_post_must_be_json_or_carry_authorization() {
    let open = admin("");
    let drain = "/api/backends/db1/drain";
    assert_eq!(status(&request("POST", drain, &[JSON]), &open), 0);
    assert_eq!(
        status(
            &request(
                "POST",
                drain,
                &[("content-type", "Application/JSON; charset=utf-8")]
            ),
            &open
        ),
        0
    );
    assert_eq!(status(&request("POST", drain, &[BEARER_ADMIN]), &open), 0);
    // What a page can send cross-site without a preflight: no type, or a "simple" one.
    for simple in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        let headers: Vec<_> = simple.map(|t| ("content-type", t)).into_iter().collect();
        assert_eq!(
            status(&request("POST", drain, &headers), &open),
            403,
            "{simple:?}"
        );
    }
    // Reading needs nothing more.
    assert_eq!(status(&request("GET", "/api/sessions", &[]), &open), 0);
    assert_eq!(status(&request("GET", "/metrics", &[]), &open), 0);
}

#[test]
fn with_tokens_reading_needs_either_token_and_changing_the_admin_one() {
    let a = with_tokens();
    let drain = "/api/backends/db1/drain";
    for path in ["/metrics", "/api/backends", "/api/sessions"] {
        assert_eq!(status(&request("GET", path, &[]), &a), 401, "{path}");
        assert_eq!(status(&request("GET", path, &[BEARER_READ]), &a), 0);
        assert_eq!(status(&request("GET", path, &[BEARER_ADMIN]), &a), 0);
    }
    assert_eq!(status(&request("POST", drain, &[JSON]), &a), 401);
    assert_eq!(
        status(&request("POST", drain, &[JSON, BEARER_READ]), &a),
        403
    );
    assert_eq!(
        status(&request("POST", drain, &[JSON, BEARER_ADMIN]), &a),
        0
    );
    // The admin token is proof enough against cross-site requests: a browser cannot send
    // Authorization cross-site without a preflight, so the content type does not matter.
    assert_eq!(
        status(
            &request(
                "POST",
                drain,
                &[("content-type", "text/plain"), BEARER_ADMIN]
            ),
            &a
        ),
        0
    );
    for wrong in [
        "Bearer admin-token-012345678",
        "Bearer admin-token-01234567890",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        "admin-token-0123456789",
        "bearer",
    ] {
        let req = request("POST", drain, &[JSON, ("authorization", wrong)]);
        assert_eq!(status(&req, &a), 401, "{wrong}");
    }
    // The scheme is case-insensitive.
    let lower = request(
        "POST",
        drain,
        &[JSON, ("authorization", "bearer admin-token-0123456789")],
    );
    assert_eq!(status(&lower, &a), 0);
}

#[test]
fn an_admin_token_alone_guards_reading_too() {
    let a = admin(&format!("token = \"{ADMIN}\""));
    assert_eq!(status(&request("GET", "/metrics", &[]), &a), 401);
    assert_eq!(status(&request("GET", "/metrics", &[BEARER_READ]), &a), 401);
    assert_eq!(status(&request("GET", "/metrics", &[BEARER_ADMIN]), &a), 0);
}

#[test]
fn health_needs_nothing() {
    let a = with_tokens();
    for path in ["/health", "/health/live", "/health/ready"] {
        let mut req = request("GET", path, &[("host", "evil.example:6080")]);
        req.headers.origin = Some("http://evil.example".into());
        assert_eq!(status(&req, &a), 0, "{path}");
    }
    // Only reading it.
    assert_eq!(status(&request("POST", "/health", &[JSON]), &a), 401);
}

#[test]
fn the_host_must_name_the_endpoint() {
    let open = admin("hosts = [\"ferry.internal\", \"Admin.Example.\"]");
    for host in [
        "127.0.0.1:6080",
        "127.0.0.1",
        "10.1.2.3:9999",
        "[::1]:6080",
        "[::1]",
        "localhost:6080",
        "LOCALHOST",
        "localhost.",
        "ferry.internal:6080",
        "FERRY.internal",
        "admin.example",
    ] {
        let req = request("GET", "/api/backends", &[("host", host)]);
        assert_eq!(status(&req, &open), 0, "{host}");
    }
    // DNS rebinding: the attacker's own name, resolving to 127.0.0.1.
    for host in [
        "evil.example:6080",
        "evil.example",
        "localhost.evil.example",
        "ferry.internal.evil.example",
        "",
        "127.0.0.1.nip.io",
    ] {
        for method in ["GET", "POST"] {
            let req = request(method, "/api/backends/db1/drain", &[("host", host), JSON]);
            assert_eq!(status(&req, &open), 403, "{method} {host}");
        }
    }
    // Without a Host header it is not a browser.
    let mut req = request("POST", "/api/backends/db1/drain", &[JSON]);
    req.headers.host = None;
    assert_eq!(status(&req, &open), 0);
    // With tokens, a wrong Host is refused before the token is looked at.
    let req = request("GET", "/metrics", &[("host", "evil.example"), BEARER_ADMIN]);
    assert_eq!(status(&req, &with_tokens()), 403);
}

#[test]
fn a_foreign_origin_is_refused() {
    let open = admin("");
    let drain = "/api/backends/db1/drain";
    for origin in ["http://127.0.0.1:6080", "https://localhost:6080"] {
        let req = request("POST", drain, &[JSON, ("origin", origin)]);
        assert_eq!(status(&req, &open), 0, "{origin}");
    }
    for origin in [
        "http://evil.example",
        "null",
        "evil",
        "http://evil.example:6080",
    ] {
        let req = request("POST", drain, &[JSON, ("origin", origin)]);
        assert_eq!(status(&req, &open), 403, "{origin}");
        let req = request("GET", "/api/sessions", &[("origin", origin)]);
        assert_eq!(status(&req, &open), 403, "{origin}");
    }
}

#[test]
fn token_comparison_holds_for_any_length() {
    let a = with_tokens();
    let token = a.token.as_ref().unwrap();
    assert!(token.matches(ADMIN.as_bytes()));
    assert!(!token.matches(b""));
    assert!(!token.matches(&[b'a'; 10_000]));
    assert!(!token.matches(READ.as_bytes()));
    assert_eq!(format!("{a:?}").matches(ADMIN).count(), 0, "{a:?}");
}
