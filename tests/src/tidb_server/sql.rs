//! The few statements the TiDB test server understands, parsed from a token stream.
//!
//! ```text
//! SELECT item [, item]*          item: expr [[AS] alias]
//!   expr: integer | decimal | 'string' | NULL | TRUE | FALSE | @var | @@[session.]var | ?
//!         | DATABASE() | USER() | CURRENT_USER() | CONNECTION_ID() | VERSION()
//! SET assignment [, assignment]* @var = expr | [SESSION|LOCAL] var = expr | @@[session.]var = expr
//!                                | NAMES charset [COLLATE collation]
//! SET SESSION_STATES 'text'      SHOW SESSION_STATES
//! USE db      BEGIN | START TRANSACTION | COMMIT | ROLLBACK
//! ```
//!
//! Strings take MySQL's escapes (`\\`, `\'`, `\n`... and `''`), so `SET SESSION_STATES` reads
//! back exactly what the proxy escaped.

/// A value: a user variable's, a literal's, a bound parameter's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Datum {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number (decimal literals too).
    Double(f64),
    /// A string.
    Str(String),
}

impl Datum {
    /// The value as the text protocol writes it (`None`: NULL).
    pub(crate) fn to_text(&self) -> Option<String> {
        match self {
            Datum::Null => None,
            Datum::Int(i) => Some(i.to_string()),
            Datum::Double(d) => Some(d.to_string()),
            Datum::Str(s) => Some(s.clone()),
        }
    }
}

/// An expression of a SELECT list or the right side of a SET.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A literal.
    Lit(Datum),
    /// `@name` (lowercased: user variable names ignore case).
    UserVar(String),
    /// `@@name` (lowercased, scope dropped).
    SysVar(String),
    /// `?`, a parameter of a prepared statement, numbered from 0 in order.
    Param(usize),
    /// `name()`, lowercased.
    Func(String),
    /// A bare word on the right of a SET (`SET sql_mode = ANSI`, `SET autocommit = ON`).
    Word(String),
}

/// One item of a SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// What to evaluate.
    pub(crate) expr: Expr,
    /// The column name: the alias, else the expression as written.
    pub(crate) name: String,
}

/// What a SET assigns to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    /// `@name`.
    User(String),
    /// A session system variable.
    Sys(String),
    /// `SET NAMES charset`.
    Names(String),
}

/// A statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stmt {
    /// `SELECT ...`.
    Select(Vec<Item>),
    /// `SET ...` (not SESSION_STATES).
    Set(Vec<(Target, Expr)>),
    /// `SET SESSION_STATES '...'`, unescaped.
    SetSessionStates(String),
    /// `SHOW SESSION_STATES`.
    ShowSessionStates,
    /// `USE db`.
    Use(String),
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A word or a backquoted identifier.
    Word(String),
    UserVar(String),
    SysVar(String),
    Str(String),
    Num(String),
    Param,
    Punct(char),
}

/// Tokens with their byte spans in the statement text.
fn tokenize(sql: &str) -> Result<Vec<(Tok, usize, usize)>, String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let word_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let word_at = |mut j: usize| {
        let start = j;
        while j < b.len() && word_char(b[j]) {
            j += 1;
        }
        (sql[start..j].to_owned(), j)
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            b'\'' | b'"' => {
                let (s, end) = string_literal(sql, i)?;
                i = end;
                Tok::Str(s)
            }
            b'`' => {
                let end = sql[i + 1..].find('`').ok_or("unterminated identifier")? + i + 1;
                let name = sql[i + 1..end].to_owned();
                i = end + 1;
                Tok::Word(name)
            }
            b'@' if b.get(i + 1) == Some(&b'@') => {
                let (mut name, mut end) = word_at(i + 2);
                let scope = name.to_ascii_lowercase();
                if b.get(end) == Some(&b'.') && matches!(scope.as_str(), "session" | "local") {
                    (name, end) = word_at(end + 1);
                } else if b.get(end) == Some(&b'.') {
                    return Err(format!("unsupported variable scope {name}"));
                }
                i = end;
                Tok::SysVar(name.to_ascii_lowercase())
            }
            b'@' => {
                let (name, end) = if matches!(b.get(i + 1), Some(b'\'' | b'"')) {
                    string_literal(sql, i + 1)?
                } else {
                    word_at(i + 1)
                };
                if name.is_empty() {
                    return Err("empty user variable name".into());
                }
                i = end;
                Tok::UserVar(name.to_ascii_lowercase())
            }
            b'0'..=b'9' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                    j += 1;
                }
                i = j;
                Tok::Num(sql[start..j].to_owned())
            }
            b'?' => {
                i += 1;
                Tok::Param
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Punct('=')
            }
            c if word_char(c) => {
                let (w, end) = word_at(i);
                i = end;
                Tok::Word(w)
            }
            c => {
                i += 1;
                Tok::Punct(c as char)
            }
        };
        out.push((tok, start, i));
    }
    Ok(out)
}

/// A quoted string starting at `start` (its quote); returns the unescaped text and the index
/// after the closing quote.
fn string_literal(sql: &str, start: usize) -> Result<(String, usize), String> {
    let quote = sql.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = sql[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated string")?;
                match e {
                    '0' => out.push('\0'),
                    'b' => out.push('\u{8}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'Z' => out.push('\u{1a}'),
                    // MySQL keeps the backslash of \% and \_ (they matter in LIKE patterns).
                    '%' | '_' => {
                        out.push('\\');
                        out.push(e);
                    }
                    other => out.push(other),
                }
            }
            c if c == quote => {
                let end = start + 1 + off + 1;
                if sql[end..].starts_with(quote) {
                    out.push(quote);
                    chars.next();
                } else {
                    return Ok((out, end));
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

/// Parses one statement (a trailing `;` allowed).
pub(crate) fn parse(sql: &str) -> Result<Stmt, String> {
    let mut toks = tokenize(sql)?;
    while matches!(toks.last(), Some((Tok::Punct(';'), _, _))) {
        toks.pop();
    }
    let kw = |i: usize| match toks.get(i) {
        Some((Tok::Word(w), _, _)) => w.to_ascii_lowercase(),
        _ => String::new(),
    };
    let first = kw(0);
    let stmt = match first.as_str() {
        "select" => Stmt::Select(select_list(sql, &toks[1..])?),
        "show" if kw(1) == "session_states" && toks.len() == 2 => Stmt::ShowSessionStates,
        "set" if kw(1) == "session_states" => match &toks[2..] {
            [(Tok::Str(s), _, _)] => Stmt::SetSessionStates(s.clone()),
            _ => return Err("SET SESSION_STATES takes one string".into()),
        },
        "set" => Stmt::Set(assignments(&toks[1..])?),
        "use" => match &toks[1..] {
            [(Tok::Word(db), _, _)] => Stmt::Use(db.clone()),
            _ => return Err("USE takes one database name".into()),
        },
        "begin" if toks.len() == 1 => Stmt::Begin,
        "start" if kw(1) == "transaction" && toks.len() == 2 => Stmt::Begin,
        "commit" if toks.len() == 1 => Stmt::Commit,
        "rollback" if toks.len() == 1 => Stmt::Rollback,
        _ => return Err("unsupported statement".into()),
    };
    Ok(stmt)
}

/// Splits tokens at top-level commas.
fn split_commas(toks: &[(Tok, usize, usize)]) -> Vec<&[(Tok, usize, usize)]> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, (t, _, _)) in toks.iter().enumerate() {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts
}

fn select_list(sql: &str, toks: &[(Tok, usize, usize)]) -> Result<Vec<Item>, String> {
    if toks.is_empty() {
        return Err("empty SELECT list".into());
    }
    let mut params = 0;
    split_commas(toks)
        .into_iter()
        .map(|part| {
            let (expr, used) = expr(part, &mut params)?;
            let rest = &part[used..];
            let text = match (part.first(), part.get(used.max(1) - 1)) {
                (Some((_, s, _)), Some((_, _, e))) => sql[*s..*e].to_owned(),
                _ => return Err("empty SELECT item".into()),
            };
            let name = match rest {
                [] => text,
                [(Tok::Word(a), _, _), (Tok::Word(alias), _, _)]
                    if a.eq_ignore_ascii_case("as") =>
                {
                    alias.clone()
                }
                [(Tok::Word(a), _, _), (Tok::Str(alias), _, _)] if a.eq_ignore_ascii_case("as") => {
                    alias.clone()
                }
                [(Tok::Word(alias), _, _)] => alias.clone(),
                _ => return Err(format!("unexpected tokens after {text}")),
            };
            Ok(Item { expr, name })
        })
        .collect()
}

/// One expression at the start of `toks`; returns it and the number of tokens it took.
fn expr(toks: &[(Tok, usize, usize)], params: &mut usize) -> Result<(Expr, usize), String> {
    let number = |n: &str, negative: bool| -> Result<Datum, String> {
        let text = if negative {
            format!("-{n}")
        } else {
            n.to_owned()
        };
        if n.contains('.') {
            text.parse().map(Datum::Double).map_err(|e| e.to_string())
        } else {
            text.parse().map(Datum::Int).map_err(|e| e.to_string())
        }
    };
    let first = toks.first().map(|t| &t.0).ok_or("missing expression")?;
    Ok(match first {
        Tok::Num(n) => (Expr::Lit(number(n, false)?), 1),
        Tok::Punct('-') => match toks.get(1).map(|t| &t.0) {
            Some(Tok::Num(n)) => (Expr::Lit(number(n, true)?), 2),
            _ => return Err("expected a number after '-'".into()),
        },
        Tok::Str(s) => (Expr::Lit(Datum::Str(s.clone())), 1),
        Tok::UserVar(v) => (Expr::UserVar(v.clone()), 1),
        Tok::SysVar(v) => (Expr::SysVar(v.clone()), 1),
        Tok::Param => {
            *params += 1;
            (Expr::Param(*params - 1), 1)
        }
        Tok::Word(w) => {
            let lower = w.to_ascii_lowercase();
            let call = matches!(
                (toks.get(1).map(|t| &t.0), toks.get(2).map(|t| &t.0)),
                (Some(Tok::Punct('(')), Some(Tok::Punct(')')))
            );
            match lower.as_str() {
                _ if call => (Expr::Func(lower), 3),
                "null" => (Expr::Lit(Datum::Null), 1),
                "true" => (Expr::Lit(Datum::Int(1)), 1),
                "false" => (Expr::Lit(Datum::Int(0)), 1),
                _ => (Expr::Word(w.clone()), 1),
            }
        }
        Tok::Punct(c) => return Err(format!("unexpected '{c}'")),
    })
}

fn assignments(toks: &[(Tok, usize, usize)]) -> Result<Vec<(Target, Expr)>, String> {
    let mut params = 0;
    split_commas(toks)
        .into_iter()
        .map(|part| {
            let (target, rest) = match part {
                [(Tok::Word(n), _, _), (Tok::Word(cs), _, _), rest @ ..]
                    if n.eq_ignore_ascii_case("names") =>
                {
                    // `COLLATE x` may follow; the test server ignores it.
                    let _ = rest;
                    return Ok((
                        Target::Names(cs.to_ascii_lowercase()),
                        Expr::Lit(Datum::Null),
                    ));
                }
                [(Tok::Word(n), _, _), (Tok::Str(cs), _, _), ..]
                    if n.eq_ignore_ascii_case("names") =>
                {
                    return Ok((
                        Target::Names(cs.to_ascii_lowercase()),
                        Expr::Lit(Datum::Null),
                    ));
                }
                [(Tok::UserVar(v), _, _), rest @ ..] => (Target::User(v.clone()), rest),
                [(Tok::SysVar(v), _, _), rest @ ..] => (Target::Sys(v.clone()), rest),
                [(Tok::Word(scope), _, _), (Tok::Word(v), _, _), rest @ ..]
                    if matches!(scope.to_ascii_lowercase().as_str(), "session" | "local") =>
                {
                    (Target::Sys(v.to_ascii_lowercase()), rest)
                }
                [(Tok::Word(scope), _, _), ..] if scope.eq_ignore_ascii_case("global") => {
                    return Err("the test server has no global variables".into())
                }
                [(Tok::Word(v), _, _), rest @ ..] => (Target::Sys(v.to_ascii_lowercase()), rest),
                _ => return Err("expected a variable to set".into()),
            };
            let [(Tok::Punct('='), _, _), value @ ..] = rest else {
                return Err("expected '='".into());
            };
            let (e, used) = expr(value, &mut params)?;
            if used != value.len() {
                return Err("the test server only assigns single values".into());
            }
            Ok((target, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        let s = parse("SELECT @a, @B AS b, @@session.SQL_MODE, ?, 'it''s', -2, 1.5, database() x;")
            .unwrap();
        let Stmt::Select(items) = s else { panic!() };
        let names: Vec<_> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "@a",
                "b",
                "@@session.SQL_MODE",
                "?",
                "'it''s'",
                "-2",
                "1.5",
                "x"
            ]
        );
        assert_eq!(items[1].expr, Expr::UserVar("b".into()));
        assert_eq!(items[2].expr, Expr::SysVar("sql_mode".into()));
        assert_eq!(items[3].expr, Expr::Param(0));
        assert_eq!(items[4].expr, Expr::Lit(Datum::Str("it's".into())));
        assert_eq!(items[5].expr, Expr::Lit(Datum::Int(-2)));
        assert_eq!(items[6].expr, Expr::Lit(Datum::Double(1.5)));
        assert_eq!(items[7].expr, Expr::Func("database".into()));

        let s =
            parse("SET @a = 1, SESSION sql_mode = 'ANSI', @@time_zone := '+01:00', autocommit=0")
                .unwrap();
        assert_eq!(
            s,
            Stmt::Set(vec![
                (Target::User("a".into()), Expr::Lit(Datum::Int(1))),
                (
                    Target::Sys("sql_mode".into()),
                    Expr::Lit(Datum::Str("ANSI".into()))
                ),
                (
                    Target::Sys("time_zone".into()),
                    Expr::Lit(Datum::Str("+01:00".into()))
                ),
                (Target::Sys("autocommit".into()), Expr::Lit(Datum::Int(0))),
            ])
        );
        assert_eq!(
            parse(r#"SET SESSION_STATES '{"a": "x\\"y\'"}'"#).unwrap(),
            Stmt::SetSessionStates(r#"{"a": "x\"y'"}"#.into())
        );
        assert_eq!(
            parse("show session_states").unwrap(),
            Stmt::ShowSessionStates
        );
        assert_eq!(parse("USE `db1`").unwrap(), Stmt::Use("db1".into()));
        assert_eq!(parse("start transaction").unwrap(), Stmt::Begin);
        assert!(parse("SELECT * FROM t").is_err());
        assert!(parse("SET SESSION_STATES 'unterminated").is_err());
        assert!(parse("SET GLOBAL sql_mode = ''").is_err());
    }
}
