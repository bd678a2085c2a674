//! Judging one hostile file: the kernel's run against hugeload's, by the
//! rules of the module documentation of tests/hostile.rs.

use crate::common::*;
use crate::harness::*;
use crate::strace::parse_trace;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const ENOENT: i32 = 2;

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
    clear_hugeload_env(&mut cmd);
    let o = run_limited(cmd, Stdin::Null, FILE_LIMIT);
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
pub struct Tally {
    refused_126: usize,
    refused_127: usize,
    ran_like_kernel: usize,
    both_hung: usize,
    violations: usize,
}

impl Tally {
    fn total(&self) -> usize {
        self.refused_126
            + self.refused_127
            + self.ran_like_kernel
            + self.both_hung
            + self.violations
    }
    fn summary(&self) -> String {
        format!(
            "{} files: refused 126: {}, refused 127: {}, ran like the kernel (by hugeload or \
             handed to the kernel): {}, hung in both: {}, violations: {}",
            self.total(),
            self.refused_126,
            self.refused_127,
            self.ran_like_kernel,
            self.both_hung,
            self.violations
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Refused(i32),
    RanLikeKernel,
    BothHung,
}

/// The one stderr line `hugeload: PATH: reason`, if that is all hugeload
/// said (and it printed nothing on stdout).
pub fn refusal_reason<'a>(o: &'a Run, path: &str) -> Option<&'a str> {
    let err = std::str::from_utf8(&o.stderr).ok()?;
    let line = err.strip_suffix('\n')?;
    if line.contains('\n') || !o.stdout.is_empty() {
        return None;
    }
    let reason = line.strip_prefix(&format!("hugeload: {path}: "))?;
    (!reason.is_empty()).then_some(reason)
}

/// The rules of the issue, for one file: `direct` is the kernel's run,
/// `hl` hugeload's (no options).
fn judge(path: &Path, direct: &Run, hl: &Run, via_sh: bool) -> Result<Verdict, String> {
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
                // A file the kernel runs is never refused: what hugeload
                // will not load itself, it hands to the kernel.
                return Err(format!(
                    "refused a file the kernel runs ({reason:?}): it should have been handed \
                     to the kernel"
                ));
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
            if a == b && direct.stdout == hl.stdout && same_stderr(direct, hl, via_sh) =>
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

/// The same stderr; through /bin/sh, the same bytes in any order (a file of
/// random bytes holds `&`: sh runs parts of it as background jobs, whose
/// messages interleave).
fn same_stderr(a: &Run, b: &Run, via_sh: bool) -> bool {
    if !via_sh {
        return a.stderr == b.stderr;
    }
    let sorted = |r: &Run| {
        let mut v = r.stderr.clone();
        v.sort_unstable();
        v
    };
    sorted(a) == sorted(b)
}

/// One hostile file run by the kernel and through hugeload (no options,
/// one argument), and judged.
pub struct Tried {
    pub path: PathBuf,
    pub direct: Run,
    pub hl: Run,
    /// The verdict, or which rule the runs broke.
    pub verdict: Result<Verdict, String>,
}

impl Tried {
    /// The file and how both runs ended.
    pub fn show(&self) -> String {
        format!(
            "{}\n    direct:   {}\n    hugeload: {}",
            self.path.display(),
            self.direct.short(),
            self.hl.short()
        )
    }

    /// [`Tried::show`], and on a violation, what went wrong.
    pub fn result(&self) -> Result<String, String> {
        match &self.verdict {
            Ok(_) => Ok(self.show()),
            Err(e) => Err(format!("{}\n    => {e}", self.show())),
        }
    }
}

/// Runs one file directly and through hugeload, judges it, and for a
/// refusal checks under strace that nothing was mapped; counts it in
/// `tally`.
pub fn try_file(path: &Path, scratch: &Path, tally: &mut Tally) -> Tried {
    let args = ["arg"];
    // A file just written may still be open for writing in a child that
    // another test thread forked and that has not exec'd yet: execve says
    // ETXTBSY for a moment. Wait that out, so both runs see the file alone.
    const ETXTBSY: i32 = 26;
    let mut direct = run_limited(kernel_command(path, &args), Stdin::Null, FILE_LIMIT);
    for _ in 0..50 {
        if direct.end != End::ExecError(ETXTBSY) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        direct = run_limited(kernel_command(path, &args), Stdin::Null, FILE_LIMIT);
    }
    // A file with neither an ELF header nor `#!` that the kernel refuses
    // runs, as execvp and env run it, through /bin/sh: hugeload does that
    // too, so that is the reference.
    let head = fs::read(path).unwrap_or_default();
    let neither = !head.starts_with(b"\x7fELF") && !head.starts_with(b"#!");
    const ENOEXEC: i32 = 8;
    if neither && direct.end == End::ExecError(ENOEXEC) {
        let mut sh = std::process::Command::new("/bin/sh");
        sh.arg(path).args(args);
        clear_hugeload_env(&mut sh);
        direct = run_limited(sh, Stdin::Null, FILE_LIMIT);
    }
    let hl = run_limited(hl(&[] as &[&str], path, &args), Stdin::Null, FILE_LIMIT);
    let verdict = judge(path, &direct, &hl, neither).and_then(|v| {
        let refused = match v {
            Verdict::Refused(code) => Some(code),
            Verdict::RanLikeKernel | Verdict::BothHung => None,
        };
        if let Some(code) = refused {
            let problems = check_refusal_maps_nothing(path, &args, code, scratch);
            if !problems.is_empty() {
                return Err(format!(
                    "refused, but mapped something:\n      {}",
                    problems.join("\n      ")
                ));
            }
        }
        Ok(v)
    });
    match verdict {
        Ok(Verdict::Refused(126)) => tally.refused_126 += 1,
        Ok(Verdict::Refused(_)) => tally.refused_127 += 1,
        Ok(Verdict::RanLikeKernel) => tally.ran_like_kernel += 1,
        Ok(Verdict::BothHung) => tally.both_hung += 1,
        Err(_) => tally.violations += 1,
    }
    Tried {
        path: path.to_path_buf(),
        direct,
        hl,
        verdict,
    }
}

/// Notes the tally (and with `HUGELOAD_TEST_DUMP`, every file's line);
/// fails naming every file that broke the rules.
pub fn finish(what: &str, tally: &Tally, failures: &[String], lines: &[String]) {
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
