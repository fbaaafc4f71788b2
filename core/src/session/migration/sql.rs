//! Just enough SQL lexing to see what a statement does to session state that ferry cannot rebuild
//! (temporary tables, locks) and to write the statements a replay sends (quoted literals and
//! identifiers). Never allocates while lexing; never panics on any input.

/// One token of SQL text, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// A keyword or bare identifier (letters, digits, `_`, `$`, non-ASCII bytes).
    Word(&'a [u8]),
    /// A `` `quoted` `` identifier, its raw content (doubled backticks not undone).
    Quoted(&'a [u8]),
    /// A `'…'` or `"…"` string literal: its raw content (escapes not undone, see
    /// [`push_unescaped`]) and its quote.
    Str { raw: &'a [u8], quote: u8 },
    /// A user variable reference `@name` / `` @`name` `` / `@'name'`.
    UserVar,
    /// A system variable reference `@@name` (`@@session.name`...).
    SysVar,
    /// Any other byte (`(`, `,`, `.`, `;`, operators...).
    Punct(u8),
}

/// A lexer over SQL text: comments are skipped, except MySQL's executable comments
/// (`/*! … */`, `/*M! … */`), whose contents are lexed as SQL.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'a> {
    sql: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(sql: &'a [u8]) -> Self {
        Self { sql, pos: 0 }
    }

    fn peek(&self, at: usize) -> Option<u8> {
        self.sql.get(self.pos + at).copied()
    }

    /// Skips to just after the first `end` byte (or to the end of the text).
    fn skip_past(&mut self, end: u8) {
        while let Some(b) = self.peek(0) {
            self.pos += 1;
            if b == end {
                return;
            }
        }
    }

    /// A quoted run up to the closing `quote` (a doubled quote, or a backslash escape outside
    /// backticks, continue it); returns the raw content.
    fn quoted(&mut self, quote: u8) -> &'a [u8] {
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek(0) {
                None => return &self.sql[start..],
                Some(b'\\') if quote != b'`' => self.pos += 2,
                Some(b) if b == quote => {
                    if self.peek(1) == Some(quote) {
                        self.pos += 2;
                    } else {
                        let end = self.pos;
                        self.pos += 1;
                        return &self.sql[start..end.min(self.sql.len())];
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn word(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        &self.sql[start..self.pos]
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            let b = self.peek(0)?;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | 0x0B | 0x0C => self.pos += 1,
                b'#' => self.skip_past(b'\n'),
                b'-' if self.peek(1) == Some(b'-')
                    && self.peek(2).is_none_or(|c| c.is_ascii_whitespace()) =>
                {
                    self.skip_past(b'\n')
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    if self.peek(2) == Some(b'!') {
                        self.pos += 3;
                    } else if self.peek(2) == Some(b'M') && self.peek(3) == Some(b'!') {
                        self.pos += 4;
                    } else {
                        self.pos += 2;
                        while self.peek(0).is_some() {
                            if self.peek(0) == Some(b'*') && self.peek(1) == Some(b'/') {
                                self.pos += 2;
                                break;
                            }
                            self.pos += 1;
                        }
                        continue;
                    }
                    // The optional version number of an executable comment.
                    while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                        self.pos += 1;
                    }
                }
                // The end of an executable comment.
                b'*' if self.peek(1) == Some(b'/') => self.pos += 2,
                b'\'' | b'"' => {
                    return Some(Token::Str {
                        raw: self.quoted(b),
                        quote: b,
                    })
                }
                b'`' => return Some(Token::Quoted(self.quoted(b'`'))),
                b'@' if self.peek(1) == Some(b'@') => {
                    self.pos += 2;
                    // @@session.name, @@global.name, @@name
                    loop {
                        match self.peek(0) {
                            Some(b'`') => {
                                self.quoted(b'`');
                            }
                            Some(c) if is_word_byte(c) => {
                                self.word();
                            }
                            _ => {}
                        }
                        if self.peek(0) == Some(b'.') {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                    return Some(Token::SysVar);
                }
                b'@' => {
                    self.pos += 1;
                    match self.peek(0) {
                        Some(q @ (b'`' | b'\'' | b'"')) => {
                            self.quoted(q);
                        }
                        _ => {
                            // `@name`; a bare `@` (as in 'user'@'host') is the same token.
                            while self.peek(0).is_some_and(|c| is_word_byte(c) || c == b'.') {
                                self.pos += 1;
                            }
                        }
                    }
                    return Some(Token::UserVar);
                }
                c if is_word_byte(c) => return Some(Token::Word(self.word())),
                c => {
                    self.pos += 1;
                    return Some(Token::Punct(c));
                }
            }
        }
    }
}

/// True when `token` is the keyword `kw` (ASCII case-insensitive).
pub(crate) fn is_kw(token: Option<Token<'_>>, kw: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw.as_bytes()))
}

/// Appends the bytes the raw content of a string literal quoted with `quote` stands for: a doubled
/// quote is one, and unless `no_backslash_escapes`, MySQL's backslash escapes are undone (`\%`
/// and `\_` keep their backslash, as in MySQL; an unknown escape is the byte itself).
pub(crate) fn push_unescaped(out: &mut Vec<u8>, raw: &[u8], quote: u8, no_backslash_escapes: bool) {
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        if b == quote {
            // Doubled (the lexer ends the literal at a single one).
            bytes.next();
            out.push(b);
        } else if b == b'\\' && !no_backslash_escapes {
            match bytes.next() {
                Some(b'0') => out.push(0),
                Some(b'b') => out.push(8),
                Some(b'n') => out.push(b'\n'),
                Some(b'r') => out.push(b'\r'),
                Some(b't') => out.push(b'\t'),
                Some(b'Z') => out.push(26),
                Some(c @ (b'%' | b'_')) => out.extend_from_slice(&[b'\\', c]),
                Some(c) => out.push(c),
                None => {}
            }
        } else {
            out.push(b);
        }
    }
}

/// The bytes of a hex literal's raw content (`X'…'`): `None` unless an even number of hex digits.
pub(crate) fn decode_hex(raw: &[u8]) -> Option<Vec<u8>> {
    let digit = |b: u8| char::from(b).to_digit(16);
    if !raw.len().is_multiple_of(2) {
        return None;
    }
    raw.chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

/// Appends `value` as a string literal: `'…'` with `'` doubled (valid in every SQL mode) and `\`
/// doubled unless the server runs with `NO_BACKSLASH_ESCAPES` (where it is an ordinary byte).
pub(crate) fn push_string_literal(out: &mut Vec<u8>, value: &[u8], no_backslash_escapes: bool) {
    out.push(b'\'');
    for &b in value {
        match b {
            b'\'' => out.extend_from_slice(b"''"),
            b'\\' if !no_backslash_escapes => out.extend_from_slice(b"\\\\"),
            // A NUL byte cannot be written raw in every server version.
            0 if !no_backslash_escapes => out.extend_from_slice(b"\\0"),
            _ => out.push(b),
        }
    }
    out.push(b'\'');
}

/// Appends `name` as a backquoted identifier (backticks doubled).
pub(crate) fn push_identifier(out: &mut Vec<u8>, name: &[u8]) {
    out.push(b'`');
    for &b in name {
        if b == b'`' {
            out.push(b'`');
        }
        out.push(b);
    }
    out.push(b'`');
}

/// Appends `bytes` as a hex literal `X'…'` (exact bytes whatever the SQL mode or charset).
pub(crate) fn push_hex_literal(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(b"X'");
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out.push(b'\'');
}

/// True for an integer literal: optional `-`, then 1 to 20 digits.
pub(crate) fn is_integer(value: &[u8]) -> bool {
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    !digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit)
}

/// True for a plain decimal or approximate numeric literal: `-?d+(.d+)?([eE][-+]?d+)?`.
pub(crate) fn is_number(value: &[u8]) -> bool {
    let v = value.strip_prefix(b"-").unwrap_or(value);
    let (mantissa, exponent) = match v.iter().position(|&b| b == b'e' || b == b'E') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let mut parts = mantissa.splitn(2, |&b| b == b'.');
    let int = parts.next().unwrap_or_default();
    let frac = parts.next();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let exp_ok = exponent.is_none_or(|e| {
        let e = e
            .strip_prefix(b"-")
            .or_else(|| e.strip_prefix(b"+"))
            .unwrap_or(e);
        digits(e)
    });
    digits(int) && frac.is_none_or(digits) && exp_ok && v.len() <= 80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(sql: &str) -> Vec<Token<'_>> {
        Lexer::new(sql.as_bytes()).collect()
    }

    #[test]
    fn lexes_words_strings_variables_and_comments() {
        let t = tokens(
            "/* c */ SELECT `a``b`, 'it''s \\' x', @v, @@session.sql_mode -- tail\n# more\n/*!50000 LOCK */ TABLES",
        );
        assert_eq!(
            t,
            vec![
                Token::Word(b"SELECT"),
                Token::Quoted(b"a``b"),
                Token::Punct(b','),
                Token::Str {
                    raw: b"it''s \\' x",
                    quote: b'\''
                },
                Token::Punct(b','),
                Token::UserVar,
                Token::Punct(b','),
                Token::SysVar,
                Token::Word(b"LOCK"),
                Token::Word(b"TABLES"),
            ]
        );
    }

    #[test]
    fn never_panics_on_truncated_input() {
        for sql in [
            "'abc", "`x", "/* open", "@`", "@@", "\\", "'\\", "--", "/*!", "@'",
        ] {
            let _ = tokens(sql);
        }
    }

    #[test]
    fn literals_and_identifiers_are_quoted() {
        let mut out = Vec::new();
        push_string_literal(&mut out, b"a'b\\c", false);
        assert_eq!(out, b"'a''b\\\\c'");
        out.clear();
        push_string_literal(&mut out, b"a'b\\c", true);
        assert_eq!(out, b"'a''b\\c'");
        out.clear();
        push_identifier(&mut out, b"we`ird");
        assert_eq!(out, b"`we``ird`");
        out.clear();
        push_hex_literal(&mut out, &[0, 0xAB]);
        assert_eq!(out, b"X'00AB'");
        assert!(is_integer(b"-42") && !is_integer(b"4 2") && !is_integer(b""));
        assert!(is_number(b"3.14") && is_number(b"-1.5e-3") && is_number(b"7"));
        assert!(!is_number(b"1.") && !is_number(b"0x1") && !is_number(b"1;DROP"));
    }

    #[test]
    fn literals_are_unescaped_like_mysql() {
        let unescape = |raw: &[u8], quote: u8, nbe: bool| {
            let mut out = Vec::new();
            push_unescaped(&mut out, raw, quote, nbe);
            out
        };
        assert_eq!(
            unescape(br#"a''b""\'\"\\\0\b\n\r\t\Z\%\_\x"#, b'\'', false),
            b"a'b\"\"'\"\\\0\x08\n\r\t\x1a\\%\\_x"
        );
        assert_eq!(unescape(br#"a""b''"#, b'"', false), b"a\"b''");
        assert_eq!(unescape(br"a\n''", b'\'', true), b"a\\n'");
        assert_eq!(unescape(b"\\", b'\'', false), b"", "a truncated escape");
        assert_eq!(decode_hex(b"00aBfF"), Some(vec![0, 0xAB, 0xFF]));
        assert_eq!(decode_hex(b""), Some(vec![]));
        assert_eq!(decode_hex(b"abc"), None);
        assert_eq!(decode_hex(b"zz"), None);
        assert_eq!(decode_hex("é".as_bytes()), None);
    }
}
