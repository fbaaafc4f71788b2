//! A long-running child program under test (a proxy binary, an example), killed on drop so that
//! a failed test never leaves it running, and stopped by a signal when the test says so.

use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Owns a running child: [`ChildGuard::signal_and_wait`] stops it, dropping it kills it.
#[derive(Debug)]
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The child, to take its pipes; `None` once it was stopped.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.0.as_mut()
    }

    /// Sends `signal` (a name for `kill`, e.g. `"TERM"`), then waits at most `limit` for the
    /// exit status. Panics if the signal cannot be sent, if the child is still running at
    /// `limit` (it is killed then) or if it was already stopped.
    pub fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> ExitStatus {
        let mut child = self.0.take().expect("the child was already stopped");
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"))
            .success();
        assert!(ok, "kill -{signal} failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("wait: {e}")) {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("still running {limit:?} after SIG{signal}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use super::*;

    /// A child that would run for 30 s, its stdout a pipe.
    fn sleeper() -> ChildGuard {
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        ChildGuard::new(child)
    }

    #[test]
    fn a_signal_stops_the_child_and_reports_how() {
        use std::os::unix::process::ExitStatusExt;
        let mut guard = sleeper();
        let status = guard.signal_and_wait("TERM", Duration::from_secs(10));
        assert_eq!(status.signal(), Some(15), "{status:?}");
        assert!(guard.child_mut().is_none());
    }

    #[test]
    fn dropping_the_guard_kills_the_child() {
        use std::io::Read;
        let mut guard = sleeper();
        let mut stdout = guard.child_mut().unwrap().stdout.take().unwrap();
        let start = Instant::now();
        drop(guard);
        // The pipe ends with the child: at once when killed, after 30 s otherwise.
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
