//! Health checks (`ferry_core::control::HealthProbe`) as the `Endpoint` hands them out: an
//! endpoint built from a small configuration (1 to 3 backends, fuzzed interval and timeout, maybe
//! a configured server version) runs up to three health rounds. Each probe reads what its server
//! sends (raw bytes, greetings, ERR packets, long runs) in fuzzer-chosen reads, interleaved with
//! EOF, read errors, connect errors (`io::ErrorKind`s and errnos, ferry's own exhaustion among
//! them) and timeouts, on a clock that moves by fuzzer-chosen steps, past the deadline or not.
//! Probes come back in any order, some never (the round is given up at its end) and come back
//! late, during the next round.
//!
//! Invariants:
//! - nothing panics;
//! - a probe: `is_done()` exactly when it has a verdict, and once it has one it never changes;
//!   EOF, a read error or a connect error always decide; the deadline decides (a timeout, or
//!   bytes, EOF or an error at or past it); before the deadline, bytes decide as `probe_greeting` judges all the
//!   bytes read so far (healthy with the greeting's version; refusing for an ERR packet; still
//!   waiting while the first packet is incomplete); a `local` failure only from ferry's own
//!   exhaustion (EMFILE, ENFILE, ENOBUFS, ENOMEM) on connect, never refusing; a refusal is never
//!   local;
//! - the same bytes read in one call give the same verdict as in the fuzzer's reads, however many
//!   bytes follow the greeting;
//! - a round: one probe per backend (each index once, its address, `deadline = start + timeout`),
//!   no new round and a wake-up no earlier than the probes' deadline while it runs; the last
//!   probe back (or the round's end) ends it and the next one is due an interval later;
//! - `probe_finished` leaves the endpoint consistent: the same backends, the probed one healthy
//!   after a passing check, unhealthy after a failed one, unchanged after a local failure, the
//!   others unchanged, no sessions, nothing draining; a late probe is recorded but ends no round
//!   and moves no timer;
//! - after the first round, a client is greeted with the configured server version, else the
//!   version of the first backend (in configuration order) that passed the first round.
#![no_main]

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use ferry_core::balance::{probe_greeting, Probe, Unhealthy, MAX_GREETING_SIZE};
use ferry_core::control::config::units::ConfigDuration;
use ferry_core::control::config::{BackendSection, ConfigFile, HealthSection};
use ferry_core::control::{Config, Endpoint, HealthProbe, Verdict};
use ferry_core::session::Peer;
use ferry_core::wire::{encode_packet, Capabilities, HandshakeV10, ServerStatus};
use ferry_core::SeededRandom;
use libfuzzer_sys::fuzz_target;

/// Errors a socket may report.
const KINDS: [io::ErrorKind; 8] = [
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::TimedOut,
    io::ErrorKind::WouldBlock,
    io::ErrorKind::UnexpectedEof,
    io::ErrorKind::AddrNotAvailable,
    io::ErrorKind::OutOfMemory,
    io::ErrorKind::Other,
];
/// Errnos, ferry's own exhaustion first.
const ERRNOS: [i32; 7] = [
    libc::EMFILE,
    libc::ENFILE,
    libc::ENOBUFS,
    libc::ENOMEM,
    libc::ECONNREFUSED,
    libc::ETIMEDOUT,
    libc::EHOSTUNREACH,
];
const LOCAL_ERRNOS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Arbitrary)]
enum Error {
    Kind(u8),
    Errno(u8),
}

impl Error {
    fn io(self) -> io::Error {
        match self {
            Error::Kind(i) => io::Error::from(KINDS[i as usize % KINDS.len()]),
            Error::Errno(i) => io::Error::from_raw_os_error(ERRNOS[i as usize % ERRNOS.len()]),
        }
    }

    /// ferry's own exhaustion.
    fn local(self) -> bool {
        matches!(self, Error::Errno(i) if (i as usize % ERRNOS.len()) < LOCAL_ERRNOS)
    }

    /// Counts as the deadline passing.
    fn timed_out(self) -> bool {
        let e = self.io();
        !self.local() && matches!(e.kind(), io::ErrorKind::TimedOut)
    }

    fn would_block(self) -> bool {
        matches!(self.io().kind(), io::ErrorKind::WouldBlock)
    }
}

/// What a server sends, piece by piece.
#[derive(Debug, Arbitrary)]
enum Piece {
    Raw(Vec<u8>),
    /// A protocol-10 greeting with this version (NULs removed) and capabilities.
    Greeting(Vec<u8>, u32),
    /// An ERR packet in place of the greeting (1040, 1129 or another code).
    Err(u16, Vec<u8>),
    /// A packet header announcing `len` bytes (cut or over the cap).
    Header(u32),
    /// A byte repeated (up to ~32 KiB): over the greeting cap.
    Repeat(u8, u16),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Step {
    /// Reads the next `n` bytes of what the server sent (at least one).
    Read(u16),
    /// Reads everything left.
    ReadAll,
    Eof,
    ReadFailed(Error),
    ConnectFailed(Error),
    /// `handle_timeout` now.
    Timeout,
    /// The clock moves (in ms).
    Wait(u16),
}

#[derive(Debug, Arbitrary)]
struct Script {
    server: Vec<Piece>,
    steps: Vec<Step>,
    /// The clock moves this much (ms) before the probe goes back to the endpoint.
    back_after: u16,
    /// The driver loses it: it comes back only during the next round.
    lost: bool,
}

#[derive(Debug, Arbitrary)]
struct Round {
    /// Delay (ms) past the moment the round is due.
    late_start: u16,
    scripts: Vec<Script>,
    /// Order of the probes' return (sort keys).
    order: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    backends: u8,
    interval_ms: u16,
    timeout_ms: u16,
    server_version: bool,
    rounds: Vec<Round>,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_packet(&mut out, &mut 0, payload);
    out.to_vec()
}

fn server_bytes(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Raw(b) => out.extend_from_slice(b),
            Piece::Greeting(version, caps) => {
                let version: Vec<u8> = version.iter().copied().filter(|&b| b != 0).collect();
                let caps = Capabilities(*caps) | Capabilities::PROTOCOL_41;
                let g = HandshakeV10::new(
                    &version,
                    7,
                    &[b'a'; 20],
                    caps,
                    45,
                    ServerStatus::AUTOCOMMIT,
                    b"mysql_native_password",
                );
                let mut payload = Vec::new();
                g.encode(&mut payload);
                out.extend(frame(&payload));
            }
            Piece::Err(code, message) => {
                let code = match code % 4 {
                    0 => 1040,
                    1 => 1129,
                    _ => *code,
                };
                let mut payload = vec![0xFF];
                payload.extend_from_slice(&code.to_le_bytes());
                payload.extend_from_slice(message);
                out.extend(frame(&payload));
            }
            Piece::Header(len) => {
                out.extend_from_slice(&len.to_le_bytes()[..3]);
                out.push(0);
            }
            Piece::Repeat(b, n) => out.resize(out.len() + usize::from(*n) / 2, *b),
        }
        if out.len() > 4 * MAX_GREETING_SIZE {
            break;
        }
    }
    out
}

/// What made a probe decide.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cause {
    /// The bytes read (in time).
    Bytes,
    Eof,
    ReadFailed(Error),
    ConnectFailed(Error),
    Deadline,
}

/// One probe and what the driver has done with it.
struct Driven {
    probe: HealthProbe,
    server: Vec<u8>,
    /// Bytes read, and those read before the deadline.
    read: usize,
    in_time: usize,
    decided: Option<(Verdict, Cause)>,
    /// Time of the last read before the deadline.
    last_read: Option<Instant>,
}

fn is_refusal(u: &Unhealthy) -> bool {
    matches!(
        u,
        Unhealthy::TooManyConnections | Unhealthy::HostBlocked | Unhealthy::ServerError { .. }
    )
}

/// The verdict the bytes read in time call for, if they decide.
/// Only the first packet counts: bytes past the largest greeting are never looked at.
fn judge(bytes: &[u8]) -> Option<Result<String, bool>> {
    let cap = MAX_GREETING_SIZE + 4;
    let seen = &bytes[..bytes.len().min(cap)];
    match probe_greeting(seen) {
        Probe::Healthy { server_version } => Some(Ok(server_version)),
        Probe::Unhealthy(u) => Some(Err(is_refusal(&u))),
        Probe::NeedMore if seen.len() == cap => Some(Err(false)),
        Probe::NeedMore => None,
    }
}

impl Driven {
    /// Runs `step` at `now`, then checks the probe.
    fn step(&mut self, step: Step, now: Instant) {
        let before = self.probe.verdict().cloned();
        let deadline = self.probe.deadline();
        let deadline_like = match step {
            Step::ReadFailed(e) => e.timed_out() || e.would_block(),
            Step::ConnectFailed(e) => e.timed_out(),
            _ => false,
        };
        let prior = (before.is_none() && deadline_like).then(|| self.probe.clone());
        let mut cause = None;
        match step {
            Step::Read(n) => {
                let n = usize::from(n).max(1).min(self.server.len() - self.read);
                let chunk = &self.server[self.read..self.read + n];
                self.probe.handle_input(now, chunk);
                self.read += n;
                if now < deadline {
                    self.in_time = self.read;
                    self.last_read = Some(now);
                    cause = Some(Cause::Bytes);
                } else {
                    cause = Some(Cause::Deadline);
                }
            }
            Step::ReadAll => return self.step(Step::Read(u16::MAX), now),
            // At or past the deadline, any event is the deadline's verdict.
            Step::Eof => {
                self.probe.handle_eof(now);
                cause = Some(if now < deadline { Cause::Eof } else { Cause::Deadline });
            }
            Step::ReadFailed(e) => {
                self.probe.read_failed(now, &e.io());
                cause = Some(if now < deadline { Cause::ReadFailed(e) } else { Cause::Deadline });
            }
            Step::ConnectFailed(e) => {
                self.probe.connect_failed(now, &e.io());
                cause = Some(if now < deadline {
                    Cause::ConnectFailed(e)
                } else {
                    Cause::Deadline
                });
            }
            Step::Timeout => {
                self.probe.handle_timeout(now);
                cause = Some(Cause::Deadline);
            }
            Step::Wait(_) => {}
        }
        let after = self.probe.verdict().cloned();
        assert_eq!(self.probe.is_done(), after.is_some());
        if let Some(before) = before {
            assert_eq!(
                after.as_ref(),
                Some(&before),
                "a verdict changed after {step:?}"
            );
            return;
        }
        let Some(cause) = cause else {
            assert!(after.is_none(), "decided by the clock alone");
            return;
        };
        match (cause, &after) {
            (Cause::Bytes, _) => {
                let expected = judge(&self.server[..self.in_time]);
                match (&expected, &after) {
                    (None, None) => {}
                    (Some(Ok(v)), Some(Ok(got))) => assert_eq!(got, v),
                    (Some(Err(refusing)), Some(Err(f))) => {
                        assert_eq!(f.refusing, *refusing, "{f:?}");
                        assert!(!f.local, "{f:?}");
                    }
                    _ => panic!("bytes {:?}: verdict {after:?}, expected {expected:?}", step),
                }
            }
            (Cause::Deadline, None) => {
                assert!(
                    now < deadline,
                    "no verdict at or past the deadline ({step:?})"
                )
            }
            (Cause::Deadline, Some(v)) => {
                assert!(now >= deadline, "a timeout before the deadline: {v:?}");
                let f = v.as_ref().expect_err("a timeout that passes");
                assert!(!f.local && !f.refusing, "{f:?}");
            }
            (Cause::Eof | Cause::ReadFailed(_) | Cause::ConnectFailed(_), None) => {
                panic!("{step:?} left the probe undecided")
            }
            (Cause::Eof | Cause::ReadFailed(_), Some(v)) => {
                let f = v.as_ref().expect_err("EOF or a read error that passes");
                assert!(!f.local && !f.refusing, "{f:?}");
            }
            (Cause::ConnectFailed(e), Some(v)) => {
                let f = v.as_ref().expect_err("a connect error that passes");
                assert_eq!(f.local, e.local(), "{e:?}: {f:?}");
                assert!(!f.refusing, "{f:?}");
            }
        }
        // A timed-out read or connect (a socket timeout) is the deadline's verdict.
        if let Some(mut prior) = prior {
            prior.handle_timeout(deadline);
            assert_eq!(self.probe.verdict(), prior.verdict(), "{step:?}");
        }
        if let Some(v) = after {
            self.decided = Some((v, cause));
        }
    }

    /// The same bytes read in one call decide alike.
    fn check_one_read(&self, fresh: &HealthProbe) {
        let Some((verdict, Cause::Bytes)) = &self.decided else {
            return;
        };
        let mut one = fresh.clone();
        one.handle_input(self.last_read.expect("read"), &self.server[..self.in_time]);
        assert_eq!(
            one.verdict(),
            Some(verdict),
            "{} bytes in one read decide otherwise",
            self.in_time
        );
    }
}

fn backend_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3306 + i as u16))
}

fn config(input: &Input) -> Config {
    let n = 1 + input.backends as usize % 3;
    let file = ConfigFile {
        backends: (0..n)
            .map(|i| BackendSection {
                name: format!("db{}", i + 1),
                addr: backend_addr(i).to_string(),
                proxy_protocol: false,
            })
            .collect(),
        health: HealthSection {
            interval: Some(ConfigDuration(Duration::from_millis(
                1 + u64::from(input.interval_ms),
            ))),
            timeout: Some(ConfigDuration(Duration::from_millis(
                1 + u64::from(input.timeout_ms % 5000),
            ))),
            ..HealthSection::default()
        },
        ..ConfigFile::default()
    };
    let mut file = file;
    if input.server_version {
        file.proxy.server_version = Some("8.0.40-configured".into());
    }
    Config::from_file(&file).expect("a valid configuration")
}

/// The backends' state, for comparisons.
fn snapshot(ep: &Endpoint) -> Vec<(String, String, bool, u64, bool)> {
    ep.backends()
        .into_iter()
        .map(|b| (b.name, b.addr, b.healthy, b.sessions, b.draining))
        .collect()
}

/// Gives `probe` back and checks what it did to the endpoint.
fn finish(ep: &mut Endpoint, now: Instant, probe: HealthProbe, late: bool) -> Verdict {
    let index = probe.backend();
    let verdict = probe.verdict().cloned().unwrap_or_else(|| {
        Err(ferry_core::control::CheckFailure {
            reason: String::new(),
            refusing: false,
            local: false,
        })
    });
    let before = snapshot(ep);
    let timeout_before = ep.poll_timeout();
    let first_done_before = ep.first_round_done();
    ep.probe_finished(now, probe);
    let after = snapshot(ep);
    assert_eq!(after.len(), before.len());
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(
            (&a.0, &a.1),
            (&b.0, &b.1),
            "a backend changed name or address"
        );
        assert_eq!(a.3, 0, "sessions on {} without a client", a.0);
        assert!(!a.4, "{} draining", a.0);
        if i != index {
            assert_eq!(a.2, b.2, "probe of {index} changed the health of {i}");
            continue;
        }
        match &verdict {
            Ok(_) => assert!(a.2, "a passing check left {} unhealthy", a.0),
            Err(f) if f.local => assert_eq!(a.2, b.2, "a local failure changed {}", a.0),
            Err(_) => assert!(!a.2, "a failed check left {} healthy", a.0),
        }
    }
    if late {
        assert_eq!(
            ep.poll_timeout(),
            timeout_before,
            "a late probe moved the timer"
        );
        assert_eq!(ep.first_round_done(), first_done_before);
    }
    verdict
}

/// The server version ferry greets a new client with.
fn advertised(ep: &mut Endpoint, now: Instant) -> String {
    let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let mut conn = ep
        .accept(now, client, 0, Box::new(SeededRandom::new(1)))
        .into_connection()
        .expect("accepted");
    let t = conn.poll_transmit().expect("a greeting");
    assert_eq!(t.peer, Peer::Client);
    let version = HandshakeV10::parse(&t.data[4..])
        .expect("ferry's greeting parses")
        .server_version
        .to_vec();
    ep.connection_closed(now, &mut conn);
    String::from_utf8(version).expect("a UTF-8 version")
}

fuzz_target!(|input: Input| {
    let config = config(&input);
    let n = config.backends.len();
    let interval = config.health.interval;
    let timeout = config.health.timeout;
    let start = Instant::now();
    let mut now = start;
    let mut ep = Endpoint::new(now, &config, 1).expect("an endpoint");
    assert_eq!(
        ep.poll_timeout(),
        Some(now),
        "the first round is due at once"
    );
    assert!(!ep.first_round_done());

    // Probes lost in the previous round, given back during this one.
    let mut lost: Vec<HealthProbe> = Vec::new();
    // The first round's verdicts, by backend, as they came back in time.
    let mut first: Vec<Option<Verdict>> = vec![None; n];

    for round in input.rounds.iter().take(3) {
        let due = ep.poll_timeout().expect("a round is due");
        now = now.max(due) + Duration::from_millis(u64::from(round.late_start % 3000));
        let round_start = now;
        ep.handle_timeout(now);
        let mut probes: Vec<HealthProbe> = std::iter::from_fn(|| ep.poll_probe()).collect();
        assert_eq!(probes.len(), n, "one probe per backend");
        let mut seen = vec![false; n];
        for p in &probes {
            assert!(
                !std::mem::replace(&mut seen[p.backend()], true),
                "two probes of one backend"
            );
            assert_eq!(p.addr().ip(), Some(backend_addr(p.backend())));
            assert_eq!(p.deadline(), round_start + timeout);
            assert_eq!(p.timeout(), timeout);
            assert!(!p.is_done());
        }
        let round_end = ep.poll_timeout().expect("a round runs");
        assert!(
            round_end >= round_start + timeout,
            "wake-up before the probes' deadline"
        );
        ep.handle_timeout(now);
        assert!(ep.poll_probe().is_none(), "a second round while one runs");

        // Last round's lost probes come back now.
        for p in lost.drain(..) {
            let _ = finish(&mut ep, now, p, true);
        }

        // Drive every probe; its own clock starts with the round.
        probes.sort_by_key(|p| p.backend());
        let mut finished: Vec<(u8, usize, Instant, bool, HealthProbe)> = Vec::new();
        for (i, probe) in probes.into_iter().enumerate() {
            let fresh = probe.clone();
            let empty = Script {
                server: vec![],
                steps: vec![],
                back_after: 0,
                lost: false,
            };
            let script = round.scripts.get(i).unwrap_or(&empty);
            let mut d = Driven {
                probe,
                server: server_bytes(&script.server),
                read: 0,
                in_time: 0,
                decided: None,
                last_read: None,
            };
            let mut t = round_start;
            for &step in script.steps.iter().take(64) {
                match step {
                    Step::Wait(ms) => t += Duration::from_millis(u64::from(ms)),
                    Step::Read(_) | Step::ReadAll if d.read == d.server.len() => continue,
                    _ => {}
                }
                d.step(step, t);
            }
            d.check_one_read(&fresh);
            // Past the deadline, a verdict exists.
            let mut p = d.probe;
            let v = p.verdict().cloned();
            p.handle_timeout(round_start + timeout);
            assert!(p.is_done(), "no verdict at the deadline");
            if let Some(v) = v {
                assert_eq!(p.verdict(), Some(&v));
            }
            let key = round.order.get(i).copied().unwrap_or(0);
            let back = t + Duration::from_millis(u64::from(script.back_after));
            finished.push((key, i, back, script.lost, p));
        }
        finished.sort_by_key(|f| (f.0, f.1));

        let first_round = !ep.first_round_done();
        let mut outstanding = n;
        for (_, _, back, is_lost, probe) in finished {
            if is_lost {
                lost.push(probe);
                continue;
            }
            // The driver gives it back in its own time, but never before the last call.
            now = now.max(back);
            let round_over = ep.poll_timeout().is_some_and(|t| t <= now) && outstanding > 0;
            if round_over {
                // The round's end passed first: given up; what comes back is late.
                ep.handle_timeout(now);
                outstanding = 0;
            }
            let index = probe.backend();
            let in_round = outstanding > 0;
            let v = finish(&mut ep, now, probe, !in_round);
            if in_round {
                if first_round {
                    first[index] = Some(v);
                }
                outstanding -= 1;
                if outstanding == 0 {
                    assert!(ep.first_round_done());
                    // Rounds start an interval apart; one that overran starts the next an
                    // interval after its end.
                    let next = if round_start + interval > now {
                        round_start + interval
                    } else {
                        now + interval
                    };
                    assert_eq!(ep.poll_timeout(), Some(next), "next round");
                } else {
                    assert!(ep
                        .poll_timeout()
                        .is_some_and(|t| t >= round_start + timeout));
                }
            }
        }
        if outstanding > 0 {
            // Probes lost: the round is given up at its end.
            let end = ep.poll_timeout().expect("the round's end");
            assert!(end >= round_start + timeout);
            now = now.max(end);
            ep.handle_timeout(now);
            assert_eq!(
                ep.poll_timeout(),
                Some(now + interval),
                "next round after giving up"
            );
            assert!(ep.poll_probe().is_none());
        }
        assert!(ep.first_round_done());
        if first_round {
            let expected = if input.server_version {
                Some("8.0.40-configured".to_owned())
            } else {
                first
                    .iter()
                    .flatten()
                    .find_map(|v| v.as_ref().ok())
                    .cloned()
            };
            let got = advertised(&mut ep, now);
            if let Some(expected) = expected {
                assert_eq!(got, expected, "advertised version");
            }
        }
    }
});
