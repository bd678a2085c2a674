//! Promises: no mapping is ever writable and executable, PIE bases are
//! randomized.

use crate::common::*;
use crate::harness::*;
use crate::strace::parse_trace;
use crate::views::pt_interp_copy;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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
pub fn no_mapping_is_ever_writable_and_executable() {
    or_skip!(need_tool("strace"));
    let prog = or_skip!(fixture("view-64"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    // `-s aggressive` takes the default backend, which primes what it
    // runs: a copy of node (see `real_copy`).
    let node = real_copy("node");
    let scratch = scratch_dir("hostile-wx");
    let sets: [&[&str]; 3] = [
        &["-v", "-b", "thp"],
        &["-v", "-b", "hugetlb"],
        &["-v", "-s", "aggressive"],
    ];
    let mut programs: Vec<(PathBuf, Vec<&str>, bool)> = vec![(prog.clone(), vec!["sum"], true)];
    match &node {
        Ok(n) => programs.push((n.clone(), vec!["-e", "process.exit(0)"], false)),
        Err(_) => skip("node is not installed: traced the fixture only"),
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
            clear_hugeload_env(&mut cmd);
            let o = run_limited(cmd, Stdin::Null, TIMEOUT);
            assert_eq!(o.end, End::Exit(0), "`{}`: {}", o.what, o.short());
            let report = parse_report(&o.stderr_str());
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
                o.stderr_str()
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
pub fn pie_bases_are_randomized() {
    if !randomized() {
        skip("ASLR is off (kernel.randomize_va_space = 0)");
        return;
    }
    let prog = or_skip!(fixture("view-pie"));
    or_skip!(need_tool("patchelf"));
    let _pool = pool_shared();
    let scratch = scratch_dir("hostile-aslr");
    let patched = pt_interp_copy(&prog, &scratch);
    let base = |cmd: Command| -> String {
        let o = run_limited(cmd, Stdin::Null, TIMEOUT);
        assert_eq!(o.end, End::Exit(0), "{}", o.short());
        let out = o.stdout_str();
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
