//! Prepared-statement ids after a `replay` migration: the client keeps the ids it was given; the
//! new backend gave its own when ferry re-prepared the statements. [`StatementIds`] maps one to
//! the other in the commands that name a statement (COM_STMT_EXECUTE, FETCH, CLOSE, RESET,
//! SEND_LONG_DATA: the id is at payload offset 1..5) and gives statements prepared afterwards
//! client ids that cannot collide with the ones the client holds. It exists only once a replay
//! migration happened; before that ids pass untouched.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::wire::Command;

/// The client ↔ backend statement id map.
#[derive(Debug, Default)]
pub(crate) struct StatementIds {
    to_backend: HashMap<u32, u32>,
    to_client: HashMap<u32, u32>,
    /// The next id handed to the client for a statement prepared from now on.
    next_client: u32,
}

/// The statement id a command carries, if it is one that names a statement.
pub(crate) fn statement_id(payload: &[u8]) -> Option<u32> {
    match payload.first().copied()? {
        Command::COM_STMT_EXECUTE
        | Command::COM_STMT_FETCH
        | Command::COM_STMT_CLOSE
        | Command::COM_STMT_RESET
        | Command::COM_STMT_SEND_LONG_DATA => payload
            .get(1..5)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        _ => None,
    }
}

impl StatementIds {
    /// A map whose new client ids start above every id in `client_ids`.
    pub(crate) fn new(
        previous: Option<&StatementIds>,
        client_ids: impl Iterator<Item = u32>,
    ) -> Self {
        let floor = previous.map_or(1, |p| p.next_client);
        let next_client = client_ids
            .map(|id| id.saturating_add(1))
            .fold(floor, u32::max);
        Self {
            next_client,
            ..Self::default()
        }
    }

    /// Records that the client's `client` is the backend's `backend`.
    pub(crate) fn insert(&mut self, client: u32, backend: u32) {
        self.to_backend.insert(client, backend);
        self.to_client.insert(backend, client);
    }

    /// A client id for a statement the backend just prepared as `backend`.
    pub(crate) fn assign(&mut self, backend: u32) -> u32 {
        let mut client = self.next_client;
        while self.to_backend.contains_key(&client) || client == 0 {
            client = client.wrapping_add(1);
        }
        self.next_client = client.wrapping_add(1);
        self.insert(client, backend);
        client
    }

    /// The client's id for the backend's `backend`.
    pub(crate) fn client_id(&self, backend: u32) -> Option<u32> {
        self.to_client.get(&backend).copied()
    }

    /// The command with its statement id rewritten for the backend (a copy, only when it
    /// changes); COM_STMT_CLOSE forgets the statement.
    pub(crate) fn rewrite(&mut self, payload: Bytes) -> Bytes {
        let Some(client) = statement_id(&payload) else {
            return payload;
        };
        let Some(&backend) = self.to_backend.get(&client) else {
            return payload;
        };
        if payload[0] == Command::COM_STMT_CLOSE {
            self.to_backend.remove(&client);
            self.to_client.remove(&backend);
        }
        if backend == client {
            return payload;
        }
        let mut copy = BytesMut::from(&payload[..]);
        copy[1..5].copy_from_slice(&backend.to_le_bytes());
        copy.freeze()
    }

    /// COM_RESET_CONNECTION / COM_CHANGE_USER: every statement is gone (ids keep increasing).
    pub(crate) fn clear(&mut self) {
        self.to_backend.clear();
        self.to_client.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_commands_and_assigns_fresh_ids() {
        let mut ids = StatementIds::new(None, [5, 6].into_iter());
        ids.insert(5, 1);
        ids.insert(6, 2);
        let exec = Bytes::from_static(&[Command::COM_STMT_EXECUTE, 6, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            &ids.rewrite(exec)[..],
            &[Command::COM_STMT_EXECUTE, 2, 0, 0, 0, 0, 1, 0, 0, 0]
        );
        let query = Bytes::from_static(&[Command::COM_QUERY, 6, 0, 0, 0]);
        assert_eq!(
            ids.rewrite(query.clone()),
            query,
            "other commands untouched"
        );
        assert_eq!(ids.assign(5), 7, "above every id the client holds");
        assert_eq!(ids.client_id(5), Some(7));
        let close = Bytes::from_static(&[Command::COM_STMT_CLOSE, 5, 0, 0, 0]);
        assert_eq!(&ids.rewrite(close)[1..5], &1u32.to_le_bytes());
        assert_eq!(ids.client_id(1), None, "closed");
        let next = StatementIds::new(Some(&ids), [6, 7].into_iter());
        assert_eq!(next.next_client, 8);
    }
}
