//! Malformed packets in the command phase: answered as MariaDB 10.11 answers them (the module
//! docs' table; `tests/tests/proxy_malformed.rs` compares a proxy with a real server), or handed
//! out for the server to judge.

use super::*;

/// The one command the client's packet became; nothing was sent to the client.
fn handed_out(c: &mut Client) -> ClientCommand {
    let events = c.events();
    let [Event::Command(cmd)] = &events[..] else {
        panic!("expected one command, got {events:?}")
    };
    assert!(c.packets().is_empty(), "the frontend answered by itself");
    cmd.clone()
}

/// The connection still takes commands: a COM_PING comes out.
fn goes_on(c: &mut Client) {
    c.send(0, b"\x0e");
    let cmd = handed_out(c);
    assert_eq!(cmd.code(), Command::COM_PING);
    c.fe.send_ok_empty(c.now).unwrap();
    c.fe.end_response(c.now).unwrap();
    assert_eq!(c.packet().0, 1);
}

#[test]
fn an_empty_packet_is_com_sleep_and_gets_1047() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send_raw(&[0, 0, 0, 0]);
    let (seq, err) = c.packet();
    assert_eq!(seq, 1);
    assert_eq!(
        err_of(&err),
        (1047, "08S01".into(), "Unknown command".into())
    );
    assert!(c.events().is_empty());
    goes_on(&mut c);
}

#[test]
fn a_short_stmt_close_is_handed_out_for_the_server() {
    for payload in [
        &b"\x19"[..],
        b"\x19\x01",
        b"\x19\x01\x00",
        b"\x19\x01\x00\x00",
    ] {
        let mut c = Client::logged_in(proxy_config(None, false));
        c.send(0, payload);
        let cmd = handed_out(&mut c);
        assert_eq!(&cmd.payload()[..], payload);
        assert_eq!(cmd.code(), Command::COM_STMT_CLOSE);
        assert!(cmd.parse().is_err());
        // No response: the owner only ends it.
        c.fe.end_response(c.now).unwrap();
        assert!(c.packets().is_empty());
        goes_on(&mut c);
    }
    // An unknown statement id is no business of the frontend's either.
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(0, b"\x19\x63\x00\x00\x00");
    let cmd = handed_out(&mut c);
    assert_eq!(
        cmd.parse().unwrap(),
        Command::StmtClose { statement_id: 99 }
    );
}

#[test]
fn other_short_commands_are_handed_out_too() {
    // MariaDB reads these past their end (1243 "Unknown prepared statement handler", or an
    // OK), or answers 1835 and carries on: only the server can say.
    for payload in [
        &b"\x1a\x01"[..],
        b"\x1c\x01\x00",
        b"\x1b",
        b"\x0c\x01",
        b"\x17\x01\x00",
    ] {
        let mut c = Client::logged_in(proxy_config(None, false));
        c.send(0, payload);
        let cmd = handed_out(&mut c);
        assert_eq!(&cmd.payload()[..], payload);
        c.fe.send_error(c.now, &ProtocolError::new(1243, "HY000", "unknown"))
            .unwrap();
        c.fe.end_response(c.now).unwrap();
        assert_eq!(c.packet().0, 1);
        goes_on(&mut c);
    }
}

#[test]
fn a_malformed_change_user_is_handed_out_as_one_every_server_refuses() {
    // The client negotiated CLIENT_PLUGIN_AUTH and CLIENT_CONNECT_ATTRS.
    let full = b"\x11app\x00\x00\x00\x2d\x00mysql_native_password\x00\x00";
    let refused: [&[u8]; 6] = [
        b"\x11app",
        b"\x11app\x00",
        b"\x11app\x00\x14abc",
        b"\x11app\x00\x00mydb",
        b"\x11app\x00\x00\x00\x2d\x00mysql_native_password\x00", // no attribute block
        &full[..full.len() - 2],
    ];
    for payload in refused {
        let mut c = Client::logged_in(proxy_config(None, false));
        c.send(0, payload);
        let cmd = handed_out(&mut c);
        assert_eq!(&cmd.payload()[..], b"\x11\x00", "{payload:?}");
        assert_eq!(cmd.code(), Command::COM_CHANGE_USER);
        assert!(cmd.parse().is_err());
    }
    // What the server reads goes as received.
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(0, full);
    let cmd = handed_out(&mut c);
    assert_eq!(&cmd.payload()[..], full);
    assert!(matches!(cmd.parse().unwrap(), Command::ChangeUser(cu) if cu.user == b"app"));
}

#[test]
fn a_change_user_without_a_body_starts_the_handshake_over() {
    let mut c = Client::logged_in(proxy_config(None, false));
    let first_salt = *c.fe.salt();
    c.send(0, b"\x11");
    assert!(c.events().is_empty());
    let (seq, greeting) = c.packet();
    assert_eq!(seq, 1);
    let greeting = HandshakeV10::parse(&greeting).unwrap();
    assert_eq!(greeting.connection_id, 42);
    let salt = greeting.scramble();
    assert_ne!(salt, first_salt.to_vec(), "a new salt");
    assert_eq!(&salt[..], &c.fe.salt()[..]);
    assert!(c.fe.is_command_phase());
    // The response becomes the COM_CHANGE_USER it amounts to, continuing at id 3.
    let r = c.response(
        "other",
        Some("mysql_native_password"),
        &native::scramble(b"pw2", &salt),
        Some("shop"),
    );
    c.send(2, &r);
    let cmd = handed_out(&mut c);
    let Command::ChangeUser(cu) = cmd.parse().unwrap() else {
        panic!("{cmd:?}")
    };
    assert_eq!(
        (cu.user, cu.database, cu.collation, cu.auth_plugin),
        (
            &b"other"[..],
            &b"shop"[..],
            Some(45),
            Some(&b"mysql_native_password"[..])
        )
    );
    assert_eq!(cu.auth_response, &native::scramble(b"pw2", &salt)[..]);
    assert_eq!(
        cu.connect_attrs,
        Some(vec![(&b"_client_name"[..], &b"unit"[..])])
    );
    c.fe.send_ok_empty(c.now).unwrap();
    c.fe.end_response(c.now).unwrap();
    assert_eq!(c.packet().0, 3);
    goes_on(&mut c);
}

#[test]
fn a_bad_handshake_response_gets_1043_and_the_connection_goes_on() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(0, b"\x11");
    assert_eq!(c.packet().0, 1);
    c.send(2, b"\x01\x02\x03");
    let (seq, err) = c.packet();
    assert_eq!(seq, 3);
    assert_eq!(err_of(&err), (1043, "08S01".into(), "Bad handshake".into()));
    assert!(c.events().is_empty());
    goes_on(&mut c);
}

#[test]
fn a_command_in_place_of_the_handshake_response_closes_with_1156_twice() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(0, b"\x11");
    assert_eq!(c.packet().0, 1);
    c.send(0, b"\x03SELECT 1");
    let packets = c.packets();
    let seqs: Vec<u8> = packets.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [2, 0]);
    for (_, err) in &packets {
        assert_eq!(
            err_of(err),
            (1156, "08S01".into(), "Got packets out of order".into())
        );
    }
    assert!(matches!(closed_reason(&c.events()), CloseReason::Error(e) if e.code == 1156));
    assert!(c.fe.is_closed());
}

#[test]
fn an_oversized_packet_gets_1153_with_the_next_sequence_id() {
    let mut config = proxy_config(None, false);
    config.max_packet_size = 100;
    let mut c = Client::logged_in(config);
    // The header alone is enough: the payload is never waited for.
    c.send_raw(&[200, 0, 0, 0]);
    let (seq, err) = c.packet();
    assert_eq!(seq, 1);
    assert_eq!(
        err_of(&err),
        (
            1153,
            "08S01".into(),
            "Got a packet bigger than 'max_allowed_packet' bytes".into()
        )
    );
    assert!(matches!(closed_reason(&c.events()), CloseReason::Error(e) if e.code == 1153));
    assert!(c.fe.is_closed());
}

#[test]
fn a_packet_out_of_order_gets_1156_with_id_0_and_closes() {
    let mut c = Client::logged_in(proxy_config(None, false));
    c.send(5, b"\x0e");
    let (seq, err) = c.packet();
    assert_eq!((seq, err_of(&err).0), (0, 1156));
    assert!(c.fe.is_closed());
}
