//! ferry-core: the sans-IO heart of the ferry MySQL-protocol proxy.
//!
//! It consumes bytes and time and emits bytes, events and deadlines; it never touches a socket, a
//! thread, the clock or the OS random source. Layers, bottom to top:
//!
//! - [`wire`]: framing (4-byte headers, 16 MiB continuation, sequence ids, size cap) and typed
//!   messages parsed and encoded under the negotiated capability flags;
//! - [`auth`]: the authentication plugins, both sides of each;
//! - [`balance`]: the balancing policy (backend choice, rebalancing plans);
//! - [`token`]: TiDB-compatible session tokens (sign, validate, certificate rotation);
//! - [`session`]: the proxy session pairing a frontend with its backend;
//! - [`proxy_protocol`]: the PROXY protocol header (v1 and v2) that proxies send before the
//!   relayed bytes, read from trusted clients and sent to backends configured for it;
//! - [`control`]: the control plane, the proxy as a whole (feature `control`, on by default).
//!
//! Errors come from bad input; a panic means a broken invariant, and every `expect` says why it
//! cannot fire.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod balance;
#[cfg(feature = "control")]
pub mod control;
mod error;
pub mod frontend;
mod id_map;
pub mod proxy_protocol;
mod random;
pub mod session;
pub mod tls;
pub mod token;
pub mod wire;

pub use error::{DecodeError, ProtocolError};
pub use id_map::{BuildIdHasher, IdHasher, IdMap};
pub use random::{RandomSource, SeededRandom};
