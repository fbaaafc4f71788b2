use super::*;

const HASH: &str = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";

fn parse(text: &str) -> ConfigFile {
    ConfigFile::parse(text, None).unwrap_or_else(|e| panic!("parse: {e}"))
}

fn check(text: &str) -> Result<Config, ConfigError> {
    Config::from_file(&parse(text))
}

/// The refusal for `text`, which must name `key` with a reason containing `reason`.
fn refused(text: &str, key: &str, reason: &str) {
    let err = check(text).expect_err("config accepted");
    let problems = err.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.key == key && p.reason.contains(reason)),
        "expected {key}: …{reason}…, got:\n{err}"
    );
    // The message shown to the operator names the key and the reason.
    assert!(err.to_string().contains(&format!("{key}: ")), "{err}");
}

const MINIMAL: &str = "[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n";

#[test]
fn minimal_config_gets_defaults() {
    let c = check(MINIMAL).unwrap();
    assert_eq!(c.proxy.listen, "127.0.0.1:6000".parse().unwrap());
    assert_eq!(c.admin.listen, "127.0.0.1:6080".parse().unwrap());
    assert_eq!(
        c.proxy.workers,
        std::thread::available_parallelism().unwrap()
    );
    assert_eq!(c.proxy.max_connections, 10_000);
    assert_eq!(c.proxy.idle_timeout, Some(Duration::from_secs(8 * 3600)));
    assert_eq!(c.proxy.max_packet_size, 64 << 20);
    assert_eq!(c.proxy.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.proxy.shutdown_delay, Duration::ZERO);
    assert_eq!(c.proxy.max_auth_failures, 0, "blocking is off");
    assert_eq!(c.proxy.auth_failure_window, Duration::from_secs(60));
    assert_eq!(c.proxy.auth_block_duration, Duration::from_secs(60));
    assert_eq!(c.proxy.server_version, None);
    assert_eq!(c.auth.mode, AuthMode::Passthrough);
    assert!(c.auth.users.is_empty());
    assert!(c.tls.is_none() && c.backend_tls.is_none());
    assert_eq!(c.health.interval, Duration::from_millis(500));
    assert_eq!(c.health.timeout, Duration::from_millis(400));
    assert_eq!(c.proxy.statement_timeout, None);
    assert!(c.migration.failover && !c.migration.read_retry);
    assert_eq!(c.migration.mode, MigrationMode::Off);
    assert_eq!(c.migration.timeout, Duration::from_secs(5));
    assert_eq!(c.migration.safe_point_timeout, Duration::from_secs(30));
    assert_eq!(c.migration.rebalance, RebalancePolicy::default());
    assert_eq!(
        c.backends,
        vec![BackendConfig {
            name: "db1".into(),
            addr: "127.0.0.1:3306".parse().unwrap(),
            proxy_protocol: false,
        }]
    );
}

#[test]
fn full_config_parses() {
    let text = format!(
        r#"
[proxy]
listen = "0.0.0.0:7000"
workers = 3
max-connections = 50
idle-timeout = "1h30m"
max-packet-size = "16MiB"
shutdown-timeout = 5
[admin]
listen = "127.0.0.1:7080"
[[backends]]
name = "db1"
addr = "127.0.0.1:3306"
[[backends]]
name = "db-2.eu"
addr = "[::1]:3307"
[auth]
mode = "proxy"
[[auth.users]]
name = "app"
password-hash = "{HASH}"
[[auth.users]]
name = "nopw"
password-hash = ""
[backend-tls]
insecure-trust-all = true
server-name = "db.internal"
[health]
interval = "500ms"
timeout = "250ms"
[migration]
mode = "tidb"
timeout = "2s"
safe-point-timeout = "45s"
rebalance-interval = "10s"
rebalance-max-moves = 0
rebalance-tolerance = 3
"#
    );
    let c = check(&text).unwrap();
    assert_eq!(c.proxy.listen, "0.0.0.0:7000".parse().unwrap());
    assert_eq!(c.proxy.workers.get(), 3);
    assert_eq!(c.proxy.max_connections, 50);
    assert_eq!(c.proxy.idle_timeout, Some(Duration::from_secs(5400)));
    assert_eq!(c.proxy.max_packet_size, 16 << 20);
    assert_eq!(c.proxy.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(c.admin.listen, "127.0.0.1:7080".parse().unwrap());
    assert_eq!(c.backends[1].name, "db-2.eu");
    assert_eq!(c.backends[1].addr, "[::1]:3307".parse().unwrap());
    assert_eq!(c.auth.mode, AuthMode::Proxy);
    assert_eq!(
        c.auth.users[0].credential,
        Credential::Native(NativeStage2Hash::parse_hex(HASH.as_bytes()).unwrap())
    );
    // The stored hash is that of "password", the classic example: verify it really parsed.
    assert!(c.auth.users[0].credential.verify_plaintext(b"password"));
    assert_eq!(c.auth.users[1].credential, Credential::NoPassword);
    let btls = c.backend_tls.as_ref().unwrap();
    assert_eq!(btls.server_name.as_deref(), Some("db.internal"));
    assert!(btls.ca.is_none());
    assert_eq!(c.health.interval, Duration::from_millis(500));
    assert_eq!(c.migration.mode, MigrationMode::Tidb);
    assert_eq!(c.migration.timeout, Duration::from_secs(2));
    assert_eq!(c.migration.safe_point_timeout, Duration::from_secs(45));
    assert_eq!(c.migration.rebalance_interval, Duration::from_secs(10));
    assert_eq!(
        c.migration.rebalance,
        RebalancePolicy {
            max_moves: 0,
            tolerance: 3
        }
    );
}

#[test]
fn proxy_auth_defaults_to_replay_migration() {
    let text = format!("{MINIMAL}[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\npassword-hash = \"{HASH}\"\n");
    assert_eq!(check(&text).unwrap().migration.mode, MigrationMode::Replay);
}

#[test]
fn idle_timeout_zero_disables() {
    let c = check(&format!("[proxy]\nidle-timeout = 0\n{MINIMAL}")).unwrap();
    assert_eq!(c.proxy.idle_timeout, None);
}

#[test]
fn unknown_keys_and_bad_types_are_refused_by_the_parser() {
    for (text, needle) in [
        ("[proxy]\nlisten-addr = \"x\"\n", "listen-addr"),
        ("[proxi]\n", "proxi"),
        (
            "[[backends]]\nname = \"a\"\naddr = \"1.2.3.4:1\"\nweight = 2\n",
            "weight",
        ),
        ("[auth]\nmode = \"ldap\"\n", "ldap"),
        ("[migration]\nmode = \"live\"\n", "live"),
        ("[proxy]\nworkers = \"two\"\n", "workers"),
        ("[proxy]\nidle-timeout = \"8x\"\n", "unknown unit"),
        (
            "[migration]\nsafe-point-timeout = \"soon\"\n",
            "safe-point-timeout",
        ),
        ("[proxy]\nmax-packet-size = -5\n", "negative"),
        ("[[backends]]\nname = \"a\"\n", "addr"),
    ] {
        let err = ConfigFile::parse(text, None).expect_err(text);
        assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {err:?}");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn a_parse_error_never_quotes_a_password_hash() {
    let text = "[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\n\
                password-hash = *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19\n";
    let err = ConfigFile::parse(text, None).unwrap_err().to_string();
    assert!(!err.contains("2470C0C0"), "{err}");
    assert!(
        err.contains("line 5") && err.contains("password-hash"),
        "{err}"
    );
}

#[test]
fn refuses_bad_addresses() {
    refused(
        "[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n[[backends]]\nname = \"db2\"\naddr = \"x\"\n",
        "backends[1].addr",
        "invalid address \"x\": missing port",
    );
    refused(
        &format!("[proxy]\nlisten = \"localhost\"\n{MINIMAL}"),
        "proxy.listen",
        "invalid socket address",
    );
    refused(
        &format!("[admin]\nlisten = \"1.2.3.4\"\n{MINIMAL}"),
        "admin.listen",
        "invalid socket address",
    );
    refused(
        &format!("[admin]\nlisten = \"127.0.0.1:6000\"\n{MINIMAL}"),
        "admin.listen",
        "same address as proxy.listen",
    );
}

#[test]
fn refuses_missing_and_duplicate_backends() {
    refused("", "backends", "at least one backend");
    let dup = "[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:1\"\n[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:2\"\n";
    refused(
        dup,
        "backends[1].name",
        "duplicate name \"db1\" (also backends[0])",
    );
    let dup = "[[backends]]\nname = \"a\"\naddr = \"127.0.0.1:1\"\n[[backends]]\nname = \"b\"\naddr = \"127.0.0.1:1\"\n";
    refused(dup, "backends[1].addr", "duplicate address");
    refused(
        "[[backends]]\nname = \"db/1\"\naddr = \"127.0.0.1:1\"\n",
        "backends[0].name",
        "invalid name",
    );
    refused(
        "[[backends]]\nname = \"\"\naddr = \"127.0.0.1:1\"\n",
        "backends[0].name",
        "invalid name",
    );
}

#[test]
fn refuses_bad_numbers() {
    refused(
        &format!("[proxy]\nworkers = 0\n{MINIMAL}"),
        "proxy.workers",
        "at least 1",
    );
    refused(
        &format!("[proxy]\nmax-connections = 0\n{MINIMAL}"),
        "proxy.max-connections",
        "at least 1",
    );
    refused(
        &format!("[proxy]\nmax-packet-size = 100\n{MINIMAL}"),
        "proxy.max-packet-size",
        "outside",
    );
    refused(
        &format!("[proxy]\nmax-packet-size = \"2GiB\"\n{MINIMAL}"),
        "proxy.max-packet-size",
        "outside",
    );
    refused(
        &format!("[health]\ninterval = 0\n{MINIMAL}"),
        "health.interval",
        "greater than zero",
    );
    refused(
        &format!("[health]\ntimeout = \"0s\"\n{MINIMAL}"),
        "health.timeout",
        "greater than zero",
    );
    refused(
        &format!("[migration]\nsafe-point-timeout = 0\n{MINIMAL}"),
        "migration.safe-point-timeout",
        "greater than zero",
    );
    refused(
        &format!("[migration]\nsafe-point-timeout = \"0s\"\n{MINIMAL}"),
        "migration.safe-point-timeout",
        "greater than zero",
    );
    refused(
        &format!("[migration]\nrebalance-tolerance = 0\n{MINIMAL}"),
        "migration.rebalance-tolerance",
        "at least 1",
    );
}

#[test]
fn refuses_bad_auth() {
    refused(
        &format!("{MINIMAL}[auth]\nmode = \"proxy\"\n"),
        "auth.users",
        "needs at least one user",
    );
    refused(
        &format!("{MINIMAL}[[auth.users]]\nname = \"app\"\npassword-hash = \"{HASH}\"\n"),
        "auth.users",
        "only checked with mode = \"proxy\"",
    );
    let secret = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1"; // 39 digits
    let text = format!(
        "{MINIMAL}[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\npassword-hash = \"{secret}\"\n"
    );
    refused(
        &text,
        "auth.users[0].password-hash",
        "expected \"*\" followed by 40 hex digits",
    );
    // The refused value is not echoed: a hash is a secret.
    assert!(!check(&text).unwrap_err().to_string().contains(&secret[1..]));
    // Twenty characters are not taken as raw hash bytes.
    refused(
        &format!("{MINIMAL}[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\npassword-hash = \"abcdefghijklmnopqrst\"\n"),
        "auth.users[0].password-hash",
        "40 hex digits",
    );
    refused(
        &format!("{MINIMAL}[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"a\"\npassword-hash = \"\"\n[[auth.users]]\nname = \"a\"\npassword-hash = \"\"\n"),
        "auth.users[1].name",
        "duplicate user",
    );
    refused(
        &format!("{MINIMAL}[migration]\nmode = \"replay\"\n"),
        "migration.mode",
        "needs auth.mode = \"proxy\"",
    );
}

#[test]
fn user_section_debug_hides_the_hash() {
    let f = parse(&format!(
        "[[auth.users]]\nname = \"app\"\npassword-hash = \"{HASH}\"\n"
    ));
    let shown = format!("{:?}", f.auth.users[0]);
    assert!(
        shown.contains("app") && !shown.contains(&HASH[1..]),
        "{shown}"
    );
    let text = format!("{MINIMAL}[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\npassword-hash = \"{HASH}\"\n");
    let shown = format!("{:?}", check(&text).unwrap());
    assert!(
        !shown.contains(&HASH[1..]) && !shown.contains("2470c0c0"),
        "{shown}"
    );
}

fn write_cert(dir: &Path) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("server.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ck.cert.pem()).unwrap();
}

#[test]
fn tls_files_are_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path());
    let path = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        format!("{MINIMAL}[tls]\ncert = \"server.pem\"\nkey = \"server-key.pem\"\nrequire = true\n[backend-tls]\nca = \"ca.pem\"\n"),
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    let tls = c.tls.unwrap();
    assert!(tls.require);
    assert_eq!(tls.cert, dir.path().join("server.pem"));
    assert_eq!(c.backend_tls.unwrap().ca, Some(dir.path().join("ca.pem")));
}

#[test]
fn refuses_bad_tls() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path());
    let base = Some(dir.path());
    let refused_in = |text: String, key: &str, reason: &str| {
        let err = Config::from_file(&ConfigFile::parse(&text, base).unwrap()).unwrap_err();
        assert!(
            err.problems()
                .iter()
                .any(|p| p.key == key && p.reason.contains(reason)),
            "expected {key}: …{reason}…, got:\n{err}"
        );
    };
    refused_in(
        format!("{MINIMAL}[tls]\ncert = \"missing.pem\"\nkey = \"server-key.pem\"\n"),
        "tls.cert",
        "cannot read",
    );
    refused_in(
        format!("{MINIMAL}[tls]\ncert = \"server.pem\"\nkey = \"nope.pem\"\n"),
        "tls.key",
        "cannot read",
    );
    // Files that exist but hold no usable PEM.
    refused_in(
        format!("{MINIMAL}[tls]\ncert = \"server-key.pem\"\nkey = \"server-key.pem\"\n"),
        "tls",
        "certificate",
    );
    refused_in(
        format!("{MINIMAL}[tls]\ncert = \"server.pem\"\nkey = \"server.pem\"\n"),
        "tls",
        "private key",
    );
    refused_in(
        format!("{MINIMAL}[backend-tls]\n"),
        "backend-tls",
        "needs ca",
    );
    refused_in(
        format!("{MINIMAL}[backend-tls]\nca = \"ca.pem\"\ninsecure-trust-all = true\n"),
        "backend-tls",
        "not both",
    );
    refused_in(
        format!("{MINIMAL}[backend-tls]\nca = \"gone.pem\"\n"),
        "backend-tls.ca",
        "cannot read",
    );
    refused_in(
        format!("{MINIMAL}[backend-tls]\ninsecure-trust-all = true\nserver-name = \"bad name!\"\n"),
        "backend-tls.server-name",
        "invalid DNS name",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err =
        check("[proxy]\nworkers = 0\n[[backends]]\nname = \"db1\"\naddr = \"nope\"\n").unwrap_err();
    let keys: Vec<_> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["proxy.workers", "backends[0].addr"]);
    assert_eq!(err.to_string().lines().count(), 2);
}

#[test]
fn load_reports_missing_file_and_names_the_file_in_parse_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    assert!(matches!(
        ConfigFile::load(&missing),
        Err(ConfigError::Read { .. })
    ));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[proxy]\nbogus = 1\n").unwrap();
    let err = ConfigFile::load(&bad).unwrap_err();
    assert!(
        err.to_string().starts_with(&bad.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn example_file_is_valid() {
    // The example ships with the mio driver (the `ferry` binary), beside this crate.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../driver-mio/ferry.example.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.auth.mode, AuthMode::Proxy);
    assert_eq!(c.migration.mode, MigrationMode::Replay);
    assert_eq!(c.backends.len(), 2);
}

#[test]
fn server_version_is_kept_or_refused_when_unusable() {
    let c = check(&format!(
        "[proxy]\nserver-version = \"5.5.5-10.11.6-MariaDB\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        c.proxy.server_version.as_deref(),
        Some("5.5.5-10.11.6-MariaDB")
    );
    refused(
        &format!("[proxy]\nserver-version = \"\"\n{MINIMAL}"),
        "proxy.server-version",
        "ASCII",
    );
    refused(
        &format!("[proxy]\nserver-version = \"caf\u{e9}\"\n{MINIMAL}"),
        "proxy.server-version",
        "ASCII",
    );
}

/// The session configuration the endpoint derives from the file carries
/// `safe-point-timeout` into the core's safe-point wait, separately from the step deadline.
#[test]
fn safe_point_timeout_reaches_the_core_migration_config() {
    use crate::control::session_config;
    use crate::session::MigrationConfig as CoreMigrationConfig;

    let users = format!(
        "[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\npassword-hash = \"{HASH}\"\n"
    );
    let text =
        format!("{MINIMAL}{users}[migration]\ntimeout = \"2s\"\nsafe-point-timeout = \"90s\"\n");
    let core = session_config(&check(&text).unwrap()).unwrap().migration;
    assert_eq!(core.timeout, Duration::from_secs(90));
    assert_eq!(core.step_timeout, Duration::from_secs(2));

    // Unset: 30 s, the core's own default.
    let core = session_config(&check(&format!("{MINIMAL}{users}")).unwrap())
        .unwrap()
        .migration;
    assert_eq!(core.timeout, Duration::from_secs(30));
    assert_eq!(core.timeout, CoreMigrationConfig::default().timeout);
    assert_eq!(
        DEFAULT_SAFE_POINT_TIMEOUT,
        CoreMigrationConfig::default().timeout
    );
}

#[test]
fn the_open_file_budget_is_two_per_session_plus_a_reserve() {
    assert_eq!(open_files_needed(10_000), 20_096);
    assert_eq!(sessions_within(open_files_needed(10_000)), 10_000);
    // The usual soft default.
    assert_eq!(sessions_within(1024), 464);
    assert_eq!(sessions_within(10), 0);
    assert_eq!(open_files_needed(usize::MAX), u64::MAX);
}

#[test]
fn the_check_summary_names_addresses_counts_and_modes() {
    let config = check(MINIMAL).unwrap();
    assert_eq!(
        config.summary(),
        format!(
            "configuration ok: listen 127.0.0.1:6000, admin 127.0.0.1:6080, 1 backend(s), {} worker(s), auth Passthrough, migration Off",
            config.proxy.workers
        )
    );
}

#[test]
fn routes_name_a_known_backend_and_something_to_match() {
    let c = check(&format!(
        "{MINIMAL}[[routes]]\nuser = \"analyst\"\nbackend = \"db1\"\n[[routes]]\ndatabase = \"audit\"\nuser = \"app\"\nbackend = \"db1\"\n"
    ))
    .unwrap();
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].user.as_deref(), Some("analyst"));
    assert_eq!(c.routes[0].database, None);
    assert_eq!(c.routes[1].database.as_deref(), Some("audit"));
    refused(
        &format!("{MINIMAL}[[routes]]\nuser = \"analyst\"\nbackend = \"db9\"\n"),
        "routes[0].backend",
        "no backend named \"db9\"",
    );
    refused(
        &format!("{MINIMAL}[[routes]]\nbackend = \"db1\"\n"),
        "routes[0]",
        "a user, a database or both",
    );
    assert!(check(MINIMAL).unwrap().routes.is_empty());
}

#[test]
fn shutdown_delay_and_auth_blocking_keys() {
    let c = check(&format!(
        "[proxy]\nshutdown-delay = \"10s\"\nmax-auth-failures = 5\n\
         auth-failure-window = \"2m\"\nauth-block-duration = 30\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(c.proxy.shutdown_delay, Duration::from_secs(10));
    assert_eq!(c.proxy.max_auth_failures, 5);
    assert_eq!(c.proxy.auth_failure_window, Duration::from_secs(120));
    assert_eq!(c.proxy.auth_block_duration, Duration::from_secs(30));
    for key in ["auth-failure-window", "auth-block-duration"] {
        refused(
            &format!("[proxy]\n{key} = 0\n{MINIMAL}"),
            &format!("proxy.{key}"),
            "greater than zero",
        );
    }
    let err = ConfigFile::parse("[proxy]\nmax-auth-failures = -1\n", None).unwrap_err();
    assert!(err.to_string().contains("max-auth-failures"), "{err}");
}

#[test]
fn proxy_protocol_networks_and_backends() {
    let c = check(MINIMAL).unwrap();
    assert!(c.proxy.proxy_protocol_from.is_empty());
    assert!(!c.backends[0].proxy_protocol);
    let c = check(
        "[proxy]\nproxy-protocol-from = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\"]\n\
         [[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\nproxy-protocol = true\n",
    )
    .unwrap();
    let from: Vec<String> = c
        .proxy
        .proxy_protocol_from
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(from, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
    assert!(c.backends[0].proxy_protocol);
    refused(
        &format!("[proxy]\nproxy-protocol-from = [\"10.0.0.0/8\", \"10.1.2.3/8\"]\n{MINIMAL}"),
        "proxy.proxy-protocol-from[1]",
        "host bits set (the network is 10.0.0.0/8)",
    );
    refused(
        &format!("[proxy]\nproxy-protocol-from = [\"lb.internal\"]\n{MINIMAL}"),
        "proxy.proxy-protocol-from[0]",
        "invalid IP address",
    );
}

#[test]
fn the_monitor_account_takes_a_password_or_a_file_and_keeps_only_its_sha1() {
    let c = check(MINIMAL).unwrap();
    assert_eq!(c.health.monitor, None, "no account by default");
    let c = check(&format!(
        "{MINIMAL}[health]\nuser = \"monitor\"\npassword = \"s3cret\"\n"
    ))
    .unwrap();
    let monitor = c.health.monitor.clone().unwrap();
    assert_eq!(monitor.user, "monitor");
    assert_eq!(
        monitor.secret,
        ClientSecret::Sha1(Password::new("s3cret").sha1())
    );
    // Neither the file's Debug nor the config's shows the password.
    let text = format!(
        "{:?} {:?}",
        parse(&format!(
            "{MINIMAL}[health]\nuser = \"monitor\"\npassword = \"s3cret\"\n"
        )),
        c
    );
    assert!(!text.contains("s3cret"), "{text}");
    // An empty password is an account without one.
    let c = check(&format!(
        "{MINIMAL}[health]\nuser = \"monitor\"\npassword = \"\"\n"
    ))
    .unwrap();
    assert_eq!(c.health.monitor.unwrap().secret, ClientSecret::NoPassword);

    // From a file beside the configuration, its final newline dropped.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("monitor.pw"), "s3cret\r\n").unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        format!("{MINIMAL}[health]\nuser = \"monitor\"\npassword-file = \"monitor.pw\"\n"),
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(
        c.health.monitor.unwrap().secret,
        ClientSecret::Sha1(Password::new("s3cret").sha1())
    );
}

#[test]
fn refuses_an_incomplete_monitor_account() {
    let h = |keys: &str| format!("{MINIMAL}[health]\n{keys}");
    refused(
        &h("user = \"monitor\"\n"),
        "health.password",
        "password-file",
    );
    refused(&h("password = \"x\"\n"), "health.user", "no user");
    refused(
        &h("user = \"m\"\npassword = \"x\"\npassword-file = \"f\"\n"),
        "health",
        "not both",
    );
    refused(
        &h("user = \"\"\npassword = \"x\"\n"),
        "health.user",
        "1 to 80",
    );
    let err = check(&h("user = \"m\"\npassword-file = \"/nonexistent/pw\"\n")).unwrap_err();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.key == "health.password-file" && p.reason.contains("cannot read")),
        "{err}"
    );
}

#[test]
fn admin_defaults_are_loopback_without_tokens_and_bounded() {
    let c = check(MINIMAL).unwrap();
    assert!(c.admin.listen.ip().is_loopback());
    assert!(c.admin.token.is_none() && c.admin.read_token.is_none() && c.admin.tls.is_none());
    assert!(c.admin.hosts.is_empty());
    assert_eq!(c.admin.limits.max_connections, 32);
    assert_eq!(c.admin.limits.request_timeout, Duration::from_secs(5));
}

#[test]
fn admin_tokens_inline_or_from_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "file-token-0123456789\n").unwrap();
    std::fs::write(dir.path().join("read.token"), "  read-token-0123456789  \n").unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        format!(
            "[admin]\ntoken-file = \"admin.token\"\nread-token-file = \"read.token\"\n\
             hosts = [\"Ferry.Internal\"]\nmax-connections = 8\nrequest-timeout = \"1s\"\n{MINIMAL}"
        ),
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert!(c
        .admin
        .token
        .as_ref()
        .unwrap()
        .matches(b"file-token-0123456789"));
    assert!(c
        .admin
        .read_token
        .as_ref()
        .unwrap()
        .matches(b"read-token-0123456789"));
    assert_eq!(c.admin.hosts, ["ferry.internal"]);
    assert_eq!(c.admin.limits.max_connections, 8);
    assert_eq!(c.admin.limits.request_timeout, Duration::from_secs(1));
    // Neither the file's nor the checked configuration's debug output shows a token.
    let inline = parse(&format!(
        "[admin]\ntoken = \"inline-token-0123456789\"\n{MINIMAL}"
    ));
    assert!(
        !format!("{inline:?}").contains("inline-token"),
        "{inline:?}"
    );
    let checked = Config::from_file(&inline).unwrap();
    assert!(!format!("{checked:?}").contains("inline-token"));
    assert!(!format!("{c:?}").contains("file-token"));
}

#[test]
fn refuses_bad_admin_settings() {
    let admin = |keys: &str| format!("[admin]\n{keys}\n{MINIMAL}");
    refused(&admin("token = \"short\""), "admin.token", "16 to 1024");
    refused(
        &admin("token = \"has a space in it 0123\""),
        "admin.token",
        "visible ASCII",
    );
    refused(
        &admin("token = \"0123456789abcdef\"\ntoken-file = \"t\""),
        "admin.token",
        "not both",
    );
    refused(
        &admin("token-file = \"/nonexistent/admin.token\""),
        "admin.token-file",
        "cannot read",
    );
    refused(
        &admin("read-token = \"0123456789abcdef\""),
        "admin.read-token",
        "needs admin.token",
    );
    refused(
        &admin("token = \"0123456789abcdef\"\nread-token = \"0123456789abcdef\""),
        "admin.read-token",
        "differ",
    );
    refused(
        &admin("hosts = [\"http://x\"]"),
        "admin.hosts[0]",
        "invalid host",
    );
    refused(
        &admin("hosts = [\"ok\", \"a:80\"]"),
        "admin.hosts[1]",
        "invalid host",
    );
    refused(
        &admin("max-connections = 0"),
        "admin.max-connections",
        "1 to",
    );
    refused(
        &admin("max-connections = 100000"),
        "admin.max-connections",
        "1 to",
    );
    refused(
        &admin("request-timeout = 0"),
        "admin.request-timeout",
        "greater",
    );
    refused(
        &admin("tls = { cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\" }"),
        "admin.tls.cert",
        "cannot read",
    );
    let err = ConfigFile::parse(&admin("tls = { cert = \"c\" }"), None).unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
}

#[test]
fn admin_tls_files_are_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path());
    let path = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        format!("[admin]\ntls = {{ cert = \"server.pem\", key = \"server-key.pem\" }}\n{MINIMAL}"),
    )
    .unwrap();
    let tls = Config::load(&path).unwrap().admin.tls.unwrap();
    assert_eq!(tls.cert, dir.path().join("server.pem"));
    std::fs::write(
        &path,
        format!("[admin]\ntls = {{ cert = \"server.pem\", key = \"server.pem\" }}\n{MINIMAL}"),
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err();
    assert!(err.problems().iter().any(|p| p.key == "admin.tls"), "{err}");
}

#[test]
fn log_section_and_its_precedence() {
    let c = check(MINIMAL).unwrap();
    assert_eq!(
        (c.log.level, c.log.format),
        (LogLevel::Info, LogFormat::Text)
    );
    let c = check(&format!(
        "[log]\nlevel = \"debug\"\nformat = \"json\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        (c.log.level, c.log.format),
        (LogLevel::Debug, LogFormat::Json)
    );
    // RUST_LOG (when set and not empty) wins over the file...
    assert_eq!(c.log.filter(None), "debug");
    assert_eq!(c.log.filter(Some("  ")), "debug");
    assert_eq!(
        c.log.filter(Some("ferry_core=trace,warn")),
        "ferry_core=trace,warn"
    );
    // ...and the flag over RUST_LOG.
    let flag = LogConfig {
        level_from_flag: true,
        ..c.log
    };
    assert_eq!(flag.filter(Some("ferry_core=trace,warn")), "debug");
    refused_by_parser(&format!("[log]\nlevel = \"loud\"\n{MINIMAL}"), "level");
    refused_by_parser(&format!("[log]\nformat = \"xml\"\n{MINIMAL}"), "format");
}

fn refused_by_parser(text: &str, word: &str) {
    let err = ConfigFile::parse(text, None).unwrap_err();
    assert!(err.to_string().contains(word), "{err}");
}

#[test]
fn backends_by_ip_ipv6_or_host_name() {
    let text = "[[backends]]\nname = \"db1\"\naddr = \"10.0.0.1:3306\"\n\
                [[backends]]\nname = \"db2\"\naddr = \"[fd00::2]:3307\"\n\
                [[backends]]\nname = \"db3\"\naddr = \"db3.internal:3306\"\n\
                [[backends]]\nname = \"db4\"\naddr = \"localhost:3306\"\n";
    let c = Config::from_file(&ConfigFile::parse(text, None).unwrap()).unwrap();
    let addrs: Vec<String> = c.backends.iter().map(|b| b.addr.to_string()).collect();
    assert_eq!(
        addrs,
        [
            "10.0.0.1:3306",
            "[fd00::2]:3307",
            "db3.internal:3306",
            "localhost:3306"
        ]
    );
    assert_eq!(
        c.backends[0].addr.ip(),
        Some("10.0.0.1:3306".parse().unwrap())
    );
    assert_eq!(
        c.backends[1].addr.ip(),
        Some("[fd00::2]:3307".parse().unwrap())
    );
    assert_eq!(c.backends[2].addr.name(), Some("db3.internal"));
    assert_eq!(c.backends[2].addr.port(), 3306);
    // The same name twice is one address twice.
    let dup = "[[backends]]\nname = \"db1\"\naddr = \"db.internal:3306\"\n\
               [[backends]]\nname = \"db2\"\naddr = \"db.internal:3306\"\n";
    refused(
        dup,
        "backends[1].addr",
        "duplicate address db.internal:3306",
    );
}

#[test]
fn bad_backend_addresses_name_the_key_and_the_reason() {
    let one = |addr: &str| {
        format!(
            "[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n\
             [[backends]]\nname = \"db2\"\naddr = \"{addr}\"\n"
        )
    };
    for (addr, why) in [
        ("db2.internal", "missing port"),
        ("db2.internal:", "invalid port"),
        ("db2.internal:99999", "invalid port"),
        ("::1:3306", "brackets"),
        ("[::1]", "IPv6"),
        ("db_2!:3306", "invalid host name"),
        ("-db2:3306", "invalid host name"),
        ("10.0.0.300:3306", "invalid host name"),
        ("db..internal:3306", "invalid host name"),
    ] {
        refused(&one(addr), "backends[1].addr", why);
        refused(
            &one(addr),
            "backends[1].addr",
            &format!("invalid address {addr:?}"),
        );
    }
}

#[test]
fn multiplexing_is_off_by_default_and_needs_proxy_auth_and_replay() {
    assert_eq!(check(MINIMAL).unwrap().multiplexing, None);
    let on = "[multiplexing]\nenabled = true\nmax-backend-connections = 10\nmax-wait = \"250ms\"\n";
    refused(
        &format!("{MINIMAL}{on}"),
        "multiplexing.enabled",
        "auth.mode = \"proxy\"",
    );
    let proxy = format!(
        "{MINIMAL}[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\npassword-hash = \"{HASH}\"\n"
    );
    let c = check(&format!("{proxy}{on}")).unwrap();
    let m = c.multiplexing.expect("enabled");
    assert_eq!(m.max_backend_connections, 10);
    assert_eq!(m.max_wait, Duration::from_millis(250));
    assert_eq!(m.max_waiting, 1024);
    assert_eq!(m.idle_timeout, Duration::from_secs(60));
    assert_eq!(m.check_after, Duration::from_secs(1));
    refused(
        &format!("{proxy}[migration]\nmode = \"off\"\n{on}"),
        "multiplexing.enabled",
        "migration.mode = \"replay\"",
    );
    refused(
        &format!("{proxy}[multiplexing]\nenabled = true\nmax-backend-connections = 0\n"),
        "multiplexing.max-backend-connections",
        "at least 1",
    );
    // Disabled: its other keys are not checked (nothing uses them).
    assert_eq!(
        check(&format!("{MINIMAL}[multiplexing]\nenabled = false\n"))
            .unwrap()
            .multiplexing,
        None
    );
}
