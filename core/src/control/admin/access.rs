//! Who may do what on the admin endpoint: [`check_access`] runs before any route.
//!
//! | request | needs |
//! |---|---|
//! | `GET /health`, `/health/...` | nothing: orchestrators and load balancers probe without tokens |
//! | any other | a `Host` naming this endpoint, and an `Origin` (if sent) naming it too |
//! | `GET` (`/metrics`, `/api/...`) with `[admin] token` set | `Authorization: Bearer <token>`: the admin or the read-only token |
//! | anything else (`POST`...) with `[admin] token` set | the admin token (401 without a token or with a wrong one, 403 with the read-only one) |
//! | anything else without a token configured | `Content-Type: application/json` or an `Authorization` header |
//!
//! Why: a web page in a local browser can send a "simple" cross-site request to
//! `127.0.0.1:6080` without asking (a `POST` with no body, `text/plain`, or a form type), and with
//! DNS rebinding it can even read the answers: its own host name then resolves to 127.0.0.1.
//! A JSON content type or an `Authorization` header makes the browser ask first (a CORS
//! preflight `OPTIONS`, which this endpoint never allows), and a `Host` or `Origin` that is not
//! the endpoint's is a page under another name. The endpoint sets no cookie, so no credential
//! rides along with a cross-site request.
//!
//! A request without `Host` is not from a browser (browsers always send it) and is not refused
//! for that. The endpoint's names: `localhost`, any IP address (a browser sends an IP in `Host` only when
//! it connected to that IP, so no rebinding is involved), and `[admin] hosts`. The port is not
//! checked: port forwarding changes it.

use std::net::IpAddr;

use super::http::{Request, Response};
use crate::control::config::AdminConfig;

/// The `WWW-Authenticate` challenge of a 401.
const CHALLENGE: &str = "Bearer realm=\"ferry\"";

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// `/health` and below: anyone.
    Nothing,
    /// `GET`: the read-only token is enough.
    Read,
    /// Anything that may change something.
    Write,
}

fn needs(req: &Request) -> Needs {
    let get = req.method == "GET" || req.method == "HEAD";
    let health = req.path == "/health" || req.path.starts_with("/health/");
    match (get, health) {
        (true, true) => Needs::Nothing,
        (true, false) => Needs::Read,
        (false, _) => Needs::Write,
    }
}

/// `Ok` if `req` may go on to its route; otherwise the refusal to send (401 or 403, with a JSON
/// `{"error"}` saying what is missing; the token is never echoed).
pub fn check_access(req: &Request, admin: &AdminConfig) -> Result<(), Response> {
    let needs = needs(req);
    if needs == Needs::Nothing {
        return Ok(());
    }
    let h = &req.headers;
    if let Some(host) = &h.host {
        if !names_endpoint(host, admin) {
            return Err(Response::error(
                403,
                format!(
                    "Host {:?} does not name this endpoint; use its IP address or localhost, \
                     or add the name to [admin] hosts",
                    shorten(host)
                ),
            ));
        }
    }
    if let Some(origin) = &h.origin {
        let host = origin
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""));
        if !host.is_some_and(|host| names_endpoint(host, admin)) {
            return Err(Response::error(
                403,
                format!("cross-site request refused (Origin {:?})", shorten(origin)),
            ));
        }
    }
    if let Some(token) = &admin.token {
        let presented = h.authorization.as_deref().and_then(bearer);
        let Some(presented) = presented else {
            return Err(unauthorized(
                "this endpoint needs a token: send Authorization: Bearer <token>",
            ));
        };
        if token.matches(presented.as_bytes()) {
            return Ok(());
        }
        let read = admin
            .read_token
            .as_ref()
            .is_some_and(|t| t.matches(presented.as_bytes()));
        return match (read, needs) {
            (true, Needs::Read) => Ok(()),
            (true, _) => Err(Response::error(
                403,
                "the read-only token cannot change anything; use the admin token",
            )),
            (false, _) => Err(unauthorized("wrong token")),
        };
    }
    let json = h
        .content_type
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"));
    if needs == Needs::Write && !json && h.authorization.is_none() {
        return Err(Response::error(
            403,
            "send Content-Type: application/json (or an Authorization header): a browser \
             cannot send either cross-site without asking first",
        ));
    }
    Ok(())
}

fn unauthorized(message: &str) -> Response {
    Response {
        challenge: Some(CHALLENGE),
        ..Response::error(401, message)
    }
}

/// The token of `Bearer <token>` (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `host` (`name`, `name:port`, `[v6]:port`) is one of the endpoint's names.
fn names_endpoint(host: &str, admin: &AdminConfig) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(ip, _)| ip),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    name.eq_ignore_ascii_case("localhost")
        || admin.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// At most 100 characters of a header value, for an error message.
fn shorten(value: &str) -> &str {
    match value.char_indices().nth(100) {
        Some((i, _)) => &value[..i],
        None => value,
    }
}

#[cfg(test)]
#[cfg(feature = "toml")]
mod tests;
