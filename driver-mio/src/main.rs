//! The `ferry` proxy binary. The mio event loop lands with the proxy issue; until then the binary
//! only says so, rather than pretending to proxy.

fn main() {
    eprintln!(
        "ferry {}: the proxy binary is not built yet (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
