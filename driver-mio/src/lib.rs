//! ferry-mio: the `ferry` proxy binary: configuration ([`config`]), command line ([`cli`]), the
//! admin HTTP endpoint with metrics ([`admin`]), the mio event loops ([`proxy`]), and what the
//! proxy programs do before serving ([`startup`]).
//!
//! [`config`], [`admin`], [`startup`] and some modules of [`proxy`] (`registry`, `health`,
//! `rebalance`, `stats`) hold no mio types, so other drivers (ferry-smol) reuse them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod proxy;
pub mod startup;
