//! Test support for ferry's integration tests: a private MariaDB server per test, real clients.
//!
//! - [`MariaDb`]: a throw-away MariaDB server on a free loopback port, torn down on drop;
//! - [`require_executable`] / [`require_python_module`]: find the client programs and drivers a
//!   test drives, failing with the package to install (tests never skip);
//! - [`run_with_deadline`]: run a program with a time limit, so nothing hangs the test run.

mod binaries;
mod command;
mod datadir;
mod mariadb;
mod python;
mod test_server;

pub use binaries::{find_executable, require_executable};
pub use command::{run_with_deadline, CommandError, CommandOutput};
pub use mariadb::{quote_identifier, quote_string, MariaDb, MariaDbBuilder, SqlError};
pub use python::{python3, python_module_available, require_python_module};
pub use test_server::{
    MemorySha2Cache, OsRandom, TestServer, TestServerBuilder, TEST_SERVER_DATABASES,
};
