//! Encoding helpers for the variable-length wire types.

use bytes::BufMut;

/// Bytes needed to encode `n` as `int<lenenc>`.
pub fn lenenc_int_len(n: u64) -> usize {
    match n {
        0..=0xFA => 1,
        0xFB..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 9,
    }
}

/// Writes `n` as `int<lenenc>`.
pub fn put_lenenc_int(out: &mut impl BufMut, n: u64) {
    match n {
        0..=0xFA => out.put_u8(n as u8),
        0xFB..=0xFFFF => {
            out.put_u8(0xFC);
            out.put_u16_le(n as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(0xFD);
            out.put_uint_le(n, 3);
        }
        _ => {
            out.put_u8(0xFE);
            out.put_u64_le(n);
        }
    }
}

/// Writes `string<lenenc>`.
pub fn put_lenenc_bytes(out: &mut impl BufMut, bytes: &[u8]) {
    put_lenenc_int(out, bytes.len() as u64);
    out.put_slice(bytes);
}

/// Writes `string<NUL>`.
pub fn put_nul_str(out: &mut impl BufMut, bytes: &[u8]) {
    out.put_slice(bytes);
    out.put_u8(0);
}
