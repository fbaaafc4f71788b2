//! Known-answer tests of ferry's authentication algorithms against PyMySQL's own implementation
//! (`pymysql._auth`) and Python's `cryptography`, run at test time, and against OpenSSL-made keys.
//!
//! Needs `python3` with `pymysql` and `cryptography`, and `openssl`. A missing tool is a test
//! failure with a message saying what to install, never a skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ferry_core::auth::caching_sha2::{
    self, CachingSha2Client, CachingSha2Server, ClientAction, ServerAction, Sha256Password,
    Sha256Stage2Hash, AUTH_MORE_DATA, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY,
};
use ferry_core::auth::native::{self, NativeStage2Hash};
use ferry_core::auth::{ClientSecret, Credential, Password, RsaKeyPair, RsaPublicKey};
use ferry_core::{RandomSource, SeededRandom};

/// Scrambles and the stage-2 text form, one line per `password_hex:salt_hex` input line.
const PY_SCRAMBLES: &str = r#"
import sys, hashlib
from pymysql._auth import scramble_native_password, scramble_caching_sha2
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    pw, salt = (bytes.fromhex(x) for x in line.split(":"))
    stage2 = "*" + hashlib.sha1(hashlib.sha1(pw).digest()).hexdigest().upper()
    print(scramble_native_password(pw, salt).hex(), scramble_caching_sha2(pw, salt).hex(), stage2, sep=":")
"#;

/// PyMySQL's client-side RSA encryption with the PEM public key in `argv[1]`.
const PY_ENCRYPT: &str = r#"
import sys
from pymysql._auth import sha2_rsa_encrypt
pem = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    pw, salt = (bytes.fromhex(x) for x in line.split(":"))
    print(sha2_rsa_encrypt(pw, salt, pem).hex())
"#;

/// What a MySQL server does with a ciphertext: RSA-OAEP (SHA-1, MGF1-SHA-1) decryption with the
/// PEM private key in `argv[1]`, then XOR with the salt repeated. Input `ciphertext_hex:salt_hex`.
const PY_DECRYPT: &str = r#"
import sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    ct, salt = (bytes.fromhex(x) for x in line.split(":"))
    msg = bytearray(key.decrypt(ct, oaep))
    for i in range(len(msg)):
        msg[i] ^= salt[i % len(salt)]
    print(bytes(msg).hex())
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length: {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from python"))
        .collect()
}

/// Runs `python3 -c script args...` with `input` on stdin; panics with a clear message when
/// python3, PyMySQL or cryptography is missing or the script fails.
fn python(script: &str, args: &[&Path], input: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): this test needs python3 with PyMySQL and cryptography \
                 (pip install pymysql cryptography)"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(input.as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("wait for python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python3 failed ({}); PyMySQL and cryptography must be installed \
         (pip install pymysql cryptography). stderr:\n{stderr}",
        out.status
    );
    String::from_utf8(out.stdout)
        .expect("python prints ASCII")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): this test needs the openssl CLI"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("ferry-auth-kat-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn passwords() -> Vec<Vec<u8>> {
    vec![
        b"".to_vec(),
        b"password".to_vec(),
        b"x".to_vec(),
        "pässwörd ✓ 密码 🔑".as_bytes().to_vec(),
        b"with space and 'quotes' \"double\" \\ ; $".to_vec(),
        "long-".repeat(40).into_bytes(), // 200 bytes: still fits a 2048-bit RSA key
    ]
}

/// Only for scrambles (RSA caps the length): a password far longer than any hash block.
fn very_long_password() -> Vec<u8> {
    "0123456789abcdef".repeat(64).into_bytes()
}

fn salts() -> Vec<Vec<u8>> {
    let mut rng = SeededRandom::new(0x5eed);
    let mut out = vec![(1..=20).collect::<Vec<u8>>(), vec![b'a'; 20]];
    for _ in 0..3 {
        let mut s = vec![0u8; 20];
        rng.fill(&mut s); // arbitrary bytes, NUL included: the algorithms must not care
        out.push(s);
    }
    out
}

#[test]
fn python_toolchain_is_present() {
    let lines = python(
        "import pymysql, pymysql._auth, cryptography; print(pymysql.__version__)",
        &[],
        "",
    );
    assert_eq!(lines.len(), 1, "pymysql printed its version");
}

#[test]
fn scrambles_and_stage2_match_pymysql() {
    let mut pws = passwords();
    pws.push(very_long_password());
    let cases: Vec<(Vec<u8>, Vec<u8>)> = pws
        .iter()
        .flat_map(|pw| salts().into_iter().map(move |s| (pw.clone(), s)))
        .collect();
    let input: String = cases
        .iter()
        .map(|(pw, salt)| format!("{}:{}\n", hex(pw), hex(salt)))
        .collect();
    let lines = python(PY_SCRAMBLES, &[], &input);
    assert_eq!(lines.len(), cases.len());
    let mut rng = SeededRandom::new(1);
    for ((pw, salt), line) in cases.iter().zip(&lines) {
        let parts: Vec<&str> = line.split(':').collect();
        let [py_native, py_sha2, py_stage2] = parts[..] else {
            panic!("bad python line {line:?}")
        };
        let what = format!(
            "password {:?} salt {}",
            String::from_utf8_lossy(pw),
            hex(salt)
        );

        // mysql_native_password, client side.
        assert_eq!(
            hex(&native::scramble(pw, salt)),
            py_native,
            "native scramble, {what}"
        );
        // caching_sha2_password fast path, client side (free function and state machine).
        assert_eq!(
            hex(&caching_sha2::scramble(pw, salt)),
            py_sha2,
            "sha2 scramble, {what}"
        );
        let (_, first) = CachingSha2Client::start(Password::new(pw.clone()), salt, false, None);
        assert_eq!(hex(&first), py_sha2, "sha2 client first packet, {what}");

        // The stored form, parsed back in either case.
        let stage2 = NativeStage2Hash::from_password(pw);
        assert_eq!(stage2.to_hex(), py_stage2, "stage2, {what}");
        assert_eq!(
            NativeStage2Hash::parse(py_stage2.to_ascii_lowercase().as_bytes()).unwrap(),
            stage2
        );
        if pw.is_empty() {
            assert!(py_native.is_empty() && py_sha2.is_empty(), "{what}");
            continue;
        }

        // Server side: verify PyMySQL's scramble, recover SHA1(pw), answer a new salt.
        let py_native = unhex(py_native);
        let stage1 = native::recover_stage1(&py_native, salt, &stage2)
            .unwrap_or_else(|| panic!("recover from PyMySQL scramble, {what}"));
        assert_eq!(
            stage1.as_bytes(),
            Password::new(pw.clone()).sha1().as_bytes()
        );
        let backend_salt: Vec<u8> = salt.iter().map(|b| b.wrapping_add(1)).collect();
        assert_eq!(
            native::scramble_with_stage1(&stage1, &backend_salt).to_vec(),
            native::scramble(pw, &backend_salt)
        );
        assert!(
            !native::verify(&py_native, &backend_salt, &stage2),
            "{what}"
        );

        // Server side of the fast path against a cache value.
        let py_sha2 = unhex(py_sha2);
        let cache = Sha256Stage2Hash::from_password(pw);
        assert!(caching_sha2::verify(&py_sha2, salt, &cache), "{what}");
        let mut server = CachingSha2Server::new(salt, Credential::CachingSha2(cache), false);
        assert_eq!(
            server.handle_response(&py_sha2, None, &mut rng).unwrap(),
            ServerAction::Accept {
                before_ok: Some(caching_sha2::FAST_AUTH_SUCCESS.to_vec()),
                secret: ClientSecret::Sha256(Sha256Password::from_password(pw)),
            },
            "{what}"
        );
    }
}

#[test]
fn stage2_known_value_for_password() {
    // `SELECT PASSWORD('password')` on MariaDB / MySQL 5.7.
    let known = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";
    assert_eq!(NativeStage2Hash::from_password(b"password").to_hex(), known);
    let cred = Credential::parse_native(known.as_bytes()).unwrap();
    assert_eq!(cred, Credential::native_from_password(b"password"));
}

/// Keys made by `openssl genrsa`: OpenSSL 3's default PKCS#8 and the traditional PKCS#1 form,
/// with SubjectPublicKeyInfo and PKCS#1 public keys.
struct Keys {
    _dir: TempDir,
    pkcs8: PathBuf,
    pkcs1: PathBuf,
    pkcs8_pub_spki: PathBuf,
    pkcs1_pub_rsa: PathBuf,
}

fn make_keys() -> Keys {
    let dir = TempDir::new();
    let pkcs8 = dir.path("key8.pem");
    let pkcs1 = dir.path("key1.pem");
    let pkcs8_pub_spki = dir.path("key8.pub.pem");
    let pkcs1_pub_rsa = dir.path("key1.rsapub.pem");
    let s = |p: &PathBuf| p.to_str().expect("UTF-8 temp path").to_owned();
    openssl(&["genrsa", "-out", &s(&pkcs8), "2048"]);
    openssl(&["genrsa", "-traditional", "-out", &s(&pkcs1), "2048"]);
    openssl(&[
        "rsa",
        "-in",
        &s(&pkcs8),
        "-pubout",
        "-out",
        &s(&pkcs8_pub_spki),
    ]);
    openssl(&[
        "rsa",
        "-in",
        &s(&pkcs1),
        "-RSAPublicKey_out",
        "-out",
        &s(&pkcs1_pub_rsa),
    ]);
    let head = |p: &PathBuf| std::fs::read_to_string(p).expect("read key");
    assert!(head(&pkcs8).starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(head(&pkcs1).starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(head(&pkcs8_pub_spki).starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(head(&pkcs1_pub_rsa).starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    Keys {
        _dir: dir,
        pkcs8,
        pkcs1,
        pkcs8_pub_spki,
        pkcs1_pub_rsa,
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read key file")
}

#[test]
fn pymysql_rsa_ciphertext_is_accepted_by_ferry_server() {
    let keys = make_keys();
    for (private, public) in [
        (&keys.pkcs8, &keys.pkcs8_pub_spki),
        (&keys.pkcs1, &keys.pkcs1_pub_rsa),
    ] {
        let pair =
            RsaKeyPair::from_pem(&read(private)).expect("ferry parses openssl's private key");
        assert_eq!(
            RsaPublicKey::from_pem(&read(public)).expect("ferry parses openssl's public key"),
            pair.public_key()
        );
        // The PEM ferry's server sends is what PyMySQL loads.
        let sent_pem = keys._dir.path("sent.pem");
        std::fs::write(&sent_pem, pair.public_key_pem()).unwrap();

        let cases: Vec<(Vec<u8>, Vec<u8>)> = passwords()
            .into_iter()
            .flat_map(|pw| salts().into_iter().map(move |s| (pw.clone(), s)))
            .collect();
        // Each case twice: the right password, then a wrong one under the same salt.
        let input: String = cases
            .iter()
            .flat_map(|(pw, salt)| {
                let mut wrong = pw.clone();
                wrong.push(b'!');
                [
                    format!("{}:{}\n", hex(pw), hex(salt)),
                    format!("{}:{}\n", hex(&wrong), hex(salt)),
                ]
            })
            .collect();
        let lines = python(PY_ENCRYPT, &[&sent_pem], &input);
        assert_eq!(lines.len(), 2 * cases.len());
        let mut rng = SeededRandom::new(9);
        for ((pw, salt), cts) in cases.iter().zip(lines.chunks(2)) {
            let what = format!(
                "password {:?} salt {}",
                String::from_utf8_lossy(pw),
                hex(salt)
            );
            let (right, wrong) = (unhex(&cts[0]), unhex(&cts[1]));
            // The decryption primitive, for every password including the empty one.
            let got = pair.decrypt_password(&right, salt, &mut rng).expect(&what);
            assert_eq!(got.as_bytes(), &pw[..], "{what}");
            if pw.is_empty() {
                continue; // an empty password never reaches full authentication
            }
            // The whole server exchange: fast path miss, key request, PyMySQL's ciphertext.
            for (ct, expect_ok) in [(&right, true), (&wrong, false)] {
                let credential = Credential::native_from_password(pw);
                let mut server = CachingSha2Server::new(salt, credential, false);
                let fast = caching_sha2::scramble(pw, salt);
                assert_eq!(
                    server
                        .handle_response(&fast, Some(&pair), &mut rng)
                        .unwrap(),
                    ServerAction::Continue(PERFORM_FULL_AUTH.to_vec())
                );
                let mut key_packet = vec![AUTH_MORE_DATA];
                key_packet.extend_from_slice(pair.public_key_pem().as_bytes());
                assert_eq!(
                    server
                        .handle_response(&REQUEST_PUBLIC_KEY, Some(&pair), &mut rng)
                        .unwrap(),
                    ServerAction::Continue(key_packet)
                );
                let action = server.handle_response(ct, Some(&pair), &mut rng).unwrap();
                if expect_ok {
                    assert_eq!(
                        action,
                        ServerAction::Accept {
                            before_ok: None,
                            secret: ClientSecret::Plaintext(Password::new(pw.clone())),
                        },
                        "{what}"
                    );
                } else {
                    assert_eq!(action, ServerAction::Deny, "wrong password, {what}");
                }
            }
        }
    }
}

#[test]
fn ferry_client_ciphertext_decrypts_with_python_cryptography() {
    let keys = make_keys();
    for (private, public) in [
        (&keys.pkcs8, &keys.pkcs8_pub_spki),
        (&keys.pkcs1, &keys.pkcs1_pub_rsa),
    ] {
        let pem = read(public);
        let cases: Vec<(Vec<u8>, Vec<u8>)> = passwords()
            .into_iter()
            .flat_map(|pw| salts().into_iter().map(move |s| (pw.clone(), s)))
            .collect();
        let mut rng = SeededRandom::new(77);
        let mut input = String::new();
        for (pw, salt) in &cases {
            // Drive the client: fast path, "perform full auth", key request, key, ciphertext.
            let (mut client, _) =
                CachingSha2Client::start(Password::new(pw.clone()), salt, false, None);
            assert_eq!(
                client
                    .handle_more_data(&PERFORM_FULL_AUTH, &mut rng)
                    .unwrap(),
                ClientAction::Send(REQUEST_PUBLIC_KEY.to_vec())
            );
            let mut key_packet = vec![AUTH_MORE_DATA];
            key_packet.extend_from_slice(&pem);
            let ClientAction::Send(ct) = client.handle_more_data(&key_packet, &mut rng).unwrap()
            else {
                panic!("client sends the ciphertext")
            };
            assert!(client.awaits_result());
            assert_eq!(ct.len(), 256);
            input.push_str(&format!("{}:{}\n", hex(&ct), hex(salt)));
        }
        let lines = python(PY_DECRYPT, &[private], &input);
        assert_eq!(lines.len(), cases.len());
        for ((pw, salt), line) in cases.iter().zip(&lines) {
            let mut expected = pw.clone();
            expected.push(0);
            assert_eq!(
                unhex(line),
                expected,
                "password {:?} salt {}",
                String::from_utf8_lossy(pw),
                hex(salt)
            );
        }
    }
}
