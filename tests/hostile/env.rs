//! Hostile environments: the program always runs as it does directly, and
//! `-v` says what was given up.

use crate::common::*;
use crate::harness::*;
use crate::views::compare_views;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;
const SIGCHLD: i32 = 17;
const SIGSTOP: i32 = 19;
const SIGURG: i32 = 23;
const SIGWINCH: i32 = 28;

/// THP disabled for the process: `-b thp` gives up every range and says
/// why; `-b auto` still gets hugetlb pages; the program's view is the
/// direct run's.
#[test]
pub fn thp_disabled_for_the_process() {
    let prog = or_skip!(fixture("view-16"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let s = &["thp-off"];
    const STEPS: &[Step] = &[
        Step {
            opts: &["-v", "-b", "thp"],
            expect: Expect::GivesUp("thp: disabled for this process (PR_SET_THP_DISABLE)"),
        },
        Step {
            opts: &["-v"],
            expect: Expect::AllOn("hugetlb"),
        },
    ];
    for step in STEPS {
        or_skip!(check_step(s, &prog, &["sum"], step));
    }
    let (d, h) = or_skip!(run_views(s, &[], &prog, &["view"]));
    assert!(
        d.stdout_str().contains("THP_enabled:\t0"),
        "{}",
        d.stdout_str()
    );
    if let Err(e) = compare_views(&d, &h, false) {
        panic!("{e}");
    }
}

/// An empty hugetlb pool with `-b hugetlb`: the program runs on 4 KiB
/// pages and `-v` names the pool; `-b auto` turns to THP.
#[test]
pub fn empty_hugetlb_pool() {
    let prog = or_skip!(fixture("view-16"));
    let _pool = pool_exclusive();
    let size = or_skip!(PoolSize::set(0));
    const STEPS: &[Step] = &[
        Step {
            opts: &["-v", "-b", "hugetlb"],
            expect: Expect::GivesUp(
                "hugetlb: mmap: Cannot allocate memory (0 free pages in the pool)",
            ),
        },
        // auto: the page cache needs no pool.
        Step {
            opts: &["-v"],
            expect: Expect::AllOn("pagecache"),
        },
        Step {
            opts: &["-v", "-b", "thp"],
            expect: Expect::AllOn("thp"),
        },
    ];
    for step in STEPS {
        or_skip!(check_step(&[], &prog, &["sum"], step));
    }
    assert_eq!(hugetlb_free_pages(), 0);
    drop(size);
}

/// A pool with fewer free pages than a 64 MiB text needs: some ranges may
/// get hugetlb pages, the rest stays on 4 KiB pages (`-b hugetlb`) or goes
/// to THP (`-b auto`); never a hole: every page of the text is mapped
/// executable (smaps) and the program's checksum of its text is the direct
/// run's. The pool is whole again afterwards.
#[test]
pub fn hugetlb_pool_exhausted_part_way() {
    const PAGES: u64 = 20;
    let prog = or_skip!(fixture("view-64"));
    let _pool = pool_exclusive();
    let size = or_skip!(PoolSize::set(PAGES));
    let expected = run_limited(kernel_command(&prog, &["sum"]), Stdin::Null, TIMEOUT);
    let needed = ElfInfo::read(&prog).best_interior_count() as u64;
    assert!(needed > PAGES, "the text needs only {needed} pages");
    for (opts, rest) in [
        (&["-v", "-b", "hugetlb"], "4k"),
        (&["-v", "-b", "auto"], "thp"),
    ] {
        let i = inspect(hl(opts, &prog, &["hold"]), &prog, Ready::Line);
        let dump = i.dump();
        assert_eq!(i.run.exit_code(), Some(0), "{dump}");
        let sum = |s: &str| {
            s.lines()
                .filter(|l| l.starts_with("text_"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            sum(&i.run.stdout_str()),
            sum(&expected.stdout_str()),
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
        let o = run_limited(direct(&[&s], prog, &["sum"]).unwrap(), Stdin::Null, TIMEOUT);
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
pub fn rlimit_as_too_small_for_a_second_copy() {
    let prog = or_skip!(fixture("view-64"));
    let _wrap = or_skip!(fixture("hostile_wrap"));
    let _pool = pool_shared();
    let expected = run_limited(kernel_command(&prog, &["sum"]), Stdin::Null, TIMEOUT);
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
pub fn rlimit_data_too_small_for_a_second_copy() {
    let prog = or_skip!(fixture("view-64"));
    let _wrap = or_skip!(fixture("hostile_wrap"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let expected = run_limited(kernel_command(&prog, &["sum"]), Stdin::Null, TIMEOUT);
    let min = smallest_limit("data", &prog, &expected.stdout, 0, 1 << 30);
    let limit = min + (4 << 20);
    let setting = format!("data={limit}");
    const STEPS: &[Step] = &[
        Step {
            opts: &["-v", "-b", "thp"],
            expect: Expect::GivesUp("thp: mmap: Cannot allocate memory"),
        },
        Step {
            opts: &["-v", "-b", "hugetlb"],
            expect: Expect::Whole,
        },
    ];
    let mut r = Report::default();
    for step in STEPS {
        r = check_step(&[&setting], &prog, &["sum"], step).unwrap();
    }
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
pub fn small_rlimit_stack() {
    const RUNS: usize = 30;
    let _pool = pool_shared();
    let s = &["stack=16384"];
    let mut ran = Vec::new();
    let mut failures = Vec::new();
    for name in ["view-pie", "view-16", "view-static", "view-musl-static"] {
        let prog = or_skip!(fixture(name));
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
            .map(|_| {
                run_limited(
                    small(direct(s, &prog, &["sum"]).unwrap()),
                    Stdin::Null,
                    TIMEOUT,
                )
            })
            .all(|o| o.end == End::Exit(0) && o.stdout == d.stdout);
        if !direct_ok || d.end != End::Exit(0) {
            note(&format!(
                "{name} does not always run directly with a 16 KiB stack: {}",
                d.short()
            ));
            continue;
        }
        for opts in [&[][..], &["-b", "thp"], &["-b", "off"]] {
            let bad: Vec<Run> = (0..RUNS)
                .map(|_| {
                    run_limited(
                        small(via(s, opts, &prog, &["sum"]).unwrap()),
                        Stdin::Null,
                        TIMEOUT,
                    )
                })
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
pub fn mdwe_refuses_exec_gain() {
    hostile_exec_policy(&MDWE);
}

/// A seccomp filter like systemd's MemoryDenyWriteExecute=: THP's mprotect
/// fails and the range falls back to the file mapping; hugetlb, which maps
/// a filled file read+exec without mprotect, still works.
#[test]
pub fn seccomp_denies_write_execute() {
    hostile_exec_policy(&SECCOMP_WX);
}

/// A write-xor-execute policy.
struct ExecPolicy {
    /// The `hostile_wrap` setting that imposes it.
    setting: &'static str,
    /// Why THP gives up under it (`-v`).
    thp_reason: &'static str,
    /// The line of the program's view that shows it in force.
    view_line: &'static str,
}

const MDWE: ExecPolicy = ExecPolicy {
    setting: "mdwe",
    thp_reason: "thp: needs an mprotect that adds exec, which MDWE (PR_SET_MDWE) refuses",
    view_line: "prctl mdwe=1",
};

const SECCOMP_WX: ExecPolicy = ExecPolicy {
    setting: "seccomp-wx",
    thp_reason: "thp: mprotect(PROT_READ|PROT_EXEC) refused (MDWE or an LSM): Operation not \
                 permitted",
    view_line: "status Seccomp:\t2",
};

/// Under a write-xor-execute policy: THP gives up with its reason, hugetlb
/// works (smaps agrees), the view is the direct run's.
fn hostile_exec_policy(policy: &ExecPolicy) {
    let ExecPolicy {
        setting,
        thp_reason,
        view_line,
    } = *policy;
    let prog = or_skip!(fixture("view-16"));
    let viewer = or_skip!(fixture("view-pie"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let s = &[setting];
    // The policy is in force for the program.
    let probe = or_skip!(run_wrapped(direct(s, &prog, &["try-wx"]).unwrap(), TIMEOUT));
    let denied = probe.stdout_str();
    assert!(
        denied.contains("mmap(W|X): E") && denied.contains("mprotect(+X): E"),
        "{setting}: W|X not denied: {denied}"
    );
    let thp = Step {
        opts: &["-v", "-b", "thp"],
        expect: Expect::GivesUp(thp_reason),
    };
    or_skip!(check_step(s, &prog, &["sum"], &thp));

    or_skip!(run_pair(s, &["-b", "hugetlb"], &prog, &["sum"]));
    let cmd = via(s, &["-v", "-b", "hugetlb"], &prog, &["hold"]).unwrap();
    let i = inspect(cmd, &prog, Ready::Line);
    let dump = i.dump();
    assert_eq!(i.run.exit_code(), Some(0), "{dump}");
    let used = check_huge(&i, "conservative");
    assert!(used > 0, "hugetlb under {setting}: nothing huge\n{dump}");
    assert_eq!(i.text_hugetlb_bytes, used * HUGE, "{dump}");

    let (d, h) = or_skip!(run_views(s, &["-v"], &viewer, &["view"]));
    assert!(
        d.stdout_str().contains(view_line),
        "{view_line:?} not in\n{}",
        d.stdout_str()
    );
    // /proc/self/exe: hugeload cannot swap its own image for an executable
    // copy under a write-xor-execute policy; it must then say so.
    let exe_named = h.stderr_str().contains("/proc/self/exe names hugeload");
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
pub fn signals_during_the_load() {
    let prog = or_skip!(fixture("view-16"));
    let viewer = or_skip!(fixture("view-pie"));
    let _pool = pool_shared();
    let masks = &["block-usr1", "ignore-usr2"];
    let (d, h) = or_skip!(run_views(masks, &[], &viewer, &["view"]));
    let mask = |key: &str| -> u64 {
        d.stdout_str()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("status {key}:\t"))
                    .map(str::to_string)
            })
            .and_then(|m| u64::from_str_radix(&m, 16).ok())
            .unwrap_or_else(|| panic!("no {key} in\n{}", d.stdout_str()))
    };
    assert_ne!(
        mask("SigBlk") & (1 << (SIGUSR1 - 1)),
        0,
        "SIGUSR1 not blocked"
    );
    assert_ne!(
        mask("SigIgn") & (1 << (SIGUSR2 - 1)),
        0,
        "SIGUSR2 not ignored"
    );
    if let Err(e) = compare_views(&d, &h, false) {
        panic!("{e}");
    }

    let s = &["block-usr1"];
    let expected = or_skip!(run_wrapped(direct(s, &prog, &["storm"]).unwrap(), TIMEOUT));
    assert_eq!(expected.end, End::Exit(0), "{}", expected.short());
    let options: [&[&str]; 4] = [&[], &["-b", "thp"], &["-b", "hugetlb"], &["-b", "off"]];
    let mut sent = 0u64;
    for round in 0..24 {
        let cmd = via(s, options[round % 4], &prog, &["storm"]).unwrap();
        let mut child = Running::spawn(cmd, Stdin::Null).expect("spawn");
        let what = child.what.clone();
        let pid = child.pid() as i32;
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
                        usr1_blocked = usr1_blocked || blocks_usr1(pid as u32);
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
        let ended = loop {
            {
                let mut gone = lock(&reaped);
                if child.try_wait().is_some() {
                    *gone = true;
                    break true;
                }
                if Instant::now() >= deadline {
                    *gone = true;
                    break false;
                }
            }
            thread::sleep(Duration::from_millis(1));
        };
        sent += stormer.join().unwrap();
        if !ended {
            child.fail(&format!(
                "under a signal storm: still running after {TIMEOUT:?}"
            ));
        }
        let r = child.wait(TIMEOUT);
        assert_eq!(
            (r.end, r.stdout_str()),
            (End::Exit(0), expected.stdout_str()),
            "`{what}` under a signal storm (round {round})\nstderr:\n{}",
            r.stderr_str()
        );
        assert!(r.stderr.is_empty(), "{}", r.stderr_str());
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

/// 50 launches of a program with 16 MiB of text at once, all held alive
/// together, with a hugetlb pool of 32 pages: all run correctly, whichever
/// backend each got, and the pool's free pages end where they started.
#[test]
pub fn fifty_concurrent_launches_share_a_small_pool() {
    const N: usize = 50;
    const PAGES: u64 = 32;
    let prog = or_skip!(fixture("view-16"));
    let _pool = pool_exclusive();
    let size = or_skip!(PoolSize::set(PAGES));
    let free_before = hugetlb_free_pages();
    let expected = run_limited(kernel_command(&prog, &["hold"]), Stdin::Null, TIMEOUT);
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("base="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Each held alive (`view hold`) until its stdin closes; all killed if
    // the test fails first.
    let mut held: Vec<Running> = (0..N)
        .map(|i| {
            let opts: &[&str] = if i % 5 == 4 {
                &["-v", "-b", "hugetlb"]
            } else {
                &["-v"]
            };
            Running::start(hl(opts, &prog, &["hold"]))
        })
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    for h in &mut held {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match h.next_line(left) {
                Ok(l) if l == "ready" => break,
                Ok(_) => {}
                Err(_) => panic!("a concurrent launch was not ready in time: `{}`", h.what),
            }
        }
    }
    let free_during = hugetlb_free_pages();
    let mut reports = Vec::new();
    for h in &mut held {
        h.close_stdin();
    }
    for h in held {
        let r = h.wait(TIMEOUT);
        let (what, err) = (&r.what, r.stderr_str());
        assert_eq!(r.end, End::Exit(0), "`{what}`\n{err}");
        assert_eq!(
            strip(&r.stdout_str()),
            strip(&expected.stdout_str()),
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
