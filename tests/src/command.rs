//! Running a child program to completion with a deadline, so a hung server or client fails a test
//! instead of hanging the whole run.

use std::fmt;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a finished program printed, and how it ended.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to standard output.
    pub stdout: String,
    /// Everything it wrote to standard error.
    pub stderr: String,
}

/// Why [`run_with_deadline`] has no [`CommandOutput`] to give.
#[derive(Debug)]
pub enum CommandError {
    /// The program could not be started at all.
    Spawn(std::io::Error),
    /// The program was still running at the deadline; it was killed.
    TimedOut {
        /// The deadline it missed.
        after: Duration,
        /// What it had written to standard error by then.
        stderr: String,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Spawn(e) => write!(f, "could not start: {e}"),
            CommandError::TimedOut { after, stderr } => {
                write!(f, "still running after {after:?}, killed; stderr: {stderr}")
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// Runs `cmd` with no standard input, collecting its output, and kills it if it is still running
/// after `timeout`.
pub fn run_with_deadline(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CommandError::Spawn)?;
    // Drain both pipes on their own threads: a child blocked on a full pipe would never exit.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            // Past the deadline, or the child can no longer be waited on: stop it either way.
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = stdout.map(join).unwrap_or_default();
    let stderr = stderr.map(join).unwrap_or_default();
    match status {
        Some(status) => Ok(CommandOutput {
            status,
            stdout,
            stderr,
        }),
        None => Err(CommandError::TimedOut {
            after: timeout,
            stderr,
        }),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn join(handle: thread::JoinHandle<String>) -> String {
    handle.join().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_output_and_status() {
        let out = run_with_deadline(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn kills_a_program_past_its_deadline() {
        let started = Instant::now();
        let err = run_with_deadline(Command::new("sleep").arg("30"), Duration::from_millis(200))
            .expect_err("sleep 30 cannot finish in 200 ms");
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn reports_a_missing_program() {
        let err = run_with_deadline(
            &mut Command::new("/nonexistent/ferry-no-such-program"),
            Duration::from_secs(1),
        )
        .expect_err("no such program");
        assert!(matches!(err, CommandError::Spawn(_)), "{err}");
    }
}
