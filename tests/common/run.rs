//! The one way the tests run a child process.
//!
//! Every child runs in its own process group, is bounded in time, and at
//! its limit (or when the test lets go of it) the whole group gets SIGCONT
//! then SIGKILL: a test never hangs and never leaves processes behind.
//! Every child is started without the `HUGELOAD_*` variables of
//! [`hugeload::options::ENV_VARS`] that the command does not set itself, so
//! the caller's environment cannot change a result.

use super::*;
use hugeload::options::ENV_VARS;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub const SIGKILL: i32 = 9;
pub const SIGCONT: i32 = 18;

pub mod libc {
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

/// Sends `sig` to process `pid` (a negative `pid`: to that process group).
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects on this process.
    unsafe { libc::kill(pid, sig) };
}

/// Wakes (if stopped) and kills the process group `pgid`.
fn kill_group(pgid: u32) {
    send_signal(-(pgid as i32), SIGCONT);
    send_signal(-(pgid as i32), SIGKILL);
}

// ---------------------------------------------------------------------------
// Commands

/// Removes every `HUGELOAD_*` variable hugeload reads.
pub fn clear_hugeload_env(cmd: &mut Command) -> &mut Command {
    for var in ENV_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Removes the `HUGELOAD_*` variables the command does not set itself (the
/// runner does this for every child).
fn isolate(cmd: &mut Command) {
    let set: Vec<OsString> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
    for var in ENV_VARS {
        if !set.iter().any(|k| k == var) {
            cmd.env_remove(var);
        }
    }
}

/// `program` with a clean `HUGELOAD_*` environment.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    clear_hugeload_env(&mut cmd);
    cmd
}

/// `hugeload OPTS...` with a clean `HUGELOAD_*` environment.
pub fn hl_command<S: AsRef<OsStr>>(opts: &[S]) -> Command {
    let mut cmd = command(hugeload());
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

// ---------------------------------------------------------------------------
// How a child ended

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Exit(i32),
    Signal(i32),
    /// Spawning failed with this errno (execve refused the file).
    ExecError(i32),
    /// Still running at the time limit: its process group was killed.
    Hung,
}

impl End {
    fn of(status: ExitStatus) -> End {
        match (status.code(), status.signal()) {
            (Some(c), _) => End::Exit(c),
            (_, Some(s)) => End::Signal(s),
            _ => unreachable!("{status:?}"),
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Exit(c) => write!(f, "exit {c}"),
            End::Signal(s) => write!(f, "signal {s}"),
            End::ExecError(e) => write!(f, "execve errno {e}"),
            End::Hung => write!(f, "hung (killed)"),
        }
    }
}

/// How one child ended, and what it wrote.
#[derive(Clone, Debug)]
pub struct Run {
    /// The command, for messages.
    pub what: String,
    pub end: End,
    pub core_dumped: bool,
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
    pub fn success(&self) -> bool {
        self.end == End::Exit(0)
    }
    pub fn exit_code(&self) -> Option<i32> {
        match self.end {
            End::Exit(c) => Some(c),
            _ => None,
        }
    }
    pub fn signal(&self) -> Option<i32> {
        match self.end {
            End::Signal(s) => Some(s),
            _ => None,
        }
    }
    /// Exit code; panics (with the output) if the child did not exit.
    pub fn code(&self, what: &str) -> i32 {
        match self.end {
            End::Exit(c) => c,
            End::Signal(sig) => panic!(
                "{what}: killed by signal {sig}{}\nstderr:\n{}",
                if self.core_dumped {
                    " (core dumped)"
                } else {
                    ""
                },
                self.stderr_str()
            ),
            other => panic!("{what}: {other}\nstderr:\n{}", self.stderr_str()),
        }
    }
    /// One line: how it ended and what it wrote.
    pub fn short(&self) -> String {
        format!(
            "{}, stdout {:?}, stderr {:?}",
            self.end,
            self.stdout_str(),
            self.stderr_str()
        )
    }
    /// Panics unless the child was started and ended within its limit.
    fn expect_ran(self) -> Run {
        match self.end {
            End::ExecError(e) => panic!(
                "cannot spawn `{}`: {}",
                self.what,
                std::io::Error::from_raw_os_error(e)
            ),
            End::Hung => panic!(
                "`{}` still running after its time limit: killed\nstderr:\n{}",
                self.what,
                self.stderr_str()
            ),
            _ => self,
        }
    }
}

// ---------------------------------------------------------------------------
// A running child

/// What the child reads.
pub enum Stdin<'a> {
    /// /dev/null.
    Null,
    /// These bytes, then end of file.
    Bytes(&'a [u8]),
    /// A pipe the test holds until [`Running::close_stdin`] (or the end).
    Pipe,
}

/// A child in its own process group, its stdout lines available while it
/// runs; the group is killed if the test lets go of it first.
pub struct Running {
    pub what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    writer: Option<JoinHandle<()>>,
    lines: mpsc::Receiver<String>,
    /// Stdout lines received so far by the `wait_for_line` calls.
    pub seen: Vec<String>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Running {
    /// Starts `cmd` with stdin a pipe; panics if it cannot be spawned.
    pub fn start(cmd: Command) -> Running {
        let what = describe(&cmd);
        Running::spawn(cmd, Stdin::Pipe).unwrap_or_else(|e| panic!("cannot spawn `{what}`: {e}"))
    }

    /// Starts `cmd`; the error of spawning it (execve's errno) if it cannot.
    pub fn spawn(mut cmd: Command, stdin: Stdin<'_>) -> std::io::Result<Running> {
        isolate(&mut cmd);
        let what = describe(&cmd);
        cmd.stdin(match stdin {
            Stdin::Null => Stdio::null(),
            _ => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        let mut child = cmd.spawn()?;
        let mut pipe = child.stdin.take();
        let writer = match stdin {
            Stdin::Bytes(data) => {
                let mut w = pipe.take().unwrap();
                let data = data.to_vec();
                Some(thread::spawn(move || {
                    let _ = w.write_all(&data);
                }))
            }
            _ => None,
        };
        let (lines, out) = stream_lines(child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();
        let err = thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all);
            all
        });
        Ok(Running {
            what,
            child,
            stdin: pipe,
            writer,
            lines,
            seen: Vec::new(),
            out: Some(out),
            err: Some(err),
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child has ended (it is reaped then).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait");
        }
        self.status
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The next stdout line, waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Result<String, mpsc::RecvTimeoutError> {
        self.lines.recv_timeout(timeout)
    }

    /// Kills the child's process group and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            kill_group(self.pid());
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Kills the child and panics with `msg` and its output.
    pub fn fail(&mut self, msg: &str) -> ! {
        self.kill();
        self.stdin.take();
        let out = self
            .out
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        let err = self
            .err
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        panic!(
            "`{}`: {msg}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
    }

    /// Waits (at most [`TIMEOUT`]) for a stdout line `want`.
    pub fn wait_for_line(&mut self, want: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(20)) {
                Ok(l) => {
                    let found = l == want;
                    self.seen.push(l);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("closed stdout before printing {want:?}"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no line {want:?} after {TIMEOUT:?}"));
            }
        }
    }

    /// Whether the main thread is blocked reading fd 0.
    pub fn is_blocked_reading_stdin(&self) -> bool {
        let Ok(s) = fs::read_to_string(format!("/proc/{}/syscall", self.pid())) else {
            return false;
        };
        let mut w = s.split_whitespace();
        // read, pread64, readv, preadv, preadv2 on fd 0.
        matches!(w.next(), Some("0" | "17" | "19" | "295" | "327")) && w.next() == Some("0x0")
    }

    /// Waits (at most [`TIMEOUT`]) until the main thread is blocked reading
    /// fd 0.
    pub fn wait_blocked_on_stdin(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.is_blocked_reading_stdin() {
            if Instant::now() >= deadline {
                self.fail("not blocked reading stdin");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes stdin and waits at most `limit` for the child to end; at the
    /// limit its process group is killed ([`End::Hung`]).
    pub fn wait(mut self, limit: Duration) -> Run {
        self.stdin.take();
        let deadline = Instant::now() + limit;
        let mut hung = false;
        while self.try_wait().is_none() {
            if Instant::now() >= deadline {
                hung = true;
                self.kill();
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let status = self.status.expect("reaped");
        Run {
            what: std::mem::take(&mut self.what),
            end: if hung { End::Hung } else { End::of(status) },
            core_dumped: !hung && status.core_dumped(),
            stdout: self.out.take().unwrap().join().unwrap(),
            stderr: self.err.take().unwrap().join().unwrap(),
        }
    }

    /// Closes stdin and collects how the child ended; fails the test if it
    /// is still running after [`TIMEOUT`].
    pub fn finish(self) -> Run {
        let r = self.wait(TIMEOUT);
        if r.end == End::Hung {
            panic!(
                "`{}`: did not exit after stdin was closed\nstdout:\n{}\nstderr:\n{}",
                r.what,
                r.stdout_str(),
                r.stderr_str()
            );
        }
        r
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `source` on a thread: each line (without its newline) is sent on
/// the returned channel as it arrives, and the thread returns all bytes.
pub fn stream_lines(
    source: impl Read + Send + 'static,
) -> (mpsc::Receiver<String>, JoinHandle<Vec<u8>>) {
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

// ---------------------------------------------------------------------------
// Running to the end

/// Runs `cmd` reading `stdin`, for at most `limit`: how it ended, never a
/// panic (a file execve refuses is [`End::ExecError`], a child still
/// running at the limit [`End::Hung`]).
pub fn run_limited(cmd: Command, stdin: Stdin<'_>, limit: Duration) -> Run {
    let what = describe(&cmd);
    match Running::spawn(cmd, stdin) {
        Ok(r) => r.wait(limit),
        Err(e) => Run {
            what,
            end: End::ExecError(e.raw_os_error().unwrap_or(-1)),
            core_dumped: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
    }
}

/// Runs `cmd` with `input` on stdin (or /dev/null), collecting stdout and
/// stderr; panics if it cannot be spawned or runs past [`TIMEOUT`].
pub fn run_input(cmd: Command, input: Option<&[u8]>) -> Run {
    let stdin = input.map_or(Stdin::Null, Stdin::Bytes);
    run_limited(cmd, stdin, TIMEOUT).expect_ran()
}

/// Runs `cmd` with stdin on /dev/null (see [`run_input`]).
pub fn run(cmd: Command) -> Run {
    run_input(cmd, None)
}

// ---------------------------------------------------------------------------
// A direct run against a run through hugeload

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
    let mut direct = command(program);
    direct.args(args);
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
