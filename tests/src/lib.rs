//! Test support for ferry's integration tests: a private MariaDB server per test, real clients.
//!
//! - [`MariaDb`]: a throw-away MariaDB server on a free loopback port, torn down on drop;
//! - [`require_executable`] / [`require_python_module`]: find the client programs and drivers a
//!   test drives, failing with the package to install (tests never skip);
//! - [`FerryProcess`]: the real proxy program of each [`Driver`] in front of those servers;
//! - [`run_with_deadline`]: run a program with a time limit, so nothing hangs the test run;
//!   [`ChildGuard`]: a long-running one, stopped by a signal or killed on drop;
//! - [`mariadb_cli`], [`http_get`], [`free_port`]: the `mariadb` CLI, the admin endpoint and a
//!   free port, for tests that start a proxy program themselves;
//! - [`ProxyHeaderRelay`]: a load balancer's stand-in that sends a PROXY protocol header first;
//! - [`TidbTestServer`]: a TiDB-style *test server* (token logins, SHOW/SET SESSION_STATES) for
//!   ferry's `tidb` migration mode, with [`RawClient`] for the logins stock clients cannot do.

mod admin_http;
mod binaries;
mod child;
mod command;
mod datadir;
mod frontend_driver;
mod mariadb;
mod mariadb_cli;
mod proxy;
mod proxy_header;
mod python;
mod test_server;
mod tidb_server;

pub use admin_http::{
    http_get, http_post, try_http_exchange, try_http_get, try_http_post, HttpAnswer,
};
pub use binaries::{find_executable, require_executable};
pub use child::ChildGuard;
pub use command::{run_with_deadline, CommandError, CommandOutput};
pub use mariadb::{free_port, quote_identifier, quote_string, MariaDb, MariaDbBuilder, SqlError};
pub use mariadb_cli::{mariadb_cli, mariadb_cli_command};
pub use proxy::{wait_until, AuthSetup, Driver, FerryBuilder, FerryProcess};
pub use proxy_header::{ProxyHeader, ProxyHeaderRelay};
pub use python::{python3, python_module_available, require_python_module};
pub use test_server::{
    MemorySha2Cache, OsRandom, TestServer, TestServerBuilder, TEST_SERVER_DATABASES,
};
pub use tidb_server::{
    tidb_token_text, RawClient, RawResult, ShowStatesFault, TidbFaults, TidbStats, TidbTestServer,
    TidbTestServerConfig, TidbUsers, TokenCertificate, TIDB_TEST_DATABASES,
};
