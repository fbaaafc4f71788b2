//! Failures and endings: a backend dying mid-result, a client vanishing, idle timeout, shutdown,
//! oversized packets.

use super::*;

fn client_err(net: &Net) -> crate::ProtocolError {
    net.client_events
        .iter()
        .find_map(|e| match e {
            backend::Event::ResponseComplete(s) => s.error.clone(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ERR: {:?}", net.client_events))
}

fn send_query(net: &mut Net, sql: &[u8]) {
    net.client_events.clear();
    let q = Command::Query(Query {
        attributes: vec![],
        sql,
    });
    net.client.send_command(net.now, &q).unwrap();
    net.pump();
}

#[test]
fn backend_dying_mid_result_closes_the_client_without_an_err() {
    let mut net = Net::logged_in(true);
    send_query(&mut net, b"HALF");
    let rows = net
        .client_events
        .iter()
        .filter(|e| {
            matches!(
                e,
                backend::Event::Response {
                    kind: PacketKind::Row,
                    ..
                }
            )
        })
        .count();
    assert_eq!(rows, 1, "the first row was relayed at once");
    let conn = net.conn.unwrap();
    let before = net.to_client.len();
    net.session.handle_eof(net.now, Peer::Backend(conn));
    net.pump();
    // As from a killed server: the connection closes mid-result, so the client's library
    // reports its own 2013 (an ERR of ferry's would be a code clients do not know).
    assert_eq!(net.to_client.len(), before, "nothing more for the client");
    assert!(net.events.iter().any(|e| matches!(
        e,
        Event::SessionLost {
            reason: LossReason::NoReplay,
            ..
        }
    )));
    assert_eq!(
        net.closed_reason(),
        Some(&CloseReason::BackendLost(BackendLoss::Failed(
            BackendError::PeerClosed
        )))
    );
    assert!(net.events.contains(&Event::CloseBackend { conn }));
    assert!(matches!(net.events.last(), Some(Event::Closed { .. })));
    // Nothing more after Closed.
    net.session
        .handle_input(net.now, Peer::Client, &frame(0, &[Command::COM_PING]));
    net.session
        .handle_timeout(net.now + Duration::from_secs(3600));
    assert!(net.session.poll_transmit().is_none());
    assert!(net.session.poll_event().is_none());
}

#[test]
fn client_vanishing_mid_result_releases_the_backend() {
    let mut net = Net::logged_in(false);
    send_query(&mut net, b"HALF");
    let sent = net.to_server.len();
    net.client_gone = true;
    net.session.handle_eof(net.now, Peer::Client);
    net.pump();
    let conn = net.conn.unwrap();
    assert!(net.events.contains(&Event::CloseBackend { conn }));
    assert_eq!(net.closed_reason(), Some(&CloseReason::ClientGone));
    // A backend in the middle of a response cannot take a COM_QUIT: it is just closed.
    assert_eq!(net.to_server.len(), sent);
    assert!(!net.session.wants_input(Peer::Backend(conn)));
}

#[test]
fn backend_lost_between_commands_closes_the_client_without_an_err() {
    let mut net = Net::logged_in(true);
    let before = net.to_client.len();
    net.session
        .handle_eof(net.now, Peer::Backend(net.conn.unwrap()));
    net.pump();
    assert_eq!(
        net.closed_reason(),
        Some(&CloseReason::BackendLost(BackendLoss::Failed(
            BackendError::PeerClosed
        )))
    );
    assert_eq!(net.to_client.len(), before);
}

#[test]
fn idle_timeout_sends_4031_and_quits_the_backend() {
    let mut config = session_config(true);
    config.idle_timeout = Some(Duration::from_secs(60));
    let mut net = Net::new(config, client_config(PASSWORD));
    net.pump();
    assert!(net.client_connected());
    net.advance(Duration::from_secs(50));
    net.query(b"SELECT 1"); // activity pushes the deadline
    let deadline = net.now + Duration::from_secs(60);
    // First the idle session's buffers are released, then nothing until the idle deadline.
    assert_eq!(net.session.poll_timeout(), Some(net.now + IDLE_RELEASE));
    net.advance(IDLE_RELEASE);
    assert_eq!(net.session.poll_timeout(), Some(deadline));
    net.advance(deadline - net.now - Duration::from_secs(1));
    assert!(!net.session.is_closed());
    let before = net.to_client.len();
    net.advance(Duration::from_secs(1));
    assert_eq!(net.closed_reason(), Some(&CloseReason::IdleTimeout));
    let err = &net.to_client[before + 4..];
    assert_eq!(err[0], 0xFF);
    assert_eq!(u16::from_le_bytes([err[1], err[2]]), 4031);
    assert!(net.to_server.ends_with(&[1, 0, 0, 0, Command::COM_QUIT]));
}

#[test]
fn shutdown_finishes_the_running_statement_then_closes() {
    let mut net = Net::logged_in(true);
    send_query(&mut net, b"HOLD");
    net.session.begin_shutdown(net.now);
    net.pump();
    assert!(!net.session.is_closed(), "the statement is still running");
    assert!(net.server_state.held.is_some());
    // The server answers; the client gets it, then the session closes.
    let server = net.server.as_mut().unwrap();
    server.send_ok_empty(net.now).unwrap();
    server.end_response(net.now).unwrap();
    net.pump();
    let (_, summary) = net.take_response();
    assert!(summary.is_ok());
    assert_eq!(net.closed_reason(), Some(&CloseReason::Shutdown));
    assert!(net.to_server.ends_with(&[1, 0, 0, 0, Command::COM_QUIT]));
}

#[test]
fn shutdown_closes_an_idle_session_at_once() {
    let mut net = Net::logged_in(false);
    net.session.begin_shutdown(net.now);
    net.pump();
    assert_eq!(net.closed_reason(), Some(&CloseReason::Shutdown));
}

#[test]
fn shutdown_lets_an_idle_session_finish_its_transaction_then_closes() {
    for end in [&b"COMMIT"[..], b"ROLLBACK"] {
        let mut net = Net::logged_in(true);
        assert!(net.query(b"BEGIN").1.is_ok());
        assert!(net.session.state().in_transaction());
        net.session.begin_shutdown(net.now);
        net.pump();
        assert!(!net.session.is_closed(), "closed inside a transaction");
        // Statements of the transaction still run.
        let (_, summary) = net.query(b"SELECT 1");
        assert!(summary.is_ok());
        assert!(!net.session.is_closed());
        // Its end is answered, then the session closes.
        let (_, summary) = net.query(end);
        assert!(summary.is_ok());
        assert_eq!(net.closed_reason(), Some(&CloseReason::Shutdown));
        assert!(net.to_server.ends_with(&[1, 0, 0, 0, Command::COM_QUIT]));
    }
}

#[test]
fn shutdown_during_a_statement_in_a_transaction_keeps_the_session_after_it() {
    let mut net = Net::logged_in(true);
    assert!(net.query(b"BEGIN").1.is_ok());
    send_query(&mut net, b"HOLD");
    net.session.begin_shutdown(net.now);
    net.pump();
    let server = net.server.as_mut().unwrap();
    server.send_ok_empty(net.now).unwrap();
    server.end_response(net.now).unwrap();
    net.pump();
    assert!(net.take_response().1.is_ok());
    assert!(!net.session.is_closed(), "the transaction is still open");
    let (_, summary) = net.query(b"COMMIT");
    assert!(summary.is_ok());
    assert_eq!(net.closed_reason(), Some(&CloseReason::Shutdown));
}

#[test]
fn shutdown_during_a_transaction_still_ends_at_the_idle_timeout() {
    let mut config = session_config(true);
    config.idle_timeout = Some(Duration::from_secs(60));
    let mut net = Net::new(config, client_config(PASSWORD));
    net.pump();
    assert!(net.query(b"BEGIN").1.is_ok());
    net.session.begin_shutdown(net.now);
    net.pump();
    assert!(!net.session.is_closed());
    net.advance(Duration::from_secs(60));
    assert_eq!(net.closed_reason(), Some(&CloseReason::IdleTimeout));
}

#[test]
fn oversized_client_packet_gets_1153_and_closes() {
    let mut config = session_config(true);
    config.max_packet_size = 1024;
    let mut net = Net::new(config, client_config(PASSWORD));
    net.pump();
    assert!(net.client_connected());
    let sql = vec![b'x'; 2000];
    send_query(&mut net, &sql);
    let err = client_err(&net);
    assert_eq!((err.code, &err.sql_state), (1153, b"08S01"));
    assert!(net.session.is_closed());
    assert!(net.server_state.commands.is_empty(), "never relayed");
}

#[test]
fn oversized_backend_packet_gets_1153_and_closes() {
    let mut config = session_config(false);
    config.backend.max_packet_size = 1 << 20;
    let mut net = Net::new(config, client_config(PASSWORD));
    net.pump();
    assert!(net.client_connected());
    send_query(&mut net, b"BIG");
    let err = client_err(&net);
    assert_eq!((err.code, &err.sql_state), (1153, b"08S01"));
    assert!(matches!(
        net.closed_reason(),
        Some(CloseReason::BackendLost(BackendLoss::Failed(
            BackendError::Decode(crate::DecodeError::PacketTooLarge { .. })
        )))
    ));
}
