//! Finding `python3` and checking that a module the tests drive (a MySQL driver) is importable.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::binaries::require_executable;
use crate::command::run_with_deadline;

/// The `python3` to run client scripts with: `$FERRY_PYTHON` if set, else `python3` from `PATH`.
///
/// Panics, naming the package to install, when there is none.
pub fn python3() -> PathBuf {
    match std::env::var_os("FERRY_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => require_executable("python3", "python3"),
    }
}

/// Whether [`python3`] can `import module` (a dotted name such as `mysql.connector` works).
pub fn python_module_available(module: &str) -> bool {
    let out = run_with_deadline(
        Command::new(python3()).args(["-c", &format!("import {module}")]),
        Duration::from_secs(60),
    );
    matches!(out, Ok(o) if o.status.success())
}

/// Returns [`python3`] after checking it can `import module`; panics, naming the pip package to
/// install, when it cannot.
pub fn require_python_module(module: &str, pip_package: &str) -> PathBuf {
    let python = python3();
    assert!(
        python_module_available(module),
        "{} cannot `import {module}`; this test needs it: run `{} -m pip install {pip_package}` \
         (or `bash .ci/run`, which installs everything the tests need)",
        python.display(),
        python.display(),
    );
    python
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_library_is_importable() {
        assert!(python_module_available("os.path"));
        let python = require_python_module("json", "json");
        assert!(python.to_string_lossy().contains("python"));
    }

    #[test]
    fn a_missing_module_is_not_importable() {
        assert!(!python_module_available("ferry_no_such_module_7c1f"));
    }

    #[test]
    #[should_panic(expected = "pip install ferry-no-such-package")]
    fn a_missing_required_module_names_its_pip_package() {
        require_python_module("ferry_no_such_module_7c1f", "ferry-no-such-package");
    }
}
