//! `mysql_clear_password`: the password in clear, NUL-terminated. One step, both sides.
//!
//! The client sends `pw ‖ NUL`; the server checks it against its stored hash in constant time
//! ([`Credential::verify_plaintext`]). It exposes the password to anyone on the path, so servers
//! offer it only over TLS (or a trusted socket); that decision belongs to the connection role.

use super::{ClientSecret, Credential, Password};
use crate::DecodeError;

/// Client side: `password ‖ NUL`.
pub fn client_response(password: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(password.len() + 1);
    out.extend_from_slice(password);
    out.push(0);
    out
}

/// Server side: the password in a client's response. The NUL terminator is required, as MySQL's
/// client and PyMySQL send it; the password is everything before the first NUL.
pub fn parse_response(response: &[u8]) -> Result<Password, DecodeError> {
    match response.iter().position(|&b| b == 0) {
        Some(end) => Ok(Password::new(&response[..end])),
        None => Err(DecodeError::Malformed {
            what: "NUL-terminated cleartext password",
        }),
    }
}

/// Server side: checks a client's response against `stored`. `Ok(Some(..))` on success with the
/// plaintext learned (or [`ClientSecret::NoPassword`]), `Ok(None)` for a wrong password.
pub fn verify(response: &[u8], stored: &Credential) -> Result<Option<ClientSecret>, DecodeError> {
    let password = parse_response(response)?;
    if !stored.verify_plaintext(password.as_bytes()) {
        return Ok(None);
    }
    Ok(Some(if password.is_empty() {
        ClientSecret::NoPassword
    } else {
        ClientSecret::Plaintext(password)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_response_appends_nul() {
        assert_eq!(client_response(b"pw"), b"pw\0");
        assert_eq!(client_response(b""), b"\0");
        assert_eq!(client_response("ü".as_bytes()), b"\xc3\xbc\0");
    }

    #[test]
    fn parse_response_requires_terminator() {
        assert_eq!(parse_response(b"pw\0").unwrap().as_bytes(), b"pw");
        assert_eq!(parse_response(b"\0").unwrap().as_bytes(), b"");
        assert_eq!(parse_response(b"pw\0junk").unwrap().as_bytes(), b"pw");
        assert!(parse_response(b"pw").is_err());
        assert!(parse_response(b"").is_err());
    }

    #[test]
    fn verify_against_native_hash() {
        let stored =
            Credential::parse_native(b"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").unwrap();
        assert_eq!(
            verify(&client_response(b"password"), &stored).unwrap(),
            Some(ClientSecret::Plaintext(Password::new("password")))
        );
        assert_eq!(
            verify(&client_response(b"passwore"), &stored).unwrap(),
            None
        );
        assert_eq!(verify(&client_response(b""), &stored).unwrap(), None);
        assert!(verify(b"password", &stored).is_err());
        assert_eq!(
            verify(b"\0", &Credential::NoPassword).unwrap(),
            Some(ClientSecret::NoPassword)
        );
        assert_eq!(verify(b"x\0", &Credential::NoPassword).unwrap(), None);
    }
}
