//! The JSON side of a session token: the exact bytes Go's `json.Marshal` writes (the signed bytes
//! are defined by them, so this encoder is the protocol), and a tolerant parser for tokens received.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::time::TokenTime;
use super::TokenError;

/// A session token: who the session belongs to, when it was signed, when it expires, and the
/// signature over the first three (see [`SessionToken::signed_bytes`]).
///
/// `username` is bytes because MySQL user names arrive as bytes; bytes that are not UTF-8 are
/// written as `\ufffd`, as Go does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionToken {
    /// The user the session belongs to.
    pub username: Vec<u8>,
    /// When the token was signed.
    pub sign_time: TokenTime,
    /// When the token stops being accepted: `sign_time` + [`TOKEN_LIFETIME`](super::TOKEN_LIFETIME)
    /// when ferry signs.
    pub expire_time: TokenTime,
    /// The signature bytes; empty for an unsigned token (then the JSON has no `signature` key).
    pub signature: Vec<u8>,
}

/// The wire form as parsed: unknown keys ignored, any order and whitespace. A missing or `null`
/// field keeps its zero value, as Go's `json.Unmarshal` leaves it.
#[derive(serde::Deserialize)]
struct WireToken {
    #[serde(default)]
    username: Option<String>,
    #[serde(default, rename = "sign-time")]
    sign_time: Option<String>,
    #[serde(default, rename = "expire-time")]
    expire_time: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

impl SessionToken {
    /// The bytes the signature covers: compact JSON of `username`, `sign-time` and `expire-time`,
    /// in that order, exactly as Go's `json.Marshal` writes them.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.username.len() + 96);
        self.write_unsigned_fields(&mut out);
        out.push(b'}');
        out
    }

    /// The token as sent over the wire (Go's `json.Marshal` of the whole token): the signed bytes
    /// with `"signature":"<standard base64>"` before the closing brace, when there is a signature.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.username.len() + 96 + self.signature.len() * 4 / 3);
        self.write_unsigned_fields(&mut out);
        if !self.signature.is_empty() {
            out.extend_from_slice(b",\"signature\":\"");
            out.extend_from_slice(BASE64.encode(&self.signature).as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
        out
    }

    /// Parses a received token: any key order and whitespace, unknown keys ignored; the times
    /// must be RFC 3339 and the signature standard base64.
    ///
    /// Stricter than Go in one corner: a JSON string holding bytes that are not UTF-8 is refused
    /// (Go would read them as U+FFFD; Go's own encoder never writes such bytes).
    pub fn from_json(bytes: &[u8]) -> Result<Self, TokenError> {
        // serde would also read a struct from a JSON array; a token is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(TokenError::MalformedToken("not a JSON object".into()));
        }
        let wire: WireToken =
            serde_json::from_slice(bytes).map_err(|e| TokenError::MalformedToken(e.to_string()))?;
        let time = |field: &'static str, value: Option<String>| match value {
            None => Ok(TokenTime::default()),
            Some(s) => TokenTime::parse_rfc3339(&s).ok_or_else(|| {
                TokenError::MalformedToken(format!("{field} {s:?} is not RFC 3339"))
            }),
        };
        let signature = match wire.signature {
            None => Vec::new(),
            // Go's base64 decoder for []byte skips CR and LF.
            Some(s) => BASE64
                .decode(
                    s.bytes()
                        .filter(|&c| c != b'\r' && c != b'\n')
                        .collect::<Vec<_>>(),
                )
                .map_err(|e| TokenError::MalformedToken(format!("signature: {e}")))?,
        };
        Ok(Self {
            username: wire.username.unwrap_or_default().into_bytes(),
            sign_time: time("sign-time", wire.sign_time)?,
            expire_time: time("expire-time", wire.expire_time)?,
            signature,
        })
    }

    /// `{"username":…,"sign-time":…,"expire-time":…` without the closing brace.
    fn write_unsigned_fields(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"username\":");
        write_go_json_string(out, &self.username);
        out.extend_from_slice(b",\"sign-time\":");
        write_go_json_string(out, self.sign_time.to_string().as_bytes());
        out.extend_from_slice(b",\"expire-time\":");
        write_go_json_string(out, self.expire_time.to_string().as_bytes());
    }
}

/// Appends `s` as a JSON string literal exactly as Go's `encoding/json` writes it with HTML
/// escaping on (the default of `json.Marshal`):
///
/// - `"` and `\` as `\"` and `\\`; `\n`, `\r`, `\t` as such; other bytes below 0x20 as `\u00XX`
///   (Go writes `\b` and `\f` as `\u0008` and `\u000c`);
/// - `<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`; U+2028 and U+2029 as `\u2028`, `\u2029`;
/// - every byte that is not part of a valid UTF-8 sequence as `\ufffd` (one per byte, as Go's
///   `utf8.DecodeRune` consumes one byte of an invalid sequence at a time);
/// - everything else (including DEL and all other non-ASCII) unchanged.
pub fn write_go_json_string(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                    let b = c as u8; // all ASCII in this arm
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xF)]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                _ => {
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        // A maximal invalid prefix is a lead byte plus continuation bytes, none of which starts a
        // valid sequence on its own: Go replaces each byte.
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn go(s: &[u8]) -> String {
        let mut out = Vec::new();
        write_go_json_string(&mut out, s);
        String::from_utf8(out).expect("the encoder writes UTF-8")
    }

    #[test]
    fn escapes_like_go_encoding_json() {
        // Expected values are what Go 1.22's json.Marshal(string) writes.
        assert_eq!(go(b"root"), r#""root""#);
        assert_eq!(go(b""), r#""""#);
        assert_eq!(go(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go(b"\n\r\t"), r#""\n\r\t""#);
        assert_eq!(
            go(b"\x00\x01\x08\x0c\x1f"),
            r#""\u0000\u0001\u0008\u000c\u001f""#
        );
        assert_eq!(go(b"<a>&"), r#""\u003ca\u003e\u0026""#);
        assert_eq!(go("x\u{2028}y\u{2029}".as_bytes()), r#""x\u2028y\u2029""#);
        assert_eq!(go(b"\x7f/'"), "\"\x7f/'\"");
        assert_eq!(go("ünïcödé 用户 😀".as_bytes()), "\"ünïcödé 用户 😀\"");
        // A literal U+FFFD is valid UTF-8 and stays raw.
        assert_eq!(go("\u{fffd}".as_bytes()), "\"\u{fffd}\"");
        // U+2027 and U+202A are not escaped.
        assert_eq!(go("\u{2027}\u{202a}".as_bytes()), "\"\u{2027}\u{202a}\"");
    }

    #[test]
    fn invalid_utf8_becomes_one_escape_per_byte() {
        assert_eq!(go(b"a\xffb"), r#""a\ufffdb""#);
        // A truncated 3-byte sequence: two bytes, two replacements (Go's DecodeRune size 1).
        assert_eq!(go(b"\xe2\x82A"), r#""\ufffd\ufffdA""#);
        // An encoded surrogate is invalid: three replacements.
        assert_eq!(go(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        // Overlong encoding of '/'.
        assert_eq!(go(b"\xc0\xaf"), r#""\ufffd\ufffd""#);
        // A lone continuation byte, then a valid sequence.
        assert_eq!(go(b"\x80\xc3\xa9"), "\"\\ufffd\u{e9}\"");
        assert_eq!(go(b"\xf0\x9f\x98"), r#""\ufffd\ufffd\ufffd""#);
    }

    fn token() -> SessionToken {
        let sign = TokenTime::from_system_time(UNIX_EPOCH + Duration::new(1_654_086_896, 120), 0);
        SessionToken {
            username: b"r<o>ot".to_vec(),
            sign_time: sign,
            expire_time: sign.plus(Duration::from_secs(60)),
            signature: vec![0xfb, 0xff, 0x00, 0x01],
        }
    }

    #[test]
    fn signed_bytes_are_go_compact_json() {
        assert_eq!(
            String::from_utf8(token().signed_bytes()).unwrap(),
            r#"{"username":"r\u003co\u003eot","sign-time":"2022-06-01T12:34:56.00000012Z","expire-time":"2022-06-01T12:35:56.00000012Z"}"#
        );
    }

    #[test]
    fn to_json_appends_the_base64_signature_or_omits_it() {
        let t = token();
        let json = String::from_utf8(t.to_json()).unwrap();
        assert!(
            json.ends_with(
                r#""expire-time":"2022-06-01T12:35:56.00000012Z","signature":"+/8AAQ=="}"#
            ),
            "{json}"
        );
        let unsigned = SessionToken {
            signature: Vec::new(),
            ..t
        };
        assert_eq!(unsigned.to_json(), unsigned.signed_bytes());
    }

    #[test]
    fn from_json_roundtrips() {
        let t = token();
        assert_eq!(SessionToken::from_json(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn from_json_accepts_any_order_whitespace_and_unknown_keys() {
        // TiDB's SHOW SESSION_STATES form: sorted keys, ", " and ": " separators.
        let text = br#"{"expire-time": "2022-06-01T20:35:56.5+08:00", "extra": [1, {"a": null}], "signature": "+/8AAQ==", "sign-time": "2022-06-01T20:34:56.5+08:00", "username": "r\u003co\u003eot"}"#;
        let t = SessionToken::from_json(text).unwrap();
        assert_eq!(t.username, b"r<o>ot");
        assert_eq!(t.signature, [0xfb, 0xff, 0x00, 0x01]);
        assert_eq!(t.sign_time.utc_offset_secs(), 8 * 3600);
        // The re-derived signed bytes keep the offset and Go's escaping.
        assert_eq!(
            String::from_utf8(t.signed_bytes()).unwrap(),
            r#"{"username":"r\u003co\u003eot","sign-time":"2022-06-01T20:34:56.5+08:00","expire-time":"2022-06-01T20:35:56.5+08:00"}"#
        );
    }

    #[test]
    fn from_json_missing_or_null_fields_take_go_zero_values() {
        let t = SessionToken::from_json(br#"{"username":null}"#).unwrap();
        assert_eq!(t, SessionToken::default());
        assert_eq!(t.sign_time.to_string(), "0001-01-01T00:00:00Z");
        assert!(t.signature.is_empty());
    }

    #[test]
    fn from_json_refuses_malformed_input() {
        for bad in [
            &b""[..],
            b"[]",
            b"  [\"x\", \"2022-06-01T12:34:56Z\"]",
            b"null",
            b"{",
            b"{\"username\":1}",
            b"{\"sign-time\":\"yesterday\"}",
            b"{\"expire-time\":\"2022-06-01T12:34:56\"}",
            b"{\"signature\":\"***\"}",
            b"{\"signature\":\"AAE\"}",
            b"{\"username\":\"\xff\"}",
        ] {
            assert!(
                matches!(
                    SessionToken::from_json(bad),
                    Err(TokenError::MalformedToken(_))
                ),
                "{:?} must be refused",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn encoder_output_is_json_reading_back_as_go_decodes(s in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut out = Vec::new();
            write_go_json_string(&mut out, &s);
            let back: String = serde_json::from_slice(&out).expect("valid JSON string");
            // Go's reading of the bytes: each byte outside a valid sequence becomes U+FFFD.
            let mut expected = String::new();
            for chunk in s.utf8_chunks() {
                expected.push_str(chunk.valid());
                for _ in chunk.invalid() {
                    expected.push('\u{fffd}');
                }
            }
            proptest::prop_assert_eq!(back, expected);
            // Nothing HTML-significant or line-separating is written raw.
            let text = String::from_utf8(out).expect("UTF-8");
            let raw_specials = ['<', '>', '&', '\u{2028}', '\u{2029}'];
            proptest::prop_assert!(!text.contains(raw_specials), "{}", text);
            proptest::prop_assert!(!text.bytes().any(|b| b < 0x20));
        }

        #[test]
        fn valid_utf8_roundtrips_through_a_token(user in ".{0,24}") {
            let t = SessionToken { username: user.clone().into_bytes(), ..SessionToken::default() };
            let back = SessionToken::from_json(&t.to_json()).expect("own output parses");
            proptest::prop_assert_eq!(back.username, user.into_bytes());
        }

        #[test]
        fn from_json_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = SessionToken::from_json(&bytes);
        }
    }
}
