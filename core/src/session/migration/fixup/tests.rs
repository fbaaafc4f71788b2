use proptest::prelude::*;

use super::*;

/// Each statement as text, COM_INIT_DB as `USE name`.
fn sqls(from: &ConnState, to: &ConnState) -> Vec<String> {
    plan(from, to)
        .unwrap()
        .map(|s| {
            let p = s.payload(false).unwrap();
            let text = String::from_utf8_lossy(&p[1..]).into_owned();
            match p[0] {
                crate::wire::Command::COM_INIT_DB => format!("USE {text}"),
                _ => text,
            }
        })
        .collect()
}

fn vars(list: &[(&str, &str)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    list.iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn int_var(name: &str, value: i64) -> UserVar {
    UserVar {
        name: name.into(),
        value: Some(value.to_string().into_bytes()),
        kind: UserVarType::Int,
        charset: Some(b"latin1".to_vec()),
        collation: None,
    }
}

fn live(cs: &str, collation: &str) -> CharsetState {
    let c = Some(cs.as_bytes().to_vec());
    CharsetState::Live([c.clone(), c.clone(), c, Some(collation.as_bytes().to_vec())])
}

fn statement(name: &str, sql: &str) -> NamedSql {
    (name.as_bytes().into(), sql.as_bytes().into())
}

/// A state with something of every kind.
fn busy() -> ConnState {
    ConnState {
        schema: Some(b"app".to_vec()),
        variables: vars(&[("sql_mode", "ANSI_QUOTES"), ("time_zone", "+02:00")]),
        charsets: live("latin1", "latin1_bin"),
        user_vars: vec![int_var("a", 1), int_var("b", 2)],
        sql_statements: vec![statement("s", "SELECT 1"), statement("t", "SELECT ?")],
        last_insert_id: 7,
    }
}

#[test]
fn an_identical_state_needs_nothing() {
    assert!(plan(&busy(), &busy()).unwrap().is_empty());
    assert!(plan(&ConnState::default(), &ConnState::default())
        .unwrap()
        .is_empty());
}

#[test]
fn the_schema_is_changed_with_init_db() {
    let to = busy();
    let from = ConnState {
        schema: Some(b"other".to_vec()),
        ..to.clone()
    };
    let plan_sql = sqls(&from, &to);
    assert_eq!(plan_sql[0], "USE app");
    // MariaDB binds the schema at PREPARE: every SQL statement is prepared again.
    assert_eq!(
        plan_sql[1..],
        [
            "PREPARE `s` FROM X'53454C4543542031'",
            "PREPARE `t` FROM X'53454C454354203F'",
        ]
    );
    let first = plan(&from, &to).unwrap().next().unwrap();
    assert_eq!(
        &first.payload(false).unwrap()[..],
        b"\x02app",
        "COM_INIT_DB"
    );
    assert!(!first.skippable());
    let none = ConnState {
        schema: None,
        ..to.clone()
    };
    assert_eq!(plan(&to, &none), Err(Unreachable::NoSchema));
    assert_eq!(sqls(&none, &to)[0], "USE app");
}

#[test]
fn variables_that_differ_are_set_and_those_the_target_lacks_reset_first() {
    let from = ConnState {
        variables: vars(&[
            ("sql_mode", "ANSI_QUOTES"),
            ("tx_isolation", "READ-COMMITTED"),
            ("time_zone", "+02:00"),
            ("rand_seed1", "5"),
            ("session_track_schema", "ON"),
            ("character_set_client", "latin1"),
        ]),
        ..ConnState::default()
    };
    let to = ConnState {
        variables: vars(&[
            ("sql_mode", "ANSI_QUOTES"),
            ("transaction_isolation", "SERIALIZABLE"),
            ("time_zone", "+03:00"),
            ("character_set_client", "utf8mb4"),
        ]),
        ..ConnState::default()
    };
    assert_eq!(
        sqls(&from, &to),
        [
            "SET SESSION tx_isolation = DEFAULT",
            "SET SESSION time_zone = '+03:00'",
            "SET SESSION transaction_isolation = 'SERIALIZABLE'",
        ],
        "no DEFAULT for rand_seed1, ferry's tracking or the character sets (a group of their own)"
    );
    let reset = plan(&from, &to).unwrap().next().unwrap();
    assert!(reset.skippable(), "a refused reset is skipped and reported");
    assert_eq!(reset.label(), "tx_isolation");
}

#[test]
fn character_sets_change_as_a_group() {
    let to = ConnState {
        charsets: live("utf8mb4", "utf8mb4_bin"),
        ..ConnState::default()
    };
    assert_eq!(
        sqls(&ConnState::default(), &to),
        ["SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'"]
    );
    let from = ConnState {
        charsets: live("latin1", "latin1_swedish_ci"),
        ..ConnState::default()
    };
    assert_eq!(
        sqls(&from, &to),
        ["SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'"]
    );
    let mixed = ConnState {
        charsets: CharsetState::Live([
            Some(b"utf8mb4".to_vec()),
            None,
            Some(b"latin1".to_vec()),
            Some(b"latin1_bin".to_vec()),
        ]),
        ..ConnState::default()
    };
    assert_eq!(
        sqls(&from, &mixed),
        [
            "SET SESSION character_set_client = 'utf8mb4'",
            "SET SESSION character_set_results = NULL",
            "SET SESSION character_set_connection = 'latin1'",
            "SET SESSION collation_connection = 'latin1_bin'",
        ]
    );
    assert_eq!(
        plan(&from, &ConnState::default()),
        Err(Unreachable::LoginCharsets),
        "the login's values are not known here"
    );
    assert_eq!(sqls(&from, &from), Vec::<String>::new());
}

#[test]
fn user_variables_that_differ_are_set_and_those_the_target_lacks_cleared() {
    let from = ConnState {
        user_vars: vec![
            int_var("same", 1),
            int_var("changed", 1),
            int_var("gone", 1),
            UserVar {
                value: None,
                kind: UserVarType::String,
                ..int_var("already_null", 0)
            },
        ],
        ..ConnState::default()
    };
    let to = ConnState {
        user_vars: vec![int_var("SAME", 1), int_var("changed", 2), int_var("new", 3)],
        ..ConnState::default()
    };
    assert_eq!(
        sqls(&from, &to),
        [
            "SET @`SAME` = 1, @`changed` = 2, @`new` = 3",
            "SET @`gone` = CAST(NULL AS BINARY)"
        ],
        "names differing in case only are set again (harmless); a binary NULL is as unset"
    );
    let to = ConnState {
        user_vars: from.user_vars.clone(),
        ..ConnState::default()
    };
    assert_eq!(sqls(&from, &to), Vec::<String>::new());
    // A plain NULL over a typed variable would keep its type: cleared instead.
    let null = UserVar {
        value: None,
        kind: UserVarType::String,
        charset: None,
        ..int_var("changed", 0)
    };
    let to = ConnState {
        user_vars: vec![null.clone()],
        ..ConnState::default()
    };
    assert_eq!(
        sqls(&from, &to),
        [
            "SET @`changed` = CAST(NULL AS BINARY), @`same` = CAST(NULL AS BINARY), \
             @`gone` = CAST(NULL AS BINARY)"
        ]
    );
    assert_eq!(
        sqls(&ConnState::default(), &to),
        ["SET @`changed` = NULL"],
        "a fresh variable"
    );
}

#[test]
fn sql_prepared_statements_added_removed_changed() {
    let from = ConnState {
        sql_statements: vec![
            statement("same", "SELECT 1"),
            statement("changed", "SELECT 1"),
            statement("gone", "SELECT 1"),
        ],
        ..ConnState::default()
    };
    let to = ConnState {
        sql_statements: vec![
            statement("new", "SELECT 2"),
            statement("changed", "SELECT 2"),
            statement("same", "SELECT 1"),
        ],
        ..ConnState::default()
    };
    assert_eq!(
        sqls(&from, &to),
        [
            "DEALLOCATE PREPARE `gone`",
            "PREPARE `new` FROM X'53454C4543542032'",
            "PREPARE `changed` FROM X'53454C4543542032'",
        ]
    );
    // A changed sql_mode changes how a statement parses: all are prepared again.
    let to = ConnState {
        variables: vars(&[("sql_mode", "ANSI_QUOTES")]),
        ..from.clone()
    };
    assert_eq!(sqls(&from, &to).len(), 4);
}

#[test]
fn last_insert_id_is_set_when_it_differs() {
    let from = ConnState {
        last_insert_id: 5,
        ..ConnState::default()
    };
    assert_eq!(
        sqls(&from, &ConnState::default()),
        ["SELECT LAST_INSERT_ID(0)"]
    );
    assert_eq!(
        sqls(&ConnState::default(), &from),
        ["SELECT LAST_INSERT_ID(5)"]
    );
}

#[test]
fn parts_come_in_order() {
    let plan_sql = sqls(&ConnState::default(), &busy());
    assert_eq!(
        plan_sql,
        [
            "USE app",
            "SET NAMES 'latin1' COLLATE 'latin1_bin'",
            "SET SESSION sql_mode = 'ANSI_QUOTES'",
            "SET SESSION time_zone = '+02:00'",
            "SET @`a` = 1, @`b` = 2",
            "PREPARE `s` FROM X'53454C4543542031'",
            "PREPARE `t` FROM X'53454C454354203F'",
            "SELECT LAST_INSERT_ID(7)",
        ]
    );
}

/// What a connection holds after the plan's statements, as MariaDB applies them (the parts the
/// planner deals in), and for each SQL statement the settings it was prepared under.
#[derive(Debug, Clone)]
struct Model {
    state: ConnState,
    prepared_under: BTreeMap<Box<[u8]>, Settings>,
}

type Settings = (Option<Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>, CharsetState);

type Observable = (Settings, BTreeMap<Vec<u8>, UserVar>, Vec<NamedSql>, u64);

fn settings(s: &ConnState) -> Settings {
    (s.schema.clone(), s.variables.clone(), s.charsets.clone())
}

impl Model {
    fn new(state: &ConnState) -> Self {
        let under = settings(state);
        Model {
            prepared_under: state
                .sql_statements
                .iter()
                .map(|(n, _)| (n.clone(), under.clone()))
                .collect(),
            state: state.clone(),
        }
    }

    fn apply(&mut self, item: Item) {
        let s = &mut self.state;
        match item {
            Item::InitDb(schema) => s.schema = Some(schema),
            Item::Names { charset, collation } => {
                let c = Some(charset);
                s.charsets = CharsetState::Live([c.clone(), c.clone(), c, collation]);
            }
            Item::Variable { name, value, .. } => {
                match CHARSET_VARIABLES.iter().position(|n| n.as_bytes() == name) {
                    Some(i) => {
                        if !matches!(s.charsets, CharsetState::Live(_)) {
                            s.charsets = CharsetState::Live(Default::default());
                        }
                        if let CharsetState::Live(c) = &mut s.charsets {
                            c[i] = value;
                        }
                    }
                    None => {
                        s.variables.insert(name, value.unwrap());
                    }
                }
            }
            Item::ResetVariable { name } => {
                s.variables.remove(&name);
            }
            Item::UserVariables(set) => {
                for mut var in set {
                    if let Some(old) = s.user_vars.iter().find(|v| same_name(v, &var)) {
                        if var.value.is_none() && var.kind == UserVarType::String {
                            // MariaDB: a plain NULL keeps the type (and collation) it had.
                            var = UserVar {
                                value: None,
                                name: var.name,
                                ..old.clone()
                            };
                        }
                    }
                    s.user_vars.retain(|v| !same_name(v, &var));
                    s.user_vars.push(var);
                }
            }
            Item::ClearUserVariables(names) => {
                for name in names {
                    s.user_vars.retain(|v| !v.name.eq_ignore_ascii_case(&name));
                }
            }
            Item::SqlPrepare { name, sql } => {
                s.sql_statements.retain(|(n, _)| *n != name);
                s.sql_statements.push((name.clone(), sql));
                let under = settings(s);
                self.prepared_under.insert(name, under);
            }
            Item::SqlDeallocate { name } => {
                s.sql_statements.retain(|(n, _)| *n != name);
                self.prepared_under.remove(&name);
            }
            Item::LastInsertId(id) => s.last_insert_id = id,
            other => panic!("not a fix-up statement: {other:?}"),
        }
    }
}

/// What can be observed: user variables by name (a binary NULL as unset), statements by name.
fn observable(s: &ConnState) -> Observable {
    let users = s
        .user_vars
        .iter()
        .filter(|v| !is_plain_null(v))
        .map(|v| (v.name.to_ascii_lowercase(), v.clone()))
        .collect();
    let mut statements = s.sql_statements.clone();
    statements.sort();
    (settings(s), users, statements, s.last_insert_id)
}

fn arb_state() -> impl Strategy<Value = ConnState> {
    let schema = prop::option::of(prop::sample::select(vec![b"a".to_vec(), b"b".to_vec()]));
    let variables = prop::collection::btree_map(
        prop::sample::select(vec![
            b"sql_mode".to_vec(),
            b"time_zone".to_vec(),
            b"autocommit".to_vec(),
        ]),
        prop::sample::select(vec![b"1".to_vec(), b"x".to_vec()]),
        0..3,
    );
    let charsets = prop_oneof![
        Just(CharsetState::Login),
        Just(live("latin1", "latin1_bin")),
        Just(live("utf8mb4", "utf8mb4_bin")),
        Just(CharsetState::Live([
            Some(b"utf8mb4".to_vec()),
            None,
            Some(b"latin1".to_vec()),
            Some(b"latin1_bin".to_vec()),
        ])),
    ];
    let user_var = (
        prop::sample::select(vec!["u", "v", "w"]),
        prop::option::of(0i64..3),
    )
        .prop_map(|(name, value)| match value {
            Some(v) => int_var(name, v),
            None => UserVar {
                value: None,
                kind: UserVarType::String,
                charset: None,
                ..int_var(name, 0)
            },
        });
    let user_vars =
        prop::collection::btree_map(prop::sample::select(vec!["u", "v", "w"]), user_var, 0..3)
            .prop_map(|m| {
                m.into_iter()
                    .map(|(name, v)| UserVar {
                        name: name.into(),
                        ..v
                    })
                    .collect()
            });
    let statements = prop::collection::btree_map(
        prop::sample::select(vec!["p", "q"]),
        prop::sample::select(vec!["SELECT 1", "SELECT 2"]),
        0..2,
    )
    .prop_map(|m| m.into_iter().map(|(n, sql)| statement(n, sql)).collect());
    (schema, variables, charsets, user_vars, statements, 0u64..2).prop_map(
        |(schema, variables, charsets, user_vars, sql_statements, last_insert_id)| ConnState {
            schema,
            variables,
            charsets,
            user_vars,
            sql_statements,
            last_insert_id,
        },
    )
}

proptest! {
    /// The plan brings `from` to `to`, every statement prepared under the final settings, or
    /// says why it cannot; from a state to itself it is empty.
    #[test]
    fn the_plan_reaches_the_target(from in arb_state(), to in arb_state()) {
        prop_assert!(plan(&to, &to).unwrap().is_empty());
        let items = match plan_items(&from, &to, []) {
            Ok(items) => items,
            Err(Unreachable::NoSchema) => {
                prop_assert!(from.schema.is_some() && to.schema.is_none());
                return Ok(());
            }
            Err(Unreachable::LoginCharsets) => {
                prop_assert!(to.charsets == CharsetState::Login && from.charsets != to.charsets);
                return Ok(());
            }
        };
        let mut model = Model::new(&from);
        for item in items {
            prop_assert!(item.payload(false).is_ok());
            model.apply(item);
        }
        prop_assert_eq!(observable(&model.state), observable(&to));
        for (name, under) in &model.prepared_under {
            // Prepared before, under settings equal to the final ones, or prepared again.
            prop_assert_eq!(under, &settings(&to), "statement {:?}", name);
        }
    }
}
