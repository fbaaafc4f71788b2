//! Read retry (`[migration] read-retry`, off by default): a statement in flight when its backend
//! died is sent again on the rebuilt session, only when ferry can tell from its text that running
//! it twice is the same as running it once.
//!
//! Retried: a `COM_QUERY`, or a `COM_STMT_EXECUTE` of a statement prepared with such text (no
//! cursor), that is
//! - one `SELECT` statement (the first word), nothing after a `;`;
//! - sent in autocommit mode outside a transaction (it cannot belong to one);
//! - free of `INTO` (`SELECT … INTO @v` / `OUTFILE`), `FOR UPDATE` / `LOCK IN SHARE MODE` (any
//!   `FOR` or `LOCK` word), user-variable assignment (`@v := …`) and backslashes (whose meaning
//!   depends on `NO_BACKSLASH_ESCAPES`, so the text could hide SQL inside a string);
//! - calling only the built-in functions of [`PURE_FUNCTIONS`] (a stored function could write;
//!   `GET_LOCK`, `NEXTVAL`, `LAST_INSERT_ID(n)`, `SLEEP`… are not listed);
//!
//! and only while none of its response has reached the client. Never retried: anything else,
//! including every write, `CALL`, `SHOW`, `DO`, and any statement in a transaction (the
//! transaction is gone with the backend: the session is lost, see `failover`).

use bytes::Bytes;

use super::sql::{Lexer, Token};
use super::Tracker;
use crate::session::{ClientData, InFlight, ProxySession, SessionState};
use crate::wire::{Command, ServerStatus};

/// Built-in functions without side effects (ASCII upper case).
const PURE_FUNCTIONS: &[&str] = &[
    "ABS",
    "ACOS",
    "ASIN",
    "ATAN",
    "ATAN2",
    "AVG",
    "BIT_AND",
    "BIT_COUNT",
    "BIT_LENGTH",
    "BIT_OR",
    "BIT_XOR",
    "CAST",
    "CEIL",
    "CEILING",
    "CHAR_LENGTH",
    "CHARACTER_LENGTH",
    "COALESCE",
    "CONCAT",
    "CONCAT_WS",
    "CONVERT",
    "COS",
    "COT",
    "COUNT",
    "CRC32",
    "CURDATE",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURTIME",
    "DATE",
    "DATE_ADD",
    "DATE_FORMAT",
    "DATE_SUB",
    "DATEDIFF",
    "DAY",
    "DAYNAME",
    "DAYOFMONTH",
    "DAYOFWEEK",
    "DAYOFYEAR",
    "DEGREES",
    "ELT",
    "EXP",
    "EXTRACT",
    "FIELD",
    "FIND_IN_SET",
    "FLOOR",
    "FORMAT",
    "FROM_UNIXTIME",
    "GREATEST",
    "GROUP_CONCAT",
    "HEX",
    "HOUR",
    "IF",
    "IFNULL",
    "INSTR",
    "ISNULL",
    "JSON_EXTRACT",
    "JSON_UNQUOTE",
    "JSON_VALUE",
    "LCASE",
    "LEAST",
    "LEFT",
    "LENGTH",
    "LN",
    "LOCATE",
    "LOG",
    "LOG10",
    "LOG2",
    "LOWER",
    "LPAD",
    "LTRIM",
    "MAX",
    "MD5",
    "MICROSECOND",
    "MID",
    "MIN",
    "MINUTE",
    "MOD",
    "MONTH",
    "MONTHNAME",
    "NOW",
    "NULLIF",
    "OCT",
    "ORD",
    "PI",
    "POSITION",
    "POW",
    "POWER",
    "QUARTER",
    "RADIANS",
    "REPEAT",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "ROUND",
    "RPAD",
    "RTRIM",
    "SECOND",
    "SHA1",
    "SHA2",
    "SIGN",
    "SIN",
    "SPACE",
    "SQRT",
    "STD",
    "STDDEV",
    "STR_TO_DATE",
    "STRCMP",
    "SUBSTR",
    "SUBSTRING",
    "SUBSTRING_INDEX",
    "SUM",
    "TAN",
    "TIME",
    "TIMEDIFF",
    "TIMESTAMP",
    "TIMESTAMPDIFF",
    "TO_DAYS",
    "TRIM",
    "TRUNCATE",
    "UCASE",
    "UNHEX",
    "UNIX_TIMESTAMP",
    "UPPER",
    "UTC_DATE",
    "UTC_TIMESTAMP",
    "VARIANCE",
    "WEEK",
    "WEEKDAY",
    "YEAR",
];

/// Keywords a `(` may follow without being a function call.
const KEYWORDS_BEFORE_PAREN: &[&str] = &[
    "ALL", "AND", "ANY", "AS", "BETWEEN", "BY", "CASE", "DISTINCT", "DIV", "ELSE", "ESCAPE",
    "EXISTS", "FROM", "HAVING", "IN", "INTERVAL", "IS", "JOIN", "LIKE", "LIMIT", "NOT", "OFFSET",
    "ON", "OR", "OVER", "REGEXP", "RLIKE", "ROW", "SELECT", "SOME", "THEN", "UNION", "USING",
    "VALUES", "WHEN", "WHERE", "XOR",
];

/// Words that make a `SELECT` more than a read.
const NOT_A_READ: &[&str] = &["INTO", "FOR", "LOCK"];

fn listed(list: &[&str], word: &[u8]) -> bool {
    list.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(word))
}

/// True when `sql` is one `SELECT` that can run twice with the effect of once (see the module
/// docs).
pub(crate) fn is_read_only_select(sql: &[u8]) -> bool {
    if sql.contains(&b'\\') {
        return false;
    }
    let mut lexer = Lexer::new(sql);
    if !matches!(lexer.next(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(b"SELECT")) {
        return false;
    }
    let mut previous = Token::Punct(b' ');
    while let Some(token) = lexer.next() {
        match token {
            Token::Word(w) if listed(NOT_A_READ, w) => return false,
            Token::Punct(b';') => return lexer.next().is_none(),
            Token::Punct(b'(') => match previous {
                Token::Word(w)
                    if !listed(PURE_FUNCTIONS, w) && !listed(KEYWORDS_BEFORE_PAREN, w) =>
                {
                    return false
                }
                Token::Quoted(_) => return false,
                _ => {}
            },
            // `@v := …`
            Token::Punct(b':') if previous == Token::UserVar => return false,
            _ => {}
        }
        previous = token;
    }
    true
}

/// True when `payload` (a client command, command byte first) may be sent again after a
/// failover, given the session's state before it ran.
pub(crate) fn is_retryable(payload: &[u8], state: &SessionState, track: &Tracker) -> bool {
    let autocommit = state.status.contains(ServerStatus::AUTOCOMMIT) && !state.in_transaction();
    if !autocommit {
        return false;
    }
    match payload.first().copied() {
        Some(Command::COM_QUERY) => is_read_only_select(&payload[1..]),
        Some(Command::COM_STMT_EXECUTE) => {
            let Some(id) = super::ids::statement_id(payload) else {
                return false;
            };
            // flags: a cursor would leave state on the dead backend.
            let no_cursor = payload.get(5) == Some(&0);
            no_cursor
                && track
                    .statement_sql
                    .get(&id)
                    .is_some_and(|text| is_read_only_select(&text.sql))
        }
        _ => false,
    }
}

impl ProxySession {
    /// Keeps the client command about to be sent when read retry could send it again.
    pub(crate) fn note_retry(&mut self, payload: &Bytes) {
        let m = &self.config.migration;
        self.retry = (m.read_retry
            && self.keeps_snapshot()
            && is_retryable(payload, &self.state, &self.track))
        .then(|| payload.clone());
    }

    /// The statement to send again after a failover, if the one in flight qualifies and none of
    /// its response was relayed.
    pub(super) fn take_retry(&mut self, in_flight: InFlight) -> Option<Bytes> {
        let statement = self.retry.take()?;
        (in_flight.client_data == ClientData::None).then_some(statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_reads_are_retried() {
        for sql in [
            "SELECT 1",
            "select c from sbtest1 where id=?",
            "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ? AND ?",
            "SELECT DISTINCT c FROM t WHERE id IN (1, 2) ORDER BY c;",
            "SELECT COUNT(*) FROM t WHERE EXISTS (SELECT 1 FROM u)",
            "SELECT @a, @@port, 'it''s; GET_LOCK(' FROM t",
        ] {
            assert!(is_read_only_select(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "UPDATE t SET a = 1",
            "SELECT 1; DELETE FROM t",
            "SELECT GET_LOCK('x', 1)",
            "SELECT my_stored_function(1)",
            "SELECT `f`(1)",
            "SELECT NEXTVAL(s)",
            "SELECT LAST_INSERT_ID(5)",
            "SELECT a INTO @v FROM t",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT @a := 1",
            "SELECT 1 /*! , GET_LOCK('x', 1) */",
            "SELECT 'a\\', GET_LOCK('x', 1), ''",
            "SHOW TABLES",
            "CALL p()",
            "",
        ] {
            assert!(!is_read_only_select(sql.as_bytes()), "{sql}");
        }
    }
}
