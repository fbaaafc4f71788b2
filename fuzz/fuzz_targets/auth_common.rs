//! The checks of the `auth` and `auth_rsa` fuzz targets: the authentication plugins fed arbitrary
//! passwords, salts, responses and packet sequences.
//!
//! Invariants (RSA ones only in `auth_rsa`):
//! - `mysql_native_password`: scramble, verify and recover never panic; recovering from a
//!   scramble of the password gives back SHA1(password); an arbitrary response verifies exactly
//!   when recovery succeeds, and what it recovers re-scrambles to that response;
//! - `caching_sha2_password`: the server and client state machines fed arbitrary packet sequences
//!   never panic, and errors are sticky; the two machines talking to each other accept exactly
//!   when the stored credential matches the password (TLS, RSA with and without a known key);
//! - RSA: decrypting arbitrary ciphertext fails cleanly; encrypt then decrypt is the identity;
//!   parsing arbitrary PEM fails cleanly;
//! - `mysql_clear_password` and stored-hash parsing never panic.

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use ferry_core::auth::caching_sha2::{
    self, CachingSha2Client, CachingSha2Server, ClientAction, ServerAction, Sha256Password,
    Sha256Stage2Hash,
};
use ferry_core::auth::native::{self, NativeStage2Hash, Sha1Password};
use ferry_core::auth::{
    auth_salt, clear, AuthError, ClientSecret, Credential, Password, RsaKeyPair, RsaPublicKey,
};
use ferry_core::SeededRandom;

#[derive(Debug, Arbitrary)]
pub struct Input {
    password: Vec<u8>,
    stored_password: Vec<u8>,
    salt: Vec<u8>,
    /// An arbitrary client response (native scramble, caching_sha2 packet, cleartext).
    response: Vec<u8>,
    /// 0: no password, 1: native hash, 2: caching_sha2 cache value (of `stored_password`).
    credential: u8,
    tls: bool,
    server_has_rsa: bool,
    client_knows_key: bool,
    seed: u64,
    /// Packets for the server machine (client → server) and the client machine (server → client).
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
    /// Which `to_client` packet, if any, is replaced by the real public-key packet.
    pem_at: Option<u8>,
}

fn key_pair() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        RsaKeyPair::from_pem(include_bytes!(
            "../../core/src/auth/testdata/rsa2048_pkcs8.pem"
        ))
        .expect("the test key parses")
    })
}

fn credential(kind: u8, stored: &[u8]) -> Credential {
    match kind % 3 {
        0 => Credential::NoPassword,
        1 => Credential::native_from_password(stored),
        _ => Credential::CachingSha2(Sha256Stage2Hash::from_password(stored)),
    }
}

/// Runs every check on `input`; `rsa_enabled` adds the RSA ones (milliseconds each under ASan,
/// so `auth` runs without them and `auth_rsa` with them).
pub fn run(input: Input, rsa_enabled: bool) {
    let mut rng = SeededRandom::new(input.seed);
    native_plugin(&input);
    parsers(&input);
    let cred = credential(input.credential, &input.stored_password);
    let rsa = (input.server_has_rsa && rsa_enabled).then(key_pair);

    // The server machine fed arbitrary packets: no panic, sticky errors, nothing after the end.
    let mut server = CachingSha2Server::new(&input.salt, cred.clone(), input.tls);
    let mut finished = false;
    for packet in input.to_server.iter().take(4) {
        let packet = if rsa.is_none() && packet.len() > 64 {
            // Without a key the server never decrypts; keep inputs cheap anyway.
            &packet[..64]
        } else {
            &packet[..]
        };
        let result = server.handle_response(packet, rsa, &mut rng);
        if finished {
            assert!(result.is_err(), "a finished exchange goes on: {result:?}");
        }
        match result {
            Ok(ServerAction::Continue(_)) => {}
            Ok(ServerAction::Accept { .. } | ServerAction::Deny) | Err(_) => finished = true,
        }
        assert_eq!(server.is_finished(), finished);
        if let Err(e) = result {
            assert_eq!(server.handle_response(b"", rsa, &mut rng), Err(e));
        }
    }

    // The client machine fed arbitrary packets (and maybe the real key): no panic, sticky errors.
    let client_key = (input.client_knows_key && rsa_enabled).then(|| key_pair().public_key());
    let (mut client, fast) = CachingSha2Client::start(
        Password::new(input.password.clone()),
        &input.salt,
        input.tls,
        client_key,
    );
    assert_eq!(
        fast,
        caching_sha2::scramble(&input.password, auth_salt(&input.salt))
    );
    let pem_packet = {
        let mut p = vec![caching_sha2::AUTH_MORE_DATA];
        p.extend_from_slice(key_pair().public_key_pem().as_bytes());
        p
    };
    for (i, packet) in input.to_client.iter().take(4).enumerate() {
        let packet = if rsa_enabled && input.pem_at == Some(i as u8) {
            &pem_packet
        } else if !rsa_enabled && packet.len() > 64 {
            &packet[..64]
        } else {
            packet
        };
        let result = client.handle_more_data(packet, &mut rng);
        if let Err(e) = result {
            assert_eq!(client.handle_more_data(b"", &mut rng), Err(e));
            break;
        }
    }

    if rsa_enabled {
        rsa_checks(&input, &mut rng);
    }
    // Without `rsa` neither side has a key, so the exchange stays cheap.
    exchange(&input, &cred, &mut rng, rsa_enabled);
}

fn native_plugin(input: &Input) {
    let salt = &input.salt[..];
    let scramble = native::scramble(&input.password, salt);
    let stored = NativeStage2Hash::from_password(&input.password);
    if input.password.is_empty() {
        assert!(scramble.is_empty());
    } else {
        let stage1 = native::recover_stage1(&scramble, salt, &stored).expect("own scramble");
        assert_eq!(
            stage1.as_bytes(),
            Sha1Password::from_password(&input.password).as_bytes()
        );
        assert!(native::verify(&scramble, salt, &stored));
        assert_eq!(
            native::scramble_with_stage1(&stage1, salt).to_vec(),
            scramble
        );
        assert!(native::verify_plaintext(&input.password, &stored));
    }
    // An arbitrary response against an arbitrary stored hash.
    let other = NativeStage2Hash::from_password(&input.stored_password);
    let recovered = native::recover_stage1(&input.response, salt, &other);
    assert_eq!(
        recovered.is_some(),
        native::verify(&input.response, salt, &other)
    );
    if let Some(stage1) = recovered {
        assert_eq!(
            native::scramble_with_stage1(&stage1, salt).to_vec(),
            input.response
        );
        assert_eq!(stage1.stage2().as_bytes(), other.as_bytes());
    }
    // Through the credential, as a server does.
    let cred = credential(input.credential, &input.stored_password);
    if let Some(secret) = cred.verify_native(&input.response, salt) {
        match (&cred, secret) {
            (Credential::NoPassword, ClientSecret::NoPassword) => {
                assert!(input.response.is_empty())
            }
            (Credential::Native(_), ClientSecret::Sha1(_)) => {}
            (c, s) => panic!("{c:?} accepted a native response as {s:?}"),
        }
    }
    // The caching_sha2 fast path's arithmetic, the same shape as native's.
    if !input.password.is_empty() {
        let fast = caching_sha2::scramble(&input.password, salt);
        let cache = Sha256Stage2Hash::from_password(&input.password);
        assert!(caching_sha2::verify(&fast, salt, &cache));
        let stage1 = caching_sha2::recover_stage1(&fast, salt, &cache).expect("own scramble");
        assert_eq!(
            stage1.as_bytes(),
            Sha256Password::from_password(&input.password).as_bytes()
        );
    }
    let _ = caching_sha2::verify(
        &input.response,
        salt,
        &Sha256Stage2Hash::from_password(b"x"),
    );
}

fn parsers(input: &Input) {
    let _ = Credential::parse_native(&input.response);
    let _ = NativeStage2Hash::parse(&input.response);
    if let Ok(h) = NativeStage2Hash::parse_hex(&input.response) {
        assert_eq!(NativeStage2Hash::parse_hex(h.to_hex().as_bytes()), Ok(h));
    }
    let _ = Sha256Stage2Hash::parse_hex(&input.response);
    let _ = auth_salt(&input.response);
    match clear::parse_response(&input.response) {
        Ok(pw) => {
            assert!(!pw.as_bytes().contains(&0));
            assert_eq!(
                clear::client_response(pw.as_bytes())[..],
                input.response[..pw.as_bytes().len() + 1]
            );
        }
        Err(_) => assert!(!input.response.contains(&0)),
    }
    let cred = credential(input.credential, &input.stored_password);
    let _ = clear::verify(&input.response, &cred);
    let clear_ok = clear::verify(&clear::client_response(&input.password), &cred);
    if !input.password.contains(&0) {
        assert_eq!(
            clear_ok.expect("NUL-terminated").is_some(),
            cred.verify_plaintext(&input.password)
        );
    }
    // Arbitrary PEM fails cleanly.
    let _ = RsaPublicKey::from_pem(&input.response);
    let _ = RsaKeyPair::from_pem(&input.response);
}

fn rsa_checks(input: &Input, rng: &mut SeededRandom) {
    let key = key_pair();
    // Arbitrary ciphertext: a clean `None` or some password, never a panic.
    let _ = key.decrypt_password(&input.response, &input.salt, rng);
    let public = key.public_key();
    match public.encrypt_password(&input.password, &input.salt, rng) {
        Ok(ciphertext) => {
            let back = key
                .decrypt_password(&ciphertext, &input.salt, rng)
                .expect("own ciphertext decrypts");
            assert_eq!(back.as_bytes(), &input.password[..]);
        }
        Err(AuthError::PasswordTooLong { len, max }) => {
            assert_eq!(len, input.password.len() + 1);
            assert!(len > max && max == public.max_password_len() + 1);
        }
        Err(e) => panic!("encryption failed: {e}"),
    }
}

/// The two caching_sha2 machines talking to each other.
fn exchange(input: &Input, cred: &Credential, rng: &mut SeededRandom, allow_rsa: bool) {
    let rsa = (allow_rsa && input.server_has_rsa).then(key_pair);
    let client_key = (allow_rsa && input.client_knows_key).then(|| key_pair().public_key());
    let (mut client, mut to_server) = CachingSha2Client::start(
        Password::new(input.password.clone()),
        &input.salt,
        input.tls,
        client_key,
    );
    let mut server = CachingSha2Server::new(&input.salt, cred.clone(), input.tls);
    let matches = cred.verify_plaintext(&input.password);
    for _ in 0..4 {
        match server.handle_response(&to_server, rsa, rng) {
            Ok(ServerAction::Accept { before_ok, secret }) => {
                assert!(matches, "accepted a wrong password");
                if let Some(more) = before_ok {
                    assert_eq!(
                        client.handle_more_data(&more, rng),
                        Ok(ClientAction::AwaitResult)
                    );
                }
                if input.password.is_empty() {
                    assert_eq!(secret, ClientSecret::NoPassword);
                } else {
                    let sha = secret
                        .sha256()
                        .expect("a password login reveals SHA256(pw)");
                    assert_eq!(
                        sha.as_bytes(),
                        Sha256Password::from_password(&input.password).as_bytes()
                    );
                }
                return;
            }
            Ok(ServerAction::Deny) => {
                assert!(!matches, "denied the right password");
                return;
            }
            Ok(ServerAction::Continue(more)) => match client.handle_more_data(&more, rng) {
                Ok(ClientAction::Send(packet)) => to_server = packet,
                Ok(ClientAction::AwaitResult) => panic!("client waits while the server goes on"),
                Err(AuthError::PasswordTooLong { .. }) => {
                    assert!(
                        !input.tls
                            && input.password.len() + 1
                                > key_pair().public_key().max_password_len() + 1
                    );
                    return;
                }
                Err(e) => panic!("client failed: {e}"),
            },
            Err(AuthError::SecureTransportRequired) => {
                assert!(!input.tls && rsa.is_none());
                return;
            }
            Err(e) => panic!("server failed: {e}"),
        }
    }
    panic!("exchange did not finish in four steps");
}
