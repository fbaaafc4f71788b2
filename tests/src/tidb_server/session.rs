//! The TiDB test server's per-session state, and its `SHOW SESSION_STATES` JSON form.
//!
//! The JSON keeps TiDB's key names (`reference/tidb-migration-protocol.md` §3) with a simpler
//! encoding of the values, which only this server reads back:
//!
//! ```json
//! { "current-db": "db1",
//!   "user-var-values": {"a": "1", "b": "x", "n": null},
//!   "user-var-types": {"a": {"tp": 8}, "b": {"tp": 253}, "n": {"tp": 6}},
//!   "sys-vars": {"sql_mode": "ANSI_QUOTES"},
//!   "prepared-stmts": {"1": {"text": "SELECT ?", "types": [[8, false]]}},
//!   "prepared-stmt-id": 1 }
//! ```
//!
//! `tp` is the MySQL column type code (LONGLONG 8, DOUBLE 5, VAR_STRING 253, NULL 6); `types` are
//! the parameter types last bound to a statement (needed to decode an execute that does not
//! resend them). Keys with nothing to say are omitted, as TiDB omits them.

use std::collections::BTreeMap;

use ferry_core::wire::{ColumnType, ValueType};
use serde_json::{json, Map, Value as Json};

use super::sql::{self, Datum, Item, Stmt};

/// Session variables a client may set, with their defaults.
const SETTABLE: &[(&str, &str)] = &[
    ("autocommit", "1"),
    ("sql_mode", "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"),
    ("time_zone", "SYSTEM"),
    ("character_set_client", "utf8mb4"),
    ("character_set_connection", "utf8mb4"),
    ("character_set_results", "utf8mb4"),
    ("collation_connection", "utf8mb4_general_ci"),
    ("transaction_isolation", "REPEATABLE-READ"),
    ("tx_isolation", "REPEATABLE-READ"),
    ("wait_timeout", "28800"),
    ("interactive_timeout", "28800"),
    ("net_write_timeout", "60"),
    ("net_read_timeout", "30"),
    ("max_execution_time", "0"),
    ("sql_select_limit", "18446744073709551615"),
];

/// Variables whose values read as integers.
const NUMERIC: &[&str] = &[
    "autocommit",
    "wait_timeout",
    "interactive_timeout",
    "net_write_timeout",
    "net_read_timeout",
    "max_execution_time",
    "port",
    "server_id",
    "max_allowed_packet",
    "lower_case_table_names",
];

/// A prepared statement: its text and what executing it needs.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// The statement as the client sent it.
    pub(crate) text: String,
    /// Its SELECT list (`?` items are parameters).
    pub(crate) items: Vec<Item>,
    /// Number of `?`.
    pub(crate) params: u16,
    /// Parameter types last bound (empty until the first execute).
    pub(crate) types: Vec<ValueType>,
}

impl Prepared {
    /// Prepares `text`: only a SELECT list can be prepared.
    pub(crate) fn new(text: &str) -> Result<Self, String> {
        let Stmt::Select(items) = sql::parse(text)? else {
            return Err("the test server prepares only SELECT lists".into());
        };
        let params = items
            .iter()
            .filter(|i| matches!(i.expr, sql::Expr::Param(_)))
            .count();
        Ok(Self {
            text: text.to_owned(),
            items,
            params: u16::try_from(params).map_err(|_| "too many parameters")?,
            types: Vec::new(),
        })
    }
}

/// The state one connection carries, all of which `SHOW SESSION_STATES` exports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    /// The logged-in user.
    pub(crate) user: String,
    /// The current database.
    pub(crate) db: Option<String>,
    /// User variables, by lowercased name.
    pub(crate) user_vars: BTreeMap<String, Datum>,
    /// Session variables set away from their defaults.
    pub(crate) sys_vars: BTreeMap<String, String>,
    /// Prepared statements by id.
    pub(crate) stmts: BTreeMap<u32, Prepared>,
    /// The last statement id handed out.
    pub(crate) last_stmt_id: u32,
    /// Inside BEGIN ... COMMIT.
    pub(crate) in_trans: bool,
}

impl Session {
    /// A session variable: set, else its default. `None`: not a settable variable.
    pub(crate) fn sys_var(&self, name: &str) -> Option<String> {
        if let Some(v) = self.sys_vars.get(name) {
            return Some(v.clone());
        }
        SETTABLE
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| (*d).to_owned())
    }

    /// Sets a session variable. Errors: (code, message).
    pub(crate) fn set_sys_var(&mut self, name: &str, value: &Datum) -> Result<(), (u16, String)> {
        if SETTABLE.iter().all(|(n, _)| *n != name) {
            return Err((1193, format!("Unknown system variable '{name}'")));
        }
        let mut text = match value {
            Datum::Null => return Err((1231, format!("Variable '{name}' can't be set to NULL"))),
            other => other.to_text().unwrap_or_default(),
        };
        match name {
            "sql_mode" => text = text.to_ascii_uppercase(),
            "autocommit" => {
                text = match text.to_ascii_lowercase().as_str() {
                    "1" | "on" | "true" => "1".into(),
                    "0" | "off" | "false" => "0".into(),
                    _ => {
                        return Err((
                            1231,
                            format!("Variable 'autocommit' can't be set to '{text}'"),
                        ))
                    }
                }
            }
            _ => {}
        }
        self.sys_vars.insert(name.to_owned(), text);
        Ok(())
    }

    /// Autocommit is on.
    pub(crate) fn autocommit(&self) -> bool {
        self.sys_var("autocommit").as_deref() != Some("0")
    }

    /// The next statement id.
    pub(crate) fn next_stmt_id(&mut self) -> u32 {
        self.last_stmt_id = self.last_stmt_id.wrapping_add(1).max(1);
        while self.stmts.contains_key(&self.last_stmt_id) {
            self.last_stmt_id = self.last_stmt_id.wrapping_add(1).max(1);
        }
        self.last_stmt_id
    }

    /// The `Session_states` JSON.
    pub(crate) fn states_json(&self) -> Json {
        let mut out = Map::new();
        if let Some(db) = &self.db {
            out.insert("current-db".into(), json!(db));
        }
        if !self.user_vars.is_empty() {
            let (mut values, mut types) = (Map::new(), Map::new());
            for (name, v) in &self.user_vars {
                values.insert(name.clone(), json!(v.to_text()));
                types.insert(name.clone(), json!({ "tp": datum_type(v).to_u8() }));
            }
            out.insert("user-var-values".into(), Json::Object(values));
            out.insert("user-var-types".into(), Json::Object(types));
        }
        if !self.sys_vars.is_empty() {
            out.insert("sys-vars".into(), json!(self.sys_vars));
        }
        if !self.stmts.is_empty() {
            let stmts: Map<String, Json> = self
                .stmts
                .iter()
                .map(|(id, p)| {
                    let mut s = Map::new();
                    s.insert("text".into(), json!(p.text));
                    if !p.types.is_empty() {
                        let types: Vec<Json> = p
                            .types
                            .iter()
                            .map(|t| json!([t.column_type.to_u8(), t.unsigned]))
                            .collect();
                        s.insert("types".into(), Json::Array(types));
                    }
                    (id.to_string(), Json::Object(s))
                })
                .collect();
            out.insert("prepared-stmts".into(), Json::Object(stmts));
        }
        if self.last_stmt_id != 0 {
            out.insert("prepared-stmt-id".into(), json!(self.last_stmt_id));
        }
        Json::Object(out)
    }

    /// Restores the state of `SET SESSION_STATES`, including prepared statements under their
    /// ids. Nothing changes when the text is refused.
    pub(crate) fn restore(&mut self, text: &str, databases: &[String]) -> Result<(), String> {
        let states: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let states = states
            .as_object()
            .ok_or("session states are not an object")?;
        let mut next = self.clone();
        if let Some(db) = states.get("current-db") {
            let db = db.as_str().ok_or("current-db is not a string")?;
            if !databases.iter().any(|d| d == db) {
                return Err(format!("Unknown database '{db}'"));
            }
            next.db = Some(db.to_owned());
        }
        let empty = Map::new();
        let obj = |key: &str| -> Result<&Map<String, Json>, String> {
            match states.get(key) {
                None => Ok(&empty),
                Some(v) => v.as_object().ok_or(format!("{key} is not an object")),
            }
        };
        let types = obj("user-var-types")?;
        for (name, value) in obj("user-var-values")? {
            let tp = types
                .get(name)
                .and_then(|t| t.get("tp"))
                .and_then(Json::as_u64)
                .ok_or(format!("no type for user variable {name}"))?;
            let datum = match (value.as_str(), u8::try_from(tp).map(ColumnType::from_u8)) {
                (None, _) => Datum::Null,
                (Some(v), Ok(ColumnType::LongLong)) => {
                    Datum::Int(v.parse().map_err(|_| format!("bad integer {v}"))?)
                }
                (Some(v), Ok(ColumnType::Double)) => {
                    Datum::Double(v.parse().map_err(|_| format!("bad double {v}"))?)
                }
                (Some(v), _) => Datum::Str(v.to_owned()),
            };
            next.user_vars.insert(name.to_ascii_lowercase(), datum);
        }
        for (name, value) in obj("sys-vars")? {
            let value = value
                .as_str()
                .ok_or(format!("sys-var {name} is not a string"))?;
            // Variables this server does not know are skipped, as a newer server would.
            let _ = next.set_sys_var(name, &Datum::Str(value.to_owned()));
        }
        for (id, stmt) in obj("prepared-stmts")? {
            let id: u32 = id.parse().map_err(|_| format!("bad statement id {id}"))?;
            let text = stmt
                .get("text")
                .and_then(Json::as_str)
                .ok_or(format!("statement {id} has no text"))?;
            let mut prepared = Prepared::new(text)?;
            if let Some(types) = stmt.get("types").and_then(Json::as_array) {
                prepared.types = types
                    .iter()
                    .map(|t| {
                        let code = t.get(0).and_then(Json::as_u64).unwrap_or(253);
                        let unsigned = t.get(1).and_then(Json::as_bool).unwrap_or(false);
                        let code = u8::try_from(code).unwrap_or(253);
                        ValueType::new(ColumnType::from_u8(code), unsigned)
                    })
                    .collect();
            }
            next.stmts.insert(id, prepared);
        }
        if let Some(id) = states.get("prepared-stmt-id") {
            let id = id.as_u64().and_then(|i| u32::try_from(i).ok());
            next.last_stmt_id = id.ok_or("prepared-stmt-id is not a u32")?;
        }
        *self = next;
        Ok(())
    }
}

/// Whether a variable reads as an integer.
pub(crate) fn is_numeric_var(name: &str) -> bool {
    NUMERIC.contains(&name)
}

/// The column type a value is sent as.
pub(crate) fn datum_type(d: &Datum) -> ColumnType {
    match d {
        Datum::Null => ColumnType::Null,
        Datum::Int(_) => ColumnType::LongLong,
        Datum::Double(_) => ColumnType::Double,
        Datum::Str(_) => ColumnType::VarString,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        let mut s = Session {
            user: "app".into(),
            db: Some("db1".into()),
            ..Session::default()
        };
        s.user_vars.insert("a".into(), Datum::Int(-7));
        s.user_vars.insert("b".into(), Datum::Str("x'\\\"y".into()));
        s.user_vars.insert("c".into(), Datum::Double(1.25));
        s.user_vars.insert("n".into(), Datum::Null);
        s.set_sys_var("sql_mode", &Datum::Str("ansi_quotes".into()))
            .unwrap();
        let id = s.next_stmt_id();
        let mut p = Prepared::new("SELECT ?, @a").unwrap();
        p.types = vec![ValueType::new(ColumnType::LongLong, true)];
        s.stmts.insert(id, p);
        s.next_stmt_id();
        s.stmts.remove(&2);
        let text = s.states_json().to_string();

        let mut t = Session::default();
        let dbs = vec!["db1".to_owned()];
        t.restore(&text, &dbs).unwrap();
        assert_eq!(t.db.as_deref(), Some("db1"));
        assert_eq!(t.user_vars, s.user_vars);
        assert_eq!(t.sys_var("sql_mode").as_deref(), Some("ANSI_QUOTES"));
        assert_eq!(t.stmts[&1].text, "SELECT ?, @a");
        assert_eq!(t.stmts[&1].params, 1);
        assert_eq!(t.stmts[&1].types, s.stmts[&1].types);
        assert_eq!(t.last_stmt_id, 2);
        assert_eq!(t.next_stmt_id(), 3);

        let before = t.states_json();
        assert!(t.restore(r#"{"current-db": "nope"}"#, &dbs).is_err());
        assert!(t.restore("not json", &dbs).is_err());
        assert_eq!(t.states_json(), before, "a refused restore changes nothing");
    }
}
