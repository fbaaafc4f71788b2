//! Test support for ferry's integration tests: a private MariaDB server per test, real clients.
