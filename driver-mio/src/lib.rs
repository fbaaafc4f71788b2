//! ferry-mio: the `ferry` proxy binary on mio event loops. It holds only I/O: the event loops
//! and their sockets ([`proxy`]), the admin endpoint's sockets ([`admin`]), and what the program
//! does before serving: command line, logging, open-file limit, signals ([`startup`]); reading
//! the process's CPU, memory and descriptors for `/metrics` ([`process_stats`]). Every
//! decision is the core's control plane ([`ferry_core::control`]).
#![forbid(unsafe_code)]

pub mod admin;
pub mod process_stats;
pub mod proxy;
pub mod startup;
