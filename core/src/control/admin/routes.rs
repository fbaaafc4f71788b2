//! Maps admin requests to [`AdminApi`] calls and their answers to responses: [`serve`] checks
//! access first ([`check_access`]), [`route`] does not.

use serde::Deserialize;

use super::access::check_access;
use super::http::{Request, Response, PROMETHEUS};
use super::{metrics, AdminApi, ApiError};
use crate::control::config::AdminConfig;
use crate::control::config::ConfigError;
use crate::control::reload::ReloadError;

/// The body of `POST /api/sessions/{id}/migrate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    to: String,
}

/// The response to `req` from an endpoint configured by `admin`: the refusal of
/// [`check_access`], or the route's answer.
pub fn serve(req: &Request, admin: &AdminConfig, api: &mut dyn AdminApi) -> Response {
    match check_access(req, admin) {
        Ok(()) => route(req, api),
        Err(refused) => refused,
    }
}

/// Whether `req` is `GET /health/live`, which [`live`] answers without the proxy.
pub fn is_live(req: &Request) -> bool {
    req.method == "GET" && req.path == "/health/live"
}

/// The answer to `GET /health/live`: 200 while the process runs (drivers may answer it before
/// anything else, without taking the endpoint's lock).
pub fn live() -> Response {
    Response::text(200, "ok\n")
}

/// The response to `req`, without access checks (see [`serve`]).
pub fn route(req: &Request, api: &mut dyn AdminApi) -> Response {
    let segments: Vec<&str> = req.path.split('/').skip(1).collect();
    match segments.as_slice() {
        // Liveness: the process runs and answers; an orchestrator restarts it otherwise.
        ["health", "live"] => get(req, live),
        // Readiness: a load balancer sends new clients while it answers 200. `/health` is the
        // same, as before `/health/ready` existed.
        ["health"] | ["health", "ready"] => get(req, || {
            if !api.serving() {
                Response::text(503, "shutting down\n")
            } else if api.starting() {
                Response::text(503, "starting\n")
            } else {
                Response::text(200, "ok\n")
            }
        }),
        ["metrics"] => get(req, || match api.metrics() {
            Ok(m) => Response {
                content_type: PROMETHEUS,
                ..Response::text(200, metrics::render(&m))
            },
            Err(e) => api_error(&e),
        }),
        ["api", "backends"] => get(req, || match api.backends() {
            Ok(list) => Response::json(200, &list),
            Err(e) => api_error(&e),
        }),
        ["api", "sessions"] => get(req, || match api.sessions() {
            Ok(list) => Response::json(200, &list),
            Err(e) => api_error(&e),
        }),
        ["api", "backends", name, action @ ("drain" | "undrain")] => post(req, || {
            let draining = *action == "drain";
            match api.set_draining(name, draining) {
                Ok(()) => Response::json(
                    200,
                    &serde_json::json!({ "backend": name, "draining": draining }),
                ),
                Err(e) => api_error(&e),
            }
        }),
        ["api", "sessions", id, "migrate"] => post(req, || {
            // Ids are decimal integers; anything else names no session.
            let Some(id) = id
                .parse::<u64>()
                .ok()
                .filter(|_| id.bytes().all(|b| b.is_ascii_digit()))
            else {
                return Response::error(404, format!("no session with id {id:?}"));
            };
            let body: MigrateBody = match serde_json::from_slice(&req.body) {
                Ok(body) => body,
                Err(e) => {
                    return Response::error(400, format!("expected {{\"to\": \"backend\"}}: {e}"))
                }
            };
            match api.migrate(id, &body.to) {
                Ok(()) => Response::json(202, &serde_json::json!({ "session": id, "to": body.to })),
                Err(e) => api_error(&e),
            }
        }),
        ["api", "config"] => get(req, || match api.config_status() {
            Ok(status) => Response::json(200, &status),
            Err(e) => api_error(&e),
        }),
        ["api", "config", "reload"] => post(req, || match api.reload() {
            Ok(report) => Response::json(200, &report),
            Err(e) => reload_error(&e),
        }),
        _ => Response::error(404, format!("no such path {:?}", req.path)),
    }
}

fn get(req: &Request, handler: impl FnOnce() -> Response) -> Response {
    if req.method == "GET" {
        handler()
    } else {
        Response::method_not_allowed("GET")
    }
}

fn post(req: &Request, handler: impl FnOnce() -> Response) -> Response {
    if req.method == "POST" {
        handler()
    } else {
        Response::method_not_allowed("POST")
    }
}

/// A refused configuration is 422 with every problem's key; the running one stays.
fn reload_error(e: &ReloadError) -> Response {
    match e {
        ReloadError::Refused(config) => {
            let problems: Vec<serde_json::Value> = config
                .problems()
                .iter()
                .map(|p| serde_json::json!({ "key": p.key, "reason": p.reason }))
                .collect();
            let status = match config {
                ConfigError::Read { .. } => 500,
                _ => 422,
            };
            Response::json(
                status,
                &serde_json::json!({ "error": e.to_string(), "problems": problems }),
            )
        }
        ReloadError::NoSource => Response::error(501, e),
        ReloadError::ShuttingDown => Response::error(503, e),
    }
}

fn api_error(e: &ApiError) -> Response {
    let status = match e {
        ApiError::UnknownBackend(_) | ApiError::UnknownSession(_) => 404,
        ApiError::Conflict(_) => 409,
        ApiError::Unavailable(_) => 503,
    };
    Response::error(status, e)
}

#[cfg(test)]
mod tests;
