//! Connection-phase messages: the server's greeting, the client's answer and the auth exchange.
//!
//! Follows `page_protocol_connection_phase_packets` of the MySQL protocol documentation, with
//! MariaDB's extended capabilities (kept in bytes the MySQL format reserves).
//!
//! **Ownership:** parsed messages borrow from the payload (`&'a [u8]` fields), so parsing never
//! copies; the same borrowed types are filled in to encode. Encoders append to any `BufMut`
//! (normally the `BytesMut` the framing layer then wraps, see [`super::encode_packet`]).
//!
//! The client's reply to an [`AuthSwitchRequest`] (the *AuthSwitchResponse*) and its later auth
//! packets are plain plugin data with no header: the whole payload is the plugin's bytes, so they
//! have no type here.

use bytes::BufMut;

use super::{put_lenenc_bytes, put_nul_str, Capabilities, ParseBuf, ServerStatus};
use crate::DecodeError;

/// Length of the scramble (auth plugin data) MySQL and MariaDB servers send.
pub const SCRAMBLE_LEN: usize = 20;

/// The server's initial handshake packet, protocol version 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeV10<'a> {
    /// Protocol version byte; always 10 for servers ferry talks to.
    pub protocol_version: u8,
    /// Server version string (MariaDB prefixes it with `5.5.5-` for old clients).
    pub server_version: &'a [u8],
    /// Connection (thread) id.
    pub connection_id: u32,
    /// First 8 bytes of the auth plugin data (scramble).
    pub scramble_1: [u8; 8],
    /// Rest of the auth plugin data, **without** the NUL that terminates it on the wire.
    ///
    /// Empty without `CLIENT_SECURE_CONNECTION`. On the wire it is padded with NULs to
    /// `max(13, auth_plugin_data_len - 8)` bytes, so it must not itself end in NUL.
    pub scramble_2: &'a [u8],
    /// Server capabilities: the lower and upper 16 bits joined.
    pub capabilities: Capabilities,
    /// Server default collation id (low byte).
    pub collation: u8,
    /// Server status flags.
    pub status: ServerStatus,
    /// The `auth_plugin_data_len` byte as sent (0 without `CLIENT_PLUGIN_AUTH`).
    pub auth_plugin_data_len: u8,
    /// MariaDB extended capabilities (`MARIADB_CLIENT_*`), in the last 4 reserved bytes. Only
    /// meaningful when `CLIENT_LONG_PASSWORD` (MariaDB's `CLIENT_MYSQL`) is clear; 0 from MySQL.
    pub mariadb_capabilities: u32,
    /// Default auth plugin name; empty without `CLIENT_PLUGIN_AUTH`.
    pub auth_plugin_name: &'a [u8],
}

impl<'a> HandshakeV10<'a> {
    /// A greeting carrying a 20-byte `scramble`, as a server (or ferry's frontend) sends it.
    pub fn new(
        server_version: &'a [u8],
        connection_id: u32,
        scramble: &'a [u8; SCRAMBLE_LEN],
        capabilities: Capabilities,
        collation: u8,
        status: ServerStatus,
        auth_plugin_name: &'a [u8],
    ) -> Self {
        let mut scramble_1 = [0; 8];
        scramble_1.copy_from_slice(&scramble[..8]);
        let plugin_auth = capabilities.contains(Capabilities::PLUGIN_AUTH);
        Self {
            protocol_version: 10,
            server_version,
            connection_id,
            scramble_1,
            scramble_2: &scramble[8..],
            capabilities,
            collation,
            status,
            // 20 bytes of scramble plus the terminating NUL, as MySQL and MariaDB send.
            auth_plugin_data_len: if plugin_auth {
                SCRAMBLE_LEN as u8 + 1
            } else {
                0
            },
            mariadb_capabilities: 0,
            auth_plugin_name: if plugin_auth { auth_plugin_name } else { b"" },
        }
    }

    /// The full scramble: both parts joined (20 bytes from real servers).
    pub fn scramble(&self) -> Vec<u8> {
        let mut s = Vec::with_capacity(8 + self.scramble_2.len());
        s.extend_from_slice(&self.scramble_1);
        s.extend_from_slice(self.scramble_2);
        s
    }

    /// Parses a greeting. Servers older than 4.1 (no capability upper half, no scramble part 2
    /// length) are refused as truncated. An auth plugin name missing its NUL (an old MySQL bug)
    /// is accepted.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut p = ParseBuf::new(payload);
        let protocol_version = p.u8("handshake protocol version")?;
        if protocol_version != 10 {
            return Err(DecodeError::Malformed {
                what: "handshake protocol version (only 10 is supported)",
            });
        }
        let server_version = p.nul_bytes("handshake server version")?;
        let connection_id = p.u32("handshake connection id")?;
        let scramble_1 = p.array("handshake auth plugin data part 1")?;
        p.u8("handshake filler")?;
        let lower = p.u16("handshake capability flags")?;
        let collation = p.u8("handshake collation")?;
        let status = ServerStatus(p.u16("handshake status flags")?);
        let upper = p.u16("handshake capability flags")?;
        let capabilities = Capabilities(u32::from(lower) | u32::from(upper) << 16);
        let auth_plugin_data_len = p.u8("handshake auth plugin data length")?;
        p.take(6, "handshake reserved bytes")?;
        let mariadb_capabilities = p.u32("handshake MariaDB capabilities")?;
        let scramble_2 = if capabilities.contains(Capabilities::SECURE_CONNECTION) {
            let len = usize::from(auth_plugin_data_len).saturating_sub(8).max(13);
            let raw = p.take(len, "handshake auth plugin data part 2")?;
            trim_trailing_nuls(raw)
        } else {
            &[]
        };
        let auth_plugin_name = if capabilities.contains(Capabilities::PLUGIN_AUTH) {
            nul_or_rest(&mut p)
        } else {
            &[]
        };
        Ok(Self {
            protocol_version,
            server_version,
            connection_id,
            scramble_1,
            scramble_2,
            capabilities,
            collation,
            status,
            auth_plugin_data_len,
            mariadb_capabilities,
            auth_plugin_name,
        })
    }

    /// Appends the greeting's payload to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(self.protocol_version);
        put_nul_str(out, self.server_version);
        out.put_u32_le(self.connection_id);
        out.put_slice(&self.scramble_1);
        out.put_u8(0);
        out.put_u16_le(self.capabilities.0 as u16);
        out.put_u8(self.collation);
        out.put_u16_le(self.status.0);
        out.put_u16_le((self.capabilities.0 >> 16) as u16);
        out.put_u8(self.auth_plugin_data_len);
        out.put_bytes(0, 6);
        out.put_u32_le(self.mariadb_capabilities);
        if self.capabilities.contains(Capabilities::SECURE_CONNECTION) {
            let len = usize::from(self.auth_plugin_data_len)
                .saturating_sub(8)
                .max(13);
            out.put_slice(self.scramble_2);
            // Padded to exactly the announced length, which a parser trusts: a part 2 that fills
            // it (as `parse` may return) gets no extra NUL, or the plugin name would shift.
            out.put_bytes(0, len.saturating_sub(self.scramble_2.len()));
        }
        if self.capabilities.contains(Capabilities::PLUGIN_AUTH) {
            put_nul_str(out, self.auth_plugin_name);
        }
    }
}

/// The client's request to switch to TLS, sent instead of a [`HandshakeResponse41`].
///
/// Only the `CLIENT_PROTOCOL_41` form (32 bytes) is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslRequest {
    /// Client capabilities (include `CLIENT_SSL`).
    pub capabilities: Capabilities,
    /// Largest packet the client will send.
    pub max_packet_size: u32,
    /// Client collation id.
    pub collation: u8,
    /// MariaDB extended client capabilities (last 4 filler bytes).
    pub mariadb_capabilities: u32,
}

/// Length of an [`SslRequest`] payload.
pub const SSL_REQUEST_LEN: usize = 32;

impl SslRequest {
    /// Parses an SSLRequest payload.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut p = ParseBuf::new(payload);
        let (capabilities, max_packet_size, collation, mariadb_capabilities) = fixed_part(&mut p)?;
        p.finish("SSLRequest")?;
        Ok(Self {
            capabilities,
            max_packet_size,
            collation,
            mariadb_capabilities,
        })
    }

    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        put_fixed_part(
            out,
            self.capabilities,
            self.max_packet_size,
            self.collation,
            self.mariadb_capabilities,
        );
    }
}

/// The client's answer to the greeting (`Protocol::HandshakeResponse41`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse41<'a> {
    /// Client capabilities; they select the optional fields below.
    pub capabilities: Capabilities,
    /// Largest packet the client will send.
    pub max_packet_size: u32,
    /// Client collation id.
    pub collation: u8,
    /// MariaDB extended client capabilities (last 4 filler bytes).
    pub mariadb_capabilities: u32,
    /// User name.
    pub username: &'a [u8],
    /// Auth plugin response: lenenc under `CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA`, else
    /// 1-byte length under `CLIENT_SECURE_CONNECTION` (so at most 255 bytes), else NUL-terminated.
    pub auth_response: &'a [u8],
    /// Initial database; `Some` exactly when `CLIENT_CONNECT_WITH_DB` is set and it was sent.
    pub database: Option<&'a [u8]>,
    /// Auth plugin the response is for; `Some` under `CLIENT_PLUGIN_AUTH` when sent.
    pub auth_plugin_name: Option<&'a [u8]>,
    /// Connection attributes in the order sent (`CLIENT_CONNECT_ATTRS`).
    pub connect_attrs: Vec<(&'a [u8], &'a [u8])>,
    /// zstd compression level; `Some` under `CLIENT_ZSTD_COMPRESSION_ALGORITHM`.
    pub zstd_compression_level: Option<u8>,
}

/// Whatever a client sends first after the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello<'a> {
    /// A request to upgrade to TLS; the real response follows over TLS.
    SslRequest(SslRequest),
    /// The handshake response.
    Response(HandshakeResponse41<'a>),
    /// A pre-4.1 client (`CLIENT_PROTOCOL_41` clear). ferry refuses these; the capabilities are
    /// kept so the refusal can say why.
    Pre41 {
        /// The client's (16-bit) capabilities.
        capabilities: Capabilities,
    },
}

impl<'a> ClientHello<'a> {
    /// Classifies and parses the client's first packet.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let lower = ParseBuf::new(payload).u16("client capability flags")?;
        let caps = Capabilities(u32::from(lower));
        if !caps.contains(Capabilities::PROTOCOL_41) {
            return Ok(Self::Pre41 { capabilities: caps });
        }
        if payload.len() == SSL_REQUEST_LEN && caps.contains(Capabilities::SSL) {
            return SslRequest::parse(payload).map(Self::SslRequest);
        }
        HandshakeResponse41::parse(payload).map(Self::Response)
    }
}

impl<'a> HandshakeResponse41<'a> {
    /// Parses a handshake response. A client without `CLIENT_PROTOCOL_41` gets
    /// `Malformed { what: PRE_41_CLIENT }`; use [`ClientHello::parse`] to tell it apart cleanly.
    ///
    /// Optional trailing fields the client's flags announce but the packet lacks are taken as
    /// absent, as the servers do; bytes after the last field are ignored.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        // A pre-4.1 packet is shorter than the 4.1 fixed part: check the flag before reading it.
        let lower = ParseBuf::new(payload).u16("client capability flags")?;
        if !Capabilities(u32::from(lower)).contains(Capabilities::PROTOCOL_41) {
            return Err(DecodeError::Malformed {
                what: PRE_41_CLIENT,
            });
        }
        let mut p = ParseBuf::new(payload);
        let (capabilities, max_packet_size, collation, mariadb_capabilities) = fixed_part(&mut p)?;
        let username = p.nul_bytes("handshake response user name")?;
        let auth_response = if capabilities.contains(Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            p.lenenc_bytes("handshake response auth data")?
        } else if capabilities.contains(Capabilities::SECURE_CONNECTION) {
            let len = p.u8("handshake response auth data")?;
            p.take(usize::from(len), "handshake response auth data")?
        } else {
            p.nul_bytes("handshake response auth data")?
        };
        let database = if capabilities.contains(Capabilities::CONNECT_WITH_DB) && !p.is_empty() {
            Some(p.nul_bytes("handshake response database")?)
        } else {
            None
        };
        let auth_plugin_name = if capabilities.contains(Capabilities::PLUGIN_AUTH) && !p.is_empty()
        {
            Some(p.nul_bytes("handshake response auth plugin name")?)
        } else {
            None
        };
        let mut connect_attrs = Vec::new();
        if capabilities.contains(Capabilities::CONNECT_ATTRS) && !p.is_empty() {
            let mut attrs = ParseBuf::new(p.lenenc_bytes("connection attributes")?);
            while !attrs.is_empty() {
                let key = attrs.lenenc_bytes("connection attribute key")?;
                let value = attrs.lenenc_bytes("connection attribute value")?;
                connect_attrs.push((key, value));
            }
        }
        let zstd_compression_level =
            if capabilities.contains(Capabilities::ZSTD_COMPRESSION_ALGORITHM) && !p.is_empty() {
                Some(p.u8("zstd compression level")?)
            } else {
                None
            };
        Ok(Self {
            capabilities,
            max_packet_size,
            collation,
            mariadb_capabilities,
            username,
            auth_response,
            database,
            auth_plugin_name,
            connect_attrs,
            zstd_compression_level,
        })
    }

    /// Appends the payload to `out`. Fields whose capability is clear are not written; an
    /// `auth_response` longer than 255 bytes without `CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA` is
    /// truncated (the caller must negotiate the flag to send more).
    pub fn encode(&self, out: &mut impl BufMut) {
        let caps = self.capabilities;
        put_fixed_part(
            out,
            caps,
            self.max_packet_size,
            self.collation,
            self.mariadb_capabilities,
        );
        put_nul_str(out, self.username);
        if caps.contains(Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            put_lenenc_bytes(out, self.auth_response);
        } else if caps.contains(Capabilities::SECURE_CONNECTION) {
            let data = &self.auth_response[..self.auth_response.len().min(255)];
            out.put_u8(data.len() as u8);
            out.put_slice(data);
        } else {
            put_nul_str(out, self.auth_response);
        }
        if caps.contains(Capabilities::CONNECT_WITH_DB) {
            put_nul_str(out, self.database.unwrap_or_default());
        }
        if caps.contains(Capabilities::PLUGIN_AUTH) {
            put_nul_str(out, self.auth_plugin_name.unwrap_or_default());
        }
        if caps.contains(Capabilities::CONNECT_ATTRS) {
            let mut attrs = Vec::new();
            for (k, v) in &self.connect_attrs {
                put_lenenc_bytes(&mut attrs, k);
                put_lenenc_bytes(&mut attrs, v);
            }
            put_lenenc_bytes(out, &attrs);
        }
        if caps.contains(Capabilities::ZSTD_COMPRESSION_ALGORITHM) {
            out.put_u8(self.zstd_compression_level.unwrap_or(3));
        }
    }
}

/// The `what` of the error [`HandshakeResponse41::parse`] returns for a pre-4.1 client.
pub const PRE_41_CLIENT: &str = "handshake response without CLIENT_PROTOCOL_41";

/// Server asks the client to continue with another auth plugin (header `0xFE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSwitchRequest<'a> {
    /// Plugin to switch to.
    pub plugin_name: &'a [u8],
    /// Plugin data (for the MySQL plugins: a new 20-byte scramble followed by a NUL).
    pub data: &'a [u8],
}

impl<'a> AuthSwitchRequest<'a> {
    /// Header byte.
    pub const HEADER: u8 = 0xFE;

    /// Parses the packet. The bare `0xFE` of the pre-4.1 "old auth switch" (to
    /// `mysql_old_password`) is refused as malformed.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut p = ParseBuf::new(payload);
        if p.u8("auth switch request header")? != Self::HEADER {
            return Err(DecodeError::Malformed {
                what: "auth switch request header",
            });
        }
        if p.is_empty() {
            return Err(DecodeError::Malformed {
                what: "old auth switch request (mysql_old_password is not supported)",
            });
        }
        let plugin_name = p.nul_bytes("auth switch request plugin name")?;
        Ok(Self {
            plugin_name,
            data: p.take_rest(),
        })
    }

    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(Self::HEADER);
        put_nul_str(out, self.plugin_name);
        out.put_slice(self.data);
    }
}

/// Extra auth data from the server within the current plugin (header `0x01`), e.g.
/// `caching_sha2_password`'s fast-auth result or its RSA public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthMoreData<'a> {
    /// The plugin's bytes.
    pub data: &'a [u8],
}

impl<'a> AuthMoreData<'a> {
    /// Header byte.
    pub const HEADER: u8 = 0x01;

    /// Parses the packet.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut p = ParseBuf::new(payload);
        if p.u8("auth more data header")? != Self::HEADER {
            return Err(DecodeError::Malformed {
                what: "auth more data header",
            });
        }
        Ok(Self {
            data: p.take_rest(),
        })
    }

    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(Self::HEADER);
        out.put_slice(self.data);
    }
}

/// The 32 bytes an SSLRequest and a HandshakeResponse41 share.
fn fixed_part(p: &mut ParseBuf<'_>) -> Result<(Capabilities, u32, u8, u32), DecodeError> {
    let capabilities = Capabilities(p.u32("client capability flags")?);
    let max_packet_size = p.u32("client max packet size")?;
    let collation = p.u8("client collation")?;
    p.take(19, "client filler")?;
    let mariadb_capabilities = p.u32("client MariaDB capabilities")?;
    Ok((
        capabilities,
        max_packet_size,
        collation,
        mariadb_capabilities,
    ))
}

fn put_fixed_part(
    out: &mut impl BufMut,
    capabilities: Capabilities,
    max_packet_size: u32,
    collation: u8,
    mariadb_capabilities: u32,
) {
    out.put_u32_le(capabilities.0);
    out.put_u32_le(max_packet_size);
    out.put_u8(collation);
    out.put_bytes(0, 19);
    out.put_u32_le(mariadb_capabilities);
}

fn trim_trailing_nuls(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., 0] = s {
        s = rest;
    }
    s
}

/// A NUL-terminated string, or the rest of the input when the NUL is missing.
fn nul_or_rest<'a>(p: &mut ParseBuf<'a>) -> &'a [u8] {
    match p.nul_bytes("auth plugin name") {
        Ok(name) => name,
        // A failed read consumes nothing.
        Err(_) => p.take_rest(),
    }
}

#[cfg(test)]
mod tests;
