//! The proxy's user table ([`UserTable`]) and the `caching_sha2_password` cache of verified
//! users ([`Sha2Cache`]), MyCat's model: ferry checks passwords itself against what `mysql.user`
//! would store, then logs in to backends with what the login revealed.

use std::collections::HashMap;

use crate::auth::caching_sha2::Sha256Stage2Hash;
use crate::auth::{AuthPlugin, Credential};

/// One account: what is stored for it and which plugin it authenticates with (as the `plugin`
/// column of `mysql.user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The stored credential.
    pub credential: Credential,
    /// The plugin the account uses. A client that starts with another plugin is switched to this
    /// one with an AuthSwitchRequest.
    pub plugin: AuthPlugin,
}

/// User name → account. Looked up by exact (case-sensitive) name, as MySQL does for user names.
#[derive(Debug, Clone, Default)]
pub struct UserTable {
    users: HashMap<String, UserEntry>,
}

impl UserTable {
    /// An empty table: every login is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `name`.
    pub fn insert(&mut self, name: impl Into<String>, entry: UserEntry) {
        self.users.insert(name.into(), entry);
    }

    /// Adds a `mysql_native_password` account from its stored `*HEX` hash (empty: no password).
    pub fn insert_native_hash(
        &mut self,
        name: impl Into<String>,
        authentication_string: &[u8],
    ) -> Result<(), crate::auth::AuthError> {
        let credential = Credential::parse_native(authentication_string)?;
        self.insert(
            name,
            UserEntry {
                credential,
                plugin: AuthPlugin::MysqlNativePassword,
            },
        );
        Ok(())
    }

    /// The account called `name`.
    pub fn get(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The `caching_sha2_password` cache: user → `SHA256(SHA256(pw))` of the last password that
/// passed full authentication. A cached user can log in on the fast path (no TLS, no RSA).
///
/// Shared by all connections of a server, so it takes `&self`: the implementation brings its own
/// synchronisation (the core has no locks; a driver wraps a `Mutex<HashMap>`), and is consulted
/// once per login.
pub trait Sha2Cache: Send + Sync {
    /// The cached value for `user`, if any.
    fn get(&self, user: &str) -> Option<Sha256Stage2Hash>;
    /// Records that `user` just passed full authentication with this value.
    fn insert(&self, user: &str, value: Sha256Stage2Hash);
}
