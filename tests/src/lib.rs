//! Test support for ferry's integration tests: a private MariaDB server per test, real clients.
//!
//! - [`MariaDb`]: a throw-away MariaDB server on a free loopback port, torn down on drop;
//! - [`require_executable`] / [`require_python_module`]: find the client programs and drivers a
//!   test drives, failing with the package to install (tests never skip);
//! - [`FerryProcess`]: the real proxy program of each [`Driver`] in front of those servers;
//! - [`run_with_deadline`]: run a program with a time limit, so nothing hangs the test run;
//! - [`TidbTestServer`]: a TiDB-style *test server* (token logins, SHOW/SET SESSION_STATES) for
//!   ferry's `tidb` migration mode, with [`RawClient`] for the logins stock clients cannot do.

mod binaries;
mod command;
mod datadir;
mod frontend_driver;
mod mariadb;
mod proxy;
mod python;
mod test_server;
mod tidb_server;

pub use binaries::{find_executable, require_executable};
pub use command::{run_with_deadline, CommandError, CommandOutput};
pub use mariadb::{quote_identifier, quote_string, MariaDb, MariaDbBuilder, SqlError};
pub use proxy::{wait_until, AuthSetup, Driver, FerryBuilder, FerryProcess};
pub use python::{python3, python_module_available, require_python_module};
pub use test_server::{
    MemorySha2Cache, OsRandom, TestServer, TestServerBuilder, TEST_SERVER_DATABASES,
};
pub use tidb_server::{
    tidb_token_text, RawClient, RawResult, ShowStatesFault, TidbFaults, TidbStats, TidbTestServer,
    TidbTestServerConfig, TidbUsers, TokenCertificate, TIDB_TEST_DATABASES,
};
