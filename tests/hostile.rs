//! Hostile inputs, hostile environments, and the promises hugeload makes
//! about both.
//!
//! - **Malformed files**: the committed corpus (tests/corpus/, see make.py),
//!   300 seeded mutations of its good program, and a big program truncated
//!   while hugeload loads it. Each file is run by the kernel (a raw execve,
//!   no shell fallback) and through hugeload. hugeload either refuses it
//!   (exit 126/127, exactly one stderr line `hugeload: PATH: reason`, the
//!   kernel's errno class, nothing mapped: checked with strace) or runs it
//!   exactly as the kernel does (same stdout, exit status or signal). It
//!   may refuse a file the kernel runs only for its two documented reasons:
//!   a W+X segment and an executable stack. It never hangs, and is never
//!   killed by a signal the direct run did not get.
//! - **Hostile environments**: THP disabled for the process, an empty hugetlb
//!   pool, a pool that runs out part-way through the text, RLIMIT_AS and
//!   RLIMIT_DATA too small for a second copy of the text, a 16 KiB
//!   RLIMIT_STACK, MDWE, a seccomp filter like systemd's
//!   `MemoryDenyWriteExecute=`, blocked/ignored signals and signals arriving
//!   during the load, 50 concurrent launches sharing a 32-page pool. The
//!   program always runs as it does directly; `-v` says what was given up.
//! - **Promises**: no mapping is ever writable and executable (strace of
//!   every mmap/mprotect/mremap), PIE bases are randomized, and the program's
//!   view of its process (auxv, status, limits, fds, environment) is the one
//!   a direct execve gives, in launcher and PT_INTERP mode.
//!
//! Tests that change the global hugetlb pool hold [`POOL`] exclusively and
//! restore it to at least 128 pages; tests that may take pages from it hold
//! it shared. Every child is bounded in time. Things that need root, a tool
//! or a kernel feature print `SKIP` (a failure with `HUGELOAD_STRICT=1`).

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString, c_char};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// The longest one run of a hostile file may take.
const FILE_LIMIT: Duration = Duration::from_secs(10);

const ENOENT: i32 = 2;
const SIGBUS: i32 = 7;
const SIGSEGV: i32 = 11;
const SIGUSR1: i32 = 10;
const SIGKILL: i32 = 9;
const SIGCHLD: i32 = 17;
const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;
const SIGURG: i32 = 23;
const SIGWINCH: i32 = 28;

mod libc {
    use std::ffi::c_char;
    unsafe extern "C" {
        pub fn execve(
            path: *const c_char,
            argv: *const *const c_char,
            envp: *const *const c_char,
        ) -> i32;
        pub fn kill(pid: i32, sig: i32) -> i32;
    }
}

fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory effects on this process.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Writes a line straight to fd 2, past libtest's capture: the figures the
/// tests measure.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{}: {text}", test_name());
}

// ---------------------------------------------------------------------------
// The hugetlb pool

/// Held exclusively by tests that resize the pool or count its free pages,
/// shared by tests that may take pages from it.
static POOL: RwLock<()> = RwLock::new(());

fn pool_shared() -> RwLockReadGuard<'static, ()> {
    POOL.read().unwrap_or_else(|e| e.into_inner())
}

fn pool_exclusive() -> RwLockWriteGuard<'static, ()> {
    POOL.write().unwrap_or_else(|e| e.into_inner())
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn read_nr_hugepages() -> u64 {
    fs::read_to_string(NR_HUGEPAGES)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The pool resized to exactly `n` free pages; on drop, back to what it was
/// and at least [`HUGETLB_POOL_PAGES`].
struct PoolSize {
    restore: u64,
}

impl PoolSize {
    fn set(n: u64) -> Result<PoolSize, Skip> {
        let restore = read_nr_hugepages().max(HUGETLB_POOL_PAGES);
        fs::write(NR_HUGEPAGES, format!("{n}\n")).map_err(|e| {
            Skip(format!(
                "cannot write {NR_HUGEPAGES} ({e}); run as root to resize the hugetlb pool"
            ))
        })?;
        let guard = PoolSize { restore };
        let free = hugetlb_free_pages();
        if free != n {
            // Leave the pool restored (drop) before failing.
            drop(guard);
            panic!(
                "asked for a hugetlb pool of {n} free pages, /proc/meminfo says {free} free: \
                 another process holds pages"
            );
        }
        Ok(guard)
    }
}

impl Drop for PoolSize {
    fn drop(&mut self) {
        let _ = fs::write(NR_HUGEPAGES, format!("{}\n", self.restore));
    }
}

/// Waits (up to 5 s) until HugePages_Free is `n`; returns the last value.
fn wait_free_pages(n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let free = hugetlb_free_pages();
        if free == n || Instant::now() >= deadline {
            return free;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Fixtures of this file

/// `(compiler, source, flags)` of the fixtures this file builds.
fn recipe(name: &str) -> (&'static str, &'static str, &'static [&'static str]) {
    match name {
        "hostile_wrap" => ("gcc", "hostile_wrap.c", &["-O1"]),
        "view-pie" => ("gcc", "view.c", &["-O1", "-pie", "-fPIE"]),
        "view-static" => ("gcc", "view.c", &["-O1", "-static"]),
        "view-musl-static" => ("musl-gcc", "view.c", &["-O1", "-static"]),
        "view-16" => ("gcc", "view.c", &["-O1", "-pie", "-fPIE", "-DPAD_MB=16"]),
        "view-64" => ("gcc", "view.c", &["-O1", "-pie", "-fPIE", "-DPAD_MB=64"]),
        _ => panic!("no recipe for {name}"),
    }
}

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// The fixture `name`, built into `target/fixtures/hostile-NAME` once per
/// test process (rebuilt when its source or flags change).
fn build(name: &str) -> Result<PathBuf, Skip> {
    type Cell = &'static OnceLock<Result<PathBuf, Skip>>;
    static CELLS: Mutex<BTreeMap<String, Cell>> = Mutex::new(BTreeMap::new());
    let cell: Cell = *lock(&CELLS)
        .entry(name.to_string())
        .or_insert_with(|| Box::leak(Box::new(OnceLock::new())));
    cell.get_or_init(|| {
        let (tool, source, flags) = recipe(name);
        let compiler = need_tool(tool)?;
        let src = fixture_sources().join(source);
        let text = fs::read(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        let mut h = fnv(0xcbf2_9ce4_8422_2325, compiler.as_os_str().as_bytes());
        for f in flags {
            h = fnv(fnv(h, f.as_bytes()), b"\0");
        }
        let key = format!("{:016x}\n", fnv(h, &text));
        let dir = fixtures_dir();
        let out = dir.join(format!("hostile-{name}"));
        let stamp = dir.join(format!("hostile-{name}.stamp"));
        if out.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == key) {
            return Ok(out);
        }
        let tmp = dir.join(format!("hostile-{name}.{}.tmp", std::process::id()));
        let mut cmd = Command::new(&compiler);
        cmd.args(flags).arg(&src).arg("-o").arg(&tmp);
        let what = describe(&cmd);
        let r = run(cmd);
        assert!(
            r.status.success(),
            "building {name} failed: `{what}`\n{}{}",
            r.stdout_str(),
            r.stderr_str()
        );
        fs::rename(&tmp, &out).unwrap();
        let stamp_tmp = dir.join(format!("hostile-{name}.{}.stamp", std::process::id()));
        fs::write(&stamp_tmp, &key).unwrap();
        fs::rename(&stamp_tmp, &stamp).unwrap();
        Ok(out)
    })
    .clone()
}

// ---------------------------------------------------------------------------
// Running with a time limit, recording how a run ended

#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    Exit(i32),
    Signal(i32),
    /// execve failed with this errno (the kernel refused the file).
    ExecError(i32),
    /// Still running at the time limit: killed.
    Hung,
}

#[derive(Clone, Debug)]
struct Outcome {
    what: String,
    end: End,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Outcome {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn short(&self) -> String {
        let end = match self.end {
            End::Exit(c) => format!("exit {c}"),
            End::Signal(s) => format!("signal {s}"),
            End::ExecError(e) => format!("execve errno {e}"),
            End::Hung => "hung (killed)".to_string(),
        };
        format!("{end}, stdout {:?}, stderr {:?}", self.out(), self.err())
    }
}

fn end_of(status: ExitStatus) -> End {
    match (status.code(), status.signal()) {
        (Some(c), _) => End::Exit(c),
        (_, Some(s)) => End::Signal(s),
        _ => unreachable!("{status:?}"),
    }
}

fn collect(r: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` until `limit` has passed; kills its process group then.
fn wait_limited(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            send_signal(child.id(), SIGCONT);
            // SAFETY: kill(2) of our own child's process group.
            unsafe { libc::kill(-(child.id() as i32), SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `cmd` (stdin /dev/null) in its own process group, for at most
/// `limit`.
fn run_limited(mut cmd: Command, limit: Duration) -> Outcome {
    let what = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                what,
                end: End::ExecError(e.raw_os_error().unwrap_or(-1)),
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
        }
    };
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let end = wait_limited(&mut child, limit).map_or(End::Hung, end_of);
    Outcome {
        what,
        end,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// What the child execs: argv (argv[0] is the path) and the environment.
struct Exec {
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}
// SAFETY: the pointers point into `_strings`, owned by the same value and
// never mutated.
unsafe impl Send for Exec {}
unsafe impl Sync for Exec {}

impl Exec {
    /// execve(2); returns only on failure.
    fn exec(&self) -> std::io::Error {
        // SAFETY: NUL-terminated strings and NULL-terminated arrays owned by
        // `self`.
        unsafe { libc::execve(self.argv[0], self.argv.as_ptr(), self.envp.as_ptr()) };
        std::io::Error::last_os_error()
    }
}

/// `path args...` run by the kernel itself: a raw execve(2) in the child,
/// so that a file the kernel refuses reports execve's errno (glibc's
/// execvp would hand an ENOEXEC file to /bin/sh). The environment is this
/// process's without `HUGELOAD_*` (std applies a Command's environment
/// only after the pre_exec closures, so it is passed here explicitly).
fn kernel_command(path: &Path, args: &[&str]) -> Command {
    let c = |b: &[u8]| CString::new(b).unwrap();
    let mut strings = vec![c(path.as_os_str().as_bytes())];
    strings.extend(args.iter().map(|a| c(a.as_bytes())));
    let argc = strings.len();
    for (k, v) in std::env::vars_os() {
        if !HUGELOAD_ENV.iter().any(|h| k == OsStr::new(h)) {
            strings.push(c(&[k.as_bytes(), b"=", v.as_bytes()].concat()));
        }
    }
    let ptrs = |s: &[CString]| -> Vec<*const c_char> {
        s.iter()
            .map(|x| x.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let exec = Exec {
        argv: ptrs(&strings[..argc]),
        envp: ptrs(&strings[argc..]),
        _strings: strings,
    };
    let mut cmd = Command::new(path);
    cmd.args(args);
    // SAFETY: the closure only calls execve(2) with memory prepared before
    // the fork (async-signal-safe), and reports its errno.
    unsafe {
        cmd.pre_exec(move || Err(exec.exec()));
    }
    cmd
}

/// `hostile_wrap SETTINGS -- ARGV...`, or just ARGV when SETTINGS is empty;
/// `HUGELOAD_*` removed from the environment.
fn wrapped(settings: &[&str], argv: Vec<OsString>) -> Result<Command, Skip> {
    let mut cmd = if settings.is_empty() {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    } else {
        let mut c = Command::new(build("hostile_wrap")?);
        c.args(settings).arg("--").args(&argv);
        c
    };
    for var in HUGELOAD_ENV {
        cmd.env_remove(var);
    }
    Ok(cmd)
}

fn os_args(program: &Path, args: &[&str]) -> Vec<OsString> {
    std::iter::once(program.as_os_str().to_owned())
        .chain(args.iter().map(OsString::from))
        .collect()
}

/// `[wrapper] program args`.
fn direct(settings: &[&str], program: &Path, args: &[&str]) -> Result<Command, Skip> {
    wrapped(settings, os_args(program, args))
}

/// `[wrapper] hugeload opts program args`.
fn via(settings: &[&str], opts: &[&str], program: &Path, args: &[&str]) -> Result<Command, Skip> {
    let mut argv = vec![hugeload().as_os_str().to_owned()];
    argv.extend(opts.iter().map(OsString::from));
    argv.extend(os_args(program, args));
    wrapped(settings, argv)
}

/// The run, or a skip if the wrapper says the kernel lacks a feature.
fn run_wrapped(cmd: Command, limit: Duration) -> Result<Outcome, Skip> {
    let o = run_limited(cmd, limit);
    if o.end == End::Exit(124) && o.err().starts_with("hostile_wrap:") {
        return Err(Skip(o.err().trim().to_string()));
    }
    Ok(o)
}

/// Runs `program args` directly and through `hugeload opts` under the same
/// settings, asserting nothing (for views, which [`compare_views`] judges).
fn run_views(
    settings: &[&str],
    opts: &[&str],
    program: &Path,
    args: &[&str],
) -> Result<(Outcome, Outcome), Skip> {
    let d = run_wrapped(direct(settings, program, args)?, TIMEOUT)?;
    let h = run_wrapped(via(settings, opts, program, args)?, TIMEOUT)?;
    Ok((d, h))
}

/// Runs `program args` directly and through `hugeload opts` under the same
/// settings; asserts both exit 0 with the same stdout (and hugeload's
/// stderr holds only `hugeload: ` lines). Returns (direct, hugeload).
fn run_pair(
    settings: &[&str],
    opts: &[&str],
    program: &Path,
    args: &[&str],
) -> Result<(Outcome, Outcome), Skip> {
    let d = run_wrapped(direct(settings, program, args)?, TIMEOUT)?;
    let h = run_wrapped(via(settings, opts, program, args)?, TIMEOUT)?;
    assert_eq!(
        d.end,
        End::Exit(0),
        "direct run `{}`: {}",
        d.what,
        d.short()
    );
    assert_eq!(
        h.end,
        End::Exit(0),
        "`{}` ended unlike the direct run\nstderr:\n{}",
        h.what,
        h.err()
    );
    assert_eq!(
        h.out(),
        d.out(),
        "`{}`: stdout differs from the direct run's\nstderr:\n{}",
        h.what,
        h.err()
    );
    assert!(
        h.err().lines().all(|l| l.starts_with("hugeload: ")),
        "`{}`: stderr has lines that are not hugeload's\n{}",
        h.what,
        h.err()
    );
    Ok((d, h))
}

// ---------------------------------------------------------------------------
// The -v report: every planned block accounted for

/// The load bias from the `hugeload: load PATH: ET_xxx at 0xADDR` line.
fn bias_from_report(stderr: &str, elf: &ElfInfo) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("hugeload: load "))
        .unwrap_or_else(|| panic!("no `hugeload: load` line in\n{stderr}"));
    let at = line
        .split(" at 0x")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let first = elf.loads().map(|p| page_down(p.p_vaddr)).min().unwrap();
    if elf.is_pie() { at - first } else { 0 }
}

/// Checks that every 2 MiB block wholly inside the text is either in a
/// reported huge range or in a range reported as left on 4 KiB pages with
/// a reason; returns the report.
fn accounted(h: &Outcome, program: &Path) -> Report {
    let stderr = h.err();
    let report = parse_report(&stderr);
    let total = report.total(&stderr).clone();
    let elf = ElfInfo::read(program);
    let bias = bias_from_report(&stderr, &elf);
    for b in elf.interior_blocks(bias) {
        let covered = report
            .huge
            .iter()
            .map(|x| x.range)
            .chain(report.fallback.iter().map(|f| f.range))
            .any(|r| r.start <= b && b < r.end);
        assert!(
            covered,
            "`{}`: 2 MiB block {b:x} of the text is neither huge nor reported as left on \
             4 KiB pages\n{stderr}",
            h.what
        );
    }
    for f in &report.fallback {
        assert!(
            !f.reason.is_empty(),
            "`{}`: fallback without a reason\n{stderr}",
            h.what
        );
    }
    let huge: u64 = report.huge.iter().map(|x| x.pages).sum();
    assert!(huge >= total.used, "`{}`: U > huge lines\n{stderr}", h.what);
    report
}

fn assert_reasons(h: &Outcome, report: &Report, needles: &[&str]) {
    assert!(
        !report.fallback.is_empty(),
        "`{}`: nothing reported as given up\n{}",
        h.what,
        h.err()
    );
    for f in &report.fallback {
        for n in needles {
            assert!(
                f.reason.contains(n),
                "`{}`: fallback reason {:?} does not mention {n:?}\n{}",
                h.what,
                f.reason,
                h.err()
            );
        }
    }
}

fn backends(report: &Report) -> String {
    let count = |b: &str| -> u64 {
        report
            .huge
            .iter()
            .filter(|h| h.backend == b)
            .map(|h| h.pages)
            .sum()
    };
    let small: u64 = report.fallback.iter().map(|f| f.range.len() / HUGE).sum();
    format!(
        "hugetlb {} x 2M, thp {} x 2M, left on 4 KiB pages {} x 2M",
        count("hugetlb"),
        count("thp"),
        small
    )
}

// ---------------------------------------------------------------------------
// strace

/// One traced system call: `name(args) = ret`.
#[derive(Clone, Debug)]
struct Call {
    name: String,
    args: Vec<String>,
    ret: String,
    line: String,
}

impl Call {
    fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }
    fn num(&self, i: usize) -> Option<u64> {
        parse_num(self.arg(i))
    }
    fn ok_addr(&self) -> Option<u64> {
        parse_num(self.ret.split_whitespace().next()?)
    }
    /// The `prot` argument of mmap, mprotect and pkey_mprotect.
    fn prot(&self) -> Option<(bool, bool)> {
        let p = match self.name.as_str() {
            "mmap" | "mprotect" | "pkey_mprotect" => self.arg(2),
            _ => return None,
        };
        Some(match parse_num(p) {
            Some(n) => (n & 2 != 0, n & 4 != 0),
            None => (p.contains("PROT_WRITE"), p.contains("PROT_EXEC")),
        })
    }
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if s == "NULL" {
        Some(0)
    } else {
        s.parse().ok()
    }
}

fn parse_trace(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for line in text.lines() {
        // `-f` into one file prefixes the pid.
        let body = match line.split_once(' ') {
            Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => rest.trim_start(),
            _ => line,
        };
        let Some((name, rest)) = body.split_once('(') else {
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        // strace pads short calls: `munmap(0x7f.., 528384)          = 0`.
        let Some(eq) = rest.rfind(" = ") else {
            continue;
        };
        let Some(close) = rest[..eq].rfind(')') else {
            continue;
        };
        if !rest[close + 1..eq].trim().is_empty() {
            continue;
        }
        let args = rest[..close]
            .split(", ")
            .map(|s| s.trim().to_string())
            .collect();
        calls.push(Call {
            name: name.to_string(),
            args,
            ret: rest[eq + 3..].trim().to_string(),
            line: line.to_string(),
        });
    }
    calls
}

/// For a refused file: no mmap with MAP_FIXED (or MAP_FIXED_NOREPLACE), no
/// mapping of any file, no mremap; mprotect only inside hugeload's own
/// anonymous mappings (the work stack's guard page).
fn check_refusal_maps_nothing(path: &Path, args: &[&str], code: i32, dir: &Path) -> Vec<String> {
    let trace = dir.join(format!(
        "strace-{}.txt",
        path.file_name().unwrap().to_string_lossy()
    ));
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-e",
        "trace=mmap,mprotect,pkey_mprotect,mremap,munmap",
        "-o",
    ])
    .arg(&trace)
    .arg(hugeload())
    .arg(path)
    .args(args);
    for var in HUGELOAD_ENV {
        cmd.env_remove(var);
    }
    let o = run_limited(cmd, FILE_LIMIT);
    let mut problems = Vec::new();
    if o.end != End::Exit(code) {
        problems.push(format!(
            "under strace hugeload ended {} (without: exit {code})",
            o.short()
        ));
    }
    let text = fs::read_to_string(&trace).unwrap_or_default();
    let _ = fs::remove_file(&trace);
    let mut anon: Vec<(u64, u64)> = Vec::new();
    let calls = parse_trace(&text);
    if !calls.iter().any(|c| c.name == "mmap") {
        problems.push(format!(
            "strace recorded no mmap (hugeload's work stack is one): {text:?}"
        ));
    }
    for c in calls {
        match c.name.as_str() {
            "mmap" => {
                let flags = c.arg(3);
                if flags.contains("MAP_FIXED") {
                    problems.push(format!("fixed mapping: {}", c.line));
                }
                if c.arg(4) != "-1" || !flags.contains("MAP_ANONYMOUS") {
                    problems.push(format!("file mapping: {}", c.line));
                }
                if let (Some(a), Some(len)) = (c.ok_addr(), c.num(1)) {
                    anon.push((a, a + len));
                }
            }
            "mprotect" | "pkey_mprotect" => {
                let (a, len) = (c.num(0).unwrap_or(0), c.num(1).unwrap_or(0));
                if !anon.iter().any(|&(s, e)| s <= a && a + len <= e) {
                    problems.push(format!("mprotect outside its own mappings: {}", c.line));
                }
            }
            "mremap" => problems.push(format!("mremap: {}", c.line)),
            _ => {}
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// Judging one hostile file

#[derive(Default)]
struct Tally {
    refused_126: usize,
    /// Refused (126) with a validation reason, though the kernel runs it.
    stricter_126: usize,
    refused_127: usize,
    ran_like_kernel: usize,
    both_hung: usize,
    violations: usize,
}

impl Tally {
    fn total(&self) -> usize {
        self.refused_126
            + self.stricter_126
            + self.refused_127
            + self.ran_like_kernel
            + self.both_hung
            + self.violations
    }
    fn summary(&self) -> String {
        format!(
            "{} files: refused 126: {}, refused 126 though the kernel runs it: {}, refused \
             127: {}, ran like the kernel: {}, hung in both: {}, violations: {}",
            self.total(),
            self.refused_126,
            self.stricter_126,
            self.refused_127,
            self.ran_like_kernel,
            self.both_hung,
            self.violations
        )
    }
}

enum Verdict {
    Refused(i32),
    /// Refused with a validation reason a file the kernel runs.
    Stricter,
    RanLikeKernel,
    BothHung,
}

/// The one stderr line `hugeload: PATH: reason`, if that is all hugeload
/// said (and it printed nothing on stdout).
fn refusal_reason<'a>(o: &'a Outcome, path: &str) -> Option<&'a str> {
    let err = std::str::from_utf8(&o.stderr).ok()?;
    let line = err.strip_suffix('\n')?;
    if line.contains('\n') || !o.stdout.is_empty() {
        return None;
    }
    let reason = line.strip_prefix(&format!("hugeload: {path}: "))?;
    (!reason.is_empty()).then_some(reason)
}

/// Whether the file (read leniently, as the kernel would) has a W+X
/// PT_LOAD or a PT_GNU_STACK with PF_X: the documented cases where hugeload
/// refuses what the kernel runs.
fn asks_for_wx(bytes: &[u8]) -> bool {
    let le = |at: usize, n: usize| -> Option<u64> {
        let b = bytes.get(at..at + n)?;
        Some(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    };
    if bytes.get(..4) != Some(b"\x7fELF") {
        return false;
    }
    let (Some(phoff), Some(56), Some(phnum)) = (le(32, 8), le(54, 2), le(56, 2)) else {
        return false;
    };
    (0..phnum).any(|i| {
        let at = phoff.saturating_add(i * 56) as usize;
        match (le(at, 4), le(at + 4, 4)) {
            (Some(1), Some(f)) => f & 3 == 3,
            (Some(0x6474_e551), Some(f)) => f & 1 != 0,
            _ => false,
        }
    })
}

/// The rules of the issue, for one file: `direct` is the kernel's run,
/// `hl` hugeload's (no options).
fn judge(path: &Path, direct: &Outcome, hl: &Outcome) -> Result<Verdict, String> {
    let p = path.to_string_lossy();
    if hl.end == End::Hung {
        return if direct.end == End::Hung {
            Ok(Verdict::BothHung)
        } else {
            Err("hugeload hung (killed after 10 s); the direct run did not".into())
        };
    }
    if let End::Exit(code @ (126 | 127)) = hl.end
        && let Some(reason) = refusal_reason(hl, &p)
    {
        match direct.end {
            End::ExecError(errno) => {
                let want = if errno == ENOENT { 127 } else { 126 };
                if code != want {
                    return Err(format!(
                        "refused with {code}, but the kernel's errno {errno} means {want}"
                    ));
                }
            }
            End::Exit(_) => {
                // The issue allows a refusal of a malformed file even where
                // the kernel runs it (hugeload validates more: class, byte
                // order, version, sorted and in-file segments, sizes), but
                // only with hugeload's own validation message, never for
                // the well-formed controls, and a W+X refusal only for a
                // file that really asks for W+X.
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let control =
                    name.is_some_and(|n| n.starts_with("good-") || n.starts_with("script-ok"));
                if control {
                    return Err(format!("refused a well-formed control ({reason:?})"));
                }
                if !reason.contains("cannot execute: ") {
                    return Err(format!(
                        "refused a file the kernel runs without a validation reason ({reason:?})"
                    ));
                }
                if reason.contains("hugeload never maps W+X")
                    && !asks_for_wx(&fs::read(path).unwrap_or_default())
                {
                    return Err(format!("W+X refusal of a file without W+X ({reason:?})"));
                }
                if code != 126 {
                    return Err(format!("refused with {code}, expected 126"));
                }
                return Ok(Verdict::Stricter);
            }
            End::Signal(_) | End::Hung => {
                if code != 126 {
                    return Err(format!(
                        "refused with {code} a file the kernel executes, expected 126"
                    ));
                }
            }
        }
        return Ok(Verdict::Refused(code));
    }
    match (&direct.end, &hl.end) {
        (End::Exit(a), End::Exit(b))
            if a == b && direct.stdout == hl.stdout && direct.stderr == hl.stderr =>
        {
            Ok(Verdict::RanLikeKernel)
        }
        (End::Signal(a), End::Signal(b)) if a == b && direct.stdout == hl.stdout => {
            Ok(Verdict::RanLikeKernel)
        }
        (_, End::Signal(s)) => Err(format!("hugeload was killed by signal {s}")),
        (End::ExecError(e), _) => Err(format!(
            "the kernel refuses it (errno {e}); hugeload neither refused it with one line \
             nor ran it"
        )),
        _ => Err("neither a one-line refusal nor the kernel's run".into()),
    }
}

/// Runs one file directly and through hugeload, judges it, and for a
/// refusal checks under strace that nothing was mapped. Returns the tally
/// line and, on a violation, what went wrong.
fn try_file(path: &Path, scratch: &Path, tally: &mut Tally) -> Result<String, String> {
    let args = ["arg"];
    let d = run_limited(kernel_command(path, &args), FILE_LIMIT);
    let h = run_limited(hl(&[] as &[&str], path, &args), FILE_LIMIT);
    let show = || {
        format!(
            "{}\n    direct:   {}\n    hugeload: {}",
            path.display(),
            d.short(),
            h.short()
        )
    };
    let verdict = judge(path, &d, &h).map_err(|e| {
        tally.violations += 1;
        format!("{}\n    => {e}", show())
    })?;
    match verdict {
        Verdict::Refused(code) => {
            let problems = check_refusal_maps_nothing(path, &args, code, scratch);
            if !problems.is_empty() {
                tally.violations += 1;
                return Err(format!(
                    "{}\n    => refused, but mapped something:\n      {}",
                    show(),
                    problems.join("\n      ")
                ));
            }
            if code == 126 {
                tally.refused_126 += 1;
            } else {
                tally.refused_127 += 1;
            }
        }
        Verdict::Stricter => {
            let problems = check_refusal_maps_nothing(path, &args, 126, scratch);
            if !problems.is_empty() {
                tally.violations += 1;
                return Err(format!(
                    "{}\n    => refused, but mapped something:\n      {}",
                    show(),
                    problems.join("\n      ")
                ));
            }
            tally.stricter_126 += 1;
        }
        Verdict::RanLikeKernel => tally.ran_like_kernel += 1,
        Verdict::BothHung => tally.both_hung += 1,
    }
    Ok(show())
}

// ---------------------------------------------------------------------------
// Malformed files

fn corpus_dir() -> PathBuf {
    manifest_dir().join("tests/corpus")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The corpus file with `@SELF@` (its own path) and `@HUGELOAD@` put in: a
/// `#!` line is rewritten; a PT_INTERP string is rewritten with its
/// p_filesz/p_memsz set to the new length (NUL included), as make.py lays
/// it out. Files without a placeholder are used in place.
fn instantiate(src: &Path, dir: &Path) -> PathBuf {
    let bytes = fs::read(src).unwrap();
    let out = dir.join(src.file_name().unwrap());
    let hl_path = hugeload().to_string_lossy().into_owned();
    let self_path = out.to_string_lossy().into_owned();
    let value = |placeholder: &[u8]| -> &str {
        if placeholder == b"@SELF@" {
            &self_path
        } else {
            &hl_path
        }
    };
    let placeholders: [&[u8]; 2] = [b"@SELF@", b"@HUGELOAD@"];
    let Some(ph) = placeholders.into_iter().find(|p| find(&bytes, p).is_some()) else {
        return src.to_path_buf();
    };
    let new = if bytes.starts_with(b"#!") {
        let at = find(&bytes, ph).unwrap();
        [&bytes[..at], value(ph).as_bytes(), &bytes[at + ph.len()..]].concat()
    } else {
        let mut b = bytes.clone();
        let phoff = le_u64(&b, 32) as usize;
        let phnum = u16::from_le_bytes([b[56], b[57]]) as usize;
        let mut done = false;
        for i in 0..phnum {
            let h = phoff + i * 56;
            if u32::from_le_bytes(b[h..h + 4].try_into().unwrap()) != PT_INTERP {
                continue;
            }
            let off = le_u64(&b, h + 8) as usize;
            let filesz = le_u64(&b, h + 32) as usize;
            if find(&b[off..off + filesz], ph).is_none() {
                continue;
            }
            let mut s = value(ph).as_bytes().to_vec();
            s.push(0);
            assert!(
                off + s.len() <= 0x1000,
                "{}: the path does not fit before the text",
                src.display()
            );
            b[off..off + filesz].fill(0);
            b[off..off + s.len()].copy_from_slice(&s);
            let len = (s.len() as u64).to_le_bytes();
            b[h + 32..h + 40].copy_from_slice(&len);
            b[h + 40..h + 48].copy_from_slice(&len);
            done = true;
        }
        assert!(done, "{}: placeholder outside PT_INTERP", src.display());
        b
    };
    fs::write(&out, new).unwrap();
    set_mode(&out, 0o755);
    out
}

fn finish(what: &str, tally: &Tally, failures: &[String], lines: &[String]) {
    note(&format!("{what}: {}", tally.summary()));
    if std::env::var_os("HUGELOAD_TEST_DUMP").is_some() {
        for l in lines {
            note(l);
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} files broke the rules ({}):\n\n{}",
        failures.len(),
        tally.total(),
        tally.summary(),
        failures.join("\n\n")
    );
}

/// Every file of tests/corpus/, directly and through hugeload.
#[test]
fn corpus_files_are_refused_or_run_like_the_kernel() {
    or_skip!(need_tool("strace"));
    let scratch = scratch_dir("hostile-corpus");
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some(OsStr::new("bad")))
        .collect();
    files.sort();
    assert!(files.len() >= 60, "corpus has {} files", files.len());
    let (mut tally, mut failures, mut lines) = (Tally::default(), Vec::new(), Vec::new());
    for f in &files {
        let path = instantiate(f, &scratch);
        match try_file(&path, &scratch, &mut tally) {
            Ok(l) => lines.push(l),
            Err(e) => failures.push(e),
        }
    }
    // The controls must run.
    for control in ["good-static.bad", "script-ok.bad"] {
        assert!(
            !failures.iter().any(|f| f.contains(control)),
            "control {control} failed"
        );
    }
    finish("corpus", &tally, &failures, &lines);
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The 8-byte fields of the ELF header and the two program headers.
const WIDE_FIELDS: &[usize] = &[
    24, 32, 40, // e_entry, e_phoff, e_shoff
    72, 80, 88, 96, 104, 112, // text p_offset..p_align
    128, 136, 144, 152, 160, 168, // data p_offset..p_align
];

/// Mutates `good` in 1-3 ways; says how.
fn mutate(rng: &mut Rng, good: &[u8]) -> (Vec<u8>, String) {
    let mut b = good.to_vec();
    let mut how = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let kind = rng.below(100);
        if kind < 55 {
            // A byte of the headers (ELF header + 2 program headers).
            let at = rng.below(176) as usize;
            let v = match rng.below(4) {
                0 => b[at] ^ (1 << rng.below(8)),
                1 => 0,
                2 => 0xff,
                _ => rng.below(256) as u8,
            };
            b[at] = v;
            how.push(format!("[{at}]={v:#x}"));
        } else if kind < 75 {
            let at = WIDE_FIELDS[rng.below(WIDE_FIELDS.len() as u64) as usize];
            let v: u64 = match rng.below(8) {
                0 => 0,
                1 => u64::MAX,
                2 => 1 << 47,
                3 => 0x1000,
                4 => 0x40_0000,
                5 => le_u64(&b, at).wrapping_add(0x1000),
                6 => le_u64(&b, at).wrapping_sub(1),
                _ => rng.next(),
            };
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            how.push(format!("u64[{at}]={v:#x}"));
        } else if kind < 85 {
            // The code.
            let at = 0x1000 + rng.below(41) as usize;
            let v = rng.below(256) as u8;
            b[at] = v;
            how.push(format!("[{at:#x}]={v:#x}"));
        } else if kind < 95 {
            let at = rng.below(b.len() as u64) as usize;
            let v = rng.below(256) as u8;
            b[at] = v;
            how.push(format!("[{at:#x}]={v:#x}"));
        } else {
            let len = rng.below(b.len() as u64 + 4096) as usize;
            b.resize(len, 0);
            how.push(format!("len={len}"));
        }
    }
    (b, how.join(" "))
}

/// 300 seeded mutations of tests/corpus/good-static.bad, with the corpus's
/// rules. Violating files are kept in the scratch directory.
#[test]
fn mutated_files_are_refused_or_run_like_the_kernel() {
    or_skip!(need_tool("strace"));
    const CASES: usize = 300;
    let scratch = scratch_dir("hostile-mutants");
    let good = fs::read(corpus_dir().join("good-static.bad")).unwrap();
    let mut rng = Rng(0x6875_6765_6c6f_6164);
    let (mut tally, mut failures, mut lines) = (Tally::default(), Vec::new(), Vec::new());
    for i in 0..CASES {
        let (bytes, how) = mutate(&mut rng, &good);
        let path = scratch.join(format!("mutant-{i:03}.bad"));
        fs::write(&path, &bytes).unwrap();
        set_mode(&path, 0o755);
        match try_file(&path, &scratch, &mut tally) {
            Ok(l) => {
                lines.push(format!("{l}\n    mutation: {how}"));
                let _ = fs::remove_file(&path);
            }
            Err(e) => failures.push(format!("{e}\n    mutation: {how}")),
        }
    }
    finish("mutants", &tally, &failures, &lines);
}

/// A big program whose file is truncated, at random moments and to random
/// sizes, while hugeload loads it, 30 times. Accepted:
/// - the program's own run (exit 0, the full output);
/// - a refusal: exit 126 whose last stderr line is `hugeload: PATH: reason`,
///   before any `total text` report line;
/// - SIGBUS after hugeload reported the load done (its `total text` line):
///   the program touched a file page beyond the new end of file. A direct
///   run cannot see its file shrink (the kernel denies writes to a running
///   executable: ETXTBSY), but gets the same SIGBUS when the file is shorter
///   than its segments at exec time (checked first).
///
/// hugeload itself never dies: a signal before the report line, or any
/// other signal, fails.
#[test]
fn file_truncated_while_loading() {
    let prog = or_skip!(build("view-64"));
    let _pool = pool_shared();
    let scratch = scratch_dir("hostile-truncate");
    let bytes = fs::read(&prog).unwrap();

    // The kernel runs a program whose file is shorter than its segments
    // into a signal: SIGBUS when it touches a page past the end of the file
    // (truncated-4096.bad), SIGSEGV when exec cannot zero the partial bss
    // page (this program cut in half).
    let short = corpus_dir().join("truncated-4096.bad");
    let d = run_limited(kernel_command(&short, &[]), FILE_LIMIT);
    assert_eq!(
        d.end,
        End::Signal(SIGBUS),
        "{}: {}",
        short.display(),
        d.short()
    );
    let half = scratch.join("half");
    fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    set_mode(&half, 0o755);
    let d = run_limited(kernel_command(&half, &["sum"]), FILE_LIMIT);
    assert!(
        matches!(d.end, End::Signal(SIGBUS | SIGSEGV)),
        "direct run of a program cut in half: {}",
        d.short()
    );

    let expected = run_limited(kernel_command(&prog, &["sum"]), FILE_LIMIT);
    assert_eq!(expected.end, End::Exit(0), "{}", expected.short());
    let victim = scratch.join("victim");
    let victim_str = victim.to_string_lossy().into_owned();
    let mut rng = Rng(0x7472_756e_6361_7465);
    let (mut ran, mut refused, mut sigbus) = (0, 0, 0);
    let mut failures = Vec::new();
    const ROUNDS: usize = 30;
    for round in 0..ROUNDS {
        fs::write(&victim, &bytes).unwrap();
        set_mode(&victim, 0o755);
        // One round in four truncates before hugeload starts, the others
        // while it loads or runs (a load of this program takes tens of ms).
        let delay = Duration::from_micros(rng.below(150_000));
        let cut = rng.below(bytes.len() as u64);
        let file = fs::OpenOptions::new().write(true).open(&victim).unwrap();
        let before = round % 4 == 0;
        if before {
            file.set_len(cut).unwrap();
        }
        let truncator = thread::spawn(move || {
            if !before {
                thread::sleep(delay);
                file.set_len(cut).unwrap();
            }
        });
        let h = run_limited(hl(&["-v"], &victim, &["sum"]), FILE_LIMIT);
        truncator.join().unwrap();
        let delay = if before { Duration::ZERO } else { delay };
        let stderr = h.err();
        let loaded = stderr.contains("hugeload: total text ");
        let last = stderr.lines().last().unwrap_or("");
        match h.end {
            End::Exit(0) if h.stdout == expected.stdout => ran += 1,
            End::Exit(126)
                if !loaded
                    && h.stdout.is_empty()
                    && last.starts_with(&format!("hugeload: {victim_str}: ")) =>
            {
                refused += 1
            }
            End::Signal(SIGBUS) if loaded => sigbus += 1,
            _ => failures.push(format!(
                "round {round}, truncated to {cut} bytes after {delay:?}: {}",
                h.short()
            )),
        }
    }
    note(&format!(
        "{ROUNDS} truncation rounds: ran {ran}, refused 126 {refused}, program SIGBUS {sigbus}, \
         failures {}",
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "`hugeload -v {victim_str} sum` while the file is truncated: {} of {ROUNDS} rounds \
         ended otherwise than the program's run, a one-line 126, or the program's SIGBUS \
         after the load (a signal with no `total text` line is hugeload's own death):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Hostile environments

/// THP disabled for the process: `-b thp` gives up every range and says
/// why; `-b auto` still gets hugetlb pages; the program's view is the
/// direct run's.
#[test]
fn thp_disabled_for_the_process() {
    let prog = or_skip!(build("view-16"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let s = &["thp-off"];
    let (_, h) = or_skip!(run_pair(s, &["-v", "-b", "thp"], &prog, &["sum"]));
    let r = accounted(&h, &prog);
    assert!(r.huge.is_empty(), "huge pages under THP off\n{}", h.err());
    assert_reasons(
        &h,
        &r,
        &["thp: disabled for this process (PR_SET_THP_DISABLE)"],
    );
    let (_, h) = or_skip!(run_pair(s, &["-v"], &prog, &["sum"]));
    let r = accounted(&h, &prog);
    assert!(
        !r.huge.is_empty() && r.huge.iter().all(|x| x.backend == "hugetlb"),
        "auto under THP off: hugetlb expected\n{}",
        h.err()
    );
    let (d, h) = or_skip!(run_views(s, &[], &prog, &["view"]));
    assert!(d.out().contains("THP_enabled:\t0"), "{}", d.out());
    if let Err(e) = compare_views(&d, &h, false) {
        panic!("{e}");
    }
}

/// An empty hugetlb pool with `-b hugetlb`: the program runs on 4 KiB
/// pages and `-v` names the pool; `-b auto` turns to THP.
#[test]
fn empty_hugetlb_pool() {
    let prog = or_skip!(build("view-16"));
    let _pool = pool_exclusive();
    let size = or_skip!(PoolSize::set(0));
    let (_, h) = run_pair(&[], &["-v", "-b", "hugetlb"], &prog, &["sum"]).unwrap();
    let r = accounted(&h, &prog);
    assert!(r.huge.is_empty(), "{}", h.err());
    assert_reasons(
        &h,
        &r,
        &["hugetlb: mmap: Cannot allocate memory (0 free pages in the pool)"],
    );
    let (_, h) = run_pair(&[], &["-v"], &prog, &["sum"]).unwrap();
    let r = accounted(&h, &prog);
    assert!(
        !r.huge.is_empty() && r.huge.iter().all(|x| x.backend == "thp"),
        "auto with an empty pool: THP expected\n{}",
        h.err()
    );
    assert_eq!(hugetlb_free_pages(), 0);
    drop(size);
}

/// A pool with fewer free pages than a 64 MiB text needs: some ranges may
/// get hugetlb pages, the rest stays on 4 KiB pages (`-b hugetlb`) or goes
/// to THP (`-b auto`); never a hole: every page of the text is mapped
/// executable (smaps) and the program's checksum of its text is the direct
/// run's. The pool is whole again afterwards.
#[test]
fn hugetlb_pool_exhausted_part_way() {
    const PAGES: u64 = 20;
    let prog = or_skip!(build("view-64"));
    let _pool = pool_exclusive();
    let size = or_skip!(PoolSize::set(PAGES));
    let expected = run_limited(kernel_command(&prog, &["sum"]), TIMEOUT);
    let needed = ElfInfo::read(&prog).best_interior_count() as u64;
    assert!(needed > PAGES, "the text needs only {needed} pages");
    for (opts, rest) in [
        (&["-v", "-b", "hugetlb"], "4k"),
        (&["-v", "-b", "auto"], "thp"),
    ] {
        let i = inspect(hl(opts, &prog, &["hold"]), &prog, Ready::Line);
        let dump = i.dump();
        assert_eq!(i.run.status.code(), Some(0), "{dump}");
        let sum = |s: &str| {
            s.lines()
                .filter(|l| l.starts_with("text_"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            sum(&i.run.stdout_str()),
            sum(&expected.out()),
            "text checksum\n{dump}"
        );
        for span in &i.text {
            assert_eq!(
                exec_bytes_in(&i.maps, span),
                span.len(),
                "a hole in the text {span}\n{dump}"
            );
        }
        for r in &i.ranges {
            assert_eq!(r.huge_bytes, r.line.range.len(), "{}\n{dump}", r.line.range);
            if r.line.backend == "hugetlb" {
                assert_eq!(r.hugetlb_bytes, r.line.range.len(), "{dump}");
            }
        }
        let hugetlb: u64 = i
            .report
            .huge
            .iter()
            .filter(|x| x.backend == "hugetlb")
            .map(|x| x.pages)
            .sum();
        assert!(hugetlb <= PAGES, "{dump}");
        if rest == "4k" {
            assert!(
                !i.report.fallback.is_empty(),
                "{needed} blocks from a pool of {PAGES}: nothing given up?\n{dump}"
            );
            for f in &i.report.fallback {
                assert!(f.reason.contains("hugetlb: "), "{}\n{dump}", f.reason);
            }
        } else {
            assert!(
                i.report.fallback.is_empty(),
                "auto: THP should take what hugetlb could not\n{dump}"
            );
        }
        note(&format!(
            "pool of {PAGES} for {needed} blocks, {}: {}",
            opts[2],
            backends(&i.report)
        ));
        assert_eq!(wait_free_pages(PAGES), PAGES, "hugetlb pages not returned");
    }
    drop(size);
}

/// The smallest limit (1 MiB steps) under which `[wrapper setting=N] prog
/// sum` still prints the right output, searched between `lo` (fails) and
/// `hi` (works).
fn smallest_limit(setting: &str, prog: &Path, expected: &[u8], mut lo: u64, mut hi: u64) -> u64 {
    let works = |n: u64| {
        let s = format!("{setting}={n}");
        let o = run_limited(direct(&[&s], prog, &["sum"]).unwrap(), TIMEOUT);
        o.end == End::Exit(0) && o.stdout == expected
    };
    assert!(works(hi), "{prog:?} does not run with {setting}={hi}");
    while hi - lo > 1 << 20 {
        let mid = (lo + hi) / 2;
        if works(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// RLIMIT_AS with room for the direct run and 8 MiB more, far from a second
/// copy of the 64 MiB text: the program runs, every block is huge or given
/// up with a reason.
#[test]
fn rlimit_as_too_small_for_a_second_copy() {
    let prog = or_skip!(build("view-64"));
    let _wrap = or_skip!(build("hostile_wrap"));
    let _pool = pool_shared();
    let expected = run_limited(kernel_command(&prog, &["sum"]), TIMEOUT);
    let min = smallest_limit("as", &prog, &expected.stdout, 0, 4 << 30);
    let limit = min + (8 << 20);
    let setting = format!("as={limit}");
    for opts in [&["-v"][..], &["-v", "-b", "thp"], &["-v", "-b", "hugetlb"]] {
        for _ in 0..2 {
            let (_, h) = run_pair(&[&setting], opts, &prog, &["sum"]).unwrap();
            let r = accounted(&h, &prog);
            note(&format!(
                "RLIMIT_AS {} MiB (direct needs {} MiB), {opts:?}: {}",
                limit >> 20,
                min >> 20,
                backends(&r)
            ));
        }
    }
}

/// RLIMIT_DATA with 4 MiB to spare over the direct run's need: THP's
/// private copy cannot be made (`-v` says so), hugetlb's shared one can.
#[test]
fn rlimit_data_too_small_for_a_second_copy() {
    let prog = or_skip!(build("view-64"));
    let _wrap = or_skip!(build("hostile_wrap"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let expected = run_limited(kernel_command(&prog, &["sum"]), TIMEOUT);
    let min = smallest_limit("data", &prog, &expected.stdout, 0, 1 << 30);
    let limit = min + (4 << 20);
    let setting = format!("data={limit}");
    let (_, h) = run_pair(&[&setting], &["-v", "-b", "thp"], &prog, &["sum"]).unwrap();
    let r = accounted(&h, &prog);
    assert!(r.huge.is_empty(), "THP copy under RLIMIT_DATA\n{}", h.err());
    assert_reasons(&h, &r, &["thp: mmap: Cannot allocate memory"]);
    let (_, h) = run_pair(&[&setting], &["-v", "-b", "hugetlb"], &prog, &["sum"]).unwrap();
    let r = accounted(&h, &prog);
    assert!(
        !r.huge.is_empty() && r.fallback.is_empty(),
        "hugetlb under RLIMIT_DATA should be whole\n{}",
        h.err()
    );
    note(&format!(
        "RLIMIT_DATA {} MiB (direct needs {} MiB): thp gave up all, hugetlb {}",
        limit >> 20,
        min >> 20,
        backends(&r)
    ));
}

/// `ulimit -s 16`: whatever runs directly runs through hugeload. The
/// kernel randomizes how much of those 16 KiB the start-up finds free, so
/// each program runs 30 times directly (all must succeed for it to count)
/// and 30 times through hugeload under each option set (all must succeed).
#[test]
fn small_rlimit_stack() {
    const RUNS: usize = 30;
    let _pool = pool_shared();
    let s = &["stack=16384"];
    let mut ran = Vec::new();
    let mut failures = Vec::new();
    for name in ["view-pie", "view-16", "view-static", "view-musl-static"] {
        let prog = or_skip!(build(name));
        // A small environment: the strings count against the 16 KiB.
        let small = |mut c: Command| {
            c.env_clear().env("PATH", "/usr/bin:/bin");
            c
        };
        let d = or_skip!(run_wrapped(
            small(direct(s, &prog, &["sum"]).unwrap()),
            TIMEOUT
        ));
        let direct_ok = (0..RUNS)
            .map(|_| run_limited(small(direct(s, &prog, &["sum"]).unwrap()), TIMEOUT))
            .all(|o| o.end == End::Exit(0) && o.stdout == d.stdout);
        if !direct_ok || d.end != End::Exit(0) {
            note(&format!(
                "{name} does not always run directly with a 16 KiB stack: {}",
                d.short()
            ));
            continue;
        }
        for opts in [&[][..], &["-b", "thp"], &["-b", "off"]] {
            let bad: Vec<Outcome> = (0..RUNS)
                .map(|_| run_limited(small(via(s, opts, &prog, &["sum"]).unwrap()), TIMEOUT))
                .filter(|h| h.end != End::Exit(0) || h.stdout != d.stdout)
                .collect();
            if let Some(h) = bad.first() {
                failures.push(format!(
                    "`{}`: {} of {RUNS} runs failed, e.g. {} (the direct run succeeded \
                     {RUNS} of {RUNS} times)",
                    h.what,
                    bad.len(),
                    h.short()
                ));
            }
        }
        ran.push(name);
    }
    assert!(!ran.is_empty(), "nothing runs directly with a 16 KiB stack");
    note(&format!(
        "16 KiB stack: {ran:?} ran {RUNS} times directly; {} option sets failed through \
         hugeload",
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "with a 16 KiB RLIMIT_STACK:\n{}",
        failures.join("\n")
    );
}

/// MDWE (PR_MDWE_REFUSE_EXEC_GAIN): THP cannot be used (`-v` says so),
/// hugetlb still is (smaps agrees), the program's view is the direct
/// run's.
#[test]
fn mdwe_refuses_exec_gain() {
    hostile_exec_policy(
        "mdwe",
        "thp: needs an mprotect that adds exec, which MDWE (PR_SET_MDWE) refuses",
        "prctl mdwe=1",
    );
}

/// A seccomp filter like systemd's MemoryDenyWriteExecute=: THP's mprotect
/// fails and the range falls back to the file mapping; hugetlb, which maps
/// a filled file read+exec without mprotect, still works.
#[test]
fn seccomp_denies_write_execute() {
    hostile_exec_policy(
        "seccomp-wx",
        "thp: mprotect(PROT_READ|PROT_EXEC) refused (MDWE or an LSM): Operation not permitted",
        "status Seccomp:\t2",
    );
}

/// Under `setting` (a write-xor-execute policy the view shows as
/// `view_line`): THP gives up with `thp_reason`, hugetlb works, the view is
/// the direct run's.
fn hostile_exec_policy(setting: &str, thp_reason: &str, view_line: &str) {
    let prog = or_skip!(build("view-16"));
    let viewer = or_skip!(build("view-pie"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let s = &[setting];
    // The policy is in force for the program.
    let probe = or_skip!(run_wrapped(direct(s, &prog, &["try-wx"]).unwrap(), TIMEOUT));
    let denied = probe.out();
    assert!(
        denied.contains("mmap(W|X): E") && denied.contains("mprotect(+X): E"),
        "{setting}: W|X not denied: {denied}"
    );
    let (_, h) = or_skip!(run_pair(s, &["-v", "-b", "thp"], &prog, &["sum"]));
    let r = accounted(&h, &prog);
    assert!(r.huge.is_empty(), "THP under {setting}\n{}", h.err());
    assert_reasons(&h, &r, &[thp_reason]);

    or_skip!(run_pair(s, &["-b", "hugetlb"], &prog, &["sum"]));
    let cmd = via(s, &["-v", "-b", "hugetlb"], &prog, &["hold"]).unwrap();
    let i = inspect(cmd, &prog, Ready::Line);
    let dump = i.dump();
    assert_eq!(i.run.status.code(), Some(0), "{dump}");
    let used = check_huge(&i, "conservative");
    assert!(used > 0, "hugetlb under {setting}: nothing huge\n{dump}");
    assert_eq!(i.text_hugetlb_bytes, used * HUGE, "{dump}");

    let (d, h) = or_skip!(run_views(s, &["-v"], &viewer, &["view"]));
    assert!(
        d.out().contains(view_line),
        "{view_line:?} not in\n{}",
        d.out()
    );
    // /proc/self/exe: hugeload cannot swap its own image for an executable
    // copy under a write-xor-execute policy; it must then say so.
    let exe_named = h.err().contains("/proc/self/exe names hugeload");
    if let Err(e) = compare_views(&d, &h, exe_named) {
        panic!("{e}");
    }
    note(&format!(
        "{setting}: thp gave up with a reason, hugetlb put {used} x 2M on huge pages"
    ));
}

/// Signals blocked and ignored before exec reach the program as they do
/// directly; signals sent again and again during the load (SIGUSR1 blocked
/// by the caller, SIGCHLD, SIGWINCH, SIGURG, SIGCONT, SIGSTOP+SIGCONT)
/// change nothing: 24 launches, all with the direct run's output.
#[test]
fn signals_during_the_load() {
    let prog = or_skip!(build("view-16"));
    let viewer = or_skip!(build("view-pie"));
    let _pool = pool_shared();
    let masks = &["block-usr1", "ignore-usr2"];
    let (d, h) = or_skip!(run_views(masks, &[], &viewer, &["view"]));
    let mask = |key: &str| -> u64 {
        d.out()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("status {key}:\t"))
                    .map(str::to_string)
            })
            .and_then(|m| u64::from_str_radix(&m, 16).ok())
            .unwrap_or_else(|| panic!("no {key} in\n{}", d.out()))
    };
    assert_ne!(
        mask("SigBlk") & (1 << (SIGUSR1 - 1)),
        0,
        "SIGUSR1 not blocked"
    );
    assert_ne!(mask("SigIgn") & (1 << (12 - 1)), 0, "SIGUSR2 not ignored");
    if let Err(e) = compare_views(&d, &h, false) {
        panic!("{e}");
    }

    let s = &["block-usr1"];
    let expected = or_skip!(run_wrapped(direct(s, &prog, &["storm"]).unwrap(), TIMEOUT));
    assert_eq!(expected.end, End::Exit(0), "{}", expected.short());
    let options: [&[&str]; 4] = [&[], &["-b", "thp"], &["-b", "hugetlb"], &["-b", "off"]];
    let mut sent = 0u64;
    for round in 0..24 {
        let mut cmd = via(s, options[round % 4], &prog, &["storm"]).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let what = describe(&cmd);
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let out = collect(child.stdout.take());
        let err = collect(child.stderr.take());
        // The stormer signals only while the child is not yet reaped.
        let reaped = Arc::new(Mutex::new(false));
        let stormer = {
            let reaped = reaped.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                // SIGUSR1 would kill the wrapper before it blocks it.
                let mut usr1_blocked = false;
                loop {
                    {
                        let gone = lock(&reaped);
                        if *gone {
                            return n;
                        }
                        usr1_blocked = usr1_blocked || blocks_usr1(pid);
                        if usr1_blocked {
                            send_signal(pid, SIGUSR1);
                        }
                        for sig in [SIGCHLD, SIGWINCH, SIGURG, SIGCONT] {
                            send_signal(pid, sig);
                        }
                        if n % 8 == 7 {
                            send_signal(pid, SIGSTOP);
                            send_signal(pid, SIGCONT);
                        }
                        n += 1;
                    }
                    thread::sleep(Duration::from_micros(50));
                }
            })
        };
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            {
                let mut gone = lock(&reaped);
                if let Some(st) = child.try_wait().unwrap() {
                    *gone = true;
                    break Some(st);
                }
                if Instant::now() >= deadline {
                    *gone = true;
                    break None;
                }
            }
            thread::sleep(Duration::from_millis(1));
        };
        sent += stormer.join().unwrap();
        let status = status.unwrap_or_else(|| {
            send_signal(pid, SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` under a signal storm: still running after {TIMEOUT:?}")
        });
        let (out, err) = (out.join().unwrap(), err.join().unwrap());
        assert_eq!(
            (end_of(status), String::from_utf8_lossy(&out).into_owned()),
            (End::Exit(0), expected.out()),
            "`{what}` under a signal storm (round {round})\nstderr:\n{}",
            String::from_utf8_lossy(&err)
        );
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
    }
    note(&format!(
        "24 launches under a storm of {sent} signal rounds: all ran like the direct run"
    ));
}

/// Whether SIGUSR1 is in the process's blocked mask.
fn blocks_usr1(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("SigBlk:"))?;
            u64::from_str_radix(l["SigBlk:".len()..].trim(), 16).ok()
        })
        .is_some_and(|m| m & (1 << (SIGUSR1 - 1)) != 0)
}

/// One program held open after loading (`view hold`).
struct Held {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    out: thread::JoinHandle<Vec<u8>>,
    err: thread::JoinHandle<Vec<u8>>,
    what: String,
}

fn hold(mut cmd: Command) -> Held {
    let what = describe(&cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let (lines, out) = stream_lines(stdout);
    let err = collect(child.stderr.take());
    Held {
        child,
        stdin,
        lines,
        out,
        err,
        what,
    }
}

/// 50 launches of a program with 16 MiB of text at once, all held alive
/// together, with a hugetlb pool of 32 pages: all run correctly, whichever
/// backend each got, and the pool's free pages end where they started.
#[test]
fn fifty_concurrent_launches_share_a_small_pool() {
    const N: usize = 50;
    const PAGES: u64 = 32;
    let prog = or_skip!(build("view-16"));
    let _pool = pool_exclusive();
    let size = or_skip!(PoolSize::set(PAGES));
    let free_before = hugetlb_free_pages();
    let expected = run_limited(kernel_command(&prog, &["hold"]), TIMEOUT);
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("base="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut held: Vec<Held> = (0..N)
        .map(|i| {
            let opts: &[&str] = if i % 5 == 4 {
                &["-v", "-b", "hugetlb"]
            } else {
                &["-v"]
            };
            hold(hl(opts, &prog, &["hold"]))
        })
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    for h in &mut held {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match h.lines.recv_timeout(left) {
                Ok(l) if l == "ready" => break,
                Ok(_) => {}
                Err(_) => {
                    for h in &mut held {
                        let _ = h.child.kill();
                    }
                    panic!("a concurrent launch was not ready in time");
                }
            }
        }
    }
    let free_during = hugetlb_free_pages();
    let mut reports = Vec::new();
    for h in &mut held {
        h.stdin.take();
    }
    for h in held {
        let Held {
            mut child,
            out,
            err,
            what,
            ..
        } = h;
        let status = wait_limited(&mut child, TIMEOUT);
        let (out, err) = (out.join().unwrap(), err.join().unwrap());
        let err = String::from_utf8_lossy(&err).into_owned();
        assert_eq!(status.map(end_of), Some(End::Exit(0)), "`{what}`\n{err}");
        assert_eq!(
            strip(&String::from_utf8_lossy(&out)),
            strip(&expected.out()),
            "`{what}`\n{err}"
        );
        reports.push(parse_report(&err));
    }
    let free_after = wait_free_pages(free_before);
    let (mut tlb, mut thp, mut small) = (0, 0, 0);
    for r in &reports {
        let b: Vec<&str> = r.huge.iter().map(|h| h.backend.as_str()).collect();
        if b.contains(&"hugetlb") {
            tlb += 1;
        } else if b.contains(&"thp") {
            thp += 1;
        } else {
            small += 1;
        }
    }
    note(&format!(
        "{N} concurrent launches, pool {PAGES}: {tlb} on hugetlb, {thp} on THP, {small} on \
         4 KiB pages; free pages {free_before} -> {free_during} while held -> {free_after}"
    ));
    assert_eq!(
        free_after, free_before,
        "HugePages_Free did not return to where it started"
    );
    drop(size);
}

// ---------------------------------------------------------------------------
// Promises

/// An address-space model: page-aligned ranges with (writable, executable).
#[derive(Default)]
struct Space(BTreeMap<u64, (u64, (bool, bool))>);

type Piece = (u64, u64, (bool, bool));

impl Space {
    fn cut(&mut self, s: u64, e: u64) -> Vec<Piece> {
        let keys: Vec<u64> = self
            .0
            .range(..e)
            .filter(|(_, (end, _))| *end > s)
            .map(|(k, _)| *k)
            .collect();
        let mut removed = Vec::new();
        for k in keys {
            let (end, p) = self.0.remove(&k).unwrap();
            if k < s {
                self.0.insert(k, (s, p));
            }
            if end > e {
                self.0.insert(e, (end, p));
            }
            removed.push((k.max(s), end.min(e), p));
        }
        removed
    }
    fn map(&mut self, s: u64, e: u64, p: (bool, bool)) {
        self.cut(s, e);
        self.0.insert(s, (e, p));
    }
}

/// What one strace of a load found.
#[derive(Default)]
struct WxFindings {
    calls: usize,
    /// Calls asking for PROT_WRITE|PROT_EXEC at once.
    wx: Vec<String>,
    /// mprotect calls that made executable a range that was writable before
    /// (in hugeload's part of the run), with the range.
    w_then_x: Vec<(Span, String)>,
}

/// Checks the traces of one run (strace -ff, one file per thread):
/// `whole` says whether the program's own calls count too (else only
/// hugeload's, up to the munmap of its work stack).
fn scan_traces(prefix: &Path, whole: bool) -> WxFindings {
    let dir = prefix.parent().unwrap();
    let stem = prefix.file_name().unwrap().to_string_lossy().into_owned();
    let mut f = WxFindings::default();
    let mut found_main = false;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{stem}.")) {
            continue;
        }
        let calls = parse_trace(&fs::read_to_string(&p).unwrap());
        let is_main = calls
            .first()
            .is_some_and(|c| c.name == "execve" && c.arg(0).contains("hugeload"));
        found_main |= is_main;
        let mut space = Space::default();
        let mut work_stack: Option<(u64, u64)> = None;
        let mut in_hugeload = is_main;
        for c in &calls {
            if !(whole || in_hugeload) {
                break;
            }
            f.calls += 1;
            if let Some((w, x)) = c.prot()
                && w
                && x
            {
                f.wx.push(format!("{}: {}", name, c.line));
            }
            if !in_hugeload {
                continue;
            }
            let ok = !c.ret.starts_with('-');
            let (a0, a1) = (c.num(0).unwrap_or(0), page_up(c.num(1).unwrap_or(0)));
            match c.name.as_str() {
                "mmap" if ok => {
                    let at = c.ok_addr().unwrap_or(0);
                    work_stack.get_or_insert((at, a1));
                    space.map(at, at + a1, c.prot().unwrap());
                }
                "mprotect" | "pkey_mprotect" if ok => {
                    let (w, x) = c.prot().unwrap();
                    for (s, e, (was_w, _)) in space.cut(a0, a0 + a1) {
                        if x && was_w {
                            f.w_then_x.push((Span { start: s, end: e }, c.line.clone()));
                        }
                        space.0.insert(s, (e, (w, x)));
                    }
                }
                "munmap" if ok => {
                    space.cut(a0, a0 + a1);
                    if work_stack == Some((a0, a1)) {
                        in_hugeload = false;
                    }
                }
                "mremap" if ok => {
                    let new_len = page_up(c.num(2).unwrap_or(0));
                    let to = c.ok_addr().unwrap_or(0);
                    for (s, e, p) in space.cut(a0, a0 + a1) {
                        let (ns, ne) = (to + (s - a0), (to + (e - a0)).min(to + new_len));
                        if ns < ne {
                            space.map(ns, ne, p);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(found_main, "no trace of hugeload's execve under {prefix:?}");
    f
}

/// No mapping is ever writable and executable at once, at any point of the
/// load: strace of every mmap/mprotect/mremap of a 64 MiB-text program
/// (whole run) and of node (hugeload's part), with `-b thp`, `-b hugetlb`
/// and `-s aggressive`. mprotect never asks for PROT_WRITE|PROT_EXEC; with
/// hugetlb no mprotect adds exec to a huge range at all. mprotects that
/// make a range executable after it was writable (THP's copy, hugeload's
/// own image) are counted and reported.
#[test]
fn no_mapping_is_ever_writable_and_executable() {
    or_skip!(need_tool("strace"));
    let prog = or_skip!(build("view-64"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let node = which("node");
    let scratch = scratch_dir("hostile-wx");
    let sets: [&[&str]; 3] = [
        &["-v", "-b", "thp"],
        &["-v", "-b", "hugetlb"],
        &["-v", "-s", "aggressive"],
    ];
    let mut programs: Vec<(PathBuf, Vec<&str>, bool)> = vec![(prog.clone(), vec!["sum"], true)];
    match &node {
        Some(n) => programs.push((n.clone(), vec!["-e", "process.exit(0)"], false)),
        None => skip("node is not installed: traced the fixture only"),
    }
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    let mut n = 0;
    for (program, args, whole) in &programs {
        for opts in sets {
            n += 1;
            let prefix = scratch.join(format!("trace{n}"));
            let mut cmd = Command::new("strace");
            cmd.args([
                "-ff",
                "-qq",
                "-e",
                "trace=execve,mmap,mprotect,pkey_mprotect,mremap,munmap",
                "-o",
            ])
            .arg(&prefix)
            .arg(hugeload())
            .args(opts)
            .arg(program)
            .args(args);
            for var in HUGELOAD_ENV {
                cmd.env_remove(var);
            }
            let o = run_limited(cmd, TIMEOUT);
            assert_eq!(o.end, End::Exit(0), "`{}`: {}", o.what, o.short());
            let report = parse_report(&o.err());
            let want = match opts[2] {
                "aggressive" => None,
                b => Some(b),
            };
            assert!(
                !report.huge.is_empty()
                    && report
                        .huge
                        .iter()
                        .all(|h| want.is_none_or(|b| h.backend == b)),
                "`{}`: nothing on huge pages of the backend asked for: the check would be \
                 empty\n{}",
                o.what,
                o.err()
            );
            let f = scan_traces(&prefix, *whole);
            let in_huge = |s: &Span| report.huge.iter().any(|h| h.range.overlap(s) > 0);
            let (huge_wx, other_wx): (Vec<_>, Vec<_>) =
                f.w_then_x.iter().partition(|(s, _)| in_huge(s));
            if !f.wx.is_empty() {
                failures.push(format!(
                    "`{}`: PROT_WRITE|PROT_EXEC asked for:\n  {}",
                    o.what,
                    f.wx.join("\n  ")
                ));
            }
            if opts[2] == "hugetlb" && !huge_wx.is_empty() {
                failures.push(format!(
                    "`{}`: with hugetlb an mprotect added exec to a huge range: {:?}",
                    o.what, huge_wx
                ));
            }
            summary.push(format!(
                "{} {}: {} calls, W+X 0, W-then-X mprotects: {} in huge ranges, {} elsewhere \
                 ({})",
                program.file_name().unwrap().to_string_lossy(),
                opts[1..].join(" "),
                f.calls,
                huge_wx.len(),
                other_wx.len(),
                backends(&report)
            ));
        }
    }
    for s in &summary {
        note(s);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn randomized() -> bool {
    fs::read_to_string("/proc/sys/kernel/randomize_va_space").is_ok_and(|s| s.trim() != "0")
}

/// Two (here: three) launches of a PIE give three different bases, in
/// launcher and in PT_INTERP mode, as direct runs do.
#[test]
fn pie_bases_are_randomized() {
    if !randomized() {
        skip("ASLR is off (kernel.randomize_va_space = 0)");
        return;
    }
    let prog = or_skip!(build("view-pie"));
    let patchelf = or_skip!(need_tool("patchelf"));
    let _pool = pool_shared();
    let scratch = scratch_dir("hostile-aslr");
    let patched = pt_interp_copy(&patchelf, &prog, &scratch);
    let base = |cmd: Command| -> String {
        let o = run_limited(cmd, TIMEOUT);
        assert_eq!(o.end, End::Exit(0), "{}", o.short());
        let out = o.out();
        let b = out
            .lines()
            .find_map(|l| l.strip_prefix("base="))
            .unwrap_or_else(|| panic!("no base in {out}"))
            .to_string();
        let main = out
            .lines()
            .find_map(|l| l.strip_prefix("main=0x"))
            .and_then(|m| u64::from_str_radix(m, 16).ok())
            .unwrap();
        let b_num = u64::from_str_radix(&b, 16).unwrap();
        assert!(main > b_num && b_num != 0, "main {main:x} base {b}");
        b
    };
    for (mode, make) in [
        (
            "direct",
            Box::new(|| kernel_command(&prog, &["base"])) as Box<dyn Fn() -> Command>,
        ),
        (
            "launcher",
            Box::new(|| hl(&[] as &[&str], &prog, &["base"])),
        ),
        (
            "PT_INTERP",
            Box::new(|| kernel_command(&patched, &["base"])),
        ),
    ] {
        let bases: Vec<String> = (0..3).map(|_| base(make())).collect();
        let mut distinct = bases.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            3,
            "{mode}: three launches gave bases {bases:?}"
        );
        note(&format!("{mode}: bases {bases:?}"));
    }
}

/// A copy of `prog` (in `dir`, under the same name) whose PT_INTERP names
/// `interp`.
fn with_interp(patchelf: &Path, prog: &Path, dir: &Path, interp: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let out = dir.join(prog.file_name().unwrap());
    fs::copy(prog, &out).unwrap();
    let mut cmd = Command::new(patchelf);
    cmd.arg("--set-interpreter").arg(interp).arg(&out);
    let r = run(cmd);
    assert!(r.status.success(), "patchelf: {}", r.stderr_str());
    out
}

/// A copy of `prog` whose PT_INTERP names hugeload (PT_INTERP mode).
fn pt_interp_copy(patchelf: &Path, prog: &Path, dir: &Path) -> PathBuf {
    with_interp(patchelf, prog, &dir.join("via-hugeload"), hugeload())
}

/// The reference for PT_INTERP mode: a copy of `prog` patched by the same
/// patchelf to a path of the same length as hugeload's, a symlink to the
/// real ld.so, so that both copies have the same program headers.
fn same_layout_copy(patchelf: &Path, prog: &Path, dir: &Path) -> PathBuf {
    let want = hugeload().as_os_str().len();
    let link_dir = [dir.to_path_buf(), std::env::temp_dir()]
        .into_iter()
        .map(|d| d.join(format!("ldso-{}", std::process::id())))
        .find(|d| d.as_os_str().len() + 2 <= want)
        .expect("no directory with a path short enough for the ld.so link");
    fs::create_dir_all(&link_dir).unwrap();
    let pad = want - link_dir.as_os_str().len() - 1;
    let link = link_dir.join("l".repeat(pad));
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink("/lib64/ld-linux-x86-64.so.2", &link).unwrap();
    assert_eq!(link.as_os_str().len(), want);
    with_interp(patchelf, prog, &dir.join("via-ldso"), &link)
}

/// Compares two views (view.c's `view` mode): every consistency verdict
/// holds in both, and the lines are the same (except `identity exe` when
/// `ignore_exe`).
fn compare_views(d: &Outcome, h: &Outcome, ignore_exe: bool) -> Result<(), String> {
    let keep = |o: &Outcome| -> Vec<String> {
        o.out()
            .lines()
            .filter(|l| !(ignore_exe && l.starts_with("identity exe")))
            .map(str::to_string)
            .collect()
    };
    let mut problems = String::new();
    for (who, o) in [("direct", d), ("hugeload", h)] {
        if o.end != End::Exit(0) {
            let _ = writeln!(problems, "{who} `{}`: {}", o.what, o.short());
        }
        for l in keep(o) {
            if ["INCONSISTENT", ": NO", ": NOT ", "cannot"]
                .iter()
                .any(|bad| l.contains(bad))
            {
                let _ = writeln!(problems, "{who}: {l}");
            }
        }
    }
    let (a, b) = (keep(d), keep(h));
    if a != b {
        let _ = writeln!(problems, "views differ (- direct, + hugeload):");
        for l in a.iter().filter(|l| !b.contains(l)) {
            let _ = writeln!(problems, "- {l}");
        }
        for l in b.iter().filter(|l| !a.contains(l)) {
            let _ = writeln!(problems, "+ {l}");
        }
        if a.len() == b.len() && a.iter().all(|l| b.contains(l)) {
            let _ = writeln!(problems, "(same lines, different order)");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`{}` vs `{}`:\n{problems}hugeload stderr:\n{}",
            d.what,
            h.what,
            h.err()
        ))
    }
}

/// The program's view of its process is the kernel's: argv, environment,
/// the auxv keys of /proc/self/auxv (address values consistent: AT_PHDR
/// holds the program headers, AT_ENTRY is the entry in an executable
/// mapping, AT_BASE is ld.so's base), the stack's auxv equal to
/// /proc/self/auxv, /proc/self/status (signals, capabilities, no_new_privs,
/// seccomp), /proc/self/limits, open fds (none left by hugeload), exe,
/// cmdline, comm, prctl states. Launcher mode for a glibc PIE, a glibc
/// static and a musl static program, under several option sets; PT_INTERP
/// mode through a patchelf'd copy; and with blocked/ignored signals,
/// no_new_privs, and changed RLIMIT_STACK, RLIMIT_DATA and RLIMIT_AS.
#[test]
fn program_view_is_the_kernels() {
    let pie = or_skip!(build("view-pie"));
    let patchelf = or_skip!(need_tool("patchelf"));
    let _pool = pool_shared();
    let scratch = scratch_dir("hostile-view");
    let patched = pt_interp_copy(&patchelf, &pie, &scratch);
    let reference = same_layout_copy(&patchelf, &pie, &scratch);
    let mut failures = Vec::new();
    let mut compared = 0;
    let settings: [&[&str]; 3] = [
        &[],
        &["block-usr1", "ignore-usr2", "nnp"],
        &["stack=4194304", "data=1073741824", "as=8589934592"],
    ];
    let args = ["view", "a b", "", "--", "-v"];
    for s in settings {
        for name in ["view-pie", "view-static", "view-musl-static"] {
            let prog = or_skip!(build(name));
            let d = run_limited(direct(s, &prog, &args).unwrap(), TIMEOUT);
            for opts in [&[][..], &["-b", "thp", "-s", "aggressive"], &["-b", "off"]] {
                let h = run_limited(via(s, opts, &prog, &args).unwrap(), TIMEOUT);
                compared += 1;
                if let Err(e) = compare_views(&d, &h, false) {
                    failures.push(e);
                }
            }
        }
        // PT_INTERP mode: the copy patched to hugeload against the copy
        // patched (to the same length) to ld.so, both run directly.
        let d = run_limited(direct(s, &reference, &args).unwrap(), TIMEOUT);
        let h = run_limited(direct(s, &patched, &args).unwrap(), TIMEOUT);
        compared += 1;
        if let Err(e) = compare_views(&d, &h, false) {
            failures.push(format!("PT_INTERP mode: {e}"));
        }
    }
    note(&format!(
        "{compared} views compared, {} differ",
        failures.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `'s'` for sh, with `'` inside written as `'\''`.
fn sh_word(s: &OsStr) -> String {
    format!(
        "'{}'",
        String::from_utf8_lossy(s.as_bytes()).replace('\'', r"'\''")
    )
}

/// One program run inside the binfmt_misc namespace, under `settings`.
struct NsRun {
    tag: String,
    what: String,
    argv: Vec<OsString>,
}

/// The sh script for [`program_view_is_the_kernels_under_binfmt_misc`]: in
/// a user and mount namespace, mounts a private binfmt_misc at `bf`,
/// registers `hugeload --binfmt-rule`, and runs each of `runs` with stdin
/// /dev/null and stdout/stderr in `out/run.{out,err}` (the same files for
/// every run, so that the fd targets compare), then moved to
/// `out/TAG.{out,err,rc}`. Exit 90: the mount failed, 91: the rule could not
/// be registered (both with the reason on stdout).
fn binfmt_view_script(bf: &Path, out: &Path, runs: &[NsRun]) -> String {
    let mut s = format!(
        "set -u\nH={}\nBF={}\nO={}\n",
        sh_word(hugeload().as_os_str()),
        sh_word(bf.as_os_str()),
        sh_word(out.as_os_str())
    );
    s.push_str(
        r#"mkdir -p "$BF"
if ! mount -t binfmt_misc binfmt_misc "$BF" 2>"$O/mount.err"; then
    echo "mount -t binfmt_misc in a user namespace failed: $(cat "$O/mount.err")"
    exit 90
fi
if ! printf '%s\n' "$("$H" --binfmt-rule)" > "$BF/register" 2>"$O/register.err"; then
    echo "cannot register the rule: $(cat "$O/register.err")"
    exit 91
fi
export HUGELOAD_VERBOSE=1
run() {
    tag=$1; shift
    "$@" </dev/null >"$O/run.out" 2>"$O/run.err"
    echo $? >"$O/run.rc"
    for e in out err rc; do mv "$O/run.$e" "$O/$tag.$e"; done
}
"#,
    );
    for r in runs {
        let argv: Vec<String> = r.argv.iter().map(|a| sh_word(a)).collect();
        let _ = writeln!(s, "run {} {}", r.tag, argv.join(" "));
    }
    s.push_str("exit 0\n");
    s
}

/// What the script left for one run, as an [`Outcome`] (a status above 128
/// is sh's report of a signal).
fn ns_outcome(out: &Path, r: &NsRun) -> Outcome {
    let read = |ext: &str| {
        fs::read(out.join(format!("{}.{ext}", r.tag)))
            .unwrap_or_else(|e| panic!("{}: no .{ext} ({e})", r.what))
    };
    let rc: i32 = String::from_utf8_lossy(&read("rc")).trim().parse().unwrap();
    Outcome {
        what: r.what.clone(),
        end: if rc > 128 {
            End::Signal(rc - 128)
        } else {
            End::Exit(rc)
        },
        stdout: read("out"),
        stderr: read("err"),
    }
}

/// The view of [`program_view_is_the_kernels`] in binfmt_misc mode: in a
/// user and mount namespace with its own binfmt_misc (Linux 6.7+) and the
/// rule of `--binfmt-rule`, a copy marked with `--mark` (run through
/// hugeload by the kernel, with AT_EXECFD) against an unmarked copy run
/// directly in the same namespace, so that both have the same credentials.
/// Root there has CAP_SYS_ADMIN, so `/proc/self/exe` must be the program's;
/// AT_EXECFD must be neither in the auxv nor open in the program. Glibc
/// PIE, glibc static and musl static, with the same settings as the other
/// modes.
#[test]
fn program_view_is_the_kernels_under_binfmt_misc() {
    let unshare = or_skip!(need_tool("unshare"));
    let names = ["view-pie", "view-static", "view-musl-static"];
    let mut progs = Vec::new();
    for name in names {
        progs.push((name, or_skip!(build(name))));
    }
    let _pool = pool_shared();
    let scratch = scratch_dir("hostile-view-binfmt");
    let out = scratch.join("out");
    fs::create_dir_all(&out).unwrap();
    let ns = |args: &[&OsStr]| {
        let mut c = Command::new(&unshare);
        c.args(["--user", "--map-root-user", "--mount"])
            .args(args)
            .current_dir(&scratch);
        for var in HUGELOAD_ENV {
            c.env_remove(var);
        }
        c
    };

    // Can this machine mount binfmt_misc in a user namespace?
    let probe = scratch.join("probe-mount");
    fs::create_dir_all(&probe).unwrap();
    let r = run(ns(&[
        OsStr::new("mount"),
        OsStr::new("-t"),
        OsStr::new("binfmt_misc"),
        OsStr::new("binfmt_misc"),
        probe.as_os_str(),
    ]));
    if !r.status.success() {
        skip(&format!(
            "cannot mount binfmt_misc in a user namespace (Linux {}; needs 6.7+ and \
             unprivileged user namespaces): {}",
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim(),
            r.stderr_str().trim()
        ));
        return;
    }

    // An unmarked and a marked copy of each program, under the same name.
    let (plain_dir, marked_dir) = (scratch.join("plain"), scratch.join("marked"));
    fs::create_dir_all(&plain_dir).unwrap();
    fs::create_dir_all(&marked_dir).unwrap();
    let mut copies = Vec::new();
    for (name, prog) in &progs {
        let (plain, marked) = (plain_dir.join(name), marked_dir.join(name));
        fs::copy(prog, &plain).unwrap();
        fs::copy(prog, &marked).unwrap();
        let mut c = hl_command(&["--mark"]);
        c.arg(&marked);
        let r = run(c);
        assert!(
            r.status.success(),
            "hugeload --mark {}: {}",
            marked.display(),
            r.stderr_str()
        );
        assert_eq!(fs::read(&marked).unwrap()[15], b'H', "{name}: not marked");
        assert_ne!(
            fs::read(&plain).unwrap()[15],
            b'H',
            "{name}: marked already"
        );
        copies.push((*name, plain, marked));
    }

    let settings: [&[&str]; 3] = [
        &[],
        &["block-usr1", "ignore-usr2", "nnp"],
        &["stack=4194304", "data=1073741824", "as=8589934592"],
    ];
    let args = ["view", "a b", "", "--", "-v"];
    let wrap = build("hostile_wrap");
    let mut pairs = Vec::new();
    let mut runs = Vec::new();
    for (i, s) in settings.iter().enumerate() {
        let mut prefix: Vec<OsString> = Vec::new();
        if !s.is_empty() {
            prefix.push(or_skip!(wrap.clone()).into_os_string());
            prefix.extend(s.iter().map(OsString::from));
            prefix.push("--".into());
        }
        for (name, plain, marked) in &copies {
            let mut pair = Vec::new();
            for (kind, path) in [("plain", plain), ("marked", marked)] {
                let argv: Vec<OsString> =
                    prefix.iter().cloned().chain(os_args(path, &args)).collect();
                let what = format!(
                    "{} ({kind}, in the binfmt_misc namespace)",
                    argv.iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                pair.push(runs.len());
                runs.push(NsRun {
                    tag: format!("{i}-{name}-{kind}"),
                    what,
                    argv,
                });
            }
            pairs.push((pair[0], pair[1]));
        }
    }

    let script = scratch.join("view.sh");
    fs::write(
        &script,
        binfmt_view_script(&scratch.join("bf"), &out, &runs),
    )
    .unwrap();
    let o = run_limited(
        ns(&[OsStr::new("/bin/sh"), script.as_os_str()]),
        TIMEOUT * 2,
    );
    match o.end {
        End::Exit(0) => {}
        End::Exit(90 | 91) => {
            skip(&format!(
                "binfmt_misc in a user namespace: {}",
                o.out().trim()
            ));
            return;
        }
        _ => panic!("`{}`: {}", o.what, o.short()),
    }

    let mut failures = Vec::new();
    for &(p, m) in &pairs {
        let (d, h) = (ns_outcome(&out, &runs[p]), ns_outcome(&out, &runs[m]));
        if d.err().lines().any(|l| l.starts_with("hugeload:")) {
            failures.push(format!(
                "`{}`: the unmarked copy went through hugeload:\n{}",
                d.what,
                d.err()
            ));
            continue;
        }
        if !h.err().lines().any(|l| l.starts_with("hugeload: load ")) {
            failures.push(format!(
                "`{}`: the marked copy did not go through hugeload \
                 (HUGELOAD_VERBOSE=1): {}",
                h.what,
                h.short()
            ));
            continue;
        }
        if let Err(e) = compare_views(&d, &h, false) {
            failures.push(format!("binfmt_misc mode: {e}"));
        }
    }
    note(&format!(
        "{} views compared, {} differ",
        pairs.len(),
        failures.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
