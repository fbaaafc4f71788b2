//! The admin HTTP endpoint's sockets: [`server`] accepts connections and moves bytes; what a
//! request means and what is answered is the core's
//! ([`Endpoint::handle_admin`](ferry_core::control::Endpoint::handle_admin)).

pub mod server;

pub use server::{AdminServer, Handler};
