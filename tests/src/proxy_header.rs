//! A stand-in for a load balancer that speaks the PROXY protocol (HAProxy's `send-proxy`): a TCP
//! relay on a free loopback port that connects to its target *from* a chosen loopback address
//! (127.0.0.2 is not 127.0.0.1 to a proxy deciding whom to trust), writes a PROXY header first,
//! then copies bytes both ways. Any client program can then reach ferry "through a balancer".
//!
//! ```no_run
//! use ferry_tests::{ProxyHeader, ProxyHeaderRelay};
//! # let ferry_addr = "127.0.0.1:6000".parse().unwrap();
//! let relay = ProxyHeaderRelay::start(ferry_addr, "127.0.0.2".parse().unwrap(),
//!     ProxyHeader::V1 { client: "10.1.2.3".parse().unwrap() });
//! // connect a client to relay.addr(): ferry sees 10.1.2.3 (and the relay's port) as the client
//! ```
//!
//! The header is written by hand from the specification, not by ferry's code, so that a test
//! compares ferry with the protocol rather than with itself.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// How long a connect to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the relay writes before the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `PROXY TCP4 client target cport tport\r\n`, with the client's real port.
    V1 {
        /// The address to claim.
        client: Ipv4Addr,
    },
    /// The binary v2 header, command PROXY, TCP over IPv4, with the client's real port.
    V2 {
        /// The address to claim.
        client: Ipv4Addr,
    },
    /// Nothing: a balancer without `send-proxy`.
    None,
}

impl ProxyHeader {
    /// The header's bytes for a client on port `port` relayed to `target`.
    pub fn bytes(self, port: u16, target: SocketAddr) -> Vec<u8> {
        let target_ip = match target.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => panic!("the relay speaks IPv4 headers only"),
        };
        match self {
            ProxyHeader::V1 { client } => format!(
                "PROXY TCP4 {client} {target_ip} {port} {}\r\n",
                target.port()
            )
            .into_bytes(),
            ProxyHeader::V2 { client } => {
                let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
                h.extend_from_slice(&[0x21, 0x11, 0, 12]);
                h.extend_from_slice(&client.octets());
                h.extend_from_slice(&target_ip.octets());
                h.extend_from_slice(&port.to_be_bytes());
                h.extend_from_slice(&target.port().to_be_bytes());
                h
            }
            ProxyHeader::None => Vec::new(),
        }
    }
}

/// A running relay; dropping it stops accepting and closes every relayed connection.
pub struct ProxyHeaderRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepter: Option<JoinHandle<()>>,
    /// Both sockets of every relayed connection, to shut them down on drop.
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl std::fmt::Debug for ProxyHeaderRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHeaderRelay")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ProxyHeaderRelay {
    /// Relays connections to `target`, connecting from `source` (a loopback address) and
    /// writing `header` first.
    pub fn start(target: SocketAddr, source: IpAddr, header: ProxyHeader) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("relay: cannot bind: {e}"));
        let addr = listener.local_addr().expect("relay: local_addr");
        listener
            .set_nonblocking(true)
            .expect("relay: set_nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let accepter = {
            let (stop, sockets) = (Arc::clone(&stop), Arc::clone(&sockets));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, peer)) => {
                            if let Err(e) = relay(client, peer, target, source, header, &sockets) {
                                eprintln!("relay: connection from {peer} to {target}: {e}");
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => {
                            eprintln!("relay: accept: {e}");
                            return;
                        }
                    }
                }
            })
        };
        Self {
            addr,
            stop,
            accepter: Some(accepter),
            sockets,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Connects `client` to `target` from `source`, writes the header, and copies both ways.
fn relay(
    client: TcpStream,
    peer: SocketAddr,
    target: SocketAddr,
    source: IpAddr,
    header: ProxyHeader,
    sockets: &Mutex<Vec<TcpStream>>,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&target.into(), CONNECT_TIMEOUT)?;
    let mut upstream: TcpStream = socket.into();
    // The header and the client's first bytes may share a segment, as from a real balancer.
    upstream.write_all(&header.bytes(peer.port(), target))?;
    {
        let mut held = sockets.lock().unwrap_or_else(|p| p.into_inner());
        held.push(client.try_clone()?);
        held.push(upstream.try_clone()?);
    }
    let (client2, upstream2) = (client.try_clone()?, upstream.try_clone()?);
    thread::spawn(move || copy(client, upstream));
    thread::spawn(move || copy(upstream2, client2));
    Ok(())
}

/// Copies until end of file or an error, then passes the end of file on.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for ProxyHeaderRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accepter.take() {
            let _ = t.join();
        }
        let held = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for s in held.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_the_specifications() {
        let target: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let client = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(
            ProxyHeader::V1 { client }.bytes(4000, target),
            b"PROXY TCP4 10.1.2.3 127.0.0.1 4000 6000\r\n"
        );
        let v2 = ProxyHeader::V2 { client }.bytes(4000, target);
        assert_eq!(v2.len(), 28);
        assert_eq!(&v2[12..16], [0x21, 0x11, 0, 12]);
        assert_eq!(&v2[16..20], [10, 1, 2, 3]);
        assert_eq!(&v2[24..26], 4000u16.to_be_bytes());
        assert!(ProxyHeader::None.bytes(4000, target).is_empty());
    }

    #[test]
    fn relays_from_its_source_with_the_header_first() {
        let target = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let relay = ProxyHeaderRelay::start(
            target.local_addr().unwrap(),
            "127.0.0.2".parse().unwrap(),
            ProxyHeader::V1 {
                client: Ipv4Addr::new(10, 1, 2, 3),
            },
        );
        let mut client = TcpStream::connect(relay.addr()).unwrap();
        client.write_all(b"hello").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let (mut upstream, from) = target.accept().unwrap();
        assert_eq!(from.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).unwrap();
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("PROXY TCP4 10.1.2.3 127.0.0.1 "), "{text}");
        assert!(text.ends_with("\r\nhello"), "{text}");
        upstream.write_all(b"back").unwrap();
        drop(upstream);
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"back");
    }
}
