//! The session state ferry tracks on behalf of its client, independent of any one backend
//! connection: what a migration (issue 5) needs to know to decide whether, and how, the session
//! can be rebuilt on another backend.
//!
//! It is fed by the commands relayed ([`SessionState::on_command`]) and by each complete
//! response's summary ([`SessionState::on_response`]); the backend's session-state tracking
//! (`CLIENT_SESSION_TRACK`) reports schema and variable changes.

use std::collections::BTreeMap;

use crate::backend::ResponseSummary;
use crate::wire::{Command, ServerStatus};

/// A prepared statement open on the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementInfo {
    /// Number of parameters.
    pub params: u16,
    /// Number of result columns.
    pub columns: u16,
    /// A cursor is open on it (an execute with `CURSOR_TYPE_READ_ONLY` that is not exhausted).
    pub cursor_open: bool,
}

/// What the session looks like from the client's side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// The logged-in user (changes with COM_CHANGE_USER).
    pub user: Option<String>,
    /// The current database.
    pub schema: Option<Vec<u8>>,
    /// Server status flags after the last response (transaction, autocommit...).
    pub status: ServerStatus,
    /// System variables the backend reported as changed, latest value per name.
    pub variables: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Open prepared statements by id.
    pub statements: crate::IdMap<StatementInfo>,
    /// Some state ferry cannot see in detail changed (`session_track_state_change`: user
    /// variables, temporary tables, locks...). Cleared by COM_RESET_CONNECTION / COM_CHANGE_USER.
    pub opaque_state_changed: bool,
    /// Multi-statements as COM_SET_OPTION last set them (`None`: as the client's capabilities
    /// said at login). A migration logs in to the new backend with this setting.
    pub multi_statements: Option<bool>,
    /// What the command in flight changes if it succeeds.
    pending: Pending,
}

/// The part of a command in flight that its response's summary does not repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Pending {
    #[default]
    Nothing,
    /// COM_STMT_EXECUTE / FETCH / RESET of this statement (its cursor flag).
    Statement(u32),
    /// COM_INIT_DB of this schema.
    InitDb(Vec<u8>),
    /// COM_CHANGE_USER to this user and schema.
    ChangeUser { user: String, schema: Vec<u8> },
    /// COM_SET_OPTION turning multi-statements on (true) or off.
    SetOption(bool),
}

impl SessionState {
    /// True while a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.status.contains(ServerStatus::IN_TRANS)
    }

    /// True while any cursor is open.
    pub fn has_open_cursor(&self) -> bool {
        self.statements.values().any(|s| s.cursor_open)
    }

    /// Notes a command about to be relayed (payload with the command byte first).
    pub fn on_command(&mut self, payload: &[u8], caps: crate::wire::Capabilities) {
        self.pending = Pending::Nothing;
        let code = payload.first().copied().unwrap_or(0);
        let statement_id = || {
            payload
                .get(1..5)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        match code {
            // No response comes: the statement is gone at once.
            Command::COM_STMT_CLOSE => {
                if let Some(id) = statement_id() {
                    self.statements.remove(&id);
                }
            }
            Command::COM_STMT_EXECUTE | Command::COM_STMT_FETCH | Command::COM_STMT_RESET => {
                if let Some(id) = statement_id() {
                    self.pending = Pending::Statement(id);
                }
            }
            Command::COM_INIT_DB => self.pending = Pending::InitDb(payload[1..].to_vec()),
            Command::COM_SET_OPTION => {
                // MYSQL_OPTION_MULTI_STATEMENTS_ON = 0, _OFF = 1; the server refuses others.
                match payload.get(1..3).map(|b| u16::from_le_bytes([b[0], b[1]])) {
                    Some(0) => self.pending = Pending::SetOption(true),
                    Some(1) => self.pending = Pending::SetOption(false),
                    _ => {}
                }
            }
            Command::COM_CHANGE_USER => {
                if let Ok(Command::ChangeUser(c)) = Command::parse(payload, caps, |_| None) {
                    self.pending = Pending::ChangeUser {
                        user: String::from_utf8_lossy(c.user).into_owned(),
                        schema: c.database.to_vec(),
                    };
                }
            }
            _ => {}
        }
    }

    /// Applies a complete response to the command last noted.
    pub fn on_response(&mut self, summary: &ResponseSummary) {
        self.status = summary.status;
        let pending = std::mem::take(&mut self.pending);
        let statement = match &pending {
            Pending::Statement(id) => Some(*id),
            _ => None,
        };
        if summary.is_ok() {
            match (summary.command, pending) {
                (Command::COM_RESET_CONNECTION, _) => self.reset(),
                (Command::COM_SET_OPTION, Pending::SetOption(on)) => {
                    self.multi_statements = Some(on);
                }
                (Command::COM_INIT_DB, Pending::InitDb(schema)) => {
                    self.schema = (!schema.is_empty()).then_some(schema);
                }
                (Command::COM_CHANGE_USER, Pending::ChangeUser { user, schema }) => {
                    self.reset();
                    self.user = Some(user);
                    self.schema = (!schema.is_empty()).then_some(schema);
                }
                (Command::COM_STMT_PREPARE, _) => {
                    if let Some(ok) = summary.prepared {
                        self.statements.insert(
                            ok.statement_id,
                            StatementInfo {
                                params: ok.num_params,
                                columns: ok.num_columns,
                                cursor_open: false,
                            },
                        );
                    }
                }
                (Command::COM_STMT_EXECUTE, _) => {
                    let open = summary.status.contains(ServerStatus::CURSOR_EXISTS);
                    self.set_cursor(statement, open);
                }
                (Command::COM_STMT_FETCH, _)
                    if summary.status.contains(ServerStatus::LAST_ROW_SENT) =>
                {
                    self.set_cursor(statement, false);
                }
                (Command::COM_STMT_RESET, _) => self.set_cursor(statement, false),
                _ => {}
            }
        }
        let session = &summary.session;
        if let Some(schema) = &session.schema {
            self.schema = (!schema.is_empty()).then(|| schema.clone());
        }
        for (name, value) in &session.system_variables {
            self.variables.insert(name.clone(), value.clone());
        }
        self.opaque_state_changed |= session.state_changed;
    }

    fn set_cursor(&mut self, id: Option<u32>, open: bool) {
        if let Some(s) = id.and_then(|id| self.statements.get_mut(&id)) {
            s.cursor_open = open;
        }
    }

    /// COM_RESET_CONNECTION / COM_CHANGE_USER: statements, variables and opaque state are gone.
    fn reset(&mut self) {
        self.statements.clear();
        self.variables.clear();
        self.opaque_state_changed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Capabilities, PrepareOk};

    const CAPS: Capabilities = Capabilities::PROTOCOL_41;

    fn summary(command: u8, status: ServerStatus) -> ResponseSummary {
        ResponseSummary::blank(command, status)
    }

    #[test]
    fn set_option_records_multi_statements() {
        let mut s = SessionState::default();
        assert_eq!(s.multi_statements, None);
        s.on_command(&[Command::COM_SET_OPTION, 0, 0], CAPS);
        s.on_response(&summary(Command::COM_SET_OPTION, ServerStatus::AUTOCOMMIT));
        assert_eq!(s.multi_statements, Some(true));
        s.on_command(&[Command::COM_SET_OPTION, 1, 0], CAPS);
        let mut refused = summary(Command::COM_SET_OPTION, ServerStatus::AUTOCOMMIT);
        refused.error = Some(crate::ProtocolError::new(1047, "08S01", "Unknown command"));
        s.on_response(&refused);
        assert_eq!(
            s.multi_statements,
            Some(true),
            "a refused option changes nothing"
        );
        s.on_command(&[Command::COM_SET_OPTION, 1, 0], CAPS);
        s.on_response(&summary(Command::COM_SET_OPTION, ServerStatus::AUTOCOMMIT));
        assert_eq!(s.multi_statements, Some(false));
    }

    #[test]
    fn statements_cursors_and_reset() {
        let mut s = SessionState::default();
        s.on_command(&[Command::COM_STMT_PREPARE], CAPS);
        let mut prep = summary(Command::COM_STMT_PREPARE, ServerStatus::AUTOCOMMIT);
        prep.prepared = Some(PrepareOk {
            statement_id: 7,
            num_columns: 2,
            num_params: 1,
            warning_count: None,
            metadata_follows: true,
        });
        s.on_response(&prep);
        assert_eq!(s.statements[&7].params, 1);
        s.on_command(&[Command::COM_STMT_EXECUTE, 7, 0, 0, 0, 1], CAPS);
        s.on_response(&summary(
            Command::COM_STMT_EXECUTE,
            ServerStatus::CURSOR_EXISTS,
        ));
        assert!(s.has_open_cursor());
        s.on_command(&[Command::COM_STMT_FETCH, 7, 0, 0, 0, 10, 0, 0, 0], CAPS);
        s.on_response(&summary(
            Command::COM_STMT_FETCH,
            ServerStatus::LAST_ROW_SENT,
        ));
        assert!(!s.has_open_cursor());
        let mut set = summary(Command::COM_QUERY, ServerStatus::IN_TRANS);
        set.session
            .system_variables
            .push((b"autocommit".to_vec(), b"OFF".to_vec()));
        set.session.schema = Some(b"db2".to_vec());
        set.session.state_changed = true;
        s.on_command(&[Command::COM_QUERY], CAPS);
        s.on_response(&set);
        assert!(s.in_transaction());
        assert_eq!(s.schema.as_deref(), Some(&b"db2"[..]));
        assert_eq!(s.variables[&b"autocommit"[..]], b"OFF");
        assert!(s.opaque_state_changed);
        s.on_command(&[Command::COM_RESET_CONNECTION], CAPS);
        s.on_response(&summary(
            Command::COM_RESET_CONNECTION,
            ServerStatus::AUTOCOMMIT,
        ));
        assert!(s.statements.is_empty() && s.variables.is_empty() && !s.opaque_state_changed);
        assert_eq!(
            s.schema.as_deref(),
            Some(&b"db2"[..]),
            "reset keeps the schema"
        );
        s.on_command(&[Command::COM_INIT_DB, b'x'], CAPS);
        s.on_response(&summary(Command::COM_INIT_DB, ServerStatus::AUTOCOMMIT));
        assert_eq!(s.schema.as_deref(), Some(&b"x"[..]));
        s.on_command(&[Command::COM_STMT_PREPARE], CAPS);
        s.on_response(&prep);
        s.on_command(&[Command::COM_STMT_CLOSE, 7, 0, 0, 0], CAPS);
        assert!(s.statements.is_empty(), "closed at once: no response comes");
    }

    #[test]
    fn failed_commands_change_only_the_status() {
        let mut s = SessionState::default();
        s.on_command(&[Command::COM_RESET_CONNECTION], CAPS);
        s.statements.insert(
            1,
            StatementInfo {
                params: 0,
                columns: 0,
                cursor_open: false,
            },
        );
        let mut failed = summary(Command::COM_RESET_CONNECTION, ServerStatus::AUTOCOMMIT);
        failed.error = Some(crate::ProtocolError::new(1105, "HY000", "x"));
        s.on_response(&failed);
        assert_eq!(s.statements.len(), 1);
    }
}
