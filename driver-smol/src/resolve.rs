//! Backend connects by address or host name: a name is looked up at each connect (smol's
//! `resolve`: the system resolver on the blocking pool, no cache of ours), its addresses are
//! tried in order. What a failed lookup means is the core's ([`BackendAddr::resolved`]); the
//! caller bounds the time (a session's connect deadline drops the future, a probe races its
//! deadline).

use std::io;
use std::net::SocketAddr;

use ferry_core::control::config::BackendAddr;
use smol::net::TcpStream;

/// `addr`'s addresses, in order (an IP address: itself, without a lookup).
pub(crate) async fn resolve(addr: &BackendAddr) -> io::Result<Vec<SocketAddr>> {
    match addr.name() {
        None => addr.resolved(Ok(Vec::new())),
        Some(host) => addr.resolved(smol::net::resolve((host, addr.port())).await),
    }
}

/// Connects to the first of `addrs` that accepts; the last error if none does.
pub(crate) async fn connect_any(addrs: Vec<SocketAddr>) -> io::Result<TcpStream> {
    let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Resolves `addr` and connects to it (an IP address: straight away, as before names).
pub(crate) async fn connect(addr: BackendAddr) -> io::Result<TcpStream> {
    match addr.ip() {
        Some(ip) => TcpStream::connect(ip).await,
        None => connect_any(resolve(&addr).await?).await,
    }
}
