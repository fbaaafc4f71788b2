//! Client listeners: one per worker on the same address, with `SO_REUSEPORT`, so the kernel
//! spreads new connections over the workers and no worker wakes for another's client.
//!
//! `socket2` sets the option; the standard library cannot. With port 0 the first listener's
//! port is reused for the others, so all workers serve one address.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of pending connections per listener.
const BACKLOG: i32 = 1024;

/// Binds `count` non-blocking listeners on `addr` (port 0: one free port shared by all).
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
) -> io::Result<Vec<mio::net::TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let std_listener: std::net::TcpListener = socket.into();
        if addr.port() == 0 {
            addr = std_listener.local_addr()?;
        }
        out.push(mio::net::TcpListener::from_std(std_listener));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_listeners_share_one_port_and_a_taken_port_without_reuseport_is_refused() {
        let listeners = bind_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        assert_eq!(addrs.len(), 3);
        assert!(addrs.iter().all(|a| *a == addrs[0] && a.port() != 0));
        // A plain listener (no SO_REUSEPORT) cannot join them.
        assert!(std::net::TcpListener::bind(addrs[0]).is_err());
        // A client connects (the kernel hands it to one of them).
        assert!(std::net::TcpStream::connect(addrs[0]).is_ok());
    }
}
