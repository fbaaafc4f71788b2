//! ferry-mio: the `ferry` proxy binary: configuration ([`config`]), command line ([`cli`]), the
//! admin HTTP endpoint with metrics ([`admin`]), and the mio event loops ([`proxy`]).
//!
//! [`config`] and [`admin`] hold no mio types, so other drivers (ferry-smol) reuse them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod proxy;
