//! The MySQL wire protocol: framing and typed messages.
//!
//! Follows the MySQL client/server protocol documentation (`dev.mysql.com/doc/dev/mysql-server/
//! latest/PAGE_PROTOCOL.html`) and MariaDB's extensions where they share the wire format.
//! Capability flags are the parse context: the same packet reads differently with, say,
//! `CLIENT_DEPRECATE_EOF` or `CLIENT_SESSION_TRACK`.

mod capabilities;
mod command;
mod framing;
mod handshake;
mod reader;
mod response;
mod resultset;
mod value;
mod writer;

pub use capabilities::{Capabilities, ServerStatus};
pub use command::{
    ChangeUser, Command, ExecuteParams, Param, Query, StmtExecute, StmtExecuteHeader,
};
pub use framing::{
    encode_packet, frames, put_header, Frames, Packet, PacketDecoder, DEFAULT_MAX_PACKET_SIZE,
    HEADER_LEN, MAX_FRAME_PAYLOAD, RETAINED_BUFFER,
};
pub use handshake::{
    AuthMoreData, AuthSwitchRequest, ClientHello, HandshakeResponse41, HandshakeV10, SslRequest,
    PRE_41_CLIENT, SCRAMBLE_LEN, SSL_REQUEST_LEN,
};
pub use reader::ParseBuf;
pub use response::{
    EofPacket, ErrPacket, OkPacket, ResponseKind, SessionStateChange, SESSION_TRACK_GTIDS,
    SESSION_TRACK_SCHEMA, SESSION_TRACK_STATE_CHANGE, SESSION_TRACK_SYSTEM_VARIABLES,
    SESSION_TRACK_TRANSACTION_CHARACTERISTICS, SESSION_TRACK_TRANSACTION_STATE,
};
pub use resultset::{
    BinaryRow, ColumnDefinition41, ColumnFlags, LocalInfileRequest, PrepareOk, ResultSetHeader,
    TextRow,
};
pub use value::{ColumnType, DateTime, Time, Value, ValueType};
pub use writer::{lenenc_int_len, put_lenenc_bytes, put_lenenc_int, put_nul_str};
