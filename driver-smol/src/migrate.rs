//! Migration as this driver carries it out: asking a session to move, and what it reports.
//!
//! The core's proxy session does not offer migration yet (issue 5), so a request is refused
//! with a conflict, exactly as the mio driver does; nothing here pretends otherwise.

use ferry_core::session::{Event, ProxySession};
use ferry_mio::admin::ApiError;

/// Asks `session` to move to backend `to` at its next safe point.
pub(crate) fn start(_session: &mut ProxySession, _to: &str) -> Result<(), ApiError> {
    Err(ApiError::Conflict(
        "migration is not implemented yet: sessions stay on their backend".into(),
    ))
}

/// Handles a migration event of session `id`; false if `event` is not one.
pub(crate) fn event(_id: u64, _event: &Event) -> bool {
    false
}

/// Why `session` cannot move now, as `/api/sessions` shows it.
pub(crate) fn pinned(_session: &ProxySession) -> Option<String> {
    None
}
