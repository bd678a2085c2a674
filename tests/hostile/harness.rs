//! Running hostile files and programs in hostile environments: the
//! kernel's own execve, the `hostile_wrap` wrapper, and the `-v` report's
//! account of every planned 2 MiB block.

use crate::common::*;
use std::ffi::{CString, OsString, c_char};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The longest one run of a hostile file may take.
pub const FILE_LIMIT: Duration = Duration::from_secs(10);

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
pub fn kernel_command(path: &Path, args: &[&str]) -> Command {
    let c = |b: &[u8]| CString::new(b).unwrap();
    let mut strings = vec![c(path.as_os_str().as_bytes())];
    strings.extend(args.iter().map(|a| c(a.as_bytes())));
    let argc = strings.len();
    for (k, v) in std::env::vars_os() {
        if !hugeload::options::ENV_VARS.iter().any(|h| k == *h) {
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
    Ok(if settings.is_empty() {
        let mut c = command(&argv[0]);
        c.args(&argv[1..]);
        c
    } else {
        let mut c = command(fixture("hostile_wrap")?);
        c.args(settings).arg("--").args(&argv);
        c
    })
}

pub fn os_args(program: &Path, args: &[&str]) -> Vec<OsString> {
    std::iter::once(program.as_os_str().to_owned())
        .chain(args.iter().map(OsString::from))
        .collect()
}

/// `[wrapper] program args`.
pub fn direct(settings: &[&str], program: &Path, args: &[&str]) -> Result<Command, Skip> {
    wrapped(settings, os_args(program, args))
}

/// `[wrapper] hugeload opts program args`.
pub fn via(
    settings: &[&str],
    opts: &[&str],
    program: &Path,
    args: &[&str],
) -> Result<Command, Skip> {
    let mut argv = vec![hugeload().as_os_str().to_owned()];
    argv.extend(opts.iter().map(OsString::from));
    argv.extend(os_args(program, args));
    wrapped(settings, argv)
}

/// The run, or a skip if the wrapper says the kernel lacks a feature.
pub fn run_wrapped(cmd: Command, limit: Duration) -> Result<Run, Skip> {
    let o = run_limited(cmd, Stdin::Null, limit);
    if o.end == End::Exit(124) && o.stderr_str().starts_with("hostile_wrap:") {
        return Err(Skip(o.stderr_str().trim().to_string()));
    }
    Ok(o)
}

/// Runs `program args` directly and through `hugeload opts` under the same
/// settings, asserting nothing (for views, which [`compare_views`] judges).
pub fn run_views(
    settings: &[&str],
    opts: &[&str],
    program: &Path,
    args: &[&str],
) -> Result<(Run, Run), Skip> {
    let d = run_wrapped(direct(settings, program, args)?, TIMEOUT)?;
    let h = run_wrapped(via(settings, opts, program, args)?, TIMEOUT)?;
    Ok((d, h))
}

/// Runs `program args` directly and through `hugeload opts` under the same
/// settings; asserts both exit 0 with the same stdout (and hugeload's
/// stderr holds only `hugeload: ` lines). Returns (direct, hugeload).
pub fn run_pair(
    settings: &[&str],
    opts: &[&str],
    program: &Path,
    args: &[&str],
) -> Result<(Run, Run), Skip> {
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
        h.stderr_str()
    );
    assert_eq!(
        h.stdout_str(),
        d.stdout_str(),
        "`{}`: stdout differs from the direct run's\nstderr:\n{}",
        h.what,
        h.stderr_str()
    );
    assert!(
        h.stderr_str().lines().all(|l| l.starts_with("hugeload: ")),
        "`{}`: stderr has lines that are not hugeload's\n{}",
        h.what,
        h.stderr_str()
    );
    Ok((d, h))
}
// ---------------------------------------------------------------------------
// The -v report: every planned block accounted for

/// The load bias from the `hugeload: load PATH: ET_xxx at 0xADDR` line.
pub fn bias_from_report(stderr: &str, elf: &ElfInfo) -> u64 {
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
pub fn accounted(h: &Run, program: &Path) -> Report {
    let stderr = h.stderr_str();
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

pub fn assert_reasons(h: &Run, report: &Report, needles: &[&str]) {
    assert!(
        !report.fallback.is_empty(),
        "`{}`: nothing reported as given up\n{}",
        h.what,
        h.stderr_str()
    );
    for f in &report.fallback {
        for n in needles {
            assert!(
                f.reason.contains(n),
                "`{}`: fallback reason {:?} does not mention {n:?}\n{}",
                h.what,
                f.reason,
                h.stderr_str()
            );
        }
    }
}

pub fn backends(report: &Report) -> String {
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
// What a hostile environment must lead to, as data

/// What `-v` must show for one run under a hostile environment.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Nothing on huge pages, every range given up with a reason that
    /// contains this.
    GivesUp(&'static str),
    /// Something on huge pages, all of this backend.
    AllOn(&'static str),
    /// Something on huge pages and nothing given up.
    Whole,
}

/// One run of a scenario: hugeload's options and what `-v` must show.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub opts: &'static [&'static str],
    pub expect: Expect,
}

/// Runs `program args` directly and through `hugeload OPTS` under the
/// wrapper `settings` ([`run_pair`]: same output), checks that every
/// planned block is accounted for ([`accounted`]) and that `-v` shows what
/// `step` expects. Failures name the settings, options and expectation.
pub fn check_step(
    settings: &[&str],
    program: &Path,
    args: &[&str],
    step: &Step,
) -> Result<Report, Skip> {
    let (_, h) = run_pair(settings, step.opts, program, args)?;
    let r = accounted(&h, program);
    let case = format!(
        "`{}` under {settings:?}: expected {:?}",
        h.what, step.expect
    );
    match step.expect {
        Expect::GivesUp(reason) => {
            assert!(r.huge.is_empty(), "{case}: huge pages\n{}", h.stderr_str());
            assert_reasons(&h, &r, &[reason]);
        }
        Expect::AllOn(backend) => assert!(
            !r.huge.is_empty() && r.huge.iter().all(|x| x.backend == backend),
            "{case}: {backend} expected\n{}",
            h.stderr_str()
        ),
        Expect::Whole => assert!(
            !r.huge.is_empty() && r.fallback.is_empty(),
            "{case}: should be whole\n{}",
            h.stderr_str()
        ),
    }
    Ok(r)
}
