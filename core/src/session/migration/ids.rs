//! Prepared-statement ids after a `replay` migration: the client keeps the ids it was given; the
//! new backend gave its own when ferry re-prepared the statements. [`StatementIds`] maps one to
//! the other in the commands that name a statement (COM_STMT_EXECUTE, FETCH, CLOSE, RESET,
//! SEND_LONG_DATA: the id is at payload offset 1..5) and gives statements prepared afterwards
//! client ids that cannot collide with the ones the client holds. It exists only once a replay
//! migration happened; before that ids pass untouched.
//!
//! A re-prepared statement has no parameter types bound on the new backend, while a client that
//! bound them once sends later executes without them (`new_params_bound_flag` = 0: libmysqlclient,
//! so sysbench, PHP, ...), which the server refuses (1210). So the first execute of each
//! re-prepared statement that comes without types gets the types the client last bound (recorded
//! by the [`Tracker`](super::Tracker)) put back in.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};

use crate::wire::Command;
use crate::BuildIdHasher;
use crate::IdMap;

/// The client ↔ backend statement id map.
#[derive(Debug, Default)]
pub(crate) struct StatementIds {
    to_backend: IdMap<u32>,
    to_client: IdMap<u32>,
    /// Re-prepared statements (client ids) with no parameter types bound on this backend yet.
    unbound: HashSet<u32, BuildIdHasher>,
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
    /// An empty map whose new client ids start above every id in `client_ids` and those
    /// `previous` handed out. It reuses `previous`'s tables: under multiplexing a map is made
    /// for each statement that takes a pooled connection.
    pub(crate) fn new(
        previous: Option<Box<StatementIds>>,
        client_ids: impl Iterator<Item = u32>,
    ) -> Box<Self> {
        let floor = previous.as_ref().map_or(1, |p| p.next_client);
        let mut ids = previous.unwrap_or_default();
        ids.to_backend.clear();
        ids.to_client.clear();
        ids.unbound.clear();
        ids.next_client = client_ids
            .map(|id| id.saturating_add(1))
            .fold(floor, u32::max);
        ids
    }

    /// Records that the client's `client` was re-prepared as the backend's `backend` (its
    /// parameter types are not bound there yet).
    pub(crate) fn insert(&mut self, client: u32, backend: u32) {
        self.map(client, backend);
        self.unbound.insert(client);
    }

    fn map(&mut self, client: u32, backend: u32) {
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
        // Prepared by the client itself: its first execute binds the types.
        self.map(client, backend);
        client
    }

    /// The statement a command names, when the client holds no statement of that id (closed,
    /// reset, never given). Every statement the client holds is in the map, and an id outside
    /// it must not reach the backend, where the same number can be another statement. `-1`
    /// (MariaDB's "the statement just prepared") passes.
    pub(crate) fn unknown(&self, payload: &[u8]) -> Option<u32> {
        statement_id(payload).filter(|&id| id != u32::MAX && !self.to_backend.contains_key(&id))
    }

    /// The client closed its statement `client`.
    pub(crate) fn forget(&mut self, client: u32) {
        if let Some(backend) = self.to_backend.remove(&client) {
            self.to_client.remove(&backend);
        }
        self.unbound.remove(&client);
    }

    /// The client's id for the backend's `backend`.
    pub(crate) fn client_id(&self, backend: u32) -> Option<u32> {
        self.to_client.get(&backend).copied()
    }

    /// The command with its statement id rewritten for the backend (a copy, only when it
    /// changes), and the parameter types put back into the first execute of a re-prepared
    /// statement that lacks them (`bound_types`: the types the client last bound, by client id,
    /// two bytes per parameter); COM_STMT_CLOSE forgets the statement.
    pub(crate) fn rewrite(&mut self, payload: Bytes, bound_types: &IdMap<Box<[u8]>>) -> Bytes {
        let Some(client) = statement_id(&payload) else {
            return payload;
        };
        let Some(&backend) = self.to_backend.get(&client) else {
            return payload;
        };
        let mut payload = payload;
        match payload[0] {
            Command::COM_STMT_CLOSE => self.forget(client),
            Command::COM_STMT_EXECUTE if self.unbound.contains(&client) => {
                if let Some(types) = bound_types.get(&client) {
                    match with_types(&payload, types) {
                        // The client bound types itself: they stay bound from now on.
                        Bound::Already => {
                            self.unbound.remove(&client);
                        }
                        Bound::Added(p) => {
                            self.unbound.remove(&client);
                            payload = p;
                        }
                        Bound::Unknown => {}
                    }
                }
            }
            _ => {}
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
        self.unbound.clear();
    }
}

/// What [`with_types`] found.
enum Bound {
    /// `new_params_bound_flag` is 1.
    Already,
    /// The execute with the flag set and `types` inserted.
    Added(Bytes),
    /// Not an execute with that many parameters: left alone (the server judges it).
    Unknown,
}

/// COM_STMT_EXECUTE layout: command, statement id (4), flags (1), iteration count (4), then with
/// `n` parameters: NULL bitmap ((n + 7) / 8), `new_params_bound_flag` (1), types (2n) if the flag
/// is 1, values.
const EXECUTE_HEADER: usize = 10;

/// `payload` (a COM_STMT_EXECUTE) with `types` bound, for `types.len() / 2` parameters.
fn with_types(payload: &Bytes, types: &[u8]) -> Bound {
    let n = types.len() / 2;
    if n == 0 || !types.len().is_multiple_of(2) {
        return Bound::Unknown;
    }
    let flag_at = EXECUTE_HEADER + n.div_ceil(8);
    match payload.get(flag_at) {
        Some(1) => Bound::Already,
        Some(0) => {
            let mut out = BytesMut::with_capacity(payload.len() + types.len());
            out.extend_from_slice(&payload[..flag_at]);
            out.extend_from_slice(&[1]);
            out.extend_from_slice(types);
            out.extend_from_slice(&payload[flag_at + 1..]);
            Bound::Added(out.freeze())
        }
        _ => Bound::Unknown,
    }
}

/// The parameter types a COM_STMT_EXECUTE binds (`new_params_bound_flag` = 1) for a statement
/// of `params` parameters, if it binds them.
pub(crate) fn bound_types(payload: &[u8], params: u16) -> Option<&[u8]> {
    let n = usize::from(params);
    if n == 0 || payload.first() != Some(&Command::COM_STMT_EXECUTE) {
        return None;
    }
    let flag_at = EXECUTE_HEADER + n.div_ceil(8);
    match payload.get(flag_at) {
        Some(1) => payload.get(flag_at + 1..flag_at + 1 + 2 * n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_commands_and_assigns_fresh_ids() {
        let none = IdMap::default();
        let mut ids = StatementIds::new(None, [5, 6].into_iter());
        ids.insert(5, 1);
        ids.insert(6, 2);
        let exec = Bytes::from_static(&[Command::COM_STMT_EXECUTE, 6, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            &ids.rewrite(exec, &none)[..],
            &[Command::COM_STMT_EXECUTE, 2, 0, 0, 0, 0, 1, 0, 0, 0]
        );
        let query = Bytes::from_static(&[Command::COM_QUERY, 6, 0, 0, 0]);
        assert_eq!(
            ids.rewrite(query.clone(), &none),
            query,
            "other commands untouched"
        );
        assert_eq!(ids.assign(5), 7, "above every id the client holds");
        assert_eq!(ids.client_id(5), Some(7));
        let close = Bytes::from_static(&[Command::COM_STMT_CLOSE, 5, 0, 0, 0]);
        assert_eq!(&ids.rewrite(close, &none)[1..5], &1u32.to_le_bytes());
        assert_eq!(ids.client_id(1), None, "closed");
        let next = StatementIds::new(Some(ids), [6, 7].into_iter());
        assert_eq!(next.next_client, 8);
        assert_eq!(next.client_id(2), None, "the tables start empty");
    }

    #[test]
    fn ids_the_client_does_not_hold_are_unknown() {
        let mut ids = StatementIds::new(None, [5].into_iter());
        ids.insert(5, 1);
        let execute = |id: u32| [&[Command::COM_STMT_EXECUTE][..], &id.to_le_bytes()].concat();
        assert_eq!(ids.unknown(&execute(5)), None);
        assert_eq!(
            ids.unknown(&execute(1)),
            Some(1),
            "the backend's number is not the client's"
        );
        assert_eq!(
            ids.unknown(&execute(u32::MAX)),
            None,
            "-1 is the statement just prepared"
        );
        assert_eq!(ids.unknown(b"\x03SELECT 1"), None);
        ids.forget(5);
        assert_eq!(ids.unknown(&execute(5)), Some(5), "closed");
    }

    /// COM_STMT_EXECUTE of statement `id`, two parameters (a LONGLONG 7 and a NULL), with or
    /// without their types.
    fn execute(id: u8, types: bool) -> Vec<u8> {
        let mut p = vec![Command::COM_STMT_EXECUTE, id, 0, 0, 0, 0, 1, 0, 0, 0];
        p.push(0b10); // NULL bitmap: the second parameter
        if types {
            p.extend_from_slice(&[1, 8, 0, 6, 0]);
        } else {
            p.push(0);
        }
        p.extend_from_slice(&7i64.to_le_bytes());
        p
    }

    #[test]
    fn the_first_execute_of_a_re_prepared_statement_gets_its_types_back() {
        let with = execute(6, true);
        let types = bound_types(&with, 2).expect("bound").to_vec();
        assert_eq!(types, [8, 0, 6, 0]);
        assert_eq!(bound_types(&execute(6, false), 2), None);
        assert_eq!(bound_types(&with, 0), None, "no parameters, nothing bound");
        let mut recorded = IdMap::default();
        recorded.insert(6, types.into_boxed_slice());

        let mut ids = StatementIds::new(None, [6].into_iter());
        ids.insert(6, 2);
        let got = ids.rewrite(Bytes::from(execute(6, false)), &recorded);
        assert_eq!(&got[..], &execute(2, true)[..], "types put back, id mapped");
        // Bound now: later executes without types pass as the client sent them.
        let got = ids.rewrite(Bytes::from(execute(6, false)), &recorded);
        assert_eq!(&got[..], &execute(2, false)[..]);

        // A client that binds types itself needs nothing added, then or later.
        let mut ids = StatementIds::new(None, [6].into_iter());
        ids.insert(6, 2);
        assert_eq!(
            &ids.rewrite(Bytes::from(execute(6, true)), &recorded)[..],
            &execute(2, true)[..]
        );
        assert_eq!(
            &ids.rewrite(Bytes::from(execute(6, false)), &recorded)[..],
            &execute(2, false)[..]
        );

        // Statements the client prepares after the migration bind their own types.
        let fresh = ids.assign(9);
        let mut recorded_fresh = recorded.clone();
        recorded_fresh.insert(fresh, vec![8, 0, 6, 0].into_boxed_slice());
        let mut exec = execute(0, false);
        exec[1..5].copy_from_slice(&fresh.to_le_bytes());
        let got = ids.rewrite(Bytes::from(exec.clone()), &recorded_fresh);
        exec[1..5].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(&got[..], &exec[..]);

        // A truncated execute is left for the server to judge.
        let mut ids = StatementIds::new(None, [6].into_iter());
        ids.insert(6, 2);
        let short = Bytes::from_static(&[Command::COM_STMT_EXECUTE, 6, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&ids.rewrite(short, &recorded)[1..5], &2u32.to_le_bytes());
    }
}
