//! The proxy session (`ferry_core::session::ProxySession`) fed arbitrary client and backend bytes,
//! interleaved with connect results, EOFs, timeouts and shutdown. Optionally a login (client hello,
//! backend greeting and OK) comes first, so the fuzzer reaches the command relay: passthrough, or
//! proxy auth with the scramble computed from ferry's greeting, so that the relay's proxy-auth
//! paths (the COM_CHANGE_USER check against the user table) are reachable too, and with replay
//! migration the snapshot reads, failover (backend EOF or `backend_down`) and read retry.
//!
//! Invariants:
//! - nothing panics;
//! - `Closed` comes at most once, and after it nothing more comes out: no transmit, no event, no
//!   deadline, whatever is fed in.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use ferry_core::frontend::AuthMode;
use ferry_core::session::{ConnectFailure, Event, Peer, ProxySession, SessionConfig};
use ferry_core::wire::{
    encode_packet, Capabilities, HandshakeResponse41, HandshakeV10, OkPacket, ServerStatus,
};
use ferry_core::SeededRandom;
use libfuzzer_sys::fuzz_target;

/// `PASSWORD('password')`, as `mysql.user` stores it.
const PASSWORD_HASH: &[u8] = b"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";

#[derive(Debug, Arbitrary)]
enum Op {
    Client(Vec<u8>),
    Backend(Vec<u8>),
    ClientEof,
    BackendEof,
    Connected,
    ConnectFailed,
    Timeout(u16),
    Shutdown,
    /// The health check found the backend down (replay failover).
    BackendDown,
}

#[derive(Debug, Arbitrary)]
struct Input {
    login: bool,
    proxy_mode: bool,
    /// With proxy auth: replay migration with failover (and read retry).
    replay: Option<bool>,
    backend_caps: u32,
    idle_timeout: Option<u8>,
    max_packet: u16,
    ops: Vec<Op>,
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = seq;
    encode_packet(&mut out, &mut seq, payload);
    out.to_vec()
}

struct Run {
    session: ProxySession,
    now: Instant,
    conn: Option<u64>,
    closed: bool,
    /// The salt of ferry's greeting to the client, once seen.
    salt: Option<Vec<u8>>,
}

impl Run {
    fn drain(&mut self) {
        while let Some(t) = self.session.poll_transmit() {
            assert!(!self.closed, "transmit after Closed: {t:?}");
            if self.salt.is_none() && t.peer == Peer::Client && t.data.len() > 4 {
                if let Ok(g) = HandshakeV10::parse(&t.data[4..]) {
                    let mut salt = g.scramble_1.to_vec();
                    salt.extend_from_slice(g.scramble_2);
                    self.salt = Some(salt);
                }
            }
        }
        while let Some(e) = self.session.poll_event() {
            assert!(!self.closed, "event after Closed: {e:?}");
            match e {
                Event::ConnectBackend { conn, .. } => self.conn = Some(conn),
                Event::Closed { .. } => self.closed = true,
                _ => {}
            }
        }
        if self.closed {
            assert!(self.session.is_closed());
            assert_eq!(self.session.poll_timeout(), None);
        }
    }

    fn backend(&self) -> Peer {
        Peer::Backend(self.conn.unwrap_or(0))
    }
}

fuzz_target!(|input: Input| {
    let auth = if input.proxy_mode {
        // app / "password"; reader / "password" too (a second account for COM_CHANGE_USER).
        let mut users = ferry_core::frontend::UserTable::new();
        let _ = users.insert_native_hash("app", PASSWORD_HASH);
        let _ = users.insert_native_hash("reader", PASSWORD_HASH);
        AuthMode::Proxy {
            users: Arc::new(users),
            sha2_cache: None,
            rsa: None,
        }
    } else {
        AuthMode::Passthrough
    };
    let mut config = SessionConfig::new(auth);
    config.idle_timeout = input
        .idle_timeout
        .map(|s| Duration::from_secs(u64::from(s)));
    config.max_packet_size = 64 + usize::from(input.max_packet) * 64;
    if let (Some(read_retry), true) = (input.replay, input.proxy_mode) {
        config.migration.mode = ferry_core::session::MigrationMode::Replay;
        config.migration.failover = true;
        config.migration.read_retry = read_retry;
    }
    let now = Instant::now();
    let session = ProxySession::new(
        now,
        Arc::new(config),
        1,
        "fuzz".into(),
        Box::new(SeededRandom::new(5)),
    );
    let mut run = Run {
        session,
        now,
        conn: None,
        closed: false,
        salt: None,
    };
    run.drain();

    if input.login {
        let caps = ferry_core::session::proxy_capabilities();
        let scramble = match (&run.salt, input.proxy_mode) {
            (Some(salt), true) => ferry_core::auth::native::scramble(b"password", salt),
            _ => vec![1; 20],
        };
        let mut hello = Vec::new();
        HandshakeResponse41 {
            capabilities: caps,
            max_packet_size: 1 << 24,
            collation: 45,
            mariadb_capabilities: 0,
            username: b"app",
            auth_response: &scramble,
            database: None,
            auth_plugin_name: Some(b"mysql_native_password"),
            connect_attrs: vec![],
            zstd_compression_level: None,
        }
        .encode(&mut hello);
        run.session
            .handle_input(now, Peer::Client, &frame(1, &hello));
        run.drain();
        if let Some(conn) = run.conn {
            run.session.backend_connected(now, conn, "db");
            run.drain();
            let backend_caps = Capabilities(input.backend_caps) | caps;
            let greeting = HandshakeV10::new(
                b"10.11-MariaDB",
                9,
                &[7; 20],
                backend_caps,
                45,
                ServerStatus(2),
                b"mysql_native_password",
            );
            let mut g = Vec::new();
            greeting.encode(&mut g);
            let mut bytes = frame(0, &g);
            let mut ok = Vec::new();
            OkPacket::default().encode(&mut ok, backend_caps);
            bytes.extend(frame(2, &ok));
            run.session.handle_input(now, Peer::Backend(conn), &bytes);
            run.drain();
        }
    }

    for op in input.ops {
        match op {
            Op::Client(b) => run.session.handle_input(run.now, Peer::Client, &b),
            Op::Backend(b) => run.session.handle_input(run.now, run.backend(), &b),
            Op::ClientEof => run.session.handle_eof(run.now, Peer::Client),
            Op::BackendEof => run.session.handle_eof(run.now, run.backend()),
            Op::Connected => {
                let conn = run.conn.unwrap_or(0);
                run.session.backend_connected(run.now, conn, "db")
            }
            Op::ConnectFailed => {
                let conn = run.conn.unwrap_or(0);
                let reason = ConnectFailure::Refused("refused".into());
                run.session.backend_connect_failed(run.now, conn, reason)
            }
            Op::Timeout(s) => {
                run.now += Duration::from_millis(u64::from(s) * 10);
                run.session.handle_timeout(run.now);
            }
            Op::Shutdown => run.session.begin_shutdown(run.now),
            Op::BackendDown => run.session.backend_down(run.now, "db"),
        }
        run.drain();
    }
});
