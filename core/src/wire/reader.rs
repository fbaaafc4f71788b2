//! A checked reader over a packet payload: every read returns a [`DecodeError`] instead of panicking.

use crate::DecodeError;

/// A cursor over a payload. Reads borrow from the underlying slice.
#[derive(Debug, Clone, Copy)]
pub struct ParseBuf<'a> {
    buf: &'a [u8],
}

impl<'a> ParseBuf<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The unread bytes, without consuming them.
    pub fn peek_rest(&self) -> &'a [u8] {
        self.buf
    }
    /// The next byte, without consuming it.
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.first().copied()
    }
    /// Consumes and returns all unread bytes.
    pub fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    /// Consumes `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::UnexpectedEnd { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    /// Consumes a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
    /// `int<1>`
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    /// `int<2>`
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    /// `int<3>`
    pub fn u24(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b: [u8; 3] = self.array(what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }
    /// `int<4>`
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// `int<6>`
    pub fn u48(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b: [u8; 6] = self.array(what)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], 0, 0,
        ]))
    }
    /// `int<8>`
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// `int<lenenc>`. The prefix `0xFB` (NULL in rows) and `0xFF` are not integers and are refused.
    pub fn lenenc_int(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        match self.u8(what)? {
            b @ 0..=0xFA => Ok(u64::from(b)),
            0xFC => self.u16(what).map(u64::from),
            0xFD => self.u24(what).map(u64::from),
            0xFE => self.u64(what),
            _ => Err(DecodeError::Malformed { what }),
        }
    }
    /// `string<lenenc>`
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.lenenc_int(what)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::UnexpectedEnd { what })?;
        self.take(len, what)
    }
    /// `string<NUL>`: bytes up to a NUL, which is consumed and not returned.
    pub fn nul_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnexpectedEnd { what })?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }
    /// Fails with `Malformed` when bytes are left over.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed { what })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_forms() {
        let mut p = ParseBuf::new(&[
            0xFA, 0xFC, 0x34, 0x12, 0xFD, 1, 2, 3, 0xFE, 1, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(p.lenenc_int("x").unwrap(), 0xFA);
        assert_eq!(p.lenenc_int("x").unwrap(), 0x1234);
        assert_eq!(p.lenenc_int("x").unwrap(), 0x030201);
        assert_eq!(p.lenenc_int("x").unwrap(), 1);
        assert!(p.is_empty());
        assert!(ParseBuf::new(&[0xFB]).lenenc_int("x").is_err());
        assert!(ParseBuf::new(&[0xFE, 1]).lenenc_int("x").is_err());
    }

    #[test]
    fn huge_lenenc_string_is_an_error_not_an_allocation() {
        let mut p = ParseBuf::new(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            p.lenenc_bytes("s"),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn nul_string_needs_terminator() {
        let mut p = ParseBuf::new(b"abc\0def");
        assert_eq!(p.nul_bytes("s").unwrap(), b"abc");
        assert!(p.nul_bytes("s").is_err());
    }
}
