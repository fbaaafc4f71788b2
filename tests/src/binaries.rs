//! Finding the external programs the tests drive, and failing with the package to install when one
//! is missing: a test that needs a program never skips silently.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Directories searched after `PATH`: Debian installs server daemons in `sbin`, which a non-root
/// user's `PATH` often lacks.
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The first executable file called `name` in `PATH` or the usual system directories.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let path_dirs = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Like [`find_executable`], but panics, naming the Debian package that provides `name`, when it
/// is missing.
pub fn require_executable(name: &str, apt_package: &str) -> PathBuf {
    find_executable(name).unwrap_or_else(|| {
        panic!(
            "`{name}` was not found in PATH or {EXTRA_DIRS:?}; this test needs it: install the \
             Debian package `{apt_package}` (apt-get install {apt_package}), or run `bash .ci/run`, \
             which installs everything the tests need"
        )
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh() {
        let sh = find_executable("sh").expect("every unix has sh");
        assert!(sh.is_absolute());
        assert!(sh.ends_with("sh"));
    }

    #[test]
    fn a_missing_program_is_none() {
        assert_eq!(find_executable("ferry-no-such-program-7c1f"), None);
    }

    #[test]
    #[should_panic(expected = "apt-get install ferry-pkg")]
    fn a_missing_required_program_names_its_package() {
        require_executable("ferry-no-such-program-7c1f", "ferry-pkg");
    }
}
