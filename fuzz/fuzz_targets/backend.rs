//! The backend state machine (`ferry_core::backend::Backend`) fed arbitrary server bytes,
//! interleaved with arbitrary commands, LOCAL INFILE data, timeouts and EOF. Optionally a valid
//! greeting and login OK come first, so the fuzzer reaches the response tracking quickly.
//!
//! Invariants:
//! - nothing panics;
//! - after `Closed` no event ever follows, and the machine reports itself closed with the same
//!   error;
//! - the same server bytes fed in one call or in the fuzzer's chunks give the same events
//!   (checked on the runs that only feed bytes).
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use ferry_core::auth::{ClientSecret, Password};
use ferry_core::backend::{Backend, BackendConfig, Event};
use ferry_core::wire::{
    encode_packet, Capabilities, Command, HandshakeV10, OkPacket, Query, ServerStatus,
};
use ferry_core::SeededRandom;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Input(Vec<u8>),
    /// A command: 0 query, 1 prepare, 2 execute (cursor), 3 fetch, 4 field list, 5 statistics,
    /// 6 change user, 7 reset, 8 close statement, 9 quit, else a raw payload.
    Command(u8, Vec<u8>),
    LocalInfileData(Vec<u8>),
    FinishLocalInfile,
    AuthData(Vec<u8>),
    Timeout(u16),
    Eof,
}

#[derive(Debug, Arbitrary)]
struct Input {
    login: bool,
    server_caps: u32,
    plugin: u8,
    ops: Vec<Op>,
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = seq;
    encode_packet(&mut out, &mut seq, payload);
    out.to_vec()
}

fn prelude(caps: Capabilities, plugin: &[u8]) -> Vec<u8> {
    let salt = [7u8; 20];
    let hello = HandshakeV10::new(b"10.11-MariaDB", 1, &salt, caps, 45, ServerStatus(2), plugin);
    let mut g = Vec::new();
    hello.encode(&mut g);
    let mut bytes = frame(0, &g);
    let mut ok = Vec::new();
    OkPacket::default().encode(&mut ok, caps);
    bytes.extend(frame(2, &ok));
    bytes
}

struct Run {
    backend: Backend,
    events: Vec<Event>,
    closed_at: Option<usize>,
}

impl Run {
    fn new(t0: Instant) -> Self {
        let config = BackendConfig::new("fuzz", ClientSecret::Plaintext(Password::new("pw")));
        Self {
            backend: Backend::new(t0, config, Box::new(SeededRandom::new(1))),
            events: Vec::new(),
            closed_at: None,
        }
    }

    fn drain(&mut self) {
        while self.backend.poll_transmit().is_some() {}
        while let Some(e) = self.backend.poll_event() {
            assert!(self.closed_at.is_none(), "event after Closed: {e:?}");
            if let Event::Closed { error } = &e {
                self.closed_at = Some(self.events.len());
                assert!(self.backend.is_closed());
                assert_eq!(self.backend.error(), error.as_ref());
            }
            self.events.push(e);
        }
        if self.closed_at.is_some() {
            assert_eq!(self.backend.poll_timeout(), None);
        }
    }
}

fuzz_target!(|input: Input| {
    let t0 = Instant::now();
    let caps = Capabilities(input.server_caps)
        | Capabilities::PROTOCOL_41
        | Capabilities::SECURE_CONNECTION;
    let plugin: &[u8] = match input.plugin % 3 {
        0 => b"mysql_native_password",
        1 => b"caching_sha2_password",
        _ => b"mysql_clear_password",
    };
    let mut run = Run::new(t0);
    let mut all_input = Vec::new();
    let mut only_input = true;
    if input.login {
        let bytes = prelude(caps.without(Capabilities::SSL), plugin);
        run.backend.handle_input(t0, &bytes);
        all_input.extend_from_slice(&bytes);
        run.drain();
    }
    let mut now = t0;
    for op in &input.ops {
        match op {
            Op::Input(bytes) => {
                run.backend.handle_input(now, bytes);
                all_input.extend_from_slice(bytes);
            }
            Op::Command(kind, body) => {
                only_input = false;
                let _ = match kind {
                    0 => run.backend.send_command(
                        now,
                        &Command::Query(Query {
                            attributes: vec![],
                            sql: body,
                        }),
                    ),
                    1 => run.backend.send_command(now, &Command::StmtPrepare { query: body }),
                    3 => run.backend.send_command(
                        now,
                        &Command::StmtFetch {
                            statement_id: 1,
                            num_rows: 10,
                        },
                    ),
                    4 => run.backend.send_command(
                        now,
                        &Command::FieldList {
                            table: body,
                            wildcard: b"",
                        },
                    ),
                    5 => run.backend.send_command(now, &Command::Statistics),
                    6 => run.backend.change_user(
                        now,
                        "u",
                        ClientSecret::Sha1(Password::new("x").sha1()),
                        None,
                    ),
                    7 => run.backend.send_command(now, &Command::ResetConnection),
                    8 => run
                        .backend
                        .send_command(now, &Command::StmtClose { statement_id: 1 }),
                    9 => run.backend.send_command(now, &Command::Quit),
                    2 => {
                        let mut raw = vec![Command::COM_STMT_EXECUTE, 1, 0, 0, 0, 1, 1, 0, 0, 0];
                        raw.extend_from_slice(body);
                        run.backend.send_raw_command(now, Bytes::from(raw))
                    }
                    _ => run.backend.send_raw_command(now, Bytes::from(body.clone())),
                };
            }
            Op::LocalInfileData(d) => {
                only_input = false;
                let _ = run.backend.send_local_infile_data(now, d);
            }
            Op::FinishLocalInfile => {
                only_input = false;
                let _ = run.backend.finish_local_infile(now);
            }
            Op::AuthData(d) => {
                only_input = false;
                let _ = run.backend.send_auth_data(now, d);
            }
            Op::Timeout(secs) => {
                only_input = false;
                now += Duration::from_secs(u64::from(*secs));
                run.backend.handle_timeout(now);
            }
            Op::Eof => {
                only_input = false;
                run.backend.handle_eof(now);
            }
        }
        run.drain();
    }

    if only_input {
        let mut whole = Run::new(t0);
        whole.backend.handle_input(t0, &all_input);
        whole.drain();
        assert_eq!(whole.events, run.events, "chunking changed the events");
    }
});
