//! What a MariaDB backend sends, as bytes, for the control-plane fuzz targets (`endpoint`,
//! `proxy_header`) that play the backend of a connection.

// Each target uses what it needs of these.
#![allow(dead_code)]

use bytes::BytesMut;
use ferry_core::frontend::default_capabilities;
use ferry_core::wire::{encode_packet, HandshakeV10, ServerStatus};

/// `payload` as one packet with sequence id 0.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_packet(&mut out, &mut 0, payload);
    out.to_vec()
}

/// A MariaDB 10.11 greeting offering `mysql_native_password`.
pub fn greeting() -> Vec<u8> {
    let g = HandshakeV10::new(
        b"10.11.0-MariaDB",
        7,
        &[b'a'; 20],
        default_capabilities(),
        45,
        ServerStatus::AUTOCOMMIT,
        b"mysql_native_password",
    );
    let mut payload = Vec::new();
    g.encode(&mut payload);
    frame(&payload)
}
