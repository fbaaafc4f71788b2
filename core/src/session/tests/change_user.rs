//! COM_CHANGE_USER through the session: under `proxy` auth ferry checks the client's answer to the
//! backend's auth switch against its own table before the backend sees it (see
//! `session/change_user.rs`); under `passthrough` the backend alone decides.

use super::*;
use crate::auth::{auth_salt, native};
use crate::wire::{AuthSwitchRequest, ChangeUser};

/// Proxy auth knowing `app` and `reader`, both with [`PASSWORD`] (as on the in-test server).
fn proxy_with_reader() -> SessionConfig {
    let mut users = UserTable::new();
    for name in [USER, "reader"] {
        users.insert(
            name,
            UserEntry {
                credential: Credential::native_from_password(PASSWORD.as_bytes()),
                plugin: AuthPlugin::MysqlNativePassword,
            },
        );
    }
    SessionConfig::new(AuthMode::Proxy {
        users: Arc::new(users),
        sha2_cache: None,
        rsa: None,
    })
}

fn logged_in(config: SessionConfig) -> Net {
    let mut net = Net::new(config, client_config(PASSWORD));
    net.pump();
    assert!(net.client_connected(), "{:?}", net.events);
    net.client_events.clear();
    net.events.clear();
    net
}

/// The client sends COM_CHANGE_USER to `user` and answers the auth switch the session relays
/// with `password`'s scramble over the switch's salt, as a real client does.
fn change_user(net: &mut Net, user: &str, password: &str) -> ResponseSummary {
    net.client_events.clear();
    let mut payload = BytesMut::new();
    Command::ChangeUser(ChangeUser {
        user: user.as_bytes(),
        // Over the greeting's salt, which the backend never issued: the session forces a switch.
        auth_response: &[1; 20],
        database: b"",
        collation: Some(45),
        auth_plugin: Some(b"mysql_native_password"),
        connect_attrs: None,
    })
    .encode(net.client.capabilities(), &mut payload);
    net.client
        .send_raw_command(net.now, payload.freeze())
        .unwrap();
    net.pump();
    let switch = net.client_events.iter().find_map(|e| match e {
        backend::Event::Response {
            kind: PacketKind::AuthSwitchRequest,
            payload,
        } => Some(payload.clone()),
        _ => None,
    });
    if let Some(switch) = switch {
        net.client_events.clear();
        let request = AuthSwitchRequest::parse(&switch).unwrap();
        let answer = native::scramble(password.as_bytes(), auth_salt(request.data));
        net.client.send_auth_data(net.now, &answer).unwrap();
        net.pump();
    }
    net.take_response().1
}

fn user_changes(net: &Net) -> Vec<String> {
    net.events
        .iter()
        .filter_map(|e| match e {
            Event::UserChanged { user } => Some(user.clone()),
            _ => None,
        })
        .collect()
}

/// What ferry sends in place of an answer it refused (see `REFUSED_ANSWER`).
fn refused_answer() -> Bytes {
    Bytes::from_static(&[0xA5; 20])
}

#[test]
fn a_verified_change_reaches_the_backend_and_renames_the_session() {
    let mut net = logged_in(proxy_with_reader());
    let summary = change_user(&mut net, "reader", PASSWORD);
    assert!(summary.is_ok(), "{summary:?}");
    let expected = native::scramble(PASSWORD.as_bytes(), &CHANGE_USER_SALT);
    assert_eq!(
        net.server_state.change_user_answers,
        [Bytes::from(expected)]
    );
    assert_eq!(user_changes(&net), ["reader"]);
    assert_eq!(net.session.user(), Some("reader"));
    let (_, summary) = net.query(b"SELECT 1");
    assert!(summary.is_ok());
}

#[test]
fn a_user_outside_the_table_is_refused_by_the_backend_and_the_session_goes_on() {
    let mut net = logged_in(proxy_with_reader());
    // The in-test server would accept this account with this password.
    let summary = change_user(&mut net, "outsider", PASSWORD);
    assert_eq!(summary.error.as_ref().map(|e| e.code), Some(1045));
    assert_eq!(net.server_state.change_user_answers, [refused_answer()]);
    assert!(user_changes(&net).is_empty());
    assert_eq!(net.session.user(), Some(USER));
    let (_, summary) = net.query(b"SELECT 1");
    assert!(
        summary.is_ok(),
        "the session goes on after a refused change"
    );
}

#[test]
fn a_wrong_password_never_reaches_the_backend() {
    let mut net = logged_in(proxy_with_reader());
    let summary = change_user(&mut net, "reader", "wrong");
    assert_eq!(summary.error.as_ref().map(|e| e.code), Some(1045));
    assert_eq!(net.server_state.change_user_answers, [refused_answer()]);
    assert_eq!(net.session.user(), Some(USER));
}

#[test]
fn a_backend_that_changes_users_unchecked_ends_the_session() {
    let mut net = logged_in(proxy_with_reader());
    net.server_state.change_user_without_switch = true;
    let summary = change_user(&mut net, "reader", PASSWORD);
    assert_eq!(summary.error.as_ref().map(|e| e.code), Some(1045));
    assert!(user_changes(&net).is_empty());
    assert!(
        matches!(net.closed_reason(), Some(CloseReason::Frontend(_))),
        "{:?}",
        net.events
    );
}

#[test]
fn passthrough_leaves_the_check_to_the_backend() {
    let mut net = Net::logged_in(false);
    net.events.clear();
    let summary = change_user(&mut net, "outsider", PASSWORD);
    assert!(summary.is_ok(), "{summary:?}");
    let expected = native::scramble(PASSWORD.as_bytes(), &CHANGE_USER_SALT);
    assert_eq!(
        net.server_state.change_user_answers,
        [Bytes::from(expected)]
    );
    assert_eq!(user_changes(&net), ["outsider"]);
}
