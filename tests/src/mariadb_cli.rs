//! The `mariadb` command-line client, run against ferry (or any server) on a loopback port.

use std::process::Command;
use std::time::Duration;

use crate::binaries::require_executable;
use crate::command::{run_with_deadline, CommandOutput};

/// How long one [`mariadb_cli`] run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The `mariadb` CLI running `sql` as `user` on 127.0.0.1:`port` over TCP, in batch mode without
/// column names (one line per row, tab-separated), ignoring option files.
pub fn mariadb_cli_command(port: u16, user: &str, password: &str, sql: &str) -> Command {
    let mut cmd = Command::new(require_executable("mariadb", "mariadb-client"));
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("-h127.0.0.1")
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .arg(format!("-p{password}"))
        .arg("--batch")
        .arg("--skip-column-names")
        .arg("-e")
        .arg(sql);
    cmd
}

/// Runs [`mariadb_cli_command`] to completion (30 s at most). Panics only if it cannot run or
/// hangs; a failed statement is in the output's status and stderr.
pub fn mariadb_cli(port: u16, user: &str, password: &str, sql: &str) -> CommandOutput {
    run_with_deadline(
        &mut mariadb_cli_command(port, user, password, sql),
        CLI_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("mariadb on port {port} ({sql}): {e}"))
}
