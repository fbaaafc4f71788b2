//! The monitor login of a health check (`[health] user`): log in with the core's backend role,
//! send COM_PING, then COM_QUIT, so that the check is a clean connection on the server (no
//! `Aborted_connects`, no error-log line) instead of a handshake abandoned after the greeting.
//!
//! ```text
//! greeting ─► login ─┬─ OK ─► COM_PING ─┬─ OK ─► COM_QUIT queued ─► Served
//!                    │                  └─ ERR, close ─► Down
//!                    └─ ERR (1045...) / a plugin ferry cannot answer ─► LoginRefused
//! ```
//!
//! A refused login says the server is up (it runs the protocol and checks passwords), so it
//! does not make the backend down: a wrong monitor password would otherwise take every backend
//! out of rotation at once (ProxySQL's monitor judges `Access denied` the same way). The probe
//! reports it as a warning instead.
//!
//! The account's secret is `SHA1(password)` (or no password), which answers
//! `mysql_native_password` only: no RSA exchange can happen, so the backend role's randomness is
//! never used and a fixed generator serves.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::backend::{Backend, BackendConfig, BackendError, Event};
use crate::wire::Command;
use crate::SeededRandom;

/// What the login concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Logged in and pinged: the server serves. COM_QUIT is queued.
    Served,
    /// The server refused the login (its ERR, or a plugin the account's secret cannot answer):
    /// it is up, the account is wrong.
    LoginRefused(String),
    /// The server failed the ping or dropped the connection: down, for this reason.
    Down(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    LoggingIn,
    Pinging,
    Quitting,
}

/// The login side of one probe: a backend connection created at the first bytes.
pub(super) struct ProbeLogin {
    config: Arc<BackendConfig>,
    backend: Option<Backend>,
    step: Step,
}

impl std::fmt::Debug for ProbeLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeLogin")
            .field("user", &self.config.user)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Clone for ProbeLogin {
    /// The same login, not yet started: a connection cannot be shared.
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.config))
    }
}

impl ProbeLogin {
    pub(super) fn new(config: Arc<BackendConfig>) -> Self {
        Self {
            config,
            backend: None,
            step: Step::LoggingIn,
        }
    }

    /// Bytes the server sent.
    pub(super) fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Option<Outcome> {
        let config = &self.config;
        let backend = self.backend.get_or_insert_with(|| {
            Backend::new(now, (**config).clone(), Box::new(SeededRandom::new(1)))
        });
        backend.handle_input(now, bytes);
        self.drive(now)
    }

    /// The server closed the connection.
    pub(super) fn handle_eof(&mut self, now: Instant) -> Option<Outcome> {
        let Some(backend) = self.backend.as_mut() else {
            return Some(Outcome::Down("closed before the greeting".into()));
        };
        backend.handle_eof(now);
        self.drive(now)
    }

    /// The next bytes to write.
    pub(super) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.backend.as_mut()?.poll_transmit()
    }

    /// True while bytes wait to be written.
    pub(super) fn has_transmit(&self) -> bool {
        self.backend.as_ref().is_some_and(Backend::has_transmit)
    }

    /// Where the login is, for a timeout's message.
    pub(super) fn waiting_for(&self) -> &'static str {
        match self.step {
            Step::LoggingIn => "the monitor login",
            Step::Pinging | Step::Quitting => "COM_PING",
        }
    }

    fn drive(&mut self, now: Instant) -> Option<Outcome> {
        let backend = self.backend.as_mut()?;
        while let Some(event) = backend.poll_event() {
            let outcome = match (self.step, event) {
                (Step::LoggingIn, Event::Connected(_)) => {
                    // Idle after the login: the command is accepted.
                    let _ = backend.send_raw_command(now, Bytes::from_static(&[Command::COM_PING]));
                    self.step = Step::Pinging;
                    None
                }
                (Step::LoggingIn, Event::AuthFailed { error, .. }) => {
                    Some(Outcome::LoginRefused(error.to_string()))
                }
                (Step::LoggingIn, Event::Closed { error }) => Some(match error {
                    // A plugin the account's secret cannot answer, TLS the server does not
                    // offer...: the server is there, the account or its transport is wrong.
                    Some(e @ (BackendError::Auth(_) | BackendError::Unsupported(_))) => {
                        Outcome::LoginRefused(e.to_string())
                    }
                    Some(e) => Outcome::Down(format!("during the monitor login: {e}")),
                    None => Outcome::Down("closed during the monitor login".into()),
                }),
                (Step::Pinging, Event::ResponseComplete(summary)) => Some(match summary.error {
                    Some(err) => Outcome::Down(format!("COM_PING answered {err}")),
                    None => {
                        let quit = Bytes::from_static(&[Command::COM_QUIT]);
                        let _ = backend.send_raw_command(now, quit);
                        self.step = Step::Quitting;
                        Outcome::Served
                    }
                }),
                (Step::Pinging, Event::Closed { error }) => Some(Outcome::Down(match error {
                    Some(e) => format!("during COM_PING: {e}"),
                    None => "closed during COM_PING".into(),
                })),
                _ => None,
            };
            if outcome.is_some() {
                return outcome;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{CheckFailure, HealthProbe, Verdict};
    use super::*;
    use crate::auth::{AuthPlugin, ClientSecret, Credential, Password};
    use crate::frontend::{self, AuthMode, Frontend, FrontendConfig, UserEntry, UserTable};
    use crate::ProtocolError;

    const TIMEOUT: Duration = Duration::from_millis(400);

    /// An in-memory server knowing `monitor` / `pw` (native); `ping_error` answers COM_PING with
    /// an ERR.
    struct Server {
        fe: Frontend,
        commands: Vec<u8>,
        quit: bool,
        ping_error: bool,
    }

    impl Server {
        fn new(now: Instant) -> Self {
            let mut users = UserTable::new();
            users.insert(
                "monitor",
                UserEntry {
                    credential: Credential::native_from_password(b"pw"),
                    plugin: AuthPlugin::MysqlNativePassword,
                },
            );
            let mut config = FrontendConfig::new(AuthMode::Proxy {
                users: Arc::new(users),
                sha2_cache: None,
                rsa: None,
            });
            config.auto_accept_login = true;
            config.server_version = "10.11.0-MariaDB-test".into();
            let fe = Frontend::new(
                Arc::new(config),
                5,
                "127.0.0.1",
                now,
                Box::new(SeededRandom::new(3)),
            );
            Self {
                fe,
                commands: Vec::new(),
                quit: false,
                ping_error: false,
            }
        }
    }

    fn probe(now: Instant, password: &str) -> HealthProbe {
        let secret = ClientSecret::Sha1(Password::new(password).sha1());
        let login = Arc::new(BackendConfig::new("monitor", secret));
        let addr = "127.0.0.1:3306".parse().unwrap();
        HealthProbe::new(1, 0, addr, now, TIMEOUT).with_login(login)
    }

    /// Moves bytes between the probe and the server until neither has any; the server's bytes
    /// arrive in `chunk`-byte reads.
    fn run(p: &mut HealthProbe, server: &mut Server, now: Instant, chunk: usize) {
        loop {
            let mut moved = false;
            while let Some(bytes) = server.fe.poll_transmit() {
                moved = true;
                for piece in bytes.chunks(chunk) {
                    p.handle_input(now, piece);
                }
            }
            while let Some(bytes) = p.poll_transmit() {
                moved = true;
                server.fe.handle_input(now, &bytes);
            }
            while let Some(event) = server.fe.poll_event() {
                moved = true;
                match event {
                    frontend::Event::Command(c) => {
                        let code = c.code();
                        server.commands.push(code);
                        if code == Command::COM_PING && server.ping_error {
                            let err =
                                ProtocolError::new(1053, "08S01", "Server shutdown in progress");
                            server.fe.send_error(now, &err).unwrap();
                        } else {
                            server.fe.send_ok_empty(now).unwrap();
                        }
                        server.fe.end_response(now).unwrap();
                    }
                    frontend::Event::Closed { reason } => {
                        server.quit = reason == frontend::CloseReason::Quit;
                    }
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn failure(verdict: Option<&Verdict>) -> CheckFailure {
        match verdict {
            Some(Err(f)) => f.clone(),
            other => panic!("expected a failed check, got {other:?}"),
        }
    }

    #[test]
    fn logs_in_pings_and_quits() {
        for chunk in [1, 7, 4096] {
            let now = Instant::now();
            let mut server = Server::new(now);
            let mut p = probe(now, "pw");
            run(&mut p, &mut server, now, chunk);
            assert_eq!(p.verdict(), Some(&Ok("10.11.0-MariaDB-test".to_owned())));
            assert!(p.is_done() && p.warning().is_none());
            // A clean session: the ping, then COM_QUIT (read by the server as a quit).
            assert_eq!(server.commands, [Command::COM_PING], "reads of {chunk}");
            assert!(server.quit, "the server saw COM_QUIT (reads of {chunk})");
        }
    }

    #[test]
    fn the_quit_is_written_before_the_probe_is_done() {
        let now = Instant::now();
        let mut server = Server::new(now);
        let mut p = probe(now, "pw");
        // Everything up to the ping's answer, without taking the probe's last bytes.
        loop {
            let mut moved = false;
            while let Some(b) = server.fe.poll_transmit() {
                moved = true;
                p.handle_input(now, &b);
            }
            if p.verdict().is_some() {
                break;
            }
            while let Some(b) = p.poll_transmit() {
                moved = true;
                server.fe.handle_input(now, &b);
            }
            while let Some(frontend::Event::Command(_)) = server.fe.poll_event() {
                moved = true;
                server.fe.send_ok_empty(now).unwrap();
                server.fe.end_response(now).unwrap();
            }
            assert!(moved, "stuck before a verdict");
        }
        assert!(!p.is_done(), "COM_QUIT still to write");
        assert_eq!(
            p.poll_transmit().as_deref(),
            Some(&[1, 0, 0, 0, Command::COM_QUIT][..])
        );
        assert!(p.is_done());
    }

    #[test]
    fn a_refused_login_leaves_the_backend_up_with_a_warning() {
        let now = Instant::now();
        let mut server = Server::new(now);
        let mut p = probe(now, "wrong");
        run(&mut p, &mut server, now, 4096);
        assert_eq!(p.verdict(), Some(&Ok("10.11.0-MariaDB-test".to_owned())));
        let warning = p.warning().expect("a warning");
        assert!(
            warning.starts_with(
                "monitor login refused: ERROR 1045 (28000): Access denied for user 'monitor'"
            ),
            "{warning}"
        );
        assert!(!warning.contains("wrong"), "no secret in it: {warning}");
        assert!(p.is_done());
        assert!(server.commands.is_empty());
    }

    #[test]
    fn a_failed_ping_or_a_close_during_the_login_is_down() {
        let now = Instant::now();
        let mut server = Server::new(now);
        server.ping_error = true;
        let mut p = probe(now, "pw");
        run(&mut p, &mut server, now, 4096);
        let err = failure(p.verdict());
        assert!(
            err.reason.contains("COM_PING answered ERROR 1053") && !err.refusing,
            "{err}"
        );
        assert!(
            p.is_done() && p.poll_transmit().is_none(),
            "nothing more is sent"
        );

        // The server closes after its greeting.
        let mut server = Server::new(now);
        let mut p = probe(now, "pw");
        while let Some(b) = server.fe.poll_transmit() {
            p.handle_input(now, &b);
        }
        assert!(p.verdict().is_none());
        p.handle_eof(now);
        let err = failure(p.verdict());
        assert!(err.reason.contains("during the monitor login"), "{err}");
        assert!(p.is_done(), "a failed check writes nothing more");
    }

    #[test]
    fn an_err_in_place_of_the_greeting_is_judged_as_without_a_login() {
        let now = Instant::now();
        let mut p = probe(now, "pw");
        let mut err = vec![0xFF];
        err.extend_from_slice(&1040u16.to_le_bytes());
        err.extend_from_slice(b"Too many connections");
        let mut frame = vec![err.len() as u8, 0, 0, 0];
        frame.extend_from_slice(&err);
        p.handle_input(now, &frame);
        let f = failure(p.verdict());
        assert!(
            f.refusing && f.reason.contains("too many connections"),
            "{f}"
        );
        assert!(p.is_done() && p.poll_transmit().is_none());
    }

    #[test]
    fn a_silent_server_after_the_greeting_times_out_naming_the_step() {
        let now = Instant::now();
        let mut server = Server::new(now);
        let mut p = probe(now, "pw");
        while let Some(b) = server.fe.poll_transmit() {
            p.handle_input(now, &b);
        }
        assert!(p.poll_transmit().is_some(), "the login response");
        p.handle_timeout(now + TIMEOUT);
        let err = failure(p.verdict());
        assert!(
            err.reason.contains("no answer to the monitor login within"),
            "{err}"
        );
        assert!(p.is_done());
        // A write that fails is the check's failure too.
        let mut p = probe(now, "pw");
        let mut server = Server::new(now);
        while let Some(b) = server.fe.poll_transmit() {
            p.handle_input(now, &b);
        }
        p.write_failed(now, &std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(failure(p.verdict()).reason.starts_with("write:"));
        assert!(p.is_done() && p.poll_transmit().is_none());
    }

    #[test]
    fn a_clone_before_the_run_is_the_same_probe() {
        let now = Instant::now();
        let original = probe(now, "pw");
        let mut copy = original.clone();
        let mut server = Server::new(now);
        run(&mut copy, &mut server, now, 4096);
        assert_eq!(copy.verdict(), Some(&Ok("10.11.0-MariaDB-test".to_owned())));
        assert!(server.quit);
    }
}
