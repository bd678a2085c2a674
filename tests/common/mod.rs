//! Helpers for hugeload's integration tests, shared by every test binary:
//!
//! - [`run`]: the one way to run a child (its own process group, a time
//!   limit, the group killed at the limit, `HUGELOAD_*` cleared);
//! - [`fixtures`]: the one table of fixture programs and their builder;
//! - [`elf`]: a little-endian reader and an ELF program-header reader
//!   independent of hugeload's;
//! - [`report`]: the `-v` report;
//! - [`inspect`]: `/proc/PID/smaps` of a running program and the checks of
//!   the report against it;
//! - [`real`]: real programs (private copies for the runs that may prime
//!   the page cache, python found in PATH, a library that holds a
//!   short-lived program so that its smaps can be read);
//! - [`pool`]: the hugetlb pool.
//!
//! A test that cannot run here (no root, a tool missing) skips with a
//! reason; with `HUGELOAD_STRICT=1` a skip is a failure.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod elf;
pub mod fixtures;
pub mod inspect;
pub mod pool;
pub mod real;
pub mod report;
pub mod run;

pub use elf::*;
pub use fixtures::*;
pub use inspect::*;
pub use pool::*;
pub use real::*;
pub use report::*;
pub use run::*;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Duration;

/// 2 MiB.
pub const HUGE: u64 = 2 << 20;
/// 4 KiB.
pub const PAGE: u64 = 4096;
/// The longest any child may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// 4 MiB: a text larger than this always holds a whole 2 MiB block.
pub const FOUR_MIB: u64 = 4 << 20;

pub const fn huge_down(x: u64) -> u64 {
    x & !(HUGE - 1)
}
pub const fn huge_up(x: u64) -> u64 {
    (x + HUGE - 1) & !(HUGE - 1)
}
pub const fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}
pub const fn page_up(x: u64) -> u64 {
    (x + PAGE - 1) & !(PAGE - 1)
}

// ---------------------------------------------------------------------------
// Paths

/// The hugeload binary under test.
pub fn hugeload() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hugeload"))
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/`: the fixture sources.
pub fn fixture_sources() -> PathBuf {
    manifest_dir().join("tests/fixtures")
}

/// `target/fixtures/`: built fixtures and scratch files.
pub fn fixtures_dir() -> PathBuf {
    let dir = manifest_dir().join("target/fixtures");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A fresh, empty directory for one test's files:
/// `target/fixtures/scratch/TAG-PID`. Directories left by test processes
/// that have ended are removed.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static CLEANED: OnceLock<()> = OnceLock::new();
    let root = fixtures_dir().join("scratch");
    CLEANED.get_or_init(|| {
        for entry in fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    });
    let dir = root.join(format!("{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Finds an executable named `name` in `PATH`, as a shell would.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

pub fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

/// Locks a mutex, ignoring poisoning (a failed test must not fail others).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Skipping

/// Why a test cannot run on this machine (no root, a tool missing).
#[derive(Clone, Debug)]
pub struct Skip(pub String);

pub fn is_strict() -> bool {
    std::env::var("HUGELOAD_STRICT").is_ok_and(|v| v == "1")
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_string()
}

/// Reports a skip: with `HUGELOAD_STRICT=1` that is a failure.
pub fn skip(reason: &str) {
    let name = test_name();
    if is_strict() {
        panic!("{name}: would skip, but HUGELOAD_STRICT=1: {reason}");
    }
    // Straight to fd 2: libtest captures eprintln!, and a skip should show.
    let _ = writeln!(std::io::stderr(), "SKIP {name}: {reason}");
}

/// Writes a line straight to fd 2, past libtest's capture: the figures a
/// test measures.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{}: {text}", test_name());
}

/// `or_skip!(expr)`: the `Ok` value of a `Result<T, Skip>`, or report the
/// skip and return from the test.
macro_rules! or_skip {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => {
                $crate::common::skip(&s.0);
                return;
            }
        }
    };
}

/// Cases as data: one named test per case, each calling `check` with the
/// case's arguments (the test's name is the case's, so a failure names
/// it):
///
/// ```ignore
/// case_tests! { check {
///     test_one: ("fixture-a", 7);
///     test_two: ("fixture-b", 5);
/// }}
/// ```
macro_rules! case_tests {
    ($check:ident { $($test:ident: ($($arg:expr),* $(,)?);)* }) => {$(
        #[test]
        fn $test() {
            $check($($arg),*);
        }
    )*};
}

/// A tool the test needs, or a skip.
pub fn need_tool(name: &str) -> Result<PathBuf, Skip> {
    which(name).ok_or_else(|| Skip(format!("`{name}` is not installed")))
}

/// A field of `/proc/self/status`.
pub fn self_status(key: &str) -> Option<String> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

pub fn is_root() -> bool {
    self_status("Uid")
        .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

pub fn need_root(why: &str) -> Result<(), Skip> {
    if is_root() {
        Ok(())
    } else {
        Err(Skip(format!("needs root ({why})")))
    }
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
