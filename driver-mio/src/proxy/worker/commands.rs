//! What other threads hand the worker: clients placed here by the endpoint after another worker
//! accepted them, backends' host names the resolver threads looked up, and the endpoint's commands for this worker's sessions (migrate, cancel,
//! shutdown), which the worker delivers to their connections.

use std::time::Instant;

use super::super::shared::WorkerCommand;
use super::Worker;

impl Worker {
    /// Serves handed-over clients and delivers the endpoint's commands (the waker rang).
    pub(super) fn run_commands(&mut self, now: Instant) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                WorkerCommand::Adopt { stream, conn } => self.adopt(stream, *conn, now),
                WorkerCommand::Resolved {
                    slot,
                    session,
                    conn,
                    result,
                } => self.resolved(slot, session, conn, result, now),
            }
        }
        let commands: Vec<_> = {
            let mut endpoint = self.shared.endpoint();
            std::iter::from_fn(|| endpoint.poll_command(self.index)).collect()
        };
        for (id, command) in commands {
            let Some(slot) = self.find_slot(id) else {
                // Closed meanwhile: nothing to do.
                continue;
            };
            if let Some(s) = self.sessions.get_mut(slot) {
                s.conn.handle_command(now, command);
            }
            self.after_call(slot, now);
        }
    }

    /// The slot of live session `id`.
    fn find_slot(&self, id: u64) -> Option<usize> {
        self.sessions
            .iter()
            .find(|(_, s)| s.id == id && !s.conn.is_closed())
            .map(|(slot, _)| slot)
    }
}
