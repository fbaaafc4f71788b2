//! The authentication plugins with RSA (slow: milliseconds per input under ASan): everything
//! `auth` checks, plus RSA decryption of arbitrary ciphertext, encrypt/decrypt round trips, the
//! caching_sha2 client fed the real public key and full authentication over RSA. See
//! `auth_common.rs`.
#![no_main]

#[path = "auth_common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|input: common::Input| common::run(input, true));
