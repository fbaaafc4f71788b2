//! The authentication plugins without RSA (fast): native scramble/verify/recover, the
//! caching_sha2 state machines fed arbitrary packets and talking to each other over TLS or failing
//! for want of a key, cleartext, stored-hash and PEM parsing. See `auth_common.rs`.
#![no_main]

#[path = "auth_common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|input: common::Input| common::run(input, false));
