//! Both auth modes, refused logins and unreachable backends.

use super::*;

#[test]
fn proxy_mode_checks_the_user_table_then_logs_in_to_the_backend() {
    let mut net = Net::logged_in(true);
    assert!(net
        .events
        .contains(&Event::Authenticated { user: USER.into() }));
    assert_eq!(net.session.user(), Some(USER));
    assert_eq!(net.session.backend_name(), Some("db1"));
    assert!(net.session.is_idle());
    // The server saw a native login by the same user, answered with the recovered SHA1.
    assert_eq!(net.server.as_ref().unwrap().user(), Some(USER));
    let (packets, summary) = net.query(b"SELECT 1");
    assert!(summary.is_ok());
    assert_eq!(summary.rows, 1);
    assert_eq!(packets.last().unwrap().0, PacketKind::Eof);
    assert!(net.events.iter().any(|e| matches!(
        e,
        Event::CommandDone {
            code: Command::COM_QUERY,
            error: false,
            ..
        }
    )));
}

#[test]
fn passthrough_mode_relays_the_exchange_through_an_auth_switch() {
    let mut net = Net::logged_in(false);
    assert!(net
        .events
        .contains(&Event::Authenticated { user: USER.into() }));
    // The backend was told a plugin it does not know, so it switched with its own salt.
    let needle = RelayedAuth::FORCE_SWITCH_PLUGIN.as_bytes();
    assert!(net.to_server.windows(needle.len()).any(|w| w == needle));
    assert_eq!(net.server.as_ref().unwrap().user(), Some(USER));
    let (_, summary) = net.query(b"SELECT 1");
    assert_eq!(summary.rows, 1);
}

use crate::backend::RelayedAuth;

fn login_error(net: &Net) -> crate::ProtocolError {
    net.client_events
        .iter()
        .find_map(|e| match e {
            backend::Event::AuthFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no login error: {:?}", net.client_events))
}

#[test]
fn proxy_mode_wrong_password_never_reaches_a_backend() {
    let mut net = Net::new(session_config(true), client_config("wrong"));
    net.pump();
    assert_eq!(login_error(&net).code, 1045);
    assert!(!net
        .events
        .iter()
        .any(|e| matches!(e, Event::ConnectBackend { .. })));
    assert!(matches!(
        net.closed_reason(),
        Some(CloseReason::Frontend(_))
    ));
}

#[test]
fn passthrough_wrong_password_gets_the_backends_error() {
    let mut net = Net::new(session_config(false), client_config("wrong"));
    net.pump();
    let err = login_error(&net);
    assert_eq!((err.code, &err.sql_state), (1045, b"28000"));
    assert!(err.message.contains("'app'@'10.9.9.9'"), "{}", err.message);
    assert!(matches!(
        net.closed_reason(),
        Some(CloseReason::LoginRefused(e)) if e.code == 1045
    ));
    assert!(net
        .events
        .iter()
        .any(|e| matches!(e, Event::CloseBackend { .. })));
}

#[test]
fn backend_down_gives_1429_in_both_modes() {
    for proxy in [true, false] {
        let mut net = Net::new(session_config(proxy), client_config(PASSWORD));
        net.connect = Connect::Refuse;
        net.pump();
        let err = login_error(&net);
        assert_eq!(err.code, 1429, "{err:?}");
        assert_eq!(
            err.message,
            "Can't connect to the backend server \
             (ferry: backend db1 (127.0.0.1:3306): connection refused)"
        );
        assert_eq!(
            net.closed_reason(),
            Some(&CloseReason::BackendUnavailable(LoginFailure::Connect(
                connection_refused("db1")
            )))
        );
        assert!(net.session.is_closed());
    }
}

#[test]
fn backend_connect_deadline() {
    let mut config = session_config(true);
    config.backend.connect_timeout = Duration::from_secs(3);
    let mut net = Net::new(config, client_config(PASSWORD));
    net.connect = Connect::Ignore;
    net.pump();
    assert!(!net.session.is_closed());
    let deadline = net.session.poll_timeout().unwrap();
    assert_eq!(deadline, net.now + Duration::from_secs(3));
    net.advance(Duration::from_secs(3));
    assert_eq!(login_error(&net).code, 1429);
    assert!(net.session.is_closed());
    assert_eq!(net.session.poll_timeout(), None);
}
