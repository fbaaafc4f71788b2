//! The fix-up planner (`ferry_core::session::fixup`) against a real MariaDB: for random pairs of
//! session states A and B, A is set up on a connection, the fix-up A → B is applied, and what
//! the connection then holds (schema, system variables, character sets, user variables with
//! their types, SQL prepared statements run, `LAST_INSERT_ID()`) must be what B set up directly
//! on a fresh connection holds.
//!
//! The one difference allowed is the documented one: a user variable the fix-up removed still
//! shows in `information_schema.USER_VARIABLES`, as a binary `VARCHAR` NULL (MariaDB cannot
//! unset one); `SELECT @v` reads the same as a variable never set.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_core::session::fixup::{
    self, CharsetState, ConnState, Unreachable, UserVar, UserVarType,
};
use ferry_core::wire::Command;
use ferry_tests::MariaDb;
use mysql::prelude::Queryable;
use mysql::Value;

const USER: &str = "fixup";
const PASSWORD: &str = "fixup-pw";
const PAIRS: usize = 200;
const DEADLINE: Duration = Duration::from_secs(120);

/// System variables the states pick from, with the values each may take.
const VARIABLES: &[(&str, &[&str])] = &[
    (
        "sql_mode",
        &[
            "ANSI_QUOTES",
            "NO_BACKSLASH_ESCAPES",
            "PIPES_AS_CONCAT,STRICT_TRANS_TABLES",
        ],
    ),
    ("time_zone", &["+02:00", "-05:30"]),
    ("div_precision_increment", &["2", "9"]),
    ("tx_isolation", &["SERIALIZABLE", "READ-COMMITTED"]),
    ("group_concat_max_len", &["100", "5000"]),
];

const USER_VAR_NAMES: &[&str] = &["u", "v", "w"];
const STATEMENT_NAMES: &[&str] = &["p", "q"];
/// Each takes one parameter and shows what it was prepared under.
const STATEMENT_TEXTS: &[&str] = &[
    "SELECT ?, DATABASE(), @@sql_mode",
    r"SELECT CONCAT(?, 'a\bc'), @@time_zone",
    "SELECT ? + 1, @@collation_connection",
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, list: &'a [T]) -> &'a T {
        &list[self.below(list.len())]
    }
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn charsets(
    client: &str,
    results: Option<&str>,
    connection: &str,
    collation: &str,
) -> CharsetState {
    CharsetState::Live([
        Some(bytes(client)),
        results.map(bytes),
        Some(bytes(connection)),
        Some(bytes(collation)),
    ])
}

/// A user variable as ferry reads it (its description) and as SQL sets it directly.
fn user_var(rng: &mut Rng, name: &str) -> (UserVar, String) {
    let var =
        |value: Option<&[u8]>, kind, charset: Option<&str>, collation: Option<&str>| UserVar {
            name: bytes(name),
            value: value.map(<[u8]>::to_vec),
            kind,
            charset: charset.map(bytes),
            collation: collation.map(bytes),
        };
    match rng.below(10) {
        0 => (
            var(Some(b"-42"), UserVarType::Int, None, None),
            "-42".into(),
        ),
        1 => (var(Some(b"7"), UserVarType::Int, None, None), "7".into()),
        2 => (
            var(
                Some(b"18446744073709551615"),
                UserVarType::UnsignedInt,
                None,
                None,
            ),
            "18446744073709551615".into(),
        ),
        3 => (
            var(Some(b"3.14"), UserVarType::Decimal, None, None),
            "3.14".into(),
        ),
        4 => (
            var(Some(b"2.5"), UserVarType::Double, None, None),
            "2.5e0".into(),
        ),
        5 => (
            var(
                Some("zo\u{eb} \u{1F600}".as_bytes()),
                UserVarType::String,
                Some("utf8mb4"),
                Some("utf8mb4_bin"),
            ),
            "_utf8mb4'zo\u{eb} \u{1F600}' COLLATE utf8mb4_bin".into(),
        ),
        6 => (
            var(
                Some(b"It's"),
                UserVarType::String,
                Some("latin1"),
                Some("latin1_german1_ci"),
            ),
            "_latin1'It''s' COLLATE latin1_german1_ci".into(),
        ),
        7 => (
            var(
                Some(&[0, 0xFF]),
                UserVarType::String,
                Some("binary"),
                Some("binary"),
            ),
            "X'00FF'".into(),
        ),
        8 => (
            var(None, UserVarType::Int, None, None),
            "CAST(NULL AS SIGNED)".into(),
        ),
        _ => (var(None, UserVarType::String, None, None), "NULL".into()),
    }
}

/// A random session state, and the statements that set it up on a fresh connection (the
/// schema apart: COM_INIT_DB).
fn random_state(rng: &mut Rng) -> (ConnState, Vec<String>) {
    let mut state = ConnState::default();
    let mut setup = Vec::new();
    state.schema = match rng.below(3) {
        0 => None,
        1 => Some(bytes("fa")),
        _ => Some(bytes("fb")),
    };
    match rng.below(4) {
        0 => {}
        1 => {
            state.charsets = charsets("latin1", Some("latin1"), "latin1", "latin1_bin");
            setup.push("SET NAMES latin1 COLLATE latin1_bin".into());
        }
        2 => {
            state.charsets = charsets("utf8mb4", Some("utf8mb4"), "utf8mb4", "utf8mb4_unicode_ci");
            setup.push("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci".into());
        }
        _ => {
            state.charsets = charsets("utf8mb4", None, "latin1", "latin1_bin");
            setup.push(
                "SET character_set_client = utf8mb4, character_set_results = NULL, \
                 character_set_connection = latin1, collation_connection = latin1_bin"
                    .into(),
            );
        }
    }
    for (name, values) in VARIABLES {
        if rng.chance(2) {
            let value = *rng.pick(values);
            state.variables.insert(bytes(name), bytes(value));
            let numeric = value.bytes().all(|b| b.is_ascii_digit());
            setup.push(match numeric {
                true => format!("SET SESSION {name} = {value}"),
                false => format!("SET SESSION {name} = '{value}'"),
            });
        }
    }
    for name in USER_VAR_NAMES {
        if rng.chance(2) {
            let (var, sql) = user_var(rng, name);
            state.user_vars.push(var);
            setup.push(format!("SET @{name} = {sql}"));
        }
    }
    for name in STATEMENT_NAMES {
        if rng.chance(2) {
            let text = *rng.pick(STATEMENT_TEXTS);
            state
                .sql_statements
                .push((name.as_bytes().into(), text.as_bytes().into()));
            setup.push(format!("PREPARE {name} FROM X'{}'", hex(text.as_bytes())));
        }
    }
    state.last_insert_id = *rng.pick(&[0, 0, 5, 42]);
    if state.last_insert_id != 0 {
        setup.push(format!("SELECT LAST_INSERT_ID({})", state.last_insert_id));
    }
    (state, setup)
}

/// A state in text, for failure messages.
fn describe(state: &ConnState) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let vars: Vec<String> = state
        .variables
        .iter()
        .map(|(k, v)| format!("{}={}", text(k), text(v)))
        .collect();
    let users: Vec<String> = state
        .user_vars
        .iter()
        .map(|v| {
            format!(
                "@{}={:?} {:?}",
                text(&v.name),
                v.value.as_deref().map(text),
                v.kind
            )
        })
        .collect();
    let statements: Vec<String> = state
        .sql_statements
        .iter()
        .map(|(n, sql)| format!("{}: {}", text(n), text(sql)))
        .collect();
    format!(
        "schema {:?}, charsets {:?}, {vars:?}, {users:?}, {statements:?}, last_insert_id {}",
        state.schema.as_deref().map(text),
        state.charsets,
        state.last_insert_id
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02X}")).collect()
}

fn connect(db: &MariaDb) -> mysql::Conn {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(db.port())
        .user(Some(USER))
        .pass(Some(PASSWORD))
        .prefer_socket(false)
        .read_timeout(Some(Duration::from_secs(30)))
        .write_timeout(Some(Duration::from_secs(30)));
    mysql::Conn::new(opts).expect("connect to MariaDB")
}

/// Sets up `state` on `conn` (a fresh connection) with the statements written for it.
fn set_up(conn: &mut mysql::Conn, state: &ConnState, setup: &[String]) {
    if let Some(schema) = &state.schema {
        conn.select_db(std::str::from_utf8(schema).unwrap())
            .unwrap();
    }
    for sql in setup {
        conn.query_drop(sql)
            .unwrap_or_else(|e| panic!("setting up with {sql}: {e}"));
    }
}

/// Sends the fix-up's statements, each written for the connection's current SQL mode.
fn apply(conn: &mut mysql::Conn, plan: fixup::FixupPlan) {
    for statement in plan {
        let mode: String = conn
            .query_first("SELECT @@session.sql_mode")
            .unwrap()
            .unwrap();
        let payload = statement
            .payload(mode.contains("NO_BACKSLASH_ESCAPES"))
            .unwrap();
        let text = std::str::from_utf8(&payload[1..]).expect("the test's payloads are ASCII");
        let result = match payload[0] {
            Command::COM_INIT_DB => conn.select_db(text),
            _ => conn.query_drop(text),
        };
        result.unwrap_or_else(|e| panic!("fix-up statement {text}: {e}"));
    }
}

/// What can be read of the connection's session state.
fn read_back(conn: &mut mysql::Conn) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    let mut row = |conn: &mut mysql::Conn, key: &str, sql: &str| {
        let value = match conn.query_iter(sql) {
            Ok(mut result) => {
                let columns: Vec<String> = result
                    .columns()
                    .as_ref()
                    .iter()
                    .map(|c| format!("{:?}/{}", c.column_type(), c.character_set()))
                    .collect();
                let rows: Vec<Vec<Value>> = result.by_ref().map(|r| r.unwrap().unwrap()).collect();
                format!("{columns:?} {rows:?}")
            }
            Err(mysql::Error::MySqlError(e)) => format!("ERROR {}", e.code),
            Err(e) => panic!("{sql}: {e}"),
        };
        seen.insert(key.to_owned(), value);
    };
    row(conn, "schema", "SELECT DATABASE()");
    row(
        conn,
        "charsets",
        "SELECT @@character_set_client, @@character_set_results, \
         @@character_set_connection, @@collation_connection",
    );
    for (name, _) in VARIABLES {
        row(conn, name, &format!("SELECT @@session.{name}"));
    }
    for name in USER_VAR_NAMES {
        row(
            conn,
            &format!("@{name}"),
            // Not `CAST(@v AS BINARY)`: its length, so its type, differs between a variable set to NULL
            // and one never set, which `@v` itself does not show.
            &format!("SELECT @{name}, COLLATION(@{name}), HEX(@{name})"),
        );
    }
    // A variable the fix-up removed is listed as a binary VARCHAR NULL (see the module doc).
    row(
        conn,
        "user_variables",
        "SELECT VARIABLE_NAME, VARIABLE_VALUE, VARIABLE_TYPE, CHARACTER_SET_NAME \
         FROM information_schema.USER_VARIABLES \
         WHERE NOT (VARIABLE_VALUE IS NULL AND VARIABLE_TYPE = 'VARCHAR' \
         AND CHARACTER_SET_NAME = 'binary') ORDER BY VARIABLE_NAME",
    );
    for name in STATEMENT_NAMES {
        row(
            conn,
            &format!("EXECUTE {name}"),
            &format!("EXECUTE {name} USING 7"),
        );
    }
    row(conn, "last_insert_id", "SELECT LAST_INSERT_ID()");
    seen
}

#[test]
fn fixup_brings_a_connection_from_any_state_to_any_other() {
    let db = MariaDb::start();
    db.create_user(USER, PASSWORD);
    db.create_database("fa");
    db.create_database("fb");
    let started = Instant::now();
    // The login's character sets, which a fix-up to `Login` needs told (see `Unreachable`).
    let login = {
        let mut conn = connect(&db);
        let row: (String, String, String, String) = conn
            .query_first(
                "SELECT @@character_set_client, @@character_set_results, \
                 @@character_set_connection, @@collation_connection",
            )
            .unwrap()
            .unwrap();
        CharsetState::Live([row.0, row.1, row.2, row.3].map(|v| Some(v.into_bytes())))
    };
    let mut rng = Rng(0x5EED_F1C5_0015_0001);
    let (mut applied, mut no_schema, mut told_login) = (0, 0, 0);
    for pair in 0..PAIRS {
        assert!(started.elapsed() < DEADLINE, "{pair} pairs took too long");
        let (a, a_setup) = random_state(&mut rng);
        let (b, b_setup) = random_state(&mut rng);
        assert!(fixup::plan(&a, &a).unwrap().is_empty(), "A to A: nothing");
        let plan = match fixup::plan(&a, &b) {
            Ok(plan) => plan,
            Err(Unreachable::NoSchema) => {
                assert!(a.schema.is_some() && b.schema.is_none());
                no_schema += 1;
                continue;
            }
            Err(Unreachable::LoginCharsets) => {
                // What a pool does: give the target's login values.
                told_login += 1;
                let b = ConnState {
                    charsets: login.clone(),
                    ..b.clone()
                };
                fixup::plan(&a, &b).unwrap()
            }
            Err(e) => panic!("{e}"),
        };
        let mut fixed = connect(&db);
        set_up(&mut fixed, &a, &a_setup);
        let statements = plan.len();
        apply(&mut fixed, plan);
        let mut direct = connect(&db);
        set_up(&mut direct, &b, &b_setup);
        let (got, want) = (read_back(&mut fixed), read_back(&mut direct));
        for (key, value) in &want {
            assert_eq!(
                &got[key],
                value,
                "pair {pair}, {key} after {statements} fix-up statements\nA = {}\nB = {}",
                describe(&a),
                describe(&b)
            );
        }
        applied += 1;
    }
    eprintln!(
        "{applied} pairs fixed up, {no_schema} unreachable (no schema), {told_login} told the \
         login's character sets, in {:?}",
        started.elapsed()
    );
    assert!(applied >= PAIRS / 2, "most pairs are reachable: {applied}");
    assert!(told_login > 0 && no_schema > 0, "both remedies exercised");
}
