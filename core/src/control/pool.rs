//! The backend connection pool of multiplexing (`[multiplexing]`): many client sessions on few
//! backend connections.

use std::collections::VecDeque;

use super::connection::PoolClose;

/// The pool (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Pool {
    closes: VecDeque<PoolClose>,
}

impl Pool {
    /// The next pooled connection to close.
    pub(super) fn poll_close(&mut self) -> Option<PoolClose> {
        self.closes.pop_front()
    }
}
