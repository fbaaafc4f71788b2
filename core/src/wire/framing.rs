//! Packet framing: the 4-byte header, 16 MiB continuation frames, sequence ids and the size cap.
//!
//! Every MySQL packet travels as one or more *frames*: a header of a 3-byte little-endian payload
//! length and a 1-byte sequence id, then the payload. A payload of exactly `0xFFFFFF` bytes says
//! "the packet continues in the next frame", so a packet whose length is a non-zero multiple of
//! `0xFFFFFF` ends with an empty frame.
//! See `PAGE_PROTOCOL_BASIC_PACKETS` in the MySQL protocol documentation.
//!
//! The sequence id is one counter per connection shared by both directions: the client sends the
//! command with id 0, the server answers with 1, 2, ..., and the counter restarts at 0 for the next
//! command. [`PacketDecoder`] owns that counter: it checks every frame it decodes against it and
//! hands out the next id when asked to encode.
//!
//! Relayed packets are never copied: a single-frame packet is a `split_to(..).freeze()` slice of
//! the buffer the driver read into, and [`put_header`] / [`frames`] let a proxy give a payload a
//! new sequence id without touching its bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::DecodeError;

/// Size of a frame header: `int<3>` payload length and `int<1>` sequence id.
pub const HEADER_LEN: usize = 4;

/// Largest payload one frame carries; a frame this long is continued by the next one.
pub const MAX_FRAME_PAYLOAD: usize = 0xFF_FFFF;

/// Default cap on a packet's payload: 64 MiB, MySQL 8's default `max_allowed_packet`.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 64 << 20;

/// Largest buffer a connection keeps once it is drained. A bigger one (after a large result or
/// command) is released, so that an idle session holds a few KiB rather than its high-water mark;
/// smaller ones are kept and reused, so that a steady command/response flow allocates nothing.
pub const RETAINED_BUFFER: usize = 16 * 1024;

/// One complete packet: its payload with any continuation frames joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of the packet's first frame.
    pub seq: u8,
    /// The payload. For a single-frame packet this shares memory with the input buffer.
    pub payload: Bytes,
}

/// Incremental packet decoder for one connection, and that connection's sequence counter.
///
/// Feed it bytes as they arrive ([`feed`](Self::feed), or read straight into
/// [`buffer_mut`](Self::buffer_mut)), then call [`next_packet`](Self::next_packet) until it returns
/// `Ok(None)`. The first error is kept: every later call returns it again, since the byte stream
/// can no longer be trusted.
///
/// Memory: the decoder only ever holds what the caller gave it. It never reserves room for a
/// length a peer announced; an announcement over the cap fails as soon as its header is read.
#[derive(Debug)]
pub struct PacketDecoder {
    buf: BytesMut,
    max_packet_size: usize,
    /// `MAX_FRAME_PAYLOAD` except in tests, which shrink it to exercise continuation cheaply.
    frame_limit: usize,
    check_sequence: bool,
    /// Sequence id expected on the next frame read, or written on the next frame sent.
    seq: u8,
    error: Option<DecodeError>,
    /// Size of the input buffer's allocation, as far as seen since it was last released.
    buf_high: usize,
}

impl Default for PacketDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PACKET_SIZE)
    }
}

/// Why `locate` stopped, and where the sequence counter stands after it.
struct Refused {
    err: DecodeError,
    /// An out-of-order frame was not accepted (the counter stays); an oversized one was read.
    next_seq: u8,
}

/// Where a complete packet lies at the front of the buffer, found by walking its frame headers.
struct Located {
    /// Number of frames.
    frames: usize,
    /// Total payload length.
    len: usize,
    /// Sequence id the counter moves to once the packet is consumed.
    next_seq: u8,
}

impl PacketDecoder {
    /// A decoder refusing packets whose payload exceeds `max_packet_size` bytes, with sequence
    /// checking on and the counter at 0.
    pub fn new(max_packet_size: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_packet_size,
            frame_limit: MAX_FRAME_PAYLOAD,
            check_sequence: true,
            seq: 0,
            error: None,
            buf_high: 0,
        }
    }

    /// A decoder with a smaller frame size, so tests cover continuation without 16 MiB buffers.
    #[cfg(test)]
    pub(crate) fn with_frame_limit(max_packet_size: usize, frame_limit: usize) -> Self {
        Self {
            frame_limit,
            ..Self::new(max_packet_size)
        }
    }

    /// The cap on a packet's payload length.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Changes the cap (e.g. once `max_allowed_packet` is known). Applies to the next header read.
    pub fn set_max_packet_size(&mut self, max: usize) {
        self.max_packet_size = max;
    }

    /// Whether frames with an unexpected sequence id are refused (the default).
    pub fn checks_sequence(&self) -> bool {
        self.check_sequence
    }

    /// Turns the sequence check on or off. With it off (for relaying a peer whose ids are not
    /// ours to judge) the counter follows the ids received instead.
    pub fn set_check_sequence(&mut self, check: bool) {
        self.check_sequence = check;
    }

    /// The sequence id expected on the next frame received or written on the next frame sent.
    pub fn sequence(&self) -> u8 {
        self.seq
    }

    /// Sets the sequence counter, e.g. to continue an exchange a relayed packet started.
    pub fn set_sequence(&mut self, seq: u8) {
        self.seq = seq;
    }

    /// Restarts the sequence counter at 0; call at the start of each command.
    pub fn reset_sequence(&mut self) {
        self.seq = 0;
    }

    /// Appends received bytes to the buffer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The input buffer, so a driver can read from its socket straight into it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Number of bytes received and not yet returned as packets.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Takes the bytes received but not yet decoded, e.g. to hand them to TLS after an SSLRequest.
    pub fn take_buffered(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }

    /// Lets go of the input buffer's memory if nothing is buffered (an idle connection): the
    /// next bytes fed allocate again.
    pub fn release_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.buf_high = 0;
        }
    }

    /// The input buffer's capacity (tests of what an idle connection keeps).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The error this decoder stopped on, if any.
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }

    /// The next complete packet, `Ok(None)` if more bytes are needed, or the (sticky) error.
    ///
    /// Sequence ids and the size cap are checked on every header as soon as it is buffered, so an
    /// oversized or out-of-order packet fails before its payload arrives.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        // `len + capacity` of the unread view is at most its allocation: seen here, right after
        // new bytes arrived (by `feed` or through `buffer_mut`), it is the allocation's size.
        self.buf_high = self.buf_high.max(self.buf.len() + self.buf.capacity());
        let located = match self.locate() {
            Ok(Some(located)) => located,
            Ok(None) => {
                if self.buf.is_empty() && self.buf_high > RETAINED_BUFFER {
                    // Drained after a burst: the memory goes once the packets handed out go.
                    self.buf = BytesMut::new();
                    self.buf_high = 0;
                }
                return Ok(None);
            }
            Err(Refused { err, next_seq }) => {
                self.seq = next_seq;
                self.error = Some(err.clone());
                return Err(err);
            }
        };
        let seq = self.buf[3];
        let payload = if located.frames == 1 {
            // Split with its header, which the frozen view then skips: advancing `Bytes` is two
            // field updates, advancing `BytesMut` is not.
            let mut frame = self.buf.split_to(HEADER_LEN + located.len).freeze();
            frame.advance(HEADER_LEN);
            frame
        } else {
            // The whole packet is buffered already, so this allocation is bounded by bytes received.
            let mut joined = BytesMut::with_capacity(located.len);
            for _ in 0..located.frames {
                let len = frame_len(&self.buf);
                self.buf.advance(HEADER_LEN);
                joined.extend_from_slice(&self.buf[..len]);
                self.buf.advance(len);
            }
            joined.freeze()
        };
        self.seq = located.next_seq;
        Ok(Some(Packet { seq, payload }))
    }

    /// Walks the frame headers at the front of the buffer without consuming anything.
    ///
    /// Headers are re-read on each call until the packet is complete; that is at most
    /// `max_packet_size / 16 MiB` headers per call, far cheaper than keeping partial state.
    fn locate(&self) -> Result<Option<Located>, Refused> {
        let mut offset = 0;
        let mut total = 0usize;
        let mut expected = self.seq;
        let mut frames = 0;
        loop {
            let rest = &self.buf[offset..];
            if rest.len() < HEADER_LEN {
                return Ok(None);
            }
            let len = frame_len(rest);
            let got = rest[3];
            if self.check_sequence && got != expected {
                return Err(Refused {
                    err: DecodeError::OutOfOrder { got, expected },
                    next_seq: self.seq,
                });
            }
            expected = got.wrapping_add(1);
            total = total.saturating_add(len);
            if total > self.max_packet_size {
                // This frame's header counts as read: an answer (ERR 1153) takes the id after
                // it, as the server's does.
                return Err(Refused {
                    err: DecodeError::PacketTooLarge {
                        size: total,
                        max: self.max_packet_size,
                    },
                    next_seq: expected,
                });
            }
            frames += 1;
            if rest.len() - HEADER_LEN < len {
                return Ok(None);
            }
            offset += HEADER_LEN + len;
            if len < self.frame_limit {
                return Ok(Some(Located {
                    frames,
                    len: total,
                    next_seq: expected,
                }));
            }
        }
    }

    /// Encodes `payload` as one packet with this connection's next sequence id(s).
    pub fn encode_packet(&mut self, out: &mut BytesMut, payload: &[u8]) {
        encode_with_limit(out, &mut self.seq, payload, self.frame_limit);
    }
}

/// Payload length announced by the header at the front of `buf` (which holds at least a header).
fn frame_len(buf: &[u8]) -> usize {
    usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16
}

/// Writes one frame header. `len` must be at most [`MAX_FRAME_PAYLOAD`]; higher bits are dropped.
///
/// For a payload that fits one frame (shorter than `MAX_FRAME_PAYLOAD`), a proxy writes this header
/// and then sends the payload `Bytes` as is; longer payloads need [`frames`].
pub fn put_header(out: &mut impl BufMut, len: usize, seq: u8) {
    debug_assert!(len <= MAX_FRAME_PAYLOAD, "frame length {len} over 0xFFFFFF");
    out.put_uint_le((len & MAX_FRAME_PAYLOAD) as u64, 3);
    out.put_u8(seq);
}

/// Encodes `payload` as one packet, splitting it into frames at `0xFFFFFF` bytes. `seq` is the id
/// of the first frame and is left at the id after the last one.
pub fn encode_packet(out: &mut BytesMut, seq: &mut u8, payload: &[u8]) {
    encode_with_limit(out, seq, payload, MAX_FRAME_PAYLOAD);
}

fn encode_with_limit(out: &mut BytesMut, seq: &mut u8, payload: &[u8], limit: usize) {
    if payload.len() < limit {
        // One frame (nearly every packet): two plain appends.
        let l = payload.len().to_le_bytes();
        out.reserve(HEADER_LEN + payload.len());
        out.extend_from_slice(&[l[0], l[1], l[2], *seq]);
        out.extend_from_slice(payload);
        *seq = seq.wrapping_add(1);
        return;
    }
    let frame_count = payload.len() / limit + 1;
    out.reserve(payload.len() + frame_count * HEADER_LEN);
    let mut rest = payload;
    loop {
        let len = rest.len().min(limit);
        out.put_uint_le(len as u64, 3);
        out.put_u8(*seq);
        *seq = seq.wrapping_add(1);
        out.put_slice(&rest[..len]);
        rest = &rest[len..];
        // A full frame always needs a successor, even an empty one.
        if len < limit {
            break;
        }
    }
}

/// The frames of `payload` as (header, payload slice) pairs, for zero-copy vectored writes.
///
/// `seq` is the id of the first frame and is advanced past the last one as the iterator runs.
pub fn frames(payload: Bytes, seq: &mut u8) -> Frames<'_> {
    Frames {
        rest: Some(payload),
        seq,
        limit: MAX_FRAME_PAYLOAD,
    }
}

#[cfg(test)]
pub(crate) fn frames_with_limit(payload: Bytes, seq: &mut u8, limit: usize) -> Frames<'_> {
    Frames {
        rest: Some(payload),
        seq,
        limit,
    }
}

#[cfg(test)]
pub(crate) fn encode_packet_with_limit(
    out: &mut BytesMut,
    seq: &mut u8,
    payload: &[u8],
    limit: usize,
) {
    encode_with_limit(out, seq, payload, limit);
}

/// Iterator returned by [`frames`].
#[derive(Debug)]
pub struct Frames<'s> {
    rest: Option<Bytes>,
    seq: &'s mut u8,
    limit: usize,
}

impl Iterator for Frames<'_> {
    type Item = ([u8; HEADER_LEN], Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        let mut rest = self.rest.take()?;
        let len = rest.len().min(self.limit);
        let chunk = rest.split_to(len);
        let l = len.to_le_bytes();
        let header = [l[0], l[1], l[2], *self.seq];
        *self.seq = self.seq.wrapping_add(1);
        if len == self.limit {
            self.rest = Some(rest);
        }
        Some((header, chunk))
    }
}

#[cfg(test)]
mod tests;
