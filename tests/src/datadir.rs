//! An initialised MariaDB data directory, made once by `mariadb-install-db` and cached, then copied
//! for each server.
//!
//! Measured on the 2-core CI machine: `mariadb-install-db` takes ~0.6 s, a sparse copy of its
//! result ~0.06 s (the 96 MiB redo log is almost all zeros; a plain copy takes ~0.3 s and writes
//! 113 MiB per server), and the server then starts in ~0.2 s.
//!
//! The cache lives under the cargo target directory (`target/ferry-test-cache/`), or
//! `$FERRY_TEST_CACHE_DIR`, keyed by the server version, so it is made once per machine and
//! shared by every test process; it is published by an atomic rename, so concurrent test
//! processes never see half of one.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::command::run_with_deadline;

/// Written last into a finished template: a directory without it is not a template.
const COMPLETE_MARKER: &str = "ferry-template-complete";

/// Bumped when the way templates are made changes, so old caches are not reused.
const TEMPLATE_FORMAT: &str = "v1";

/// The template made (or found) by this process, so the version check runs once.
static TEMPLATE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The path of an initialised data directory to copy from, making it first if needed.
///
/// Panics with `mariadb-install-db`'s output when it fails.
pub(crate) fn template(install_db: &Path, mariadbd: &Path) -> PathBuf {
    // A panic while making the template poisons the lock; the next caller just tries again.
    let mut cached = TEMPLATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = cached.as_ref() {
        return path.clone();
    }
    let path = find_or_make_template(install_db, mariadbd);
    *cached = Some(path.clone());
    path
}

fn find_or_make_template(install_db: &Path, mariadbd: &Path) -> PathBuf {
    let dir = cache_dir();
    let final_path = dir.join(format!(
        "mariadb-{}-{TEMPLATE_FORMAT}",
        server_version(mariadbd)
    ));
    if final_path.join(COMPLETE_MARKER).exists() {
        return final_path;
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));

    let out = run_with_deadline(
        Command::new(install_db)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", tmp.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]),
        Duration::from_secs(120),
    );
    let failure = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{}\n--- stdout:\n{}\n--- stderr:\n{}",
            o.status, o.stdout, o.stderr
        )),
        Err(e) => Some(e.to_string()),
    };
    if let Some(failure) = failure {
        let _ = fs::remove_dir_all(&tmp);
        panic!(
            "{} --datadir={} failed: {failure}",
            install_db.display(),
            tmp.display()
        );
    }
    fs::write(tmp.join(COMPLETE_MARKER), b"")
        .unwrap_or_else(|e| panic!("cannot write into {}: {e}", tmp.display()));

    if final_path.exists() && !final_path.join(COMPLETE_MARKER).exists() {
        // Left incomplete by hand; renames only ever publish complete templates.
        let _ = fs::remove_dir_all(&final_path);
    }
    if fs::rename(&tmp, &final_path).is_err() {
        // Another test process published the same template first: use theirs.
        let _ = fs::remove_dir_all(&tmp);
        assert!(
            final_path.join(COMPLETE_MARKER).exists(),
            "cannot publish the datadir template at {}",
            final_path.display()
        );
    }
    final_path
}

/// `$FERRY_TEST_CACHE_DIR`, else `target/ferry-test-cache` found from this test executable's path
/// (`target/<profile>/deps/<test>`), else the system temp directory.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_TEST_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().ok();
    let deps = exe.as_deref().and_then(Path::parent);
    match deps
        .filter(|d| d.ends_with("deps"))
        .and_then(Path::parent)
        .and_then(Path::parent)
    {
        Some(target) => target.join("ferry-test-cache"),
        None => std::env::temp_dir().join("ferry-test-cache"),
    }
}

/// The version word of `mariadbd --version` ("10.11.19-MariaDB-0+deb12u1"), made safe for a path.
fn server_version(mariadbd: &Path) -> String {
    let out = run_with_deadline(
        Command::new(mariadbd).arg("--version"),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{} --version: {e}", mariadbd.display()));
    assert!(
        out.status.success(),
        "{} --version failed: {}",
        mariadbd.display(),
        out.stderr
    );
    let version = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .unwrap_or(out.stdout.trim());
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Copies the directory tree `from` into `to` (which must not exist), leaving holes where the
/// source has whole blocks of zeros, so the copy is fast and small.
pub(crate) fn copy_tree_sparse(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree_sparse(&entry.path(), &target)?;
        } else if kind.is_file() {
            copy_file_sparse(&entry.path(), &target)?;
        }
        // A data directory made by mariadb-install-db holds only files and directories.
    }
    Ok(())
}

fn copy_file_sparse(from: &Path, to: &Path) -> io::Result<()> {
    const BLOCK: usize = 64 * 1024;
    let mut src = File::open(from)?;
    let mut dst = File::create(to)?;
    let mut buf = vec![0u8; BLOCK];
    let mut len = 0u64;
    loop {
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64))?;
        } else {
            dst.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    // A trailing hole is only a seek so far: fix the length.
    dst.set_len(len)?;
    fs::set_permissions(to, src.metadata()?.permissions())
}

/// Reads until `buf` is full or the end of the file.
fn read_full(src: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_copy_keeps_contents_and_skips_zero_blocks() {
        let src = tempfile::tempdir().expect("tempdir");
        let mut big = vec![0u8; 4 * 1024 * 1024];
        big[10] = 1;
        big[3 * 1024 * 1024 + 7] = 2; // zeros in the middle and at the end
        fs::write(src.path().join("big"), &big).expect("write");
        fs::create_dir(src.path().join("sub")).expect("mkdir");
        fs::write(src.path().join("sub/small"), b"hello").expect("write");
        fs::write(src.path().join("sub/empty"), b"").expect("write");

        let dst = tempfile::tempdir().expect("tempdir");
        let to = dst.path().join("copy");
        copy_tree_sparse(src.path(), &to).expect("copy");

        assert_eq!(fs::read(to.join("big")).expect("read"), big);
        assert_eq!(fs::read(to.join("sub/small")).expect("read"), b"hello");
        assert_eq!(fs::read(to.join("sub/empty")).expect("read"), b"");
        // Two 64 KiB blocks hold data; the other 3.9 MiB must be holes (st_blocks is 512-byte units).
        let allocated = fs::metadata(to.join("big")).expect("stat").blocks() * 512;
        assert!(
            allocated <= 512 * 1024,
            "copy allocated {allocated} bytes for 128 KiB of data"
        );
    }

    #[test]
    fn copying_into_an_existing_directory_fails() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        assert!(copy_tree_sparse(src.path(), dst.path()).is_err());
    }
}
