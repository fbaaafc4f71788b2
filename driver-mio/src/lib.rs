//! ferry-mio: the `ferry` proxy binary's pieces that are not the event loop: configuration
//! ([`config`]), command line ([`cli`]) and the admin HTTP endpoint with metrics ([`admin`]).
//!
//! [`config`] and [`admin`] hold no mio types, so other drivers (ferry-smol) reuse them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
