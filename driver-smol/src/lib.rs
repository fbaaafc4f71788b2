//! ferry on smol, for embedding. The driver lands with the smol-driver issue; this crate exposes
//! nothing yet, so that no caller mistakes a placeholder for a working proxy.
