//! Why a session cannot move right now ([`PinReason`]), and the [`Tracker`] that watches the
//! relayed commands and responses for what migration needs beyond [`SessionState`]: pins, the SQL
//! of each prepared statement, `LAST_INSERT_ID()`.
//!
//! # Heuristics (from the statement text; the server is not asked)
//!
//! - **Temporary tables**: `CREATE [OR REPLACE] TEMPORARY TABLE [IF NOT EXISTS] [db.]t` adds `t`;
//!   `DROP [TEMPORARY] TABLE [IF EXISTS] a, [db.]b` removes the names it lists, once it succeeded
//!   (names compared case-insensitively, without the schema). A pin lasts until every table
//!   created is dropped, or the session is reset (COM_RESET_CONNECTION, COM_CHANGE_USER). A
//!   temporary table created by a stored procedure is not seen here; the state change it fires
//!   is then unattributed (below), which pins too.
//! - **User locks**: `GET_LOCK('name', …)` pins (even if it timed out: the result is not read),
//!   `RELEASE_LOCK('name')` lifts that name, `RELEASE_ALL_LOCKS()` all of them. A lock whose name
//!   is not a literal is released only by a non-literal `RELEASE_LOCK` or `RELEASE_ALL_LOCKS`.
//! - **LOCK TABLES** pins until `UNLOCK TABLES`.
//! - **SQL prepared statements** (`PREPARE name FROM 'text'`, see [`sql_statements`]): their
//!   text is kept by name and prepared again by `replay`; `EXECUTE name` counts as its text run.
//!   One whose text ferry does not know (`FROM @var`, `FROM CONCAT(…)`) pins in replay mode until
//!   it is deallocated or prepared again from a literal. `PREPARE`, `EXECUTE` and `DEALLOCATE`
//!   are understood as statements of their own (first in the command or after a `;`), not
//!   inside a compound statement or a stored program's body, whose statements may not run.
//! - **Unattributed state change** (replay mode): a response reports `session_track_state_change`
//!   but neither a variable nor the schema changed, the command was not a prepared-statement
//!   command, and its SQL neither references a user variable (read at migration time) nor is a
//!   `SET`/`USE` or one of the statements above. Stored procedures (`CALL`), `EXECUTE` of a
//!   statement whose text is unknown, and the statements above inside a compound statement end
//!   up here. Lifted only by a session reset.
//!
//! Statements that add a pin count even when the response is an ERR (a multi-statement may have
//! run them before failing), or sit in a compound statement or stored program; those that lift
//! one count only on success, outside those.

mod sql_statements;

use bytes::Bytes;

use crate::backend::ResponseSummary;
use crate::wire::{Command, ServerStatus};

use super::sql::{is_kw, Lexer, Token};
use crate::session::SessionState;
use crate::IdMap;

pub(crate) use sql_statements::SqlStatements;

/// Why a session stays on its backend for now (visible in `/api/sessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PinReason {
    /// A transaction is open (`SERVER_STATUS_IN_TRANS`).
    Transaction,
    /// A cursor is open on a prepared statement.
    Cursor,
    /// COM_STMT_SEND_LONG_DATA sent parameter data not yet executed.
    LongData,
    /// The session created temporary tables.
    TemporaryTables,
    /// The session holds user locks (`GET_LOCK`).
    UserLocks,
    /// `LOCK TABLES` is in effect.
    LockTables,
    /// Session state changed in a way ferry cannot attribute, so cannot rebuild.
    UnattributedStateChange,
    /// The backend cannot report session-state changes (`CLIENT_SESSION_TRACK` missing, or the
    /// tracking variables refused), so ferry cannot know what to replay.
    NoSessionTracking,
    /// The client switched users (COM_CHANGE_USER) and ferry does not hold that user's
    /// credential. Under `proxy` auth ferry verifies the change itself and keeps the credential
    /// (see `session/change_user.rs`), so this pin does not arise there.
    ChangedUser,
    /// A SQL prepared statement exists whose text ferry does not know (`PREPARE name FROM
    /// @var` or from an expression), so cannot prepare again. Lifted by `DEALLOCATE PREPARE
    /// name`, a `PREPARE name` from a literal, or a session reset.
    SqlPrepareUnknownText,
    /// Multiplexing: a statement read values of the backend connection's own
    /// (`CONNECTION_ID()`, `FOUND_ROWS()`, `ROW_COUNT()`, warnings and errors), so the session
    /// keeps that connection (see `session::multiplex`).
    ConnectionBound,
}

impl PinReason {
    /// A short stable label (metrics, `/api/sessions`).
    pub fn as_str(self) -> &'static str {
        match self {
            PinReason::Transaction => "transaction",
            PinReason::Cursor => "cursor",
            PinReason::LongData => "long_data",
            PinReason::TemporaryTables => "temporary_tables",
            PinReason::UserLocks => "user_locks",
            PinReason::LockTables => "lock_tables",
            PinReason::UnattributedStateChange => "unattributed_state_change",
            PinReason::NoSessionTracking => "no_session_tracking",
            PinReason::ChangedUser => "changed_user",
            PinReason::SqlPrepareUnknownText => "sql_prepare_unknown_text",
            PinReason::ConnectionBound => "connection_bound",
        }
    }
}

impl std::fmt::Display for PinReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name a non-literal `GET_LOCK` argument is recorded under.
const UNKNOWN_LOCK: &[u8] = b"?";

/// What the tracker watches; empty (no allocation) until a pin or a prepared statement appears.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The command in flight (a cheap `Bytes` clone), scanned when its response completes.
    pending: Option<Bytes>,
    temp_tables: Vec<Box<[u8]>>,
    locks: Vec<Box<[u8]>>,
    lock_tables: bool,
    /// Client statement ids with long data sent and not yet executed.
    long_data: Vec<u32>,
    pub(crate) unattributed: bool,
    pub(crate) changed_user: bool,
    pub(crate) no_tracking: bool,
    /// The last response's statement names a user variable (so it may have set one).
    pub(crate) touched_user_vars: bool,
    /// SQL text of each open prepared statement, by client statement id.
    pub(crate) statement_sql: IdMap<PreparedText>,
    /// The parameter types each statement's client last bound (two bytes per parameter), by
    /// client statement id: put back for the new backend after a migration (see `ids`).
    pub(crate) param_types: IdMap<Box<[u8]>>,
    /// SQL-level prepared statements (`PREPARE name FROM …`).
    pub(crate) sql_statements: SqlStatements,
    /// The last non-zero insert id an OK reported (what `LAST_INSERT_ID()` returns).
    pub(crate) last_insert_id: u64,
    /// Multiplexing: a statement named a value of the connection's own.
    pub(crate) connection_bound: bool,
}

/// The text of a protocol prepared statement.
#[derive(Debug, Clone)]
pub(crate) struct PreparedText {
    pub(crate) sql: Box<[u8]>,
    /// No word [`Tracker::scan`] acts on and no user variable: executing it changes no pin and
    /// no user variable, so it is not scanned again at each execute (the common case: a
    /// `SELECT` or DML run many times).
    inert: bool,
    /// The schema it was prepared in: MariaDB binds it at prepare, so it is prepared again
    /// there (`None`: none, or the session's current one when that is unknown).
    pub(crate) schema: Option<Box<[u8]>>,
}

/// The words [`Tracker::scan`] acts on.
const PIN_WORDS: &[&str] = &[
    "SET",
    "USE",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "CALL",
    "CREATE",
    "DROP",
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "LOCK",
    "UNLOCK",
];

impl PreparedText {
    pub(crate) fn new(sql: &[u8]) -> Self {
        let inert = !Lexer::new(sql).any(|t| match t {
            Token::UserVar => true,
            Token::Word(w) => PIN_WORDS
                .iter()
                .any(|p| p.as_bytes().eq_ignore_ascii_case(w)),
            _ => false,
        });
        Self {
            sql: sql.into(),
            inert,
            schema: None,
        }
    }
}

/// What one statement does, as far as pins go.
#[derive(Debug, Default)]
struct Effects {
    /// The statement names user variables, is a `SET`/`USE`, or one of the pin statements: a
    /// state change it fires is accounted for.
    attributable: bool,
    /// `CALL`, `EXECUTE` of an unknown text, prepared-statement commands ferry cannot follow:
    /// state ferry cannot see.
    opaque: bool,
    /// The statement names a user variable (it may have set one).
    user_var: bool,
}

impl Effects {
    const ATTRIBUTED: Effects = Effects {
        attributable: true,
        opaque: false,
        user_var: false,
    };
    const OPAQUE: Effects = Effects {
        attributable: false,
        opaque: true,
        user_var: false,
    };

    fn add(&mut self, other: Effects) {
        self.attributable |= other.attributable;
        self.opaque |= other.opaque;
        self.user_var |= other.user_var;
    }
}

/// How a text is scanned.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// The response did not end with an ERR.
    ok: bool,
    /// The session's `NO_BACKSLASH_ESCAPES` (how its string literals read).
    no_backslash_escapes: bool,
    /// The text of a prepared statement being executed: it cannot PREPARE, EXECUTE or
    /// DEALLOCATE.
    nested: bool,
}

impl Tracker {
    /// The reason the session is pinned, if any; `replay` adds the reasons only replay has.
    pub(crate) fn pin(&self, state: &SessionState, replay: bool) -> Option<PinReason> {
        if state.in_transaction() {
            Some(PinReason::Transaction)
        } else if state.has_open_cursor() {
            Some(PinReason::Cursor)
        } else if !self.long_data.is_empty() {
            Some(PinReason::LongData)
        } else if !self.temp_tables.is_empty() {
            Some(PinReason::TemporaryTables)
        } else if !self.locks.is_empty() {
            Some(PinReason::UserLocks)
        } else if self.lock_tables {
            Some(PinReason::LockTables)
        } else if self.connection_bound {
            Some(PinReason::ConnectionBound)
        } else if !replay {
            None
        } else if self.no_tracking {
            Some(PinReason::NoSessionTracking)
        } else if self.changed_user {
            Some(PinReason::ChangedUser)
        } else if self.sql_statements.any_unknown() {
            Some(PinReason::SqlPrepareUnknownText)
        } else if self.unattributed {
            Some(PinReason::UnattributedStateChange)
        } else {
            None
        }
    }

    /// Notes a command about to be relayed (client statement ids).
    pub(crate) fn on_command(&mut self, payload: &Bytes) {
        let id = || {
            payload
                .get(1..5)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        match payload.first().copied() {
            Some(Command::COM_STMT_SEND_LONG_DATA) => {
                if let Some(id) = id() {
                    if !self.long_data.contains(&id) {
                        self.long_data.push(id);
                    }
                }
            }
            Some(Command::COM_STMT_CLOSE) => {
                if let Some(id) = id() {
                    self.long_data.retain(|&s| s != id);
                    self.statement_sql.remove(&id);
                    self.param_types.remove(&id);
                }
            }
            Some(Command::COM_STMT_EXECUTE | Command::COM_STMT_RESET) => {
                if let Some(id) = id() {
                    // The server consumes (or discards) the long data either way.
                    self.long_data.retain(|&s| s != id);
                }
            }
            _ => {}
        }
        self.pending = Some(payload.clone());
    }

    /// Notes the parameter types a COM_STMT_EXECUTE binds (its statement's parameter count is
    /// in `state`, from the prepare-OK).
    pub(crate) fn on_execute(&mut self, payload: &[u8], state: &SessionState) {
        let Some(id) = super::ids::statement_id(payload) else {
            return;
        };
        let params = state.statements.get(&id).map_or(0, |s| s.params);
        let Some(types) = super::ids::bound_types(payload, params) else {
            return;
        };
        if self.param_types.get(&id).is_none_or(|t| **t != *types) {
            self.param_types.insert(id, types.into());
        }
    }

    /// Applies the response to the command last noted. `client_statement_id` is the client's id
    /// for a prepare-OK in the summary (the backend's may differ after a migration).
    pub(crate) fn on_response(
        &mut self,
        summary: &ResponseSummary,
        client_statement_id: Option<u32>,
        replay: bool,
    ) {
        let Some(payload) = self.pending.take() else {
            return;
        };
        let ok = summary.is_ok();
        let run = Run {
            ok,
            no_backslash_escapes: summary.status.contains(ServerStatus::NO_BACKSLASH_ESCAPES),
            nested: false,
        };
        let code = payload.first().copied().unwrap_or(0);
        let effects = match code {
            Command::COM_QUERY => self.scan(&payload[1..], run),
            Command::COM_STMT_EXECUTE => {
                let id = payload
                    .get(1..5)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let mut effects = Effects::default();
                let scanned = id.filter(|id| self.statement_sql.get(id).is_some_and(|t| !t.inert));
                // Taken out and put back: no copy of the text (the map keeps its capacity).
                if let Some((id, text)) =
                    scanned.and_then(|id| self.statement_sql.remove_entry(&id))
                {
                    let nested = Run {
                        nested: true,
                        ..run
                    };
                    effects = self.scan(&text.sql, nested);
                    self.statement_sql.insert(id, text);
                }
                effects.attributable = true;
                effects
            }
            _ => Effects::ATTRIBUTED,
        };
        self.touched_user_vars = effects.user_var;
        if ok {
            match code {
                Command::COM_RESET_CONNECTION => self.reset(),
                Command::COM_CHANGE_USER => {
                    self.reset();
                    self.changed_user = true;
                }
                Command::COM_STMT_PREPARE => {
                    if let Some(id) = client_statement_id {
                        self.statement_sql
                            .insert(id, PreparedText::new(&payload[1..]));
                    }
                }
                _ => {}
            }
            if summary.last_insert_id != 0 {
                self.last_insert_id = summary.last_insert_id;
            }
        }
        let session = &summary.session;
        if replay
            && session.state_changed
            && session.system_variables.is_empty()
            && session.schema.is_none()
            && (effects.opaque || !effects.attributable)
            && !matches!(
                code,
                Command::COM_RESET_CONNECTION | Command::COM_CHANGE_USER
            )
        {
            self.unattributed = true;
        }
    }

    /// Scans SQL for pin statements, applying their effects.
    fn scan(&mut self, sql: &[u8], run: Run) -> Effects {
        let ok = run.ok;
        let mut effects = Effects::default();
        let mut lexer = Lexer::new(sql);
        // Where a statement starts (the text's start, or after a `;`), whether it is the text's
        // first, and whether a compound statement or a stored program's body has begun.
        let mut at_start = true;
        let mut first = true;
        let mut compound = false;
        while let Some(token) = lexer.next() {
            let start = at_start;
            at_start = token == Token::Punct(b';');
            first &= !at_start;
            let word = match token {
                Token::UserVar => {
                    effects.attributable = true;
                    effects.user_var = true;
                    continue;
                }
                Token::Word(w) => w,
                _ => continue,
            };
            compound |= start && opens_compound(word, &lexer);
            // A prepared-statement statement ferry can follow.
            let follows = start && !compound && !run.nested;
            // What lifts a pin must have run: not in a body that may never.
            let lifts = ok && !compound;
            let is = |kw: &str| word.eq_ignore_ascii_case(kw.as_bytes());
            if is("SET") && is_kw(lexer.clone().next(), "ROLE") {
                // The current role is not reported as a variable, and replay does not restore it.
                effects.opaque = true;
            } else if is("SET") || is("USE") {
                effects.attributable = true;
            } else if is("PREPARE") && follows {
                let read =
                    self.sql_statements
                        .prepare(&mut lexer, first, ok, run.no_backslash_escapes);
                effects.add(if read {
                    Effects::ATTRIBUTED
                } else {
                    Effects::OPAQUE
                });
            } else if is("EXECUTE") && follows {
                effects.add(self.execute(&mut lexer, run));
            } else if is("DEALLOCATE") && follows && is_kw(lexer.clone().next(), "PREPARE") {
                lexer.next();
                effects.add(self.deallocate(&mut lexer, ok));
            } else if is("PREPARE") || is("EXECUTE") || is("DEALLOCATE") || is("CALL") {
                effects.opaque = true;
            } else if is("CREATE") {
                let mut ahead = lexer.clone();
                let mut next = ahead.next();
                if is_kw(next, "OR") && is_kw(ahead.next(), "REPLACE") {
                    next = ahead.next();
                }
                if is_kw(next, "TEMPORARY") && is_kw(ahead.next(), "TABLE") {
                    effects.attributable = true;
                    let mut after = ahead.clone();
                    if is_kw(after.next(), "IF")
                        && is_kw(after.next(), "NOT")
                        && is_kw(after.next(), "EXISTS")
                    {
                        ahead = after;
                    }
                    if let Some(name) = table_name(&mut ahead) {
                        if !self.temp_tables.contains(&name) {
                            self.temp_tables.push(name);
                        }
                    }
                    lexer = ahead;
                }
            } else if is("DROP") {
                let mut ahead = lexer.clone();
                let mut next = ahead.next();
                if is_kw(next, "PREPARE") {
                    if follows {
                        lexer = ahead;
                        effects.add(self.deallocate(&mut lexer, ok));
                    } else {
                        effects.opaque = true;
                    }
                    continue;
                }
                if is_kw(next, "TEMPORARY") {
                    next = ahead.next();
                }
                if is_kw(next, "TABLE") || is_kw(next, "TABLES") {
                    effects.attributable = true;
                    let mut after = ahead.clone();
                    if is_kw(after.next(), "IF") && is_kw(after.next(), "EXISTS") {
                        ahead = after;
                    }
                    while let Some(name) = table_name(&mut ahead) {
                        if lifts {
                            self.temp_tables.retain(|t| *t != name);
                        }
                        let mut comma = ahead.clone();
                        if comma.next() != Some(Token::Punct(b',')) {
                            break;
                        }
                        ahead = comma;
                    }
                    lexer = ahead;
                }
            } else if is("GET_LOCK") {
                effects.attributable = true;
                let name = lock_name(&mut lexer.clone());
                if !self.locks.contains(&name) {
                    self.locks.push(name);
                }
            } else if is("RELEASE_LOCK") {
                effects.attributable = true;
                let name = lock_name(&mut lexer.clone());
                if lifts {
                    self.locks.retain(|l| *l != name);
                }
            } else if is("RELEASE_ALL_LOCKS") {
                effects.attributable = true;
                if lifts {
                    self.locks.clear();
                }
            } else if is("LOCK") || is("UNLOCK") {
                let mut ahead = lexer.clone();
                let next = ahead.next();
                if is_kw(next, "TABLE") || is_kw(next, "TABLES") {
                    effects.attributable = true;
                    if is("LOCK") {
                        self.lock_tables = true;
                    } else if lifts {
                        self.lock_tables = false;
                    }
                }
            }
        }
        effects
    }

    /// `EXECUTE name [USING …]` or `EXECUTE IMMEDIATE …` (`lexer` just after EXECUTE): the
    /// effects of the text it runs, opaque when that is unknown.
    fn execute(&mut self, lexer: &mut Lexer<'_>, run: Run) -> Effects {
        let nested = Run {
            nested: true,
            ..run
        };
        if let Some(text) = sql_statements::execute_immediate(lexer, run.no_backslash_escapes) {
            return match text {
                Some(text) => self.scan(&text, nested),
                None => Effects::OPAQUE,
            };
        }
        // Taken out and put back: no copy of the text.
        let Some((i, text)) = self.sql_statements.take_executed(lexer) else {
            return Effects::OPAQUE;
        };
        let effects = self.scan(&text, nested);
        self.sql_statements.put_back(i, text);
        effects
    }

    /// `DEALLOCATE PREPARE` / `DROP PREPARE` (`lexer` just after PREPARE).
    fn deallocate(&mut self, lexer: &mut Lexer<'_>, ok: bool) -> Effects {
        if self.sql_statements.deallocate(lexer, ok) {
            Effects::ATTRIBUTED
        } else {
            Effects::OPAQUE
        }
    }

    /// COM_RESET_CONNECTION / COM_CHANGE_USER: temporary tables, locks, statements are gone.
    pub(crate) fn reset(&mut self) {
        self.temp_tables.clear();
        self.locks.clear();
        self.lock_tables = false;
        self.long_data.clear();
        self.unattributed = false;
        self.statement_sql.clear();
        self.param_types.clear();
        self.sql_statements.clear();
        self.last_insert_id = 0;
    }
}

/// True when a statement starting with `word` (`lexer` just after it) opens a compound
/// statement or defines a stored program: the statements after it in the text are its body.
fn opens_compound(word: &[u8], lexer: &Lexer<'_>) -> bool {
    let is = |kw: &str| word.eq_ignore_ascii_case(kw.as_bytes());
    let mut ahead = lexer.clone();
    let next = ahead.next();
    if ["IF", "WHILE", "LOOP", "REPEAT", "CASE", "FOR", "DECLARE"]
        .iter()
        .any(|kw| is(kw))
        || next == Some(Token::Punct(b':'))
    {
        // Control flow (MariaDB runs it outside stored programs too), or a label.
        return true;
    }
    if is("BEGIN") {
        // `BEGIN NOT ATOMIC …`, not the transaction's `BEGIN [WORK]`.
        return !matches!(next, None | Some(Token::Punct(b';'))) && !is_kw(next, "WORK");
    }
    if is("CREATE") || is("ALTER") {
        // `CREATE [OR REPLACE] [DEFINER = …] [AGGREGATE] PROCEDURE|FUNCTION|TRIGGER|EVENT …`:
        // the kind comes before any parenthesis.
        let mut next = next;
        while let Some(token) = next {
            if matches!(token, Token::Punct(b'(' | b';')) {
                break;
            }
            if ["PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"]
                .iter()
                .any(|kw| is_kw(Some(token), kw))
            {
                return true;
            }
            next = ahead.next();
        }
    }
    false
}

/// The (lowercased) table name of `[db.]t`, without the schema.
fn table_name(lexer: &mut Lexer<'_>) -> Option<Box<[u8]>> {
    let mut name = ident(lexer.next())?;
    loop {
        let mut ahead = lexer.clone();
        if ahead.next() != Some(Token::Punct(b'.')) {
            break;
        }
        match ident(ahead.next()) {
            Some(n) => name = n,
            None => break,
        }
        *lexer = ahead;
    }
    Some(name.to_ascii_lowercase().into())
}

fn ident(token: Option<Token<'_>>) -> Option<&[u8]> {
    match token? {
        Token::Word(w) | Token::Quoted(w) => Some(w),
        _ => None,
    }
}

/// The first argument of `GET_LOCK(` / `RELEASE_LOCK(` when it is a string literal.
fn lock_name(lexer: &mut Lexer<'_>) -> Box<[u8]> {
    if lexer.next() != Some(Token::Punct(b'(')) {
        return UNKNOWN_LOCK.into();
    }
    match lexer.next() {
        Some(Token::Str { raw, .. }) => raw.to_ascii_lowercase().into(),
        _ => UNKNOWN_LOCK.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(error: bool, state_changed: bool) -> ResponseSummary {
        let mut s = ResponseSummary::blank(Command::COM_QUERY, ServerStatus::AUTOCOMMIT);
        s.error = error.then(|| crate::ProtocolError::new(1105, "HY000", "x"));
        s.session.state_changed = state_changed;
        s
    }

    fn run(t: &mut Tracker, sql: &str, error: bool, state_changed: bool) {
        let mut p = vec![Command::COM_QUERY];
        p.extend_from_slice(sql.as_bytes());
        t.on_command(&Bytes::from(p));
        t.on_response(&summary(error, state_changed), None, true);
    }

    fn pin(t: &Tracker) -> Option<PinReason> {
        t.pin(&SessionState::default(), true)
    }

    #[test]
    fn temporary_tables_pin_until_all_are_dropped() {
        let mut t = Tracker::default();
        run(
            &mut t,
            "CREATE TEMPORARY TABLE IF NOT EXISTS shop.`Tmp1` (a int)",
            false,
            true,
        );
        run(
            &mut t,
            "create or replace temporary table t2 select 1",
            false,
            true,
        );
        assert_eq!(pin(&t), Some(PinReason::TemporaryTables));
        run(&mut t, "DROP TEMPORARY TABLE tmp1", true, false);
        assert_eq!(
            pin(&t),
            Some(PinReason::TemporaryTables),
            "a failed drop keeps it"
        );
        run(&mut t, "DROP TABLE IF EXISTS shop.tmp1, T2", false, true);
        assert_eq!(pin(&t), None);
        assert!(!t.unattributed, "temp tables explain the state change");
        run(
            &mut t,
            "SELECT 'CREATE TEMPORARY TABLE x' /* CREATE TEMPORARY TABLE y */",
            false,
            false,
        );
        assert_eq!(pin(&t), None, "strings and comments are not statements");
    }

    #[test]
    fn locks_pin_until_released() {
        let mut t = Tracker::default();
        run(
            &mut t,
            "SELECT GET_LOCK('a', 10), GET_LOCK('B', 1)",
            false,
            false,
        );
        assert_eq!(pin(&t), Some(PinReason::UserLocks));
        run(&mut t, "DO RELEASE_LOCK('A')", false, false);
        assert_eq!(pin(&t), Some(PinReason::UserLocks));
        run(&mut t, "SELECT RELEASE_ALL_LOCKS()", false, false);
        assert_eq!(pin(&t), None);
        run(&mut t, "LOCK TABLES t1 READ", false, false);
        assert_eq!(pin(&t), Some(PinReason::LockTables));
        run(
            &mut t,
            "SELECT * FROM t FOR UPDATE; SELECT 1 LOCK IN SHARE MODE",
            false,
            false,
        );
        run(&mut t, "UNLOCK TABLES", false, false);
        assert_eq!(pin(&t), None);
    }

    #[test]
    fn set_role_pins_because_replay_cannot_restore_it() {
        let mut t = Tracker::default();
        run(&mut t, "SET sql_mode = ''", false, true);
        assert_eq!(pin(&t), None);
        run(&mut t, "set role analyst", false, true);
        assert_eq!(pin(&t), Some(PinReason::UnattributedStateChange));
    }

    #[test]
    fn state_changes_are_attributed_or_pin() {
        let mut t = Tracker::default();
        run(&mut t, "SET @a = 1", false, true);
        run(&mut t, "SELECT @b := 2", false, true);
        assert_eq!(pin(&t), None, "user variables are read at migration time");
        run(&mut t, "PREPARE s FROM 'SELECT 1'", false, true);
        assert_eq!(pin(&t), None, "a SQL prepared statement is replayed");
        run(&mut t, "CALL p()", false, true);
        assert_eq!(pin(&t), Some(PinReason::UnattributedStateChange));
        assert_eq!(
            t.pin(&SessionState::default(), false),
            None,
            "tidb mode ignores it"
        );
        let mut p = Bytes::from_static(&[Command::COM_RESET_CONNECTION]);
        t.on_command(&p);
        let mut s = summary(false, true);
        s.command = Command::COM_RESET_CONNECTION;
        t.on_response(&s, None, true);
        assert_eq!(pin(&t), None, "a reset lifts it");
        p = Bytes::from_static(&[Command::COM_STMT_SEND_LONG_DATA, 3, 0, 0, 0, 0, 0]);
        t.on_command(&p);
        assert_eq!(pin(&t), Some(PinReason::LongData));
        t.on_command(&Bytes::from_static(&[Command::COM_STMT_CLOSE, 3, 0, 0, 0]));
        assert_eq!(pin(&t), None);
    }

    fn reset(t: &mut Tracker) {
        t.on_command(&Bytes::from_static(&[Command::COM_RESET_CONNECTION]));
        let mut s = summary(false, true);
        s.command = Command::COM_RESET_CONNECTION;
        t.on_response(&s, None, true);
    }

    fn sql_texts(t: &Tracker) -> Vec<(String, Option<String>)> {
        t.sql_statements
            .iter()
            .map(|s| {
                let text = s.text.as_deref().map(String::from_utf8_lossy);
                (
                    String::from_utf8_lossy(&s.name).into_owned(),
                    text.map(|t| t.into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn execute_counts_as_the_prepared_text_run() {
        let mut t = Tracker::default();
        run(&mut t, "PREPARE s FROM 'SET @x = ?'", false, true);
        run(&mut t, "EXECUTE s USING 5", false, true);
        run(
            &mut t,
            "PREPARE `T` FROM 'CREATE TEMPORARY TABLE tt (a INT)'",
            false,
            true,
        );
        assert_eq!(pin(&t), None, "preparing runs nothing");
        run(&mut t, "EXECUTE t", false, true);
        assert_eq!(pin(&t), Some(PinReason::TemporaryTables));
        run(
            &mut t,
            "EXECUTE IMMEDIATE 'DROP TEMPORARY TABLE tt'",
            false,
            true,
        );
        assert_eq!(pin(&t), None);
        assert!(!t.unattributed);
        assert_eq!(t.sql_statements.iter().count(), 2, "still there");
        run(&mut t, "PREPARE c FROM 'CALL p()'", false, true);
        run(&mut t, "EXECUTE c", false, false);
        assert_eq!(pin(&t), None, "no state change");
        run(&mut t, "EXECUTE c", false, true);
        assert_eq!(pin(&t), Some(PinReason::UnattributedStateChange));
        reset(&mut t);
        assert_eq!(
            (pin(&t), sql_texts(&t)),
            (None, vec![]),
            "a reset drops them"
        );
        run(&mut t, "EXECUTE gone", false, true);
        assert_eq!(
            pin(&t),
            Some(PinReason::UnattributedStateChange),
            "a statement ferry does not know"
        );
    }

    #[test]
    fn an_unknown_text_pins_until_deallocated_or_prepared_from_a_literal() {
        let mut t = Tracker::default();
        let unknown = Some(PinReason::SqlPrepareUnknownText);
        run(&mut t, "SET @q = 'SELECT 1'", false, true);
        run(&mut t, "PREPARE v FROM @q", false, true);
        assert_eq!(pin(&t), unknown);
        assert_eq!(t.pin(&SessionState::default(), false), None, "tidb mode");
        run(&mut t, "EXECUTE v", false, false);
        assert_eq!(pin(&t), unknown);
        run(&mut t, "DEALLOCATE PREPARE v", true, true);
        assert_eq!(pin(&t), unknown, "a failed DEALLOCATE");
        run(&mut t, "DEALLOCATE PREPARE V", false, true);
        assert_eq!(pin(&t), None);
        run(&mut t, "PREPARE w FROM CONCAT('SELECT ', 1)", false, true);
        assert_eq!(pin(&t), unknown);
        run(&mut t, "PREPARE w FROM 'SELECT 1'", false, true);
        assert_eq!(pin(&t), None);
        run(&mut t, "PREPARE x FROM @q", false, true);
        run(&mut t, "DROP PREPARE x", false, true);
        assert_eq!(pin(&t), None);
        run(&mut t, "PREPARE y FROM @q", false, true);
        reset(&mut t);
        assert_eq!(pin(&t), None);
        assert!(!t.unattributed, "none of it was unattributed");
    }

    #[test]
    fn statements_inside_compound_statements_are_not_followed() {
        let mut t = Tracker::default();
        run(&mut t, "PREPARE s FROM 'SELECT 1'", false, true);
        run(
            &mut t,
            "CREATE DEFINER=`a`@`%` PROCEDURE p() BEGIN PREPARE s FROM @q; EXECUTE s; \
             DEALLOCATE PREPARE s; END",
            false,
            true,
        );
        run(
            &mut t,
            "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO DROP PREPARE s",
            false,
            false,
        );
        assert_eq!(sql_texts(&t), vec![("s".into(), Some("SELECT 1".into()))]);
        assert_eq!(pin(&t), Some(PinReason::UnattributedStateChange));
        reset(&mut t);
        run(&mut t, "CREATE TEMPORARY TABLE tt (a INT)", false, true);
        run(&mut t, "SELECT GET_LOCK('l', 1)", false, false);
        run(
            &mut t,
            "CREATE PROCEDURE p() BEGIN DROP TEMPORARY TABLE tt; DO RELEASE_ALL_LOCKS(); END",
            false,
            false,
        );
        assert_eq!(
            (t.temp_tables.len(), t.locks.len()),
            (1, 1),
            "a body does not run when defined"
        );
        reset(&mut t);
        for compound in [
            "BEGIN NOT ATOMIC PREPARE u FROM @q; EXECUTE u; END",
            "IF @a THEN PREPARE u FROM 'SELECT 1'; END IF",
            "lbl: LOOP PREPARE u FROM 'SELECT 1'; LEAVE lbl; END LOOP",
            "SELECT prepare x FROM 'y'",
        ] {
            run(&mut t, compound, false, false);
            assert_eq!(sql_texts(&t), vec![], "{compound}");
        }
        run(
            &mut t,
            "BEGIN; PREPARE b FROM 'SELECT 1'; CREATE TABLE x (a INT); PREPARE c FROM 'SELECT 2'",
            false,
            true,
        );
        assert_eq!(
            sql_texts(&t),
            vec![
                ("b".into(), Some("SELECT 1".into())),
                ("c".into(), Some("SELECT 2".into()))
            ]
        );
        assert!(!t.unattributed);
    }

    #[test]
    fn never_panics_on_truncated_prepared_statement_syntax() {
        let texts = [
            r"PREPARE `a``b` FROM 'x\'' 'y'; EXECUTE `a``b` USING @v; DEALLOCATE PREPARE a",
            "PREPARE e FROM X'41'; EXECUTE IMMEDIATE \"SET @a = 1\" USING 2; DROP PREPARE e",
            "CREATE DEFINER=`x`@`%` PROCEDURE p() lbl: BEGIN NOT ATOMIC EXECUTE e; END",
        ];
        for text in texts {
            for end in 0..=text.len() {
                let Some(prefix) = text.get(..end) else {
                    continue;
                };
                for (error, changed) in [(false, true), (true, false)] {
                    let mut t = Tracker::default();
                    run(&mut t, text, false, true);
                    run(&mut t, prefix, error, changed);
                    let _ = pin(&t);
                }
            }
        }
    }

    #[test]
    fn literals_read_with_the_sessions_no_backslash_escapes() {
        let mut t = Tracker::default();
        let mut texts = vec![];
        for nbe in [false, true] {
            t.on_command(&Bytes::from_static(b"\x03PREPARE s FROM 'a\\n'"));
            let mut s = summary(false, true);
            if nbe {
                s.status = ServerStatus(s.status.0 | ServerStatus::NO_BACKSLASH_ESCAPES.0);
            }
            t.on_response(&s, None, true);
            texts.push(sql_texts(&t)[0].1.clone().unwrap());
        }
        assert_eq!(texts, ["a\n", "a\\n"]);
    }
}
