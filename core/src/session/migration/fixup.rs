//! The fix-up planner: the statements that bring a backend connection from the session state it
//! holds to the one a session needs, sending only what differs. `replay` rebuilds a session on a
//! fresh connection as the fix-up from the server's defaults ([`ConnState::default`]); a
//! connection pool (issue 15) brings a pooled connection, left in another session's state, to
//! the state of the session that takes it.
//!
//! The order, each part only when it differs ([`plan`]):
//!
//! 1. the schema, COM_INIT_DB (`replay` logs in with it instead);
//! 2. the character sets, as a group: `SET NAMES 'cs' COLLATE 'coll'`, or each of the four
//!    variables, `collation_connection` last (as `replay` does);
//! 3. system variables: first `SET SESSION x = DEFAULT` for those the connection changed and
//!    the target did not (before the others, so that resetting an alias such as `tx_isolation`
//!    cannot undo a value set through another name), then `SET SESSION x = value`;
//! 4. user variables, in one `SET @a = …, …`: those that differ; then, in a second one,
//!    `CAST(NULL AS BINARY)` for those the target lacks (a plain `NULL` keeps the type and
//!    collation the variable had). There is no statement that removes one (only
//!    COM_RESET_CONNECTION, which resets everything): `SELECT @v` then reads as a variable never
//!    set (a binary `LONGBLOB` NULL), but `information_schema.USER_VARIABLES` still lists it, as
//!    a binary `VARCHAR` NULL: the one observable difference;
//! 5. protocol prepared statements (`replay` only: a pool prepares them on first use);
//! 6. SQL prepared statements: `DEALLOCATE PREPARE` those the target lacks, then `PREPARE` those
//!    it lacks or whose text differs, or all of them when parts 1 to 3 changed anything:
//!    MariaDB binds the schema and `sql_mode` (and the character set the text is read in) when
//!    it prepares (`DATABASE()` in a statement prepared in `a` says `a` after `USE b`);
//! 7. `SELECT LAST_INSERT_ID(n)`.
//!
//! Settings come before what is read under them: string values are written in the target's
//! `character_set_client`, and each statement's payload is written with the connection's
//! `NO_BACKSLASH_ESCAPES` at the time it is sent.
//!
//! Checked on MariaDB 10.11: every session variable a client can set accepts `DEFAULT`, except
//! `rand_seed1`, `rand_seed2`, `last_insert_id` and `identity` ("doesn't have a default value";
//! the last two are part 7, the seeds are one-shot: they are left alone) and
//! `wsrep_gtid_seq_no`. `DEFAULT` is the global value, which is what a fresh connection holds
//! for every variable but the four character set ones (the login's collation sets those).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

pub use super::replay::{Charsets, UserVar, UserVarType};

use super::pin::Tracker;
use super::replay::{charsets_changed, Item, OldSession, CHARSET_VARIABLES, NOT_REPLAYED};
use crate::session::SessionState;

/// Variables whose `DEFAULT` MariaDB refuses: never reset (see the module doc).
const NO_DEFAULT: &[&str] = &[
    "rand_seed1",
    "rand_seed2",
    "last_insert_id",
    "identity",
    "wsrep_gtid_seq_no",
];

/// The session state a backend connection holds, as ferry tracks it: the state of the session
/// that last used it. The default is a fresh connection (the server's defaults, the login's
/// character sets, no schema).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnState {
    /// The current database.
    pub schema: Option<Vec<u8>>,
    /// System variables changed from the server's defaults, latest value per name (as session
    /// tracking reports them). The character set variables, ferry's own tracking variables and
    /// those the schema implies are ignored here: see `charsets`.
    pub variables: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The character set variables.
    pub charsets: CharsetState,
    /// User variables with their types (names are case-insensitive).
    pub user_vars: Vec<UserVar>,
    /// SQL prepared statements, in the order prepared.
    pub sql_statements: Vec<NamedSql>,
    /// `LAST_INSERT_ID()`.
    pub last_insert_id: u64,
}

/// A SQL prepared statement: its name case-folded (as MariaDB compares them), its exact text.
pub type NamedSql = (Box<[u8]>, Box<[u8]>);

/// The character set variables of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum CharsetState {
    /// As the login set them (from the collation the client logged in with). Two connections
    /// compare equal here only if they logged in with the same collation: a pool keys on it.
    #[default]
    Login,
    /// Read on the connection, in [`Charsets`] order; a `None` is SQL NULL
    /// (`character_set_results` may be).
    Live(Charsets),
    /// Only what session tracking reported (a `None` was not reported: it stays as the login
    /// set it): `replay`'s fallback when they could not be read.
    Tracked(Charsets),
}

/// Why no statement can bring the connection to the target: pick another connection, or reset
/// this one (COM_RESET_CONNECTION / COM_CHANGE_USER) and plan from [`ConnState::default`] with
/// the login's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unreachable {
    /// The target has no current database and the connection has one: no statement unsets it.
    #[error("the connection has a current database and the session has none")]
    NoSchema,
    /// The target's character sets are its login's, the connection's are not: their values
    /// are unknown here (read them, and pass them as [`CharsetState::Live`]).
    #[error("the session's character sets are its login's, which the planner does not know")]
    LoginCharsets,
}

/// The statements a fix-up sends, in order ([`plan`]); empty when the states match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixupPlan {
    items: VecDeque<Item>,
}

/// One statement of a [`FixupPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixupStatement(Item);

impl FixupPlan {
    /// The number of statements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the connection holds the target state already.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Iterator for FixupPlan {
    type Item = FixupStatement;

    fn next(&mut self) -> Option<FixupStatement> {
        self.items.pop_front().map(FixupStatement)
    }
}

impl FixupStatement {
    /// The command payload (command byte first: COM_INIT_DB or COM_QUERY), written for the
    /// connection's current `SERVER_STATUS_NO_BACKSLASH_ESCAPES`. `Err` says what cannot be
    /// written safely.
    pub fn payload(&self, no_backslash_escapes: bool) -> Result<Bytes, String> {
        self.0.payload(no_backslash_escapes)
    }

    /// What it restores, for reports.
    pub fn label(&self) -> String {
        self.0.label()
    }

    /// A refusal may be skipped (and reported): a system variable.
    pub fn skippable(&self) -> bool {
        self.0.skippable()
    }
}

impl ConnState {
    /// What a session needs, from ferry's tracking and what was read of its user variables and
    /// character sets (`old`: the snapshot or the live read).
    pub(crate) fn of_session(state: &SessionState, tracker: &Tracker, old: OldSession) -> Self {
        let charsets = if !charsets_changed(state) {
            CharsetState::Login
        } else if let Some(live) = old.charsets {
            CharsetState::Live(live)
        } else {
            CharsetState::Tracked(
                CHARSET_VARIABLES.map(|n| state.variables.get(n.as_bytes()).cloned()),
            )
        };
        ConnState {
            schema: state.schema.clone(),
            variables: state.variables.clone(),
            charsets,
            user_vars: old.user_vars,
            // Those whose text is unknown pin the session: none is left when it moves.
            sql_statements: tracker
                .sql_statements
                .iter()
                .filter_map(|s| Some((s.name.clone(), s.text.clone()?)))
                .collect(),
            last_insert_id: tracker.last_insert_id,
        }
    }
}

/// The statements that bring a connection holding `from` to `to`.
pub fn plan(from: &ConnState, to: &ConnState) -> Result<FixupPlan, Unreachable> {
    let items = plan_items(from, to, [])?;
    Ok(FixupPlan { items })
}

/// [`plan`], with `prepare` (COM_STMT_PREPARE items) in part 5.
pub(crate) fn plan_items(
    from: &ConnState,
    to: &ConnState,
    prepare: impl IntoIterator<Item = Item>,
) -> Result<VecDeque<Item>, Unreachable> {
    let mut items = VecDeque::new();
    if from.schema != to.schema {
        let schema = to.schema.as_ref().ok_or(Unreachable::NoSchema)?;
        items.push_back(Item::InitDb(schema.clone()));
    }
    if from.charsets != to.charsets {
        push_charsets(&mut items, &to.charsets)?;
    }
    push_variables(&mut items, &from.variables, &to.variables);
    let settings_changed = !items.is_empty();
    push_user_vars(&mut items, &from.user_vars, &to.user_vars);
    items.extend(prepare);
    push_sql_statements(&mut items, from, to, settings_changed);
    if from.last_insert_id != to.last_insert_id {
        items.push_back(Item::LastInsertId(to.last_insert_id));
    }
    Ok(items)
}

fn push_charsets(items: &mut VecDeque<Item>, to: &CharsetState) -> Result<(), Unreachable> {
    let (live, [client, results, connection, collation]) = match to {
        CharsetState::Login => return Err(Unreachable::LoginCharsets),
        CharsetState::Live(c) => (true, c.clone()),
        CharsetState::Tracked(c) => (false, c.clone()),
    };
    match (&client, &results, &connection) {
        (Some(cl), Some(res), Some(conn)) if cl == res && cl == conn => {
            items.push_back(Item::Names {
                charset: cl.clone(),
                collation,
            })
        }
        _ => {
            for (name, value) in CHARSET_VARIABLES
                .into_iter()
                .zip([client, results, connection, collation])
            {
                if live || value.is_some() {
                    items.push_back(Item::Variable {
                        name: name.as_bytes().to_vec(),
                        value,
                        required: true,
                    });
                }
            }
        }
    }
    Ok(())
}

/// True for a variable the fix-up sets or resets (not the character sets, ferry's tracking or
/// what the schema implies).
fn is_fixed_up(name: &[u8]) -> bool {
    let listed = |list: &[&str]| list.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name));
    !listed(NOT_REPLAYED) && !listed(&CHARSET_VARIABLES)
}

fn push_variables(
    items: &mut VecDeque<Item>,
    from: &BTreeMap<Vec<u8>, Vec<u8>>,
    to: &BTreeMap<Vec<u8>, Vec<u8>>,
) {
    let no_default = |name: &[u8]| NO_DEFAULT.iter().any(|n| n.as_bytes() == name);
    for name in from.keys() {
        if !to.contains_key(name) && is_fixed_up(name) && !no_default(name) {
            items.push_back(Item::ResetVariable { name: name.clone() });
        }
    }
    for (name, value) in to {
        if from.get(name) != Some(value) && is_fixed_up(name) {
            items.push_back(Item::Variable {
                name: name.clone(),
                value: Some(value.clone()),
                required: false,
            });
        }
    }
}

fn same_name(a: &UserVar, b: &UserVar) -> bool {
    a.name.eq_ignore_ascii_case(&b.name)
}

/// A variable as one never set reads: a binary NULL.
fn is_plain_null(var: &UserVar) -> bool {
    var.value.is_none() && var.kind == UserVarType::String
}

fn push_user_vars(items: &mut VecDeque<Item>, from: &[UserVar], to: &[UserVar]) {
    let held = |var: &UserVar| from.iter().find(|f| same_name(f, var));
    let mut set = Vec::new();
    let mut clear = Vec::new();
    for var in to {
        match held(var) {
            Some(f) if f == var => {}
            // Assigning a plain NULL keeps the type the variable had.
            Some(f) if is_plain_null(var) && !is_plain_null(f) => clear.push(var.name.clone()),
            _ => set.push(var.clone()),
        }
    }
    for gone in from
        .iter()
        .filter(|f| !is_plain_null(f) && !to.iter().any(|t| same_name(f, t)))
    {
        clear.push(gone.name.clone());
    }
    if !set.is_empty() {
        items.push_back(Item::UserVariables(set));
    }
    if !clear.is_empty() {
        items.push_back(Item::ClearUserVariables(clear));
    }
}

fn push_sql_statements(
    items: &mut VecDeque<Item>,
    from: &ConnState,
    to: &ConnState,
    settings_changed: bool,
) {
    let find = |list: &[NamedSql], name: &[u8]| {
        list.iter()
            .find(|(n, _)| &n[..] == name)
            .map(|(_, sql)| sql.clone())
    };
    for (name, _) in &from.sql_statements {
        if find(&to.sql_statements, name).is_none() {
            items.push_back(Item::SqlDeallocate { name: name.clone() });
        }
    }
    for (name, sql) in &to.sql_statements {
        if settings_changed || find(&from.sql_statements, name).as_ref() != Some(sql) {
            items.push_back(Item::SqlPrepare {
                name: name.clone(),
                sql: sql.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
