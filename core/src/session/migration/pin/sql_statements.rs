//! SQL-level prepared statements (`PREPARE name FROM …`, `EXECUTE`, `DEALLOCATE PREPARE`): the
//! text of each by name, so that `EXECUTE` counts as its text run and `replay` prepares them
//! again on a new backend.
//!
//! What MariaDB 10.11 does, checked on a server:
//! - names are case-insensitive (`É` is `é`), but accents and trailing spaces count;
//! - `FROM` takes any expression: literals (`'a' 'b'` concatenated, `X'…'`, `N'…'`), `@var`,
//!   `CONCAT(…)`; ferry reads plain literals and `X'…'`, and keeps the others as unknown text;
//! - `PREPARE` of an existing name deallocates it once the source is evaluated: a re-prepare
//!   that fails leaves no statement of that name, unless evaluating the source failed (`FROM
//!   "x"` under `ANSI_QUOTES` is a column: the old statement stays);
//! - COM_RESET_CONNECTION and COM_CHANGE_USER drop every statement;
//! - a prepared statement cannot itself PREPARE, EXECUTE or DEALLOCATE.

use std::borrow::Cow;

use super::super::sql::{decode_hex, is_kw, push_unescaped, Lexer, Token};

/// One SQL prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqlStatement {
    /// The name, case-folded ([`fold`]).
    pub(crate) name: Box<[u8]>,
    /// The exact text; `None` when ferry does not know it (the session is pinned meanwhile).
    pub(crate) text: Option<Box<[u8]>>,
}

/// How many statements are followed: MariaDB's default `max_prepared_stmt_count` (for the whole
/// server). Past it ferry stops following them, and the session stays pinned until a reset.
const MAX_FOLLOWED: usize = 16_382;

/// The session's SQL prepared statements, in the order prepared (empty: no allocation).
#[derive(Debug, Default)]
pub(crate) struct SqlStatements {
    list: Vec<SqlStatement>,
    /// More names than [`MAX_FOLLOWED`] were recorded.
    overflowed: bool,
}

/// A string literal ferry can read: adjacent `'…'`/`"…"` parts, or one `X'…'`.
struct Literal {
    text: Vec<u8>,
    /// Evaluating it cannot fail: only `'…'` parts (`"…"` is an identifier under `ANSI_QUOTES`,
    /// and `X '…'` with a space is no hex literal).
    certain: bool,
}

impl SqlStatements {
    /// Every statement, in the order prepared.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &SqlStatement> {
        self.list.iter()
    }

    /// True when a statement's text is unknown.
    pub(crate) fn any_unknown(&self) -> bool {
        self.overflowed || self.list.iter().any(|s| s.text.is_none())
    }

    pub(crate) fn clear(&mut self) {
        self.list.clear();
        self.overflowed = false;
    }

    /// Applies `PREPARE name FROM source` (`lexer` just after PREPARE; left after the literal
    /// when the source is one, else after FROM so that the expression is scanned). `first`: no
    /// statement comes before it in the command. False when it does not read as a PREPARE.
    pub(super) fn prepare(
        &mut self,
        lexer: &mut Lexer<'_>,
        first: bool,
        ok: bool,
        no_backslash_escapes: bool,
    ) -> bool {
        let mut ahead = lexer.clone();
        let Some(name) = name(ahead.next()) else {
            return false;
        };
        if !is_kw(ahead.next(), "FROM") {
            return false;
        }
        // The text when the source is a literal alone; whether evaluating the source can fail.
        let mut after = ahead.clone();
        let (text, certain) = match literal(&mut after, no_backslash_escapes) {
            Some(l) if at_statement_end(&after) => {
                ahead = after;
                (Some(l.text), l.certain)
            }
            _ => {
                let mut var = ahead.clone();
                let lone_variable = var.next() == Some(Token::UserVar) && at_statement_end(&var);
                (None, lone_variable)
            }
        };
        let whole = first && is_last_statement(&ahead);
        let at = self.position(&name);
        if ok {
            self.set(at, &name, text.map(Into::into));
        } else if whole && certain {
            // MariaDB deallocated it, then failed to prepare the text.
            if let Some(i) = at {
                self.list.remove(i);
            }
        } else if at.is_some() || !whole {
            // Deallocated, replaced or untouched (a statement before it may have failed).
            self.set(at, &name, None);
        }
        *lexer = ahead;
        true
    }

    /// Applies `DEALLOCATE PREPARE name` / `DROP PREPARE name` (`lexer` just after PREPARE, left
    /// after the name). A failure changes nothing: the name did not exist, or (in a
    /// multi-statement) keeping it at worst prepares again a statement the client dropped.
    pub(super) fn deallocate(&mut self, lexer: &mut Lexer<'_>, ok: bool) -> bool {
        let mut ahead = lexer.clone();
        let Some(name) = name(ahead.next()) else {
            return false;
        };
        if ok {
            if let Some(i) = self.position(&name) {
                self.list.remove(i);
            }
        }
        *lexer = ahead;
        true
    }

    /// Takes out the text of the statement `EXECUTE` names (`lexer` just after EXECUTE, left
    /// after the name), with its index for [`SqlStatements::put_back`]; `None` when the name is
    /// unknown, or its text is.
    pub(super) fn take_executed(&mut self, lexer: &mut Lexer<'_>) -> Option<(usize, Box<[u8]>)> {
        let mut ahead = lexer.clone();
        let name = name(ahead.next())?;
        let i = self.position(&name)?;
        let text = self.list[i].text.take()?;
        *lexer = ahead;
        Some((i, text))
    }

    pub(super) fn put_back(&mut self, i: usize, text: Box<[u8]>) {
        if let Some(s) = self.list.get_mut(i) {
            s.text = Some(text);
        }
    }

    /// The index of the statement called `name` (as written, unfolded).
    fn position(&self, name: &[u8]) -> Option<usize> {
        if name.is_ascii() {
            // No allocation for the usual names.
            return self
                .list
                .iter()
                .position(|s| s.name.eq_ignore_ascii_case(name));
        }
        let folded = fold(name);
        self.list.iter().position(|s| s.name == folded)
    }

    /// Records `name` (at index `at` if it exists): a re-prepare is a new statement, last.
    fn set(&mut self, at: Option<usize>, name: &[u8], text: Option<Box<[u8]>>) {
        if let Some(i) = at {
            self.list.remove(i);
        } else if self.list.len() >= MAX_FOLLOWED {
            self.overflowed = true;
            return;
        }
        self.list.push(SqlStatement {
            name: fold(name),
            text,
        });
    }
}

/// The text `EXECUTE IMMEDIATE` runs (`lexer` just after EXECUTE, left after the literal):
/// `Some(None)` for an `EXECUTE IMMEDIATE` of anything but a literal, `None` when the statement
/// is an `EXECUTE name` (of a statement called `immediate`, too).
pub(super) fn execute_immediate(
    lexer: &mut Lexer<'_>,
    no_backslash_escapes: bool,
) -> Option<Option<Vec<u8>>> {
    let mut ahead = lexer.clone();
    if !is_kw(ahead.next(), "IMMEDIATE") || at_statement_end(&ahead) || is_kw(peek(&ahead), "USING")
    {
        return None;
    }
    let text = literal(&mut ahead, no_backslash_escapes)
        .filter(|_| at_statement_end(&ahead) || is_kw(peek(&ahead), "USING"))
        .map(|l| l.text);
    if text.is_some() {
        *lexer = ahead;
    }
    Some(text)
}

/// A statement name as written: a word or a backquoted identifier (backticks undoubled).
fn name(token: Option<Token<'_>>) -> Option<Cow<'_, [u8]>> {
    match token? {
        Token::Word(w) => Some(Cow::Borrowed(w)),
        Token::Quoted(q) if q.windows(2).any(|w| w == b"``") => {
            let mut out = Vec::with_capacity(q.len());
            let mut bytes = q.iter().copied();
            while let Some(b) = bytes.next() {
                out.push(b);
                if b == b'`' {
                    bytes.next();
                }
            }
            Some(Cow::Owned(out))
        }
        Token::Quoted(q) => Some(Cow::Borrowed(q)),
        _ => None,
    }
}

/// A name case-folded as MariaDB compares them: Unicode lowercase when UTF-8, else ASCII.
fn fold(name: &[u8]) -> Box<[u8]> {
    match std::str::from_utf8(name) {
        Ok(s) => s.to_lowercase().into_bytes().into(),
        Err(_) => name.to_ascii_lowercase().into(),
    }
}

/// Reads a literal ferry knows the bytes of; the lexer moves only past one.
fn literal(lexer: &mut Lexer<'_>, no_backslash_escapes: bool) -> Option<Literal> {
    let mut ahead = lexer.clone();
    let mut text = Vec::new();
    let mut parts = 0;
    let mut certain = true;
    loop {
        let mut next = ahead.clone();
        let Some(Token::Str { raw, quote }) = next.next() else {
            break;
        };
        if no_backslash_escapes && raw.windows(2).any(|w| w == [b'\\', quote]) {
            // The lexer reads `\'` as an escape; here it ended the literal.
            return None;
        }
        push_unescaped(&mut text, raw, quote, no_backslash_escapes);
        certain &= quote == b'\'';
        parts += 1;
        ahead = next;
    }
    if parts == 0 {
        let x = ahead.next();
        let Some(Token::Str { raw, quote: b'\'' }) = ahead.next() else {
            return None;
        };
        if !(is_kw(x, "X")) {
            return None;
        }
        text = decode_hex(raw)?;
        certain = false;
    }
    *lexer = ahead;
    Some(Literal { text, certain })
}

fn peek<'a>(lexer: &Lexer<'a>) -> Option<Token<'a>> {
    lexer.clone().next()
}

/// True when the statement ends here (`;` or the end of the text).
fn at_statement_end(lexer: &Lexer<'_>) -> bool {
    matches!(peek(lexer), None | Some(Token::Punct(b';')))
}

/// True when no statement follows the one `lexer` is in.
fn is_last_statement(lexer: &Lexer<'_>) -> bool {
    let mut rest = lexer.clone();
    rest.by_ref().find(|t| *t == Token::Punct(b';'));
    rest.all(|t| t == Token::Punct(b';'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(s: &mut SqlStatements, sql: &str, ok: bool) {
        let mut lexer = Lexer::new(sql.as_bytes());
        assert!(is_kw(lexer.next(), "PREPARE"), "{sql}");
        assert!(s.prepare(&mut lexer, true, ok, false), "{sql}");
    }

    fn texts(s: &SqlStatements) -> Vec<(String, Option<String>)> {
        s.iter()
            .map(|s| {
                let text = s.text.as_deref().map(String::from_utf8_lossy);
                (
                    String::from_utf8_lossy(&s.name).into_owned(),
                    text.map(|t| t.into_owned()),
                )
            })
            .collect()
    }

    fn known(name: &str, text: &str) -> (String, Option<String>) {
        (name.into(), Some(text.into()))
    }

    #[test]
    fn literals_are_read_exactly() {
        let mut s = SqlStatements::default();
        prepare(
            &mut s,
            r"PREPARE a FROM 'SELECT ''it''''s'', \'\\n\\\%\n\0'",
            true,
        );
        prepare(
            &mut s,
            r#"PREPARE `B``c` FROM "SELECT ""x"" " 'y''' ;"#,
            true,
        );
        prepare(&mut s, "PREPARE É FROM X'53454C45435420C3A9'", true);
        prepare(&mut s, "PREPARE d FROM 'SELECT ' /* c */ '4'", true);
        assert_eq!(
            texts(&s),
            vec![
                known("a", "SELECT 'it''s', '\\n\\\\%\n\0"),
                known("b`c", "SELECT \"x\" y'"),
                known("é", "SELECT é"),
                known("d", "SELECT 4"),
            ]
        );
        let mut lexer = Lexer::new(br"PREPARE n FROM 'a\b''c'");
        lexer.next();
        assert!(s.prepare(&mut lexer, true, true, true));
        assert_eq!(texts(&s)[4], known("n", r"a\b'c"), "NO_BACKSLASH_ESCAPES");
        let mut lexer = Lexer::new(br"PREPARE n FROM 'a\' 'b'");
        lexer.next();
        assert!(s.prepare(&mut lexer, true, true, true));
        assert_eq!(
            texts(&s)[4],
            ("n".into(), None),
            "the lexer cannot end that literal right"
        );
    }

    #[test]
    fn other_sources_are_unknown_until_deallocated_or_prepared_again() {
        let mut s = SqlStatements::default();
        for sql in [
            "PREPARE v FROM @q",
            "PREPARE e FROM CONCAT('SELECT ', 1)",
            "PREPARE n FROM N'SELECT 1'",
            "PREPARE c FROM _utf8mb4'SELECT 1'",
            "PREPARE h FROM X'4'",
            "PREPARE t FROM 'SELECT 1' + 1",
        ] {
            prepare(&mut s, sql, true);
        }
        assert!(
            texts(&s).iter().all(|(_, t)| t.is_none()),
            "{:?}",
            texts(&s)
        );
        assert!(s.any_unknown());
        prepare(&mut s, "PREPARE V FROM 'SELECT 2'", true);
        let mut lexer = Lexer::new(b" `E` ; PREPARE x FROM @y");
        assert!(s.deallocate(&mut lexer, true));
        assert_eq!(
            lexer.next(),
            Some(Token::Punct(b';')),
            "left after the name"
        );
        let names: Vec<_> = texts(&s).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["n", "c", "h", "t", "v"], "re-prepared last");
        let mut lexer = Lexer::new(b"n");
        assert!(s.deallocate(&mut lexer, false), "failed: nothing changes");
        assert_eq!(s.iter().count(), 5);
        assert!(!s.deallocate(&mut Lexer::new(b"; x"), true));
        assert!(!s.prepare(&mut Lexer::new(b"x AS 'y'"), true, true, false));
    }

    #[test]
    fn a_failed_prepare_drops_the_statement_unless_the_outcome_is_unknown() {
        let mut s = SqlStatements::default();
        for n in ["a", "b", "c", "d"] {
            prepare(&mut s, &format!("PREPARE {n} FROM 'SELECT 1'"), true);
        }
        prepare(&mut s, "PREPARE a FROM 'SELEC'", false);
        prepare(&mut s, "PREPARE b FROM @q", false);
        // Under ANSI_QUOTES "…" is a column: evaluating it fails and the old one stays.
        prepare(&mut s, "PREPARE c FROM \"SELECT 2\"", false);
        prepare(&mut s, "PREPARE new FROM CONCAT('x')", false);
        let mut lexer = Lexer::new(b"PREPARE d FROM 'SELECT 2'; SELECT 1");
        lexer.next();
        s.prepare(&mut lexer, true, false, false);
        let mut lexer = Lexer::new(b"PREPARE e FROM 'SELECT 2'");
        lexer.next();
        s.prepare(&mut lexer, false, false, false);
        assert_eq!(
            texts(&s),
            vec![("c".into(), None), ("d".into(), None), ("e".into(), None),],
            "a and b dropped, new never existed, c d e may exist"
        );
    }

    #[test]
    fn names_fold_like_mariadb_and_execute_finds_them() {
        let mut s = SqlStatements::default();
        prepare(&mut s, "PREPARE Émile FROM 'SELECT 1'", true);
        prepare(&mut s, "PREPARE `x ` FROM 'SELECT 2'", true);
        prepare(&mut s, "PREPARE ÉMILE FROM 'SELECT 3'", true);
        assert_eq!(
            texts(&s),
            vec![known("x ", "SELECT 2"), known("émile", "SELECT 3")]
        );
        let mut lexer = Lexer::new(b" \xc3\xa9MILE USING @v");
        let (i, text) = s.take_executed(&mut lexer).unwrap();
        assert_eq!((i, &*text), (1, &b"SELECT 3"[..]));
        assert_eq!(lexer.next(), Some(Token::Word(b"USING")));
        s.put_back(i, text);
        assert!(
            s.take_executed(&mut Lexer::new(b"x")).is_none(),
            "x is not `x `"
        );
        assert!(s.take_executed(&mut Lexer::new(b"`X `")).is_some());
        prepare(&mut s, "PREPARE u FROM @v", true);
        assert!(
            s.take_executed(&mut Lexer::new(b"u")).is_none(),
            "unknown text"
        );
        assert_eq!(s.iter().count(), 3);
    }

    #[test]
    fn past_the_cap_the_session_stays_pinned_until_a_reset() {
        let mut s = SqlStatements::default();
        for i in 0..MAX_FOLLOWED {
            prepare(&mut s, &format!("PREPARE s{i} FROM 'SELECT 1'"), true);
        }
        assert!(!s.any_unknown());
        prepare(&mut s, "PREPARE s0 FROM 'SELECT 2'", true);
        assert!(!s.any_unknown(), "a known name replaces");
        prepare(&mut s, "PREPARE one_more FROM 'SELECT 1'", true);
        assert!(s.any_unknown());
        assert_eq!(s.iter().count(), MAX_FOLLOWED);
        s.clear();
        assert!(!s.any_unknown());
    }

    #[test]
    fn execute_immediate_is_told_from_a_statement_called_immediate() {
        let run = |sql: &str| execute_immediate(&mut Lexer::new(sql.as_bytes()), false);
        assert_eq!(
            run("IMMEDIATE 'SET @a = 1'"),
            Some(Some(b"SET @a = 1".to_vec()))
        );
        assert_eq!(
            run("immediate 'SELECT ?' USING 1"),
            Some(Some(b"SELECT ?".to_vec()))
        );
        assert_eq!(run("IMMEDIATE @q"), Some(None));
        assert_eq!(run("IMMEDIATE CONCAT('a')"), Some(None));
        assert_eq!(run("IMMEDIATE"), None);
        assert_eq!(run("immediate USING @a"), None);
        assert_eq!(run("`immediate` 'x'"), None);
        assert_eq!(run("s"), None);
    }
}
