//! Error types shared by every layer of the core.

/// Why bytes could not be decoded. Returned by every parser; no input makes a parser panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("unexpected end of input while reading {what}")]
    UnexpectedEnd {
        /// What was being read.
        what: &'static str,
    },
    /// The input is complete but not a valid encoding.
    #[error("malformed {what}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
    },
    /// A packet larger than the configured maximum was announced.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Size announced (so far) by the frames.
        size: usize,
        /// The configured cap.
        max: usize,
    },
    /// A frame arrived with a sequence id other than the one expected.
    #[error("packet sequence id {got}, expected {expected}")]
    OutOfOrder {
        /// The id the frame carried.
        got: u8,
        /// The id the connection expected next.
        expected: u8,
    },
}

/// A protocol-level failure that the connection answers with a MySQL ERR packet.
///
/// Carries what to send: the error code, the five-character SQL state and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERROR {code} ({}): {message}", String::from_utf8_lossy(sql_state))]
pub struct ProtocolError {
    /// MySQL error code (e.g. 1045).
    pub code: u16,
    /// SQL state (e.g. `28000`).
    pub sql_state: [u8; 5],
    /// Human-readable message, as the client will show it.
    pub message: String,
}

impl ProtocolError {
    /// Builds an error from its parts; `sql_state` must be five ASCII characters.
    pub fn new(code: u16, sql_state: &str, message: impl Into<String>) -> Self {
        let mut state = *b"HY000";
        if sql_state.len() == 5 && sql_state.is_ascii() {
            state.copy_from_slice(sql_state.as_bytes());
        }
        Self {
            code,
            sql_state: state,
            message: message.into(),
        }
    }

    /// ER_NET_PACKETS_OUT_OF_ORDER / ER_NET_PACKET_TOO_LARGE / ER_MALFORMED_PACKET for a decode error.
    pub fn from_decode(err: &DecodeError) -> Self {
        match err {
            DecodeError::PacketTooLarge { .. } => Self::new(
                1153,
                "08S01",
                "Got a packet bigger than 'max_allowed_packet' bytes",
            ),
            DecodeError::OutOfOrder { .. } => Self::new(1156, "08S01", "Got packets out of order"),
            _ => Self::new(1835, "HY000", "Malformed communication packet."),
        }
    }
}
