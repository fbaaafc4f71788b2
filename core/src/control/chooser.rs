//! The embedder's say in where a new session goes: [`BackendChooser`].
//!
//! When a session asks for a backend without naming one (a new login), the
//! [`Endpoint`](super::Endpoint) asks the chooser first. The login is known by then in both auth modes: the client's handshake response
//! (user, initial database) is read before the backend connection is opened, so a chooser can
//! route by user or database. [`Choice::Default`] falls back to the built-in policy (least
//! sessions among healthy, non-draining backends, with failover to the next one if it refuses).
//! Migrations name their target themselves and do not consult the chooser.

use std::net::SocketAddr;

use super::admin::BackendInfo;
use super::config::RouteConfig;

/// What a chooser knows about the session that needs a backend.
#[derive(Debug, Clone, Copy)]
pub struct ChooseRequest<'a> {
    /// The session id (the connection id the client sees).
    pub session: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The user name the client logs in as.
    pub user: Option<&'a str>,
    /// The database the client asked for in its login, if any (and if it is UTF-8).
    pub database: Option<&'a str>,
    /// The backends, in configuration order, with their health, draining flag and load.
    pub backends: &'a [BackendInfo],
}

/// A chooser's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The built-in policy decides (least sessions among healthy, non-draining backends).
    Default,
    /// The backend with this configured name (health and draining are not checked: the chooser
    /// decided). If it cannot be reached the login fails with ERR 1429.
    Backend(String),
    /// No backend for this session: the client gets ERR 1429 with this reason.
    Refuse(String),
}

/// Picks the backend of each new session. Called while the endpoint is locked, so it must be
/// quick and must not block.
///
/// Any `Fn(&ChooseRequest) -> Choice` closure is a chooser:
///
/// ```
/// use ferry_core::control::{Choice, ChooseRequest};
///
/// // Reporting users go to the replica, everyone else is balanced as usual.
/// let chooser = |req: &ChooseRequest<'_>| match req.user {
///     Some(user) if user.starts_with("report") => Choice::Backend("replica".into()),
///     Some("intruder") => Choice::Refuse("not on this proxy".into()),
///     _ => Choice::Default,
/// };
/// # fn takes(_: impl ferry_core::control::BackendChooser) {}
/// # takes(chooser);
/// # let backends = [];
/// # let req = ChooseRequest { session: 1, client: "127.0.0.1:5000".parse().unwrap(),
/// #     user: Some("report_ro"), database: None, backends: &backends };
/// # assert_eq!(ferry_core::control::BackendChooser::choose(&chooser, &req), Choice::Backend("replica".into()));
/// ```
///
/// Give it to [`Endpoint::set_chooser`](super::Endpoint::set_chooser) (with `ferry-smol`:
/// `ProxyBuilder::chooser`; with the `ferry` binary: not configurable, the built-in policy).
pub trait BackendChooser: Send + Sync + 'static {
    /// The backend for the session described by `request`.
    fn choose(&self, request: &ChooseRequest<'_>) -> Choice;
}

impl<F> BackendChooser for F
where
    F: Fn(&ChooseRequest<'_>) -> Choice + Send + Sync + 'static,
{
    fn choose(&self, request: &ChooseRequest<'_>) -> Choice {
        self(request)
    }
}

/// The `[[routes]]` of the configuration as a chooser: the first route whose user and database
/// (those it gives) match the login names the backend; no match is [`Choice::Default`]. The
/// [`Endpoint`](super::Endpoint) uses it when the configuration has routes and the embedder set
/// no chooser of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Routes(pub(super) Vec<RouteConfig>);

impl BackendChooser for Routes {
    fn choose(&self, request: &ChooseRequest<'_>) -> Choice {
        let matches = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        self.0
            .iter()
            .find(|r| matches(&r.user, request.user) && matches(&r.database, request.database))
            .map_or(Choice::Default, |r| Choice::Backend(r.backend.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(user: Option<&str>, database: Option<&str>, backend: &str) -> RouteConfig {
        RouteConfig {
            user: user.map(str::to_owned),
            database: database.map(str::to_owned),
            backend: backend.to_owned(),
        }
    }

    #[test]
    fn the_first_matching_route_names_the_backend() {
        let routes = Routes(vec![
            route(Some("analyst"), Some("sales"), "replica-sales"),
            route(Some("analyst"), None, "replica"),
            route(None, Some("audit"), "archive"),
        ]);
        let ask = |user: Option<&str>, database: Option<&str>| {
            routes.choose(&ChooseRequest {
                session: 1,
                client: "127.0.0.1:5000".parse().unwrap(),
                user,
                database,
                backends: &[],
            })
        };
        let to = |b: &str| Choice::Backend(b.into());
        assert_eq!(ask(Some("analyst"), Some("sales")), to("replica-sales"));
        assert_eq!(ask(Some("analyst"), None), to("replica"));
        assert_eq!(ask(Some("analyst"), Some("audit")), to("replica"));
        assert_eq!(ask(Some("app"), Some("audit")), to("archive"));
        assert_eq!(ask(Some("app"), Some("sales")), Choice::Default);
        assert_eq!(ask(None, None), Choice::Default);
    }
}
