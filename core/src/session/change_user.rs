//! COM_CHANGE_USER under `proxy` auth: ferry's user table decides, as it does at login.
//!
//! The command reaches the backend re-encoded with a plugin no server knows (see
//! `force_auth_switch` in the relay), so the backend answers with an auth switch carrying its
//! own salt, and the client answers that. In `proxy` mode ferry checks the answer against its
//! table before the backend sees it:
//!
//! ```text
//! COM_CHANGE_USER ─► begin: the new user's native credential from the table (or none)
//! backend AuthSwitchRequest(mysql_native_password, salt) ─► salt noted, relayed to the client
//! client answer ─┬─ verifies against the table ─► forwarded; SHA1(pw) kept
//!                └─ otherwise (unknown user, other plugin, wrong password) ─► a wrong answer
//!                   is sent instead: the backend refuses with its own 1045 and keeps the old
//!                   user, as MariaDB does after a failed change
//! OK ─► the kept secret replaces the session's credential: a replay migration logs in as the
//!       new user, so the change no longer pins the session
//! OK without a verified answer (the backend did not ask) ─► the client gets 1045 and the
//!       session closes: the backend switched users ferry did not check
//! ```
//!
//! In `passthrough` mode the backend alone decides, and nothing here runs.

use bytes::Bytes;

use crate::auth::{auth_salt, AuthPlugin, ClientSecret, Credential};
use crate::frontend::AuthMode;
use crate::wire::AuthSwitchRequest;
use crate::ProtocolError;

use super::ProxySession;

/// What a wrong answer is replaced with: 20 bytes no stored hash can match (the backend would
/// need a SHA-1 preimage), and not empty, which an account without a password would accept.
const REFUSED_ANSWER: [u8; 20] = [0xA5; 20];

/// One COM_CHANGE_USER being checked (`proxy` auth only).
pub(super) struct ChangeUserCheck {
    /// The new user's native credential from ferry's table; `None` refuses the change.
    credential: Option<Credential>,
    /// The backend's salt, from its AuthSwitchRequest to `mysql_native_password`.
    salt: Option<Bytes>,
    /// What the client's verified answer revealed.
    verified: Option<ClientSecret>,
    /// The first answer was checked: later packets of the exchange go as that one went.
    answered: bool,
}

impl ProxySession {
    /// A COM_CHANGE_USER to `user` (`None`: the packet did not parse) goes to the backend: under
    /// `proxy` auth, look the new user up.
    pub(super) fn begin_change_user(&mut self, user: Option<&[u8]>) {
        let AuthMode::Proxy { users, .. } = &self.config.frontend.auth else {
            return;
        };
        let credential = user
            .and_then(|user| users.get(&String::from_utf8_lossy(user)))
            .filter(|entry| entry.plugin == AuthPlugin::MysqlNativePassword)
            .map(|entry| entry.credential.clone());
        self.change_user = Some(Box::new(ChangeUserCheck {
            credential,
            salt: None,
            verified: None,
            answered: false,
        }));
    }

    /// The backend's auth switch during a checked COM_CHANGE_USER: its salt, if the plugin is
    /// one ferry can check.
    pub(super) fn note_change_user_switch(&mut self, payload: &[u8]) {
        let Some(check) = self.change_user.as_mut() else {
            return;
        };
        let Ok(switch) = AuthSwitchRequest::parse(payload) else {
            return;
        };
        if switch.plugin_name == AuthPlugin::MysqlNativePassword.name().as_bytes() {
            check.salt = Some(Bytes::copy_from_slice(auth_salt(switch.data)));
        }
    }

    /// The client's answer to the backend's auth packet: what goes to the backend instead.
    pub(super) fn checked_change_user_answer(&mut self, data: Bytes) -> Bytes {
        let Some(check) = self.change_user.as_mut() else {
            return data;
        };
        if !check.answered {
            check.answered = true;
            check.verified = match (&check.credential, &check.salt) {
                (Some(credential), Some(salt)) => credential.verify_native(&data, salt),
                _ => None,
            };
        }
        if check.verified.is_some() {
            data
        } else {
            Bytes::from_static(&REFUSED_ANSWER)
        }
    }

    /// An OK to a checked COM_CHANGE_USER whose answer ferry did not verify (the backend
    /// accepted without asking): the ERR the client gets instead, before the session closes.
    pub(super) fn unchecked_change_user(&self) -> Option<ProtocolError> {
        let check = self.change_user.as_ref()?;
        check.verified.is_none().then(|| {
            ProtocolError::new(
                1045,
                "28000",
                "Access denied: the backend changed the user without the password check ferry \
                 requires",
            )
        })
    }

    /// The response to a COM_CHANGE_USER is complete. After an OK under `proxy` auth, the
    /// verified secret is what a migration logs in with from now on; returns whether the
    /// session holds the new user's credential (so the change need not pin it).
    pub(super) fn finish_change_user(&mut self, ok: bool) -> bool {
        let Some(check) = self.change_user.take() else {
            return false;
        };
        match (ok, check.verified) {
            (true, Some(secret)) => {
                if let Some(info) = self.login_info.as_mut() {
                    info.replace_secret(secret);
                }
                true
            }
            _ => false,
        }
    }
}
