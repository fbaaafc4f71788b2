//! Command relay: result sets, multi-results, prepared statements, LOCAL INFILE, big packets,
//! capability bridging, determinism.

use super::*;
use crate::wire::{ExecuteParams, Param, StmtExecute, StmtExecuteHeader, Value, ValueType};

#[test]
fn multi_results_arrive_whole_and_in_order() {
    let mut net = Net::logged_in(true);
    let (packets, summary) = net.query(b"MULTI");
    assert!(summary.is_ok());
    assert_eq!(summary.result_sets, 2);
    assert_eq!(summary.rows, 3);
    let kinds: Vec<_> = packets.iter().map(|p| p.0).collect();
    use PacketKind::*;
    assert_eq!(
        kinds,
        [
            ResultSetHeader,
            ColumnDefinition,
            Row,
            Eof,
            Ok,
            ResultSetHeader,
            ColumnDefinition,
            Row,
            Row,
            Eof
        ]
    );
    // The session is ready for the next command.
    let (_, summary) = net.query(b"SELECT 1");
    assert_eq!(summary.rows, 1);
}

#[test]
fn errors_leave_the_connection_usable() {
    let mut net = Net::logged_in(false);
    let (_, summary) = net.query(b"nonsense");
    assert_eq!(summary.error.as_ref().unwrap().code, 1064);
    assert!(net.events.iter().any(|e| matches!(
        e,
        Event::CommandDone {
            code: Command::COM_QUERY,
            error: true,
            ..
        }
    )));
    assert_eq!(net.query(b"SELECT 1").1.rows, 1);
}

/// The latency of each command: from its arrival to the end of its response.
fn command_durations(net: &Net) -> Vec<(u8, Duration)> {
    net.events
        .iter()
        .filter_map(|e| match e {
            Event::CommandDone { code, duration, .. } => Some((*code, *duration)),
            _ => None,
        })
        .collect()
}

#[test]
fn command_done_carries_the_time_from_arrival_to_the_response_end() {
    let mut net = Net::logged_in(true);
    net.events.clear();
    // The command reaches the session now; the backend's answer comes 30 ms later.
    let q = Command::Query(Query {
        attributes: vec![],
        sql: b"SELECT 1",
    });
    net.client.send_command(net.now, &q).unwrap();
    while let Some(bytes) = net.client.poll_transmit() {
        net.session.handle_input(net.now, Peer::Client, &bytes);
    }
    net.now += Duration::from_millis(30);
    net.pump();
    assert_eq!(
        command_durations(&net),
        [(Command::COM_QUERY, Duration::from_millis(30))]
    );
    // Answered at once: no time passed.
    net.events.clear();
    net.query(b"SELECT 1");
    assert_eq!(
        command_durations(&net),
        [(Command::COM_QUERY, Duration::ZERO)]
    );
}

#[test]
fn prepared_statement_prepare_execute_close() {
    let mut net = Net::logged_in(true);
    net.client
        .send_command(
            net.now,
            &Command::StmtPrepare {
                query: b"SELECT ?+1",
            },
        )
        .unwrap();
    net.pump();
    let (_, summary) = net.take_response();
    let ok = summary.prepared.unwrap();
    assert_eq!((ok.statement_id, ok.num_params, ok.num_columns), (5, 1, 1));
    let tracked = net.session.state().statements[&5];
    assert_eq!((tracked.params, tracked.columns), (1, 1));
    let execute = Command::StmtExecute(StmtExecute {
        header: StmtExecuteHeader {
            statement_id: 5,
            flags: 0,
            iteration_count: 1,
        },
        params: ExecuteParams::Bound(vec![Param {
            ty: ValueType {
                column_type: ColumnType::LongLong,
                unsigned: false,
            },
            name: b"",
            value: Value::I64(41),
        }]),
    });
    net.client.send_command(net.now, &execute).unwrap();
    net.pump();
    let (packets, summary) = net.take_response();
    assert_eq!(summary.rows, 1);
    let row = &packets.iter().find(|p| p.0 == PacketKind::Row).unwrap().1;
    assert_eq!(&row[2..], &42i64.to_le_bytes());
    // COM_STMT_CLOSE has no response: the session is idle at once and forgets the statement.
    net.client
        .send_command(net.now, &Command::StmtClose { statement_id: 5 })
        .unwrap();
    net.pump();
    assert!(net.session.is_idle());
    assert!(net.session.state().statements.is_empty());
    assert_eq!(
        net.server_state.commands.last().unwrap()[0],
        Command::COM_STMT_CLOSE
    );
    assert_eq!(net.query(b"SELECT 1").1.rows, 1);
}

#[test]
fn load_data_local_is_relayed_from_the_client() {
    let mut net = Net::logged_in(false);
    net.local_file = pattern(100_000);
    let (packets, summary) = net.query(b"LOAD");
    assert_eq!(packets[0].0, PacketKind::LocalInfileRequest);
    assert_eq!(&packets[0].1[1..], b"data.csv");
    assert_eq!(summary.affected_rows, 2);
    assert_eq!(net.server_state.loaded, pattern(100_000));
    assert_eq!(net.query(b"SELECT 1").1.rows, 1);
}

#[test]
fn packets_over_16_mib_both_ways() {
    let mut net = Net::logged_in(true);
    let (packets, summary) = net.query(b"BIG");
    assert_eq!(summary.rows, 1);
    let row = &packets.iter().find(|p| p.0 == PacketKind::Row).unwrap().1;
    assert!(row.len() > BIG && row[row.len() - 1] == b'z');
    // The big row went to the client by reference: few, large transmits.
    let mut sql = b"BIGQ".to_vec();
    sql.extend(pattern(BIG));
    let (_, summary) = net.query(&sql);
    assert_eq!(summary.affected_rows, sql.len() as u64);
    let got = net.server_state.commands.last().unwrap();
    assert_eq!(&got[1..], &sql[..]);
}

#[test]
fn big_payloads_are_not_copied_on_the_way_to_the_client() {
    let mut net = Net::logged_in(true);
    let q = Command::Query(Query {
        attributes: vec![],
        sql: b"BIG",
    });
    net.client.send_command(net.now, &q).unwrap();
    // Drive by hand to look at the session's transmits.
    let mut sizes = Vec::new();
    for _ in 0..20 {
        while let Some(b) = net.client.poll_transmit() {
            net.session.handle_input(net.now, Peer::Client, &b);
        }
        while let Some(t) = net.session.poll_transmit() {
            match t.peer {
                Peer::Client => {
                    sizes.push(t.data.len());
                    net.client.handle_input(net.now, &t.data);
                }
                Peer::Backend(_) => net.server.as_mut().unwrap().handle_input(net.now, &t.data),
            }
        }
        let server = net.server.as_mut().unwrap();
        while let Some(e) = server.poll_event() {
            serve(server, net.now, &mut net.server_state, e);
        }
        while let Some(b) = server.poll_transmit() {
            net.session
                .handle_input(net.now, Peer::Backend(net.conn.unwrap()), &b);
        }
    }
    // Header chunk, the 16 MiB frame as one slice, then a chunk with the rest.
    assert!(sizes.contains(&crate::wire::MAX_FRAME_PAYLOAD), "{sizes:?}");
}

#[test]
fn ok_packets_lose_session_state_for_a_client_without_tracking() {
    let mut net = Net::logged_in(true);
    assert!(!net
        .session
        .frontend()
        .capabilities()
        .contains(Capabilities::SESSION_TRACK));
    assert!(net
        .session
        .backend()
        .unwrap()
        .capabilities()
        .contains(Capabilities::SESSION_TRACK));
    let (packets, summary) = net.query(b"SET autocommit=0");
    let (kind, payload) = &packets[0];
    assert_eq!(*kind, PacketKind::Ok);
    let ok = OkPacket::parse(payload, net.client.capabilities()).unwrap();
    assert!(!ok.status.contains(ServerStatus::SESSION_STATE_CHANGED));
    assert_eq!(ok.info, b"vars changed");
    assert!(ok.session_state.is_empty());
    assert!(summary.session.is_empty());
    // ferry itself tracked what changed.
    let state = net.session.state();
    assert_eq!(state.variables[&b"autocommit"[..]], b"OFF");
    assert_eq!(state.schema.as_deref(), Some(&b"shop"[..]));
}

#[test]
fn ok_packets_keep_session_state_for_a_client_that_tracks() {
    let mut config = session_config(true);
    let mut fe = (*config.frontend).clone();
    fe.capabilities |= Capabilities::SESSION_TRACK;
    config.frontend = Arc::new(fe);
    let mut net = Net::new(config, client_config(PASSWORD));
    net.pump();
    assert!(net.client_connected());
    net.client_events.clear();
    let (_, summary) = net.query(b"SET autocommit=0");
    assert_eq!(
        summary.session.system_variables,
        vec![(b"autocommit".to_vec(), b"OFF".to_vec())]
    );
    assert_eq!(summary.session.schema.as_deref(), Some(&b"shop"[..]));
}

#[test]
fn a_client_without_deprecate_eof_gets_eof_packets() {
    let mut client = client_config(PASSWORD);
    client.mirror_deprecate_eof = true; // the test client does not ask for DEPRECATE_EOF
    let mut net = Net::new(session_config(false), client);
    net.pump();
    assert!(net.client_connected());
    net.client_events.clear();
    assert!(!net
        .client
        .capabilities()
        .contains(Capabilities::DEPRECATE_EOF));
    assert!(!net
        .session
        .backend()
        .unwrap()
        .capabilities()
        .contains(Capabilities::DEPRECATE_EOF));
    let (packets, summary) = net.query(b"MULTI");
    assert_eq!(summary.rows, 3);
    let eofs = packets.iter().filter(|p| p.0 == PacketKind::Eof).count();
    assert_eq!(eofs, 4, "column and row EOFs of both result sets");
}

#[test]
fn com_quit_closes_both_sides() {
    let mut net = Net::logged_in(true);
    net.client.send_command(net.now, &Command::Quit).unwrap();
    net.pump();
    assert_eq!(net.closed_reason(), Some(&CloseReason::Quit));
    assert!(net.to_server.ends_with(&[1, 0, 0, 0, Command::COM_QUIT]));
    let close = net
        .events
        .iter()
        .position(|e| matches!(e, Event::CloseBackend { .. }));
    let closed = net
        .events
        .iter()
        .position(|e| matches!(e, Event::Closed { .. }));
    assert!(close.unwrap() < closed.unwrap());
    assert!(matches!(net.events.last(), Some(Event::Closed { .. })));
}

/// One scripted run: everything the session wrote to either side.
fn scripted_run() -> (Vec<u8>, Vec<u8>) {
    scripted_run_with(false)
}

/// [`scripted_run`], feeding the session through `input_buffer` when `buffered`.
fn scripted_run_with(buffered: bool) -> (Vec<u8>, Vec<u8>) {
    let mut net = Net::new(session_config(false), client_config(PASSWORD));
    net.buffered = buffered;
    net.pump();
    assert!(net.client_connected());
    net.client_events.clear();
    net.query(b"SELECT 1");
    net.query(b"MULTI");
    net.query(b"SET autocommit=0");
    net.query(b"LOAD");
    net.query(b"nonsense");
    (net.to_client, net.to_server)
}

#[test]
fn the_same_event_sequence_gives_the_same_bytes() {
    let a = scripted_run();
    let b = scripted_run();
    assert!(!a.0.is_empty() && !a.1.is_empty());
    assert!(a == b, "two identical runs wrote different bytes");
}

#[test]
fn reading_into_the_input_buffer_gives_the_same_bytes_as_handle_input() {
    let copied = scripted_run_with(false);
    let buffered = scripted_run_with(true);
    assert!(!copied.0.is_empty() && !copied.1.is_empty());
    assert!(
        copied == buffered,
        "input_buffer changed what the session wrote"
    );
    // Big packets (over one frame) read in pieces straight into the decoders, both ways.
    let mut net = Net::logged_in(true);
    net.buffered = true;
    let (packets, summary) = net.query(b"BIG");
    assert!(summary.is_ok(), "{summary:?}");
    assert!(packets
        .iter()
        .any(|(_, p)| p.len() > crate::wire::MAX_FRAME_PAYLOAD));
}

#[test]
fn no_input_buffer_for_an_unknown_backend_or_a_closed_session() {
    let mut net = Net::logged_in(true);
    let conn = net.conn.unwrap();
    assert!(net.session.input_buffer(Peer::Client).is_some());
    assert!(net.session.input_buffer(Peer::Backend(conn)).is_some());
    assert!(net.session.input_buffer(Peer::Backend(conn + 5)).is_none());
    net.session.handle_eof(net.now, Peer::Client);
    assert!(net.session.is_closed());
    assert!(net.session.input_buffer(Peer::Client).is_none());
    assert!(net.session.input_buffer(Peer::Backend(conn)).is_none());
}

#[test]
fn ok_info_is_reframed_for_a_tracking_client_on_a_backend_without_tracking() {
    let mut config = session_config(false);
    let mut fe = (*config.frontend).clone();
    fe.capabilities |= Capabilities::SESSION_TRACK;
    config.frontend = Arc::new(fe);
    let mut server = server_config();
    server.capabilities = server.capabilities.without(Capabilities::SESSION_TRACK);
    let mut net = Net::with_server(config, client_config(PASSWORD), server);
    net.pump();
    assert!(net.client_connected());
    net.client_events.clear();
    assert!(net
        .client
        .capabilities()
        .contains(Capabilities::SESSION_TRACK));
    let (packets, summary) = net.query(b"SET autocommit=0");
    assert!(summary.is_ok());
    let ok = OkPacket::parse(&packets[0].1, net.client.capabilities()).unwrap();
    assert_eq!(ok.info, b"vars changed");
}

#[test]
fn an_idle_session_lets_go_of_its_burst_buffers() {
    let mut net = Net::logged_in(true);
    // As after a large result set: queues and buffers at a high-water mark, since drained.
    net.session.transmits.reserve(5000);
    net.session.events.reserve(5000);
    net.session.scratch.reserve(100_000);
    net.session.backend_out.reserve(1 << 20);
    let (_, summary) = net.query(b"SELECT 1");
    assert!(summary.is_ok());
    assert!(net.session.is_idle());
    assert!(net.session.transmits.capacity() < 100);
    assert!(net.session.events.capacity() < 100);
    assert!(net.session.scratch.capacity() <= super::IDLE_SCRATCH_MAX);
    assert!(net.session.backend_out.capacity() <= crate::wire::RETAINED_BUFFER);
}

#[test]
fn a_session_idle_for_a_moment_releases_its_buffers_and_a_busy_one_keeps_them() {
    let mut net = Net::logged_in(true);
    // Busy: commands closer together than IDLE_RELEASE reuse every buffer (no allocation per
    // command).
    for _ in 0..3 {
        let (_, summary) = net.query(b"SELECT 1");
        assert!(summary.is_ok());
        net.advance(IDLE_RELEASE / 2);
    }
    assert!(net.session.events.capacity() > 0);
    assert!(net.session.frontend.retained_capacity() > 0);
    assert!(net.session.backend().unwrap().retained_capacity() > 0);
    // Idle for IDLE_RELEASE: everything goes, and no timer is left to wake it.
    net.advance(IDLE_RELEASE / 2);
    let session = &net.session;
    let own = session.transmits.capacity()
        + session.events.capacity()
        + session.scratch.capacity()
        + session.backend_out.capacity();
    assert_eq!(own, 0);
    assert_eq!(session.frontend.retained_capacity(), 0);
    assert_eq!(session.backend().unwrap().retained_capacity(), 0);
    assert_eq!(session.poll_timeout(), None);
    // The next command allocates them again.
    let (packets, summary) = net.query(b"SELECT 1");
    assert!(summary.is_ok());
    assert!(!packets.is_empty());
}
