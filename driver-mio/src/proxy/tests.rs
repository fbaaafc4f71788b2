//! The event loop driven by a byte-relay session (no MySQL) against a greeting-then-echo
//! backend: relaying both ways, large transfers under back-pressure, backend failure, timers,
//! max-connections, graceful shutdown, and the admin endpoint over the shared state.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_tests::{free_port, http_get};

use super::session::{BackendConnId, CloseReason, Event, Peer, Session, SessionFactory, Transmit};
use super::Proxy;
use crate::config::{Config, ConfigFile};

/// A protocol-10 greeting the health probe accepts.
fn greeting() -> Vec<u8> {
    let mut g = vec![10];
    g.extend_from_slice(b"8.0.99-echo\0");
    g.extend_from_slice(&7u32.to_le_bytes());
    g.extend_from_slice(b"abcdefgh\0");
    g.extend_from_slice(&0x0200u16.to_le_bytes());
    g.push(45);
    g.extend_from_slice(&2u16.to_le_bytes());
    g.extend_from_slice(&0u16.to_le_bytes());
    g.push(0);
    g.extend_from_slice(&[0; 10]);
    let mut p = vec![g.len() as u8, 0, 0, 0];
    p.extend_from_slice(&g);
    p
}

/// A backend that sends a greeting, then echoes everything.
fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                if conn.write_all(&greeting()).is_err() {
                    return;
                }
                let mut buf = [0u8; 65536];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn config(backend: SocketAddr, extra: &str) -> Config {
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n{extra}\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n\
         [health]\ninterval = \"100ms\"\ntimeout = \"500ms\"\n\
         [[backends]]\nname = \"echo\"\naddr = \"{backend}\"\n",
        free_port()
    );
    Config::from_file(&ConfigFile::parse(&text, None).unwrap()).unwrap()
}

/// Relays bytes between client and backend untouched; an optional idle timeout closes it.
#[derive(Debug)]
struct Relay {
    idle: Option<Duration>,
    deadline: Option<Instant>,
    conn: Option<BackendConnId>,
    connected: bool,
    held: Vec<Bytes>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    closed: bool,
}

impl Relay {
    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(Event::Closed { reason });
        }
    }
}

impl Session for Relay {
    fn user(&self) -> Option<&str> {
        None
    }
    fn backend_name(&self) -> Option<&str> {
        None
    }
    fn is_closed(&self) -> bool {
        self.closed
    }
    fn wants_input(&self, _peer: Peer) -> bool {
        !self.closed
    }
    fn handle_input(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        self.deadline = self.idle.map(|d| now + d);
        let data = Bytes::copy_from_slice(bytes);
        match peer {
            Peer::Client if self.connected => self.out.push_back(Transmit {
                peer: Peer::Backend(self.conn.unwrap()),
                data,
            }),
            Peer::Client => self.held.push(data),
            Peer::Backend(_) => self.out.push_back(Transmit {
                peer: Peer::Client,
                data,
            }),
        }
    }
    fn handle_eof(&mut self, _now: Instant, _peer: Peer) {
        self.close(CloseReason::ClientGone);
    }
    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.out.push_back(Transmit {
                peer: Peer::Client,
                data: Bytes::from_static(b"IDLE"),
            });
            self.close(CloseReason::IdleTimeout);
        }
    }
    fn backend_connected(&mut self, _now: Instant, conn: BackendConnId, name: &str) {
        assert_eq!(name, "echo");
        assert_eq!(Some(conn), self.conn);
        self.connected = true;
        for data in self.held.drain(..) {
            self.out.push_back(Transmit {
                peer: Peer::Backend(conn),
                data,
            });
        }
    }
    fn backend_connect_failed(&mut self, _now: Instant, _conn: BackendConnId, reason: &str) {
        self.out.push_back(Transmit {
            peer: Peer::Client,
            data: Bytes::from(format!("ERR {reason}")),
        });
        self.close(CloseReason::BackendUnavailable(reason.into()));
    }
    fn begin_shutdown(&mut self, _now: Instant) {
        self.out.push_back(Transmit {
            peer: Peer::Client,
            data: Bytes::from_static(b"BYE"),
        });
        self.close(CloseReason::Shutdown);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            None
        } else {
            self.deadline
        }
    }
}

struct RelayFactory {
    idle: Option<Duration>,
}

impl SessionFactory for RelayFactory {
    type Session = Relay;
    fn new_session(&self, now: Instant, connection_id: u32, client_host: String) -> Relay {
        assert_ne!(connection_id, 0);
        assert_eq!(client_host, "127.0.0.1");
        Relay {
            idle: self.idle,
            deadline: self.idle.map(|d| now + d),
            conn: Some(1),
            connected: false,
            held: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::from([Event::ConnectBackend {
                conn: 1,
                target: None,
            }]),
            closed: false,
        }
    }
}

fn connect(proxy: &Proxy) -> TcpStream {
    let s = TcpStream::connect(proxy.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    let start = Instant::now();
    if let Err(e) = s.read_exact(&mut buf) {
        panic!(
            "reading {n} bytes from {:?} (local {:?}): {e} after {:?}",
            s.peer_addr(),
            s.local_addr(),
            start.elapsed()
        );
    }
    buf
}

fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    buf
}

#[test]
fn relays_both_ways_and_serves_the_admin_api() {
    let backend = echo_backend();
    let proxy = Proxy::start(&config(backend, ""), RelayFactory { idle: None }).unwrap();
    let mut clients: Vec<TcpStream> = (0..4).map(|_| connect(&proxy)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(read_exact(c, greeting().len()), greeting());
        let msg = format!("hello {i}");
        c.write_all(msg.as_bytes()).unwrap();
        assert_eq!(read_exact(c, msg.len()), msg.as_bytes());
    }
    let admin = proxy.admin_addr().unwrap();
    let (status, backends) = http_get(admin, "/api/backends");
    assert_eq!(status, 200, "{backends}");
    assert!(
        backends.contains("\"healthy\":true") && backends.contains("\"sessions\":4"),
        "{backends}"
    );
    let (_, metrics) = http_get(admin, "/metrics");
    assert!(metrics.contains("ferry_sessions 4"), "{metrics}");
    assert!(
        metrics.contains("ferry_sessions_accepted_total 4"),
        "{metrics}"
    );
    // A client that leaves releases its backend.
    drop(clients.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !http_get(admin, "/api/backends")
        .1
        .contains("\"sessions\":3")
    {
        assert!(Instant::now() < deadline, "backend count not released");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_get(admin, "/health").0, 200);
    proxy.shutdown();
}

#[test]
fn large_transfers_survive_back_pressure_in_order() {
    let backend = echo_backend();
    let proxy = Proxy::start(&config(backend, ""), RelayFactory { idle: None }).unwrap();
    let mut c = connect(&proxy);
    read_exact(&mut c, greeting().len());
    // 16 MiB each way while the client reads slowly at first: queues fill, reading pauses.
    let data: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut writer = c.try_clone().unwrap();
    let sent = data.clone();
    let t = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let back = read_exact(&mut c, data.len());
    t.join().unwrap();
    assert!(back == data, "bytes changed or reordered");
    proxy.shutdown();
}

#[test]
fn no_healthy_backend_is_reported_to_the_session() {
    // A port nothing listens on: the first health round marks it down.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = Proxy::start(&config(dead, ""), RelayFactory { idle: None }).unwrap();
    let mut c = connect(&proxy);
    let text = String::from_utf8(read_to_end(&mut c)).unwrap();
    assert_eq!(text, "ERR no healthy backend");
    let (_, metrics) = http_get(proxy.admin_addr().unwrap(), "/metrics");
    assert!(
        metrics.contains("ferry_backend_up{backend=\"echo\""),
        "{metrics}"
    );
    assert!(metrics.contains("\"} 0"), "{metrics}");
    proxy.shutdown();
}

#[test]
fn session_deadlines_fire() {
    let backend = echo_backend();
    let idle = Duration::from_millis(300);
    let proxy = Proxy::start(&config(backend, ""), RelayFactory { idle: Some(idle) }).unwrap();
    let mut c = connect(&proxy);
    read_exact(&mut c, greeting().len());
    // Activity moves the deadline later.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        c.write_all(b"x").unwrap();
        assert_eq!(read_exact(&mut c, 1), b"x");
    }
    let start = Instant::now();
    assert_eq!(read_to_end(&mut c), b"IDLE");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    proxy.shutdown();
}

#[test]
fn connections_over_the_maximum_are_closed() {
    let backend = echo_backend();
    let proxy = Proxy::start(
        &config(backend, "max-connections = 1"),
        RelayFactory { idle: None },
    )
    .unwrap();
    let mut first = connect(&proxy);
    read_exact(&mut first, greeting().len());
    let mut second = connect(&proxy);
    assert!(read_to_end(&mut second).is_empty());
    // The first still works.
    first.write_all(b"ok").unwrap();
    assert_eq!(read_exact(&mut first, 2), b"ok");
    let (_, metrics) = http_get(proxy.admin_addr().unwrap(), "/metrics");
    assert!(
        metrics.contains("ferry_errors_total{kind=\"max_connections\"} 1"),
        "{metrics}"
    );
    proxy.shutdown();
}

#[test]
fn shutdown_tells_every_session_and_stops_accepting() {
    let backend = echo_backend();
    let proxy = Proxy::start(&config(backend, ""), RelayFactory { idle: None }).unwrap();
    let addr = proxy.local_addr();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(&proxy)).collect();
    for c in &mut clients {
        read_exact(c, greeting().len());
    }
    let start = Instant::now();
    proxy.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    for c in &mut clients {
        assert_eq!(read_to_end(c), b"BYE");
        let _ = c.shutdown(Shutdown::Both);
    }
    assert!(TcpStream::connect(addr).is_err(), "still accepting");
}
