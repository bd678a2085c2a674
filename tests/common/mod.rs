//! Helpers for hugeload's integration tests: fixture building, running a
//! program directly and through hugeload, reading the `-v` report and the
//! running program's `/proc/PID/smaps`, skipping, time limits.
//!
//! Every child process runs in its own process group and is killed after
//! [`TIMEOUT`]; a test never hangs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// 2 MiB.
pub const HUGE: u64 = 2 << 20;
/// 4 KiB.
pub const PAGE: u64 = 4096;
/// The longest any child may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// hugetlb pages the hugetlb tests make sure exist. Enough for the biggest
/// fixture twice over, because other tests running at the same time with
/// `--backend=auto` take pages from the same pool.
pub const HUGETLB_POOL_PAGES: u64 = 128;

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

/// A tool the test needs, or a skip.
pub fn need_tool(name: &str) -> Result<PathBuf, Skip> {
    which(name).ok_or_else(|| Skip(format!("`{name}` is not installed")))
}

// ---------------------------------------------------------------------------
// Running children with a time limit

/// How one child ended.
#[derive(Clone, Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Exit code; panics (with the output) if a signal killed the child.
    pub fn code(&self, what: &str) -> i32 {
        assert_not_signaled(&self.status, what, &self.stderr);
        self.status.code().unwrap()
    }
}

pub fn assert_not_signaled(status: &ExitStatus, what: &str, stderr: &[u8]) {
    if let Some(sig) = status.signal() {
        panic!(
            "{what}: killed by signal {sig}{}\nstderr:\n{}",
            if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            },
            String::from_utf8_lossy(stderr)
        );
    }
}

/// Describes a command for messages: program and arguments.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

fn kill_group(child: &mut Child) {
    let pid = child.id();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
}

/// Waits for `child` until `deadline`; `None` if it is still running.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("wait: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn read_all_in_thread(r: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.process_group(0);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{}`: {e}", describe(cmd)))
}

/// Runs `cmd` with `input` on stdin (or /dev/null), collecting stdout and
/// stderr, killing it after [`TIMEOUT`].
pub fn run_input(mut cmd: Command, input: Option<&[u8]>) -> Run {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let what = describe(&cmd);
    let mut child = spawn(&mut cmd);
    let writer = input.map(|data| {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let out = read_all_in_thread(child.stdout.take());
    let err = read_all_in_thread(child.stderr.take());
    let status = match wait_until(&mut child, Instant::now() + TIMEOUT) {
        Some(s) => s,
        None => {
            kill_group(&mut child);
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "`{what}` still running after {TIMEOUT:?}: killed\nstderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `cmd` with stdin on /dev/null.
pub fn run(cmd: Command) -> Run {
    run_input(cmd, None)
}

/// The environment variables hugeload reads; removed from every test command
/// so that the caller's environment cannot change a result.
pub const HUGELOAD_ENV: [&str; 4] = [
    "HUGELOAD_STRATEGY",
    "HUGELOAD_BACKEND",
    "HUGELOAD_VERBOSE",
    "HUGELOAD_OFF",
];

/// `hugeload OPTS...` with a clean `HUGELOAD_*` environment.
pub fn hl_command<S: AsRef<OsStr>>(opts: &[S]) -> Command {
    let mut cmd = Command::new(hugeload());
    for var in HUGELOAD_ENV {
        cmd.env_remove(var);
    }
    cmd.args(opts);
    cmd
}

/// `hugeload OPTS... PROGRAM ARGS...`.
pub fn hl<S: AsRef<OsStr>, P: AsRef<OsStr>, A: AsRef<OsStr>>(
    opts: &[S],
    program: P,
    args: &[A],
) -> Command {
    let mut cmd = hl_command(opts);
    cmd.arg(program).args(args);
    cmd
}

/// Runs `program args` directly and as `hugeload opts program args`, with the
/// same environment and working directory (`configure` sets them on both),
/// and asserts that both exit the same way (no signal), print the same
/// stdout, and, unless `opts` asks for `-v`, the same stderr.
pub fn run_both_with(
    opts: &[&str],
    program: impl AsRef<OsStr>,
    args: &[&str],
    configure: impl Fn(&mut Command),
) -> (Run, Run) {
    let program = program.as_ref();
    let mut direct = Command::new(program);
    direct.args(args);
    for var in HUGELOAD_ENV {
        direct.env_remove(var);
    }
    configure(&mut direct);
    let mut via = hl(opts, program, args);
    configure(&mut via);
    let what = describe(&via);
    let d = run(direct);
    let h = run(via);
    let dc = d.code(&format!("direct run of {}", program.to_string_lossy()));
    let hc = h.code(&what);
    assert_eq!(
        h.stdout_str(),
        d.stdout_str(),
        "`{what}`: stdout differs from the direct run's\nhugeload stderr:\n{}",
        h.stderr_str()
    );
    assert_eq!(
        hc,
        dc,
        "`{what}`: exit status {hc}, direct run {dc}\nhugeload stderr:\n{}",
        h.stderr_str()
    );
    let verbose = opts.iter().any(|o| {
        *o == "-v"
            || *o == "--verbose"
            || (o.starts_with('-') && !o.starts_with("--") && o.contains('v'))
    });
    if !verbose {
        assert_eq!(
            h.stderr_str(),
            d.stderr_str(),
            "`{what}`: stderr differs from the direct run's"
        );
    }
    (d, h)
}

/// [`run_both_with`] without extra configuration.
pub fn run_both(opts: &[&str], program: impl AsRef<OsStr>, args: &[&str]) -> (Run, Run) {
    run_both_with(opts, program, args, |_| {})
}

// ---------------------------------------------------------------------------
// Fixtures

/// How to build one fixture.
struct Recipe {
    /// The program that must exist (else the fixture is skipped).
    tool: &'static str,
    /// Sources under `tests/fixtures/`, hashed to know when to rebuild.
    sources: &'static [&'static str],
    /// Arguments after the tool; `{src}` is `tests/fixtures`, `{out}` the
    /// output file.
    args: &'static [&'static str],
    /// Extra environment for the build.
    go: bool,
    /// A file that must exist for the result to run (musl's ld.so).
    needs_file: Option<&'static str>,
}

const C_PROBE: &[&str] = &["probe.c"];
const C_BIG: &[&str] = &["big.c", "probe.c"];

fn recipe(name: &str) -> Recipe {
    let c = |tool, sources, args| Recipe {
        tool,
        sources,
        args,
        go: false,
        needs_file: None,
    };
    match name {
        "probe-glibc-pie" => c(
            "gcc",
            C_PROBE,
            &[
                "-O1",
                "-pie",
                "-fPIE",
                "-pthread",
                "{src}/probe.c",
                "-o",
                "{out}",
            ],
        ),
        "probe-glibc-nopie" => c(
            "gcc",
            C_PROBE,
            &[
                "-O1",
                "-no-pie",
                "-fno-pie",
                "-pthread",
                "{src}/probe.c",
                "-o",
                "{out}",
            ],
        ),
        "probe-glibc-static" => c(
            "gcc",
            C_PROBE,
            &["-O1", "-static", "-pthread", "{src}/probe.c", "-o", "{out}"],
        ),
        "probe-glibc-static-pie" => c(
            "gcc",
            C_PROBE,
            &[
                "-O1",
                "-static-pie",
                "-fPIE",
                "-pthread",
                "{src}/probe.c",
                "-o",
                "{out}",
            ],
        ),
        "probe-musl" => Recipe {
            needs_file: Some("/lib/ld-musl-x86_64.so.1"),
            ..c(
                "musl-gcc",
                C_PROBE,
                &[
                    "-O1",
                    "-pie",
                    "-fPIE",
                    "-pthread",
                    "{src}/probe.c",
                    "-o",
                    "{out}",
                ],
            )
        },
        "probe-musl-static" => c(
            "musl-gcc",
            C_PROBE,
            &["-O1", "-static", "-pthread", "{src}/probe.c", "-o", "{out}"],
        ),
        "big-pie" => c(
            "gcc",
            C_BIG,
            &[
                "-O1",
                "-pie",
                "-fPIE",
                "-pthread",
                "{src}/big.c",
                "-o",
                "{out}",
            ],
        ),
        "big-nopie" => c(
            "gcc",
            C_BIG,
            &[
                "-O1",
                "-no-pie",
                "-fno-pie",
                "-pthread",
                "{src}/big.c",
                "-o",
                "{out}",
            ],
        ),
        "cxx" => c(
            "g++",
            &["cxx.cpp"],
            &[
                "-O1",
                "-pie",
                "-fPIE",
                "-pthread",
                "{src}/cxx.cpp",
                "-o",
                "{out}",
            ],
        ),
        "rustprog" => c(
            "rustc",
            &["rustprog.rs"],
            &[
                "-O",
                "--edition",
                "2024",
                "{src}/rustprog.rs",
                "-o",
                "{out}",
            ],
        ),
        "goprog" => Recipe {
            go: true,
            ..c(
                "go",
                &["goprog/main.go"],
                &["build", "-trimpath", "-o", "{out}", "{src}/goprog/main.go"],
            )
        },
        "thp_off" => c(
            "gcc",
            &["thp_off.c"],
            &["-O1", "{src}/thp_off.c", "-o", "{out}"],
        ),
        _ => panic!("no recipe for fixture {name}"),
    }
}

fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

type Built = Result<PathBuf, Skip>;

/// One `OnceLock` per fixture name: a fixture is built at most once per test
/// process, and tests that need it wait for that build.
fn fixture_cell(name: &str) -> &'static OnceLock<Built> {
    static CELLS: OnceLock<Mutex<HashMap<String, &'static OnceLock<Built>>>> = OnceLock::new();
    let mut cells = lock(CELLS.get_or_init(Default::default));
    cells
        .entry(name.to_string())
        .or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
}

/// Locks a mutex, ignoring poisoning (a failed test must not fail others).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The built fixture `name` (see [`recipe`]), built into `target/fixtures/`
/// if missing or stale; a skip if its compiler is not installed.
pub fn fixture(name: &str) -> Result<PathBuf, Skip> {
    fixture_cell(name)
        .get_or_init(|| build_fixture(name))
        .clone()
}

fn build_fixture(name: &str) -> Built {
    let r = recipe(name);
    let tool = which(r.tool).ok_or_else(|| {
        Skip(format!(
            "`{}` is not installed (needed for fixture {name})",
            r.tool
        ))
    })?;
    if let Some(file) = r.needs_file
        && !Path::new(file).exists()
    {
        return Err(Skip(format!(
            "{file} is missing (needed for fixture {name})"
        )));
    }
    let src = fixture_sources();
    let dir = fixtures_dir();
    let out = dir.join(name);
    let stamp = dir.join(format!("{name}.stamp"));

    let mut h = fnv1a(0xcbf2_9ce4_8422_2325, tool.as_os_str().as_encoded_bytes());
    for a in r.args {
        h = fnv1a(h, a.as_bytes());
        h = fnv1a(h, b"\0");
    }
    for s in r.sources {
        let p = src.join(s);
        let bytes = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        h = fnv1a(h, &bytes);
    }
    let key = format!("{h:016x}\n");
    if out.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == key) {
        return Ok(out);
    }

    // Build under a private name, then rename: other test threads and other
    // test binaries may build the same fixture at the same time.
    let unique = format!(
        "{}.{}.{:?}.tmp",
        name,
        std::process::id(),
        thread::current().id()
    )
    .replace(['(', ')'], "");
    let tmp = dir.join(&unique);
    let mut cmd = Command::new(&tool);
    for a in r.args {
        let a = a
            .replace("{src}", &src.to_string_lossy())
            .replace("{out}", &tmp.to_string_lossy());
        cmd.arg(a);
    }
    if r.go {
        let go = dir.join("go");
        cmd.env("GOCACHE", go.join("cache"))
            .env("GOPATH", go.join("path"))
            .env("GOMODCACHE", go.join("path/pkg/mod"))
            .env("GOENV", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("GO111MODULE", "off")
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0")
            .env("HOME", &go);
    }
    cmd.current_dir(&dir);
    let what = describe(&cmd);
    let result = run(cmd);
    if !result.status.success() {
        let _ = fs::remove_file(&tmp);
        panic!(
            "building fixture {name} failed: `{what}`\n{}{}",
            result.stdout_str(),
            result.stderr_str()
        );
    }
    fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), out.display()));
    let stamp_tmp = dir.join(format!("{unique}.stamp"));
    fs::write(&stamp_tmp, &key).unwrap();
    fs::rename(&stamp_tmp, &stamp).unwrap();
    Ok(out)
}

/// A 32-bit x86 ELF executable: built with `gcc -m32` when multilib is
/// installed, else a hand-made ELF header (ELFCLASS32, EM_386, ET_EXEC)
/// with one PT_LOAD. Never a skip.
pub fn elf32_program(dir: &Path) -> PathBuf {
    let out = dir.join("elf32");
    let src = dir.join("elf32.c");
    fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let built = which("gcc").is_some() && {
        let mut cmd = Command::new("gcc");
        cmd.arg("-m32").arg(&src).arg("-o").arg(&out);
        run(cmd).status.success()
    };
    if !built {
        let mut b = vec![0u8; 52 + 32 + 16];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 1; // ELFCLASS32
        b[5] = 1; // little-endian
        b[6] = 1; // EV_CURRENT
        b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        b[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..28].copy_from_slice(&0x0804_8054u32.to_le_bytes()); // e_entry
        b[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
        b[40..42].copy_from_slice(&52u16.to_le_bytes()); // e_ehsize
        b[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
        b[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut b[52..84];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[8..12].copy_from_slice(&0x0804_8000u32.to_le_bytes()); // p_vaddr
        ph[12..16].copy_from_slice(&0x0804_8000u32.to_le_bytes());
        ph[16..20].copy_from_slice(&100u32.to_le_bytes()); // p_filesz
        ph[20..24].copy_from_slice(&100u32.to_le_bytes()); // p_memsz
        ph[24..28].copy_from_slice(&5u32.to_le_bytes()); // R+X
        ph[28..32].copy_from_slice(&0x1000u32.to_le_bytes());
        // _start: mov $1,%eax; xor %ebx,%ebx; int $0x80
        b[84..93].copy_from_slice(&[0xb8, 1, 0, 0, 0, 0x31, 0xdb, 0xcd, 0x80]);
        fs::write(&out, &b).unwrap();
    }
    set_mode(&out, 0o755);
    out
}

// ---------------------------------------------------------------------------
// hugetlb pool

/// Serializes the tests that assert on hugetlb pages, so two of them never
/// compete for the pool.
pub static HUGETLB_LOCK: Mutex<()> = Mutex::new(());

fn meminfo(key: &str) -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn hugetlb_free_pages() -> u64 {
    meminfo("HugePages_Free")
}

/// Makes sure `/proc/sys/vm/nr_hugepages` is at least `n`: only ever raises
/// it (tests run in parallel). A skip when not allowed to write it or when
/// the kernel cannot find the memory.
pub fn ensure_hugetlb_pool(n: u64) -> Result<(), Skip> {
    const KNOB: &str = "/proc/sys/vm/nr_hugepages";
    static RAISE: Mutex<()> = Mutex::new(());
    let _guard = lock(&RAISE);
    let read = || -> u64 {
        fs::read_to_string(KNOB)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    if read() >= n {
        return Ok(());
    }
    if let Err(e) = fs::write(KNOB, format!("{n}\n")) {
        return Err(Skip(format!(
            "cannot raise {KNOB} to {n} ({e}); run as root or set it beforehand"
        )));
    }
    let now = read();
    if now < n {
        return Err(Skip(format!(
            "{KNOB}: asked for {n} pages, the kernel found memory for {now}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// ELF program headers (a reader independent of hugeload's)

pub const PT_LOAD: u32 = 1;
pub const PT_INTERP: u32 = 3;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;

#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

#[derive(Clone, Debug)]
pub struct ElfInfo {
    /// ET_EXEC (2) or ET_DYN (3).
    pub e_type: u16,
    pub e_phoff: u64,
    pub phdrs: Vec<Phdr>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A closed half-open address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn overlap(&self, other: &Span) -> u64 {
        self.end
            .min(other.end)
            .saturating_sub(self.start.max(other.start))
    }
    pub fn contains(&self, other: &Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}-{:x}", self.start, self.end)
    }
}

impl ElfInfo {
    /// Reads the ELF header and program headers of a 64-bit x86-64 file.
    pub fn read(path: &Path) -> ElfInfo {
        let b = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            b.len() >= 64 && b[..4] == *b"\x7fELF" && b[4] == 2 && b[5] == 1,
            "{}: not a 64-bit little-endian ELF",
            path.display()
        );
        let e_type = le16(&b, 16);
        let phoff = le64(&b, 32) as usize;
        let phentsize = le16(&b, 54) as usize;
        let phnum = le16(&b, 56) as usize;
        assert_eq!(phentsize, 56, "{}: e_phentsize", path.display());
        let phdrs = (0..phnum)
            .map(|i| {
                let p = &b[phoff + i * 56..phoff + (i + 1) * 56];
                Phdr {
                    p_type: le32(p, 0),
                    p_flags: le32(p, 4),
                    p_offset: le64(p, 8),
                    p_vaddr: le64(p, 16),
                    p_filesz: le64(p, 32),
                    p_memsz: le64(p, 40),
                    p_align: le64(p, 48),
                }
            })
            .collect();
        ElfInfo {
            e_type,
            e_phoff: phoff as u64,
            phdrs,
        }
    }

    pub fn is_pie(&self) -> bool {
        self.e_type == 3
    }

    pub fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.phdrs.iter().filter(|p| p.p_type == PT_LOAD)
    }

    /// The pages a segment occupies at `bias`.
    fn pages(p: &Phdr, bias: u64) -> Span {
        Span {
            start: bias + page_down(p.p_vaddr),
            end: bias + page_up(p.p_vaddr + p.p_memsz),
        }
    }

    /// The text at `bias`: the pages of the executable PT_LOADs, with
    /// consecutive executable PT_LOADs merged (the gap between them counts
    /// as text).
    pub fn text_spans(&self, bias: u64) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        let mut previous_exec = false;
        for p in self.loads() {
            let exec = p.p_flags & PF_X != 0;
            if exec {
                let pages = Self::pages(p, bias);
                match spans.last_mut() {
                    Some(last) if previous_exec => last.end = last.end.max(pages.end),
                    _ => spans.push(pages),
                }
            }
            previous_exec = exec;
        }
        spans
    }

    /// Sum of `p_memsz` of the executable PT_LOADs.
    pub fn text_memsz(&self) -> u64 {
        self.loads()
            .filter(|p| p.p_flags & PF_X != 0)
            .map(|p| p.p_memsz)
            .sum()
    }

    /// Bytes of the executable PT_LOADs (their `p_memsz`, at `bias`) that lie
    /// in `ranges`.
    pub fn text_bytes_in(&self, bias: u64, ranges: &[Span]) -> u64 {
        self.loads()
            .filter(|p| p.p_flags & PF_X != 0)
            .map(|p| {
                let seg = Span {
                    start: bias + p.p_vaddr,
                    end: bias + p.p_vaddr + p.p_memsz,
                };
                ranges.iter().map(|r| r.overlap(&seg)).sum::<u64>()
            })
            .sum()
    }

    /// Every 2 MiB block that the text touches at `bias` (sorted, distinct):
    /// the least number of huge pages that can hold the text.
    pub fn touched_blocks(&self, bias: u64) -> Vec<u64> {
        let mut blocks = Vec::new();
        for s in self.text_spans(bias) {
            let mut b = huge_down(s.start);
            while b < s.end {
                if blocks.last().is_none_or(|&l| l < b) {
                    blocks.push(b);
                }
                b += HUGE;
            }
        }
        blocks
    }

    /// The 2 MiB blocks that lie wholly inside the text at `bias` and share
    /// no page with a non-executable segment: what the conservative strategy
    /// puts on huge pages.
    pub fn interior_blocks(&self, bias: u64) -> Vec<u64> {
        let spans = self.text_spans(bias);
        let others: Vec<Span> = self
            .loads()
            .filter(|p| p.p_flags & PF_X == 0)
            .map(|p| Self::pages(p, bias))
            .collect();
        self.touched_blocks(bias)
            .into_iter()
            .filter(|&b| {
                let block = Span {
                    start: b,
                    end: b + HUGE,
                };
                spans.iter().any(|s| s.contains(&block))
                    && others.iter().all(|o| o.overlap(&block) == 0)
            })
            .collect()
    }

    /// For a PIE: the most interior blocks any 4 KiB-aligned placement can
    /// give (a multiple of the segments' alignment, up to 2 MiB).
    pub fn best_interior_count(&self) -> usize {
        let align = self
            .loads()
            .map(|p| p.p_align)
            .max()
            .unwrap_or(PAGE)
            .clamp(PAGE, HUGE);
        (0..HUGE / align)
            .map(|k| self.interior_blocks(64 * HUGE + k * align).len())
            .max()
            .unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// The -v report

/// `hugeload: huge <start>-<end> <N> x 2M <backend>`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugeLine {
    pub range: Span,
    pub pages: u64,
    pub backend: String,
}

/// `hugeload: huge <start>-<end> on 4 KiB pages: <reason>`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FallbackLine {
    pub range: Span,
    pub reason: String,
}

/// `hugeload: total text <T> bytes, on huge pages <H> bytes (<P>%), huge
/// pages <U> of least possible <L>, strategy <s>, backend <b>`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotalLine {
    pub text: u64,
    pub on_huge: u64,
    pub percent: String,
    pub used: u64,
    pub least: u64,
    pub strategy: String,
    pub backend: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub huge: Vec<HugeLine>,
    pub fallback: Vec<FallbackLine>,
    pub totals: Vec<TotalLine>,
    /// Every stderr line that does not start with `hugeload: `.
    pub other_lines: Vec<String>,
}

impl Report {
    /// The one total line (panics unless there is exactly one).
    pub fn total(&self, stderr: &str) -> &TotalLine {
        assert_eq!(
            self.totals.len(),
            1,
            "expected exactly one `hugeload: total text` line, stderr:\n{stderr}"
        );
        &self.totals[0]
    }
}

fn parse_hex_range(s: &str, line: &str) -> Span {
    let (a, b) = s
        .split_once('-')
        .unwrap_or_else(|| panic!("bad range {s:?} in {line:?}"));
    let hex = |x: &str| {
        assert!(
            x.len() == 16 && x.bytes().all(|c| c.is_ascii_hexdigit()),
            "address {x:?} is not 16 hex digits in {line:?}"
        );
        u64::from_str_radix(x, 16).unwrap()
    };
    Span {
        start: hex(a),
        end: hex(b),
    }
}

fn parse_num(s: &str, line: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("expected a number, got {s:?} in {line:?}"))
}

/// Parses the `-v` lines of hugeload's stderr; panics on a `huge` or
/// `total` line that does not have the documented format.
pub fn parse_report(stderr: &str) -> Report {
    let mut r = Report::default();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("hugeload: ") else {
            r.other_lines.push(line.to_string());
            continue;
        };
        if let Some(h) = rest.strip_prefix("huge ") {
            let w: Vec<&str> = h.split_whitespace().collect();
            assert!(w.len() >= 2, "short huge line {line:?}");
            let range = parse_hex_range(w[0], line);
            assert!(
                range.start < range.end
                    && range.start.is_multiple_of(HUGE)
                    && range.end.is_multiple_of(HUGE),
                "huge range not 2 MiB-aligned or empty: {line:?}"
            );
            if w[1] == "on" {
                let reason = h
                    .split_once("on 4 KiB pages:")
                    .unwrap_or_else(|| panic!("bad fallback line {line:?}"))
                    .1
                    .trim()
                    .to_string();
                r.fallback.push(FallbackLine { range, reason });
            } else {
                // Words after the backend (a remark in parentheses) are
                // allowed.
                assert!(
                    w.len() >= 5 && w[2] == "x" && w[3] == "2M",
                    "bad huge line {line:?}"
                );
                assert!(
                    w.len() == 5 || w[5].starts_with('('),
                    "unexpected words after the backend in {line:?}"
                );
                let pages = parse_num(w[1], line);
                assert_eq!(
                    pages * HUGE,
                    range.len(),
                    "page count disagrees with the range in {line:?}"
                );
                assert!(
                    w[4] == "thp" || w[4] == "hugetlb",
                    "unknown backend in {line:?}"
                );
                r.huge.push(HugeLine {
                    range,
                    pages,
                    backend: w[4].to_string(),
                });
            }
        } else if let Some(t) = rest.strip_prefix("total text ") {
            let w: Vec<&str> = t.split_whitespace().collect();
            let expect = |i: usize, s: &str| {
                assert!(
                    w.get(i) == Some(&s),
                    "word {i} of the total line should be {s:?}: {line:?}"
                )
            };
            assert_eq!(w.len(), 19, "total line has {} words: {line:?}", w.len());
            expect(1, "bytes,");
            expect(2, "on");
            expect(3, "huge");
            expect(4, "pages");
            expect(6, "bytes");
            expect(8, "huge");
            expect(9, "pages");
            expect(11, "of");
            expect(12, "least");
            expect(13, "possible");
            expect(15, "strategy");
            expect(17, "backend");
            let percent = w[7]
                .strip_prefix('(')
                .and_then(|p| p.strip_suffix("%),"))
                .unwrap_or_else(|| panic!("bad percentage in {line:?}"));
            let strip_comma = |s: &str| {
                s.strip_suffix(',')
                    .unwrap_or_else(|| panic!("missing comma after {s:?} in {line:?}"))
                    .to_string()
            };
            r.totals.push(TotalLine {
                text: parse_num(w[0], line),
                on_huge: parse_num(w[5], line),
                percent: percent.to_string(),
                used: parse_num(w[10], line),
                least: parse_num(&strip_comma(w[14]), line),
                strategy: strip_comma(w[16]),
                backend: w[18].to_string(),
            });
        }
    }
    r
}

// ---------------------------------------------------------------------------
// smaps

/// An owned copy of one smaps mapping.
#[derive(Clone, Debug)]
pub struct Map {
    pub span: Span,
    pub perms: String,
    pub offset: u64,
    pub name: String,
    pub huge_bytes: u64,
    pub hugetlb_bytes: u64,
    pub anon_huge_bytes: u64,
    pub kernel_page_kb: u64,
}

impl Map {
    pub fn is_exec(&self) -> bool {
        self.perms.as_bytes()[2] == b'x'
    }
}

pub fn read_smaps(pid: u32) -> Result<Vec<Map>, std::io::Error> {
    let text = fs::read(format!("/proc/{pid}/smaps"))?;
    let mut maps = Vec::new();
    hugeload::smaps::parse(&text, |m: &hugeload::smaps::Mapping| {
        maps.push(Map {
            span: Span {
                start: m.start,
                end: m.end,
            },
            perms: String::from_utf8_lossy(&m.perms).into_owned(),
            offset: m.offset,
            name: String::from_utf8_lossy(m.name).into_owned(),
            huge_bytes: m.huge_bytes(),
            hugetlb_bytes: m.hugetlb_kb * 1024,
            anon_huge_bytes: m.anon_huge_kb * 1024,
            kernel_page_kb: m.kernel_page_kb,
        })
    });
    Ok(maps)
}

/// Bytes on 2 MiB pages of the executable mappings within `span`; a mapping
/// that reaches outside counts for at most its overlap. `(all, hugetlb)`.
pub fn huge_bytes_in(maps: &[Map], span: &Span) -> (u64, u64) {
    maps.iter()
        .filter(|m| m.is_exec())
        .map(|m| {
            let overlap = m.span.overlap(span);
            (m.huge_bytes.min(overlap), m.hugetlb_bytes.min(overlap))
        })
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
}

/// Bytes of `span` covered by executable mappings.
pub fn exec_bytes_in(maps: &[Map], span: &Span) -> u64 {
    maps.iter()
        .filter(|m| m.is_exec())
        .map(|m| m.span.overlap(span))
        .sum()
}

/// The load bias of `program` in a process, from the mappings of the file
/// that are still file-backed (the writable segment always is): the bias
/// under which the most of them sit where their file offset says. `None`
/// if no mapping or two biases explain equally many.
pub fn bias_from_maps(maps: &[Map], program: &Path, elf: &ElfInfo) -> Option<u64> {
    if !elf.is_pie() {
        return Some(0);
    }
    let name = fs::canonicalize(program).ok()?;
    let name = name.to_string_lossy();
    let files: Vec<&Map> = maps.iter().filter(|m| m.name == name).collect();
    // Every bias under which some mapping lies inside some segment's pages.
    let fits = |m: &Map, p: &Phdr| -> Option<u64> {
        let file_start = page_down(p.p_offset);
        let file_end = page_up(p.p_offset + p.p_filesz);
        if m.offset < file_start || m.offset + m.span.len() > file_end {
            return None;
        }
        let vaddr = page_down(p.p_vaddr) + (m.offset - file_start);
        m.span.start.checked_sub(vaddr)
    };
    let mut candidates: Vec<u64> = files
        .iter()
        .flat_map(|m| elf.loads().filter_map(|p| fits(m, p)))
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    let explained = |bias: u64| {
        files
            .iter()
            .filter(|m| elf.loads().any(|p| fits(m, p) == Some(bias)))
            .count()
    };
    let mut scored: Vec<(usize, u64)> = candidates.iter().map(|&b| (explained(b), b)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    match scored.as_slice() {
        [] => None,
        [(n, _), (m, _), ..] if n == m => None,
        [(_, b), ..] => Some(*b),
    }
}

// ---------------------------------------------------------------------------
// Inspecting a running program

/// How to know that the program has finished loading and is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// The program prints a line `ready` on stdout (fixtures' `--wait`).
    Line,
    /// The program's file is mapped and its main thread is blocked reading
    /// fd 0 (for real programs).
    StdinRead,
}

/// One reported huge range and what smaps says about it.
#[derive(Clone, Debug)]
pub struct RangeCheck {
    pub line: HugeLine,
    /// Bytes on 2 MiB pages (any kind) of executable mappings in the range.
    pub huge_bytes: u64,
    /// Of those, hugetlb bytes.
    pub hugetlb_bytes: u64,
    /// Bytes of the range covered by executable mappings.
    pub exec_bytes: u64,
}

/// What [`inspect`] saw.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub what: String,
    pub run: Run,
    pub report: Report,
    pub maps: Vec<Map>,
    pub elf: ElfInfo,
    pub bias: u64,
    /// The program's text spans at its bias.
    pub text: Vec<Span>,
    pub ranges: Vec<RangeCheck>,
    /// 2 MiB-backed bytes of executable mappings in the blocks the text
    /// touches.
    pub text_huge_bytes: u64,
    /// Of those, hugetlb bytes.
    pub text_hugetlb_bytes: u64,
}

impl Inspection {
    pub fn stderr(&self) -> String {
        self.run.stderr_str()
    }

    /// The reported huge ranges that lie in blocks the main program's text
    /// touches (hugeload may report ranges of the interpreter too).
    pub fn text_ranges(&self) -> impl Iterator<Item = &RangeCheck> {
        let blocks = self.elf.touched_blocks(self.bias);
        self.ranges.iter().filter(move |r| {
            blocks
                .iter()
                .any(|&b| r.line.range.start <= b && b < r.line.range.end)
        })
    }

    /// A readable dump for failure messages.
    pub fn dump(&self) -> String {
        let mut s = format!(
            "command: {}\nbias: {:x}\ntext spans: {:?}\nstderr:\n{}\nexecutable mappings:\n",
            self.what,
            self.bias,
            self.text.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            self.stderr()
        );
        for m in self.maps.iter().filter(|m| m.is_exec()) {
            s.push_str(&format!(
                "  {} {} {:x} huge={}K hugetlb={}K kps={}K {}\n",
                m.span,
                m.perms,
                m.offset,
                m.huge_bytes / 1024,
                m.hugetlb_bytes / 1024,
                m.kernel_page_kb,
                m.name
            ));
        }
        s
    }
}

fn is_blocked_reading_stdin(pid: u32) -> bool {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut w = s.split_whitespace();
    let nr = w.next().and_then(|n| n.parse::<u64>().ok());
    let fd = w.next();
    // read, pread64, readv, preadv, preadv2 on fd 0.
    matches!(nr, Some(0 | 17 | 19 | 295 | 327)) && fd == Some("0x0")
}

fn maps_mention(pid: u32, name: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains(name))
}

/// Starts `cmd` (a program that blocks reading stdin), waits until it is
/// ready, reads its smaps, closes its stdin and collects how it ended.
/// `program` is the ELF file whose text is measured (the loaded main
/// program). Panics if the program is not ready within [`TIMEOUT`].
pub fn inspect(mut cmd: Command, program: &Path, ready: Ready) -> Inspection {
    let what = describe(&cmd);
    let elf = ElfInfo::read(program);
    let canonical = fs::canonicalize(program)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", program.display()));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd);
    let pid = child.id();
    let stdin = child.stdin.take().unwrap();
    let err = read_all_in_thread(child.stderr.take());
    let (line_rx, out) = stream_lines(child.stdout.take().unwrap());

    let deadline = Instant::now() + TIMEOUT;
    let mut printed_base = None;
    let mut fail = None;
    loop {
        if Instant::now() >= deadline {
            fail = Some(format!("not ready after {TIMEOUT:?}"));
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            fail = Some(format!("exited before it was ready: {status}"));
            break;
        }
        match ready {
            Ready::Line => match line_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(l) if l == "ready" => break,
                Ok(l) => {
                    if let Some(b) = l.strip_prefix("base=") {
                        printed_base = u64::from_str_radix(b, 16).ok();
                    }
                }
                Err(_) => {}
            },
            Ready::StdinRead => {
                if maps_mention(pid, &canonical.to_string_lossy()) && is_blocked_reading_stdin(pid)
                {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let maps = if fail.is_none() {
        read_smaps(pid).unwrap_or_else(|e| panic!("`{what}`: read /proc/{pid}/smaps: {e}"))
    } else {
        Vec::new()
    };
    drop(stdin);
    let status = match wait_until(&mut child, deadline.max(Instant::now() + TIMEOUT / 2)) {
        Some(s) => s,
        None => {
            kill_group(&mut child);
            let s = child.wait().unwrap();
            fail.get_or_insert_with(|| "did not exit after stdin was closed".to_string());
            s
        }
    };
    if fail.is_some() {
        kill_group(&mut child);
    }
    let run = Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    if let Some(f) = fail {
        panic!(
            "`{what}`: {f}\nstdout:\n{}\nstderr:\n{}",
            run.stdout_str(),
            run.stderr_str()
        );
    }
    let report = parse_report(&run.stderr_str());

    let bias = match (printed_base, bias_from_maps(&maps, program, &elf)) {
        (Some(p), Some(m)) => {
            assert_eq!(
                p, m,
                "`{what}`: the program says its base is {p:x}, its file mappings say {m:x}"
            );
            p
        }
        (Some(p), None) => p,
        (None, Some(m)) => m,
        (None, None) => panic!(
            "`{what}`: cannot find where {} is loaded (no file mapping of it)",
            program.display()
        ),
    };
    let text = elf.text_spans(bias);
    let ranges = report
        .huge
        .iter()
        .map(|line| {
            let (huge_bytes, hugetlb_bytes) = huge_bytes_in(&maps, &line.range);
            RangeCheck {
                line: line.clone(),
                huge_bytes,
                hugetlb_bytes,
                exec_bytes: exec_bytes_in(&maps, &line.range),
            }
        })
        .collect();
    let (mut text_huge_bytes, mut text_hugetlb_bytes) = (0, 0);
    for b in elf.touched_blocks(bias) {
        let (h, t) = huge_bytes_in(
            &maps,
            &Span {
                start: b,
                end: b + HUGE,
            },
        );
        text_huge_bytes += h;
        text_hugetlb_bytes += t;
    }
    Inspection {
        what,
        run,
        report,
        maps,
        elf,
        bias,
        text,
        ranges,
        text_huge_bytes,
        text_hugetlb_bytes,
    }
}

/// The checks every inspection of a program loaded with `-v` must pass:
/// - exactly one total line, with the expected strategy;
/// - each reported huge range is executable and wholly on 2 MiB pages (of
///   the reported backend: hugetlb ranges must show hugetlb pages);
/// - the reported ranges in the program's text hold U pages (the total
///   line's), and smaps shows exactly U * 2 MiB on huge pages in the blocks
///   the text touches;
/// - L equals the number of 2 MiB blocks the text touches (computed here
///   from the program headers) and U <= L;
/// - conservative: U equals the number of 2 MiB blocks wholly inside the
///   text (computed here); for a PIE that is also the best any placement
///   gives. Aggressive: U is at least that.
///
/// Returns U.
pub fn check_huge(i: &Inspection, strategy: &str) -> u64 {
    let stderr = i.stderr();
    let dump = i.dump();
    if std::env::var_os("HUGELOAD_TEST_DUMP").is_some() {
        eprintln!("{}:\n{dump}", test_name());
    }
    let total = i.report.total(&stderr);
    assert_eq!(
        total.strategy, strategy,
        "strategy in the total line\n{dump}"
    );
    for r in &i.ranges {
        assert_eq!(
            r.exec_bytes,
            r.line.range.len(),
            "reported huge range {} is not wholly executable in smaps\n{dump}",
            r.line.range
        );
        assert_eq!(
            r.huge_bytes,
            r.line.range.len(),
            "reported huge range {} ({} x 2M {}) has {} bytes on 2 MiB pages in smaps\n{dump}",
            r.line.range,
            r.line.pages,
            r.line.backend,
            r.huge_bytes
        );
        if r.line.backend == "hugetlb" {
            assert_eq!(
                r.hugetlb_bytes,
                r.line.range.len(),
                "reported hugetlb range {} has {} hugetlb bytes in smaps\n{dump}",
                r.line.range,
                r.hugetlb_bytes
            );
        }
    }
    assert_eq!(
        total.text,
        i.elf.text_memsz(),
        "T of the total line vs the p_memsz of the executable segments\n{dump}"
    );
    let text_ranges: Vec<Span> = i.text_ranges().map(|r| r.line.range).collect();
    assert_eq!(
        total.on_huge,
        i.elf.text_bytes_in(i.bias, &text_ranges),
        "H of the total line vs the text bytes inside the reported huge ranges\n{dump}"
    );
    let reported: u64 = i.text_ranges().map(|r| r.line.pages).sum();
    assert_eq!(
        reported, total.used,
        "pages of the reported ranges in the text vs U of the total line\n{dump}"
    );
    assert_eq!(
        i.text_huge_bytes,
        total.used * HUGE,
        "smaps: bytes on 2 MiB pages in the text blocks vs U x 2 MiB\n{dump}"
    );
    assert_eq!(
        total.on_huge > 0,
        total.used > 0,
        "H and U disagree in the total line\n{dump}"
    );
    let touched = i.elf.touched_blocks(i.bias).len() as u64;
    assert_eq!(
        total.least, touched,
        "L of the total line vs the 2 MiB blocks the text touches\n{dump}"
    );
    assert!(total.used <= total.least, "U > L\n{dump}");
    let interior = i.elf.interior_blocks(i.bias).len() as u64;
    match strategy {
        "conservative" => {
            assert_eq!(
                total.used, interior,
                "conservative: U vs the 2 MiB blocks wholly inside the text\n{dump}"
            );
            if i.elf.is_pie() {
                assert_eq!(
                    interior,
                    i.elf.best_interior_count() as u64,
                    "conservative: the PIE was placed where fewer whole 2 MiB blocks fit in \
                     its text than the best placement gives\n{dump}"
                );
            }
        }
        _ => assert!(
            total.used >= interior,
            "aggressive: U below the conservative count {interior}\n{dump}"
        ),
    }
    total.used
}

/// Reads `source` on a thread: each line (without its newline) is sent on
/// the returned channel as it arrives, and the thread returns all bytes.
pub fn stream_lines(
    source: impl Read + Send + 'static,
) -> (mpsc::Receiver<String>, thread::JoinHandle<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let all = thread::spawn(move || {
        let mut all = Vec::new();
        let mut r = BufReader::new(source);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    all.extend_from_slice(&line);
                    let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_string());
                }
            }
        }
        all
    });
    (rx, all)
}
