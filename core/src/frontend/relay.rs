//! Hooks for an owner that relays another server's responses (the proxy session): packets handed
//! over as `Bytes` without copying, client packets read during a command (LOCAL INFILE data, auth
//! data of a COM_CHANGE_USER), a passthrough auth packet the client does not answer, and an ERR
//! that ends the connection at any point.

use std::time::Instant;

use bytes::Bytes;

use crate::wire::{frames, Command};
use crate::ProtocolError;

use super::{CloseReason, Frontend, FrontendError, Phase};

/// Payloads from this size on are queued by reference rather than copied: below it, copying into
/// the contiguous output buffer is cheaper than the extra write a separate chunk costs the driver.
pub const ZERO_COPY_THRESHOLD: usize = 16 * 1024;

impl Frontend {
    /// Like [`send_packet`](Self::send_packet), but takes the payload by value: without TLS a
    /// payload of [`ZERO_COPY_THRESHOLD`] bytes or more (e.g. a relayed row) is handed to
    /// [`poll_transmit`](Self::poll_transmit) as is, framed by separate header chunks, never
    /// copied. Smaller payloads, and everything under TLS, are encoded like `send_packet`.
    pub fn send_packet_bytes(&mut self, now: Instant, payload: Bytes) -> Result<(), FrontendError> {
        if self.tls.is_some() || payload.len() < ZERO_COPY_THRESHOLD {
            return self.send_packet(now, &payload);
        }
        self.expect_phase("send_packet_bytes", |p| matches!(p, Phase::Busy { .. }))?;
        if let Phase::Busy { first_packet, code } = &mut self.phase {
            // A prepare-OK is never this large; only the flag needs updating.
            debug_assert!(*code != Command::COM_STMT_PREPARE || !*first_packet);
            *first_packet = false;
        }
        // Everything encoded so far goes out before this payload.
        self.flush();
        if !self.wire.is_empty() {
            self.queued.push_back(self.wire.split().freeze());
        }
        let mut seq = self.decoder.sequence();
        for (header, chunk) in frames(payload, &mut seq) {
            self.queued.push_back(Bytes::copy_from_slice(&header));
            if !chunk.is_empty() {
                self.queued.push_back(chunk);
            }
        }
        self.decoder.set_sequence(seq);
        Ok(())
    }

    /// While a command is outstanding, hands the client's next packet out as
    /// [`Event::CommandPacket`](super::Event::CommandPacket) (one packet per call): LOCAL INFILE
    /// contents after a `0xFB` request was sent, or the client's answer to an auth packet relayed
    /// during COM_CHANGE_USER. The packet continues the command's sequence ids.
    pub fn read_command_packet(&mut self, _now: Instant) -> Result<(), FrontendError> {
        self.expect_phase("read_command_packet", |p| matches!(p, Phase::Busy { .. }))?;
        self.read_command_packet = true;
        self.process();
        self.flush();
        Ok(())
    }

    /// `passthrough` mode: relays a server auth packet that the client does not answer
    /// (`caching_sha2_password`'s fast-auth success `01 03`, which precedes the OK); the frontend
    /// keeps waiting for the owner's next call.
    pub fn send_auth_notice(&mut self, _now: Instant, payload: &[u8]) -> Result<(), FrontendError> {
        self.expect_phase("send_auth_notice", |p| matches!(p, Phase::PassthroughOwner))?;
        self.decoder.encode_packet(&mut self.plain, payload);
        self.flush();
        Ok(())
    }

    /// Sends `err` with the current sequence id (mid-response, or unsolicited while idle, e.g.
    /// MySQL's 4031 on an idle timeout) and closes with [`CloseReason::Error`]. A no-op once closed.
    pub fn close_with_error(&mut self, _now: Instant, err: ProtocolError) {
        if !self.is_closed() {
            self.close_with(CloseReason::Error(err.clone()), Some(err));
        }
    }
}
