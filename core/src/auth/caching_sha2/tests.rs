use super::*;
use crate::auth::{ClientSecret, Credential, Password, RsaKeyPair, RsaPublicKey};
use crate::SeededRandom;

const PRIV_PKCS8: &str = include_str!("../testdata/rsa2048_pkcs8.pem");
const PUB_SPKI: &str = include_str!("../testdata/rsa2048_spki_pub.pem");

/// PyMySQL's `scramble_caching_sha2(b"password", bytes(range(1, 21)))`.
const SCRAMBLE_PASSWORD_SALT_1_20: &str =
    "f7ab1c623a6e98dceab35e926290e5746a3141116115f4dd8ccca994393eccdd";
/// `sha256(sha256(b"password"))`.
const CACHE_PASSWORD: &str = "73641c99f7719f57d8f4beb11a303afcd190243a51ced8782ca6d3dbe014d146";

fn salt() -> Vec<u8> {
    (1..=20).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keys() -> RsaKeyPair {
    RsaKeyPair::from_pem(PRIV_PKCS8.as_bytes()).unwrap()
}

fn cache(pw: &[u8]) -> Credential {
    Credential::CachingSha2(Sha256Stage2Hash::from_password(pw))
}

#[test]
fn scramble_known_answer() {
    assert_eq!(
        hex(&scramble(b"password", &salt())),
        SCRAMBLE_PASSWORD_SALT_1_20
    );
    assert_eq!(
        hex(Sha256Stage2Hash::from_password(b"password").as_bytes()),
        CACHE_PASSWORD
    );
    assert_eq!(
        Sha256Stage2Hash::parse_hex(CACHE_PASSWORD.to_uppercase().as_bytes()).unwrap(),
        Sha256Stage2Hash::from_password(b"password")
    );
    assert!(Sha256Stage2Hash::parse_hex(b"73641c").is_err());
    assert!(scramble(b"", &salt()).is_empty());
    // The 21st byte (the wire's NUL) is not part of the salt.
    let mut with_nul = salt();
    with_nul.push(0);
    assert_eq!(
        scramble(b"password", &with_nul),
        scramble(b"password", &salt())
    );
}

#[test]
fn verify_and_recover() {
    let stored = Sha256Stage2Hash::from_password(b"password");
    let s = scramble(b"password", &salt());
    assert!(verify(&s, &salt(), &stored));
    assert_eq!(
        recover_stage1(&s, &salt(), &stored),
        Some(Sha256Password::from_password(b"password"))
    );
    assert!(!verify(&scramble(b"passwore", &salt()), &salt(), &stored));
    assert!(!verify(&s, &[0; 20], &stored));
    assert!(!verify(&s[..31], &salt(), &stored));
    let stage1 = Sha256Password::from_password(b"password");
    let other: Vec<u8> = (50..70).collect();
    assert_eq!(
        scramble_with_stage1(&stage1, &other).to_vec(),
        scramble(b"password", &other)
    );
}

#[test]
fn debug_hides_secrets() {
    assert_eq!(
        format!("{:?}", Sha256Password::from_password(b"x")),
        "Sha256Password(..)"
    );
    assert_eq!(
        format!("{:?}", Sha256Stage2Hash::from_password(b"x")),
        "Sha256Stage2Hash(..)"
    );
    let (client, _) = CachingSha2Client::start(Password::new("hunter2"), &salt(), false, None);
    assert!(!format!("{client:?}").contains("hunter2"));
}

/// Runs a client and a server against each other until one side finishes; returns the server's
/// final action and the packets each side sent.
fn run(
    client_pw: &str,
    credential: Credential,
    tls: bool,
    client_key: Option<RsaPublicKey>,
    server_keys: Option<&RsaKeyPair>,
) -> (Result<ServerAction, AuthError>, Vec<Vec<u8>>) {
    let mut rng = SeededRandom::new(42);
    let mut server = CachingSha2Server::new(&salt(), credential, tls);
    let (mut client, first) =
        CachingSha2Client::start(Password::new(client_pw), &salt(), tls, client_key);
    let mut transcript = vec![first.clone()];
    let mut to_server = first;
    loop {
        let action = server.handle_response(&to_server, server_keys, &mut rng);
        match action {
            Ok(ServerAction::Continue(payload)) => {
                transcript.push(payload.clone());
                match client.handle_more_data(&payload, &mut rng).unwrap() {
                    ClientAction::Send(next) => {
                        transcript.push(next.clone());
                        to_server = next;
                    }
                    ClientAction::AwaitResult => panic!("client waits while server continues"),
                }
            }
            Ok(ServerAction::Accept {
                before_ok: Some(ref p),
                ..
            }) => {
                // The client must take the fast-auth success and then wait for OK.
                assert_eq!(
                    client.handle_more_data(p, &mut rng).unwrap(),
                    ClientAction::AwaitResult
                );
                assert!(client.awaits_result());
                assert!(server.is_finished());
                return (action, transcript);
            }
            other => {
                assert!(server.is_finished());
                return (other, transcript);
            }
        }
    }
}

#[test]
fn fast_path_success() {
    let (action, transcript) = run("password", cache(b"password"), false, None, None);
    assert_eq!(
        action.unwrap(),
        ServerAction::Accept {
            before_ok: Some(FAST_AUTH_SUCCESS.to_vec()),
            secret: ClientSecret::Sha256(Sha256Password::from_password(b"password")),
        }
    );
    assert_eq!(transcript.len(), 1);
}

#[test]
fn full_auth_over_tls_sends_cleartext() {
    let (action, transcript) = run(
        "pässwörd",
        Credential::native_from_password("pässwörd".as_bytes()),
        true,
        None,
        None,
    );
    assert_eq!(
        action.unwrap(),
        ServerAction::Accept {
            before_ok: None,
            secret: ClientSecret::Plaintext(Password::new("pässwörd")),
        }
    );
    assert_eq!(transcript[1], PERFORM_FULL_AUTH);
    assert_eq!(transcript[2], "pässwörd\0".as_bytes());
    // Wrong password over TLS.
    let (action, _) = run(
        "wrong",
        Credential::native_from_password(b"right"),
        true,
        None,
        None,
    );
    assert_eq!(action.unwrap(), ServerAction::Deny);
}

#[test]
fn stale_cache_falls_back_to_full_auth() {
    // The cache holds another password's value: the fast path misses, full auth decides.
    let (action, transcript) = run("new", cache(b"old"), true, None, None);
    assert_eq!(action.unwrap(), ServerAction::Deny);
    assert_eq!(transcript[1], PERFORM_FULL_AUTH);
}

#[test]
fn full_auth_rsa_with_key_request() {
    let pair = keys();
    let (action, transcript) = run(
        "password",
        Credential::native_from_password(b"password"),
        false,
        None,
        Some(&pair),
    );
    assert_eq!(
        action.unwrap(),
        ServerAction::Accept {
            before_ok: None,
            secret: ClientSecret::Plaintext(Password::new("password")),
        }
    );
    assert_eq!(transcript[1], PERFORM_FULL_AUTH);
    assert_eq!(transcript[2], REQUEST_PUBLIC_KEY);
    let mut key_packet = vec![AUTH_MORE_DATA];
    key_packet.extend_from_slice(PUB_SPKI.as_bytes());
    assert_eq!(transcript[3], key_packet);
    assert_eq!(transcript[4].len(), 256);
    let (action, _) = run(
        "passw0rd",
        Credential::native_from_password(b"password"),
        false,
        None,
        Some(&pair),
    );
    assert_eq!(action.unwrap(), ServerAction::Deny);
}

#[test]
fn full_auth_rsa_with_configured_key_skips_request() {
    let pair = keys();
    let (action, transcript) = run(
        "password",
        cache(b"password-not-cached"),
        false,
        Some(pair.public_key()),
        Some(&pair),
    );
    assert_eq!(action.unwrap(), ServerAction::Deny);
    assert_eq!(transcript.len(), 3, "fast, 0x04, ciphertext");
    let (action, _) = run(
        "password",
        cache(b"password"),
        false,
        Some(pair.public_key()),
        Some(&pair),
    );
    assert!(matches!(
        action.unwrap(),
        ServerAction::Accept {
            before_ok: Some(_),
            ..
        }
    ));
    let (action, _) = run(
        "password",
        Credential::native_from_password(b"password"),
        false,
        Some(pair.public_key()),
        Some(&pair),
    );
    assert!(matches!(
        action.unwrap(),
        ServerAction::Accept {
            before_ok: None,
            ..
        }
    ));
}

#[test]
fn no_tls_no_keys_is_an_error() {
    let (action, _) = run(
        "password",
        Credential::native_from_password(b"password"),
        false,
        None,
        None,
    );
    assert_eq!(action, Err(AuthError::SecureTransportRequired));
}

#[test]
fn empty_passwords() {
    let (action, transcript) = run("", Credential::NoPassword, false, None, None);
    assert_eq!(
        action.unwrap(),
        ServerAction::Accept {
            before_ok: None,
            secret: ClientSecret::NoPassword
        }
    );
    assert_eq!(transcript, vec![Vec::<u8>::new()]);
    let (action, _) = run("", cache(b"pw"), false, None, None);
    assert_eq!(action.unwrap(), ServerAction::Deny);
    let (action, _) = run("pw", Credential::NoPassword, false, None, None);
    assert_eq!(action.unwrap(), ServerAction::Deny);
    // A lone NUL also means "no password".
    let mut rng = SeededRandom::new(1);
    let mut server = CachingSha2Server::new(&salt(), Credential::NoPassword, false);
    assert!(matches!(
        server.handle_response(b"\0", None, &mut rng),
        Ok(ServerAction::Accept { .. })
    ));
}

#[test]
fn server_errors_are_sticky_and_finish_is_final() {
    let mut rng = SeededRandom::new(1);
    let mut server = CachingSha2Server::new(&salt(), cache(b"pw"), true);
    assert_eq!(
        server.handle_response(&[7; 32], None, &mut rng).unwrap(),
        ServerAction::Continue(PERFORM_FULL_AUTH.to_vec())
    );
    let err = server
        .handle_response(b"no terminator", None, &mut rng)
        .unwrap_err();
    assert!(matches!(err, AuthError::Decode(_)));
    assert!(server.is_finished());
    assert_eq!(server.handle_response(b"pw\0", None, &mut rng), Err(err));

    let mut server = CachingSha2Server::new(&salt(), cache(b"pw"), true);
    let s = scramble(b"pw", &salt());
    assert!(matches!(
        server.handle_response(&s, None, &mut rng),
        Ok(ServerAction::Accept { .. })
    ));
    assert_eq!(
        server.handle_response(&s, None, &mut rng),
        Err(AuthError::Finished)
    );
}

#[test]
fn rsa_garbage_is_denied() {
    let pair = keys();
    let mut rng = SeededRandom::new(1);
    let mut server =
        CachingSha2Server::new(&salt(), Credential::native_from_password(b"pw"), false);
    let _ = server
        .handle_response(&[1; 32], Some(&pair), &mut rng)
        .unwrap();
    assert_eq!(
        server
            .handle_response(&[5; 256], Some(&pair), &mut rng)
            .unwrap(),
        ServerAction::Deny
    );
}

#[test]
fn client_rejects_unexpected_packets() {
    let mut rng = SeededRandom::new(1);
    let (mut client, _) = CachingSha2Client::start(Password::new("pw"), &salt(), false, None);
    let err = client.handle_more_data(&[1, 9], &mut rng).unwrap_err();
    assert!(matches!(err, AuthError::UnexpectedPacket { .. }));
    // Sticky.
    assert_eq!(
        client.handle_more_data(&FAST_AUTH_SUCCESS, &mut rng),
        Err(err)
    );

    let (mut client, _) = CachingSha2Client::start(Password::new("pw"), &salt(), false, None);
    assert_eq!(
        client
            .handle_more_data(&PERFORM_FULL_AUTH, &mut rng)
            .unwrap(),
        ClientAction::Send(REQUEST_PUBLIC_KEY.to_vec())
    );
    let err = client
        .handle_more_data(
            b"\x01-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
            &mut rng,
        )
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidKey(_)));

    let (mut client, _) = CachingSha2Client::start(Password::new("pw"), &salt(), false, None);
    let _ = client
        .handle_more_data(&PERFORM_FULL_AUTH, &mut rng)
        .unwrap();
    assert!(matches!(
        client.handle_more_data(b"\x00not more data", &mut rng),
        Err(AuthError::UnexpectedPacket { .. })
    ));

    let (mut client, _) = CachingSha2Client::start(Password::new("pw"), &salt(), true, None);
    assert_eq!(
        client
            .handle_more_data(&FAST_AUTH_SUCCESS, &mut rng)
            .unwrap(),
        ClientAction::AwaitResult
    );
    assert!(matches!(
        client.handle_more_data(&PERFORM_FULL_AUTH, &mut rng),
        Err(AuthError::UnexpectedPacket { .. })
    ));
}

#[test]
fn client_keeps_received_key_and_reports_long_passwords() {
    let pair = keys();
    let mut rng = SeededRandom::new(3);
    let long = "x".repeat(300);
    let (mut client, _) = CachingSha2Client::start(Password::new(long), &salt(), false, None);
    let _ = client
        .handle_more_data(&PERFORM_FULL_AUTH, &mut rng)
        .unwrap();
    let mut key_packet = vec![AUTH_MORE_DATA];
    key_packet.extend_from_slice(pair.public_key_pem().as_bytes());
    assert_eq!(
        client.handle_more_data(&key_packet, &mut rng),
        Err(AuthError::PasswordTooLong { len: 301, max: 214 })
    );
    assert_eq!(client.server_public_key(), Some(&pair.public_key()));
}
