//! The program's view of its process is the one a direct execve gives, in
//! launcher, PT_INTERP and binfmt_misc mode.

use crate::common::*;
use crate::harness::*;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The hostile_wrap settings every view is compared under.
const VIEW_SETTINGS: [&[&str]; 3] = [
    &[],
    &["block-usr1", "ignore-usr2", "nnp"],
    &["stack=4194304", "data=1073741824", "as=8589934592"],
];
/// The programs whose views are compared (fixtures).
const VIEW_PROGRAMS: [&str; 3] = ["view-pie", "view-static", "view-musl-static"];
/// Their arguments: the full view, and arguments that look like options.
const VIEW_ARGS: [&str; 5] = ["view", "a b", "", "--", "-v"];
/// The option sets of launcher mode.
const VIEW_OPTIONS: [&[&str]; 3] = [&[], &["-b", "thp", "-s", "aggressive"], &["-b", "off"]];

/// A copy of `prog` (in `dir`, under the same name) whose PT_INTERP names
/// `interp`.
fn with_interp(prog: &Path, dir: &Path, interp: &Path) -> PathBuf {
    copy_with_interp(prog, &dir.join(prog.file_name().unwrap()), interp)
        .unwrap_or_else(|s| panic!("{}", s.0))
}

/// A copy of `prog` whose PT_INTERP names hugeload (PT_INTERP mode).
pub fn pt_interp_copy(prog: &Path, dir: &Path) -> PathBuf {
    with_interp(prog, &dir.join("via-hugeload"), hugeload())
}

/// The reference for PT_INTERP mode: a copy of `prog` patched by the same
/// patchelf to a path of the same length as hugeload's, a symlink to the
/// real ld.so, so that both copies have the same program headers.
fn same_layout_copy(prog: &Path, dir: &Path) -> PathBuf {
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
    std::os::unix::fs::symlink(GLIBC_INTERP, &link).unwrap();
    assert_eq!(link.as_os_str().len(), want);
    with_interp(prog, &dir.join("via-ldso"), &link)
}

/// Compares two views (view.c's `view` mode): every consistency verdict
/// holds in both, and the lines are the same (except `identity exe` when
/// `ignore_exe`).
pub fn compare_views(d: &Run, h: &Run, ignore_exe: bool) -> Result<(), String> {
    let keep = |o: &Run| -> Vec<String> {
        o.stdout_str()
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
            h.stderr_str()
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
pub fn program_view_is_the_kernels() {
    let pie = or_skip!(fixture("view-pie"));
    or_skip!(need_tool("patchelf"));
    let _pool = pool_shared();
    let scratch = scratch_dir("hostile-view");
    let patched = pt_interp_copy(&pie, &scratch);
    let reference = same_layout_copy(&pie, &scratch);
    let mut failures = Vec::new();
    let mut compared = 0;
    let args = VIEW_ARGS;
    for s in VIEW_SETTINGS {
        for name in VIEW_PROGRAMS {
            let prog = or_skip!(fixture(name));
            let d = run_limited(direct(s, &prog, &args).unwrap(), Stdin::Null, TIMEOUT);
            for opts in VIEW_OPTIONS {
                let h = run_limited(via(s, opts, &prog, &args).unwrap(), Stdin::Null, TIMEOUT);
                compared += 1;
                if let Err(e) = compare_views(&d, &h, false) {
                    failures.push(e);
                }
            }
        }
        // PT_INTERP mode: the copy patched to hugeload against the copy
        // patched (to the same length) to ld.so, both run directly.
        let d = run_limited(direct(s, &reference, &args).unwrap(), Stdin::Null, TIMEOUT);
        let h = run_limited(direct(s, &patched, &args).unwrap(), Stdin::Null, TIMEOUT);
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

/// What the script left for one run, as a [`Run`] (a status above 128 is
/// sh's report of a signal).
fn ns_outcome(out: &Path, r: &NsRun) -> Run {
    let read = |ext: &str| {
        fs::read(out.join(format!("{}.{ext}", r.tag)))
            .unwrap_or_else(|e| panic!("{}: no .{ext} ({e})", r.what))
    };
    let rc: i32 = String::from_utf8_lossy(&read("rc")).trim().parse().unwrap();
    Run {
        what: r.what.clone(),
        end: if rc > 128 {
            End::Signal(rc - 128)
        } else {
            End::Exit(rc)
        },
        core_dumped: false,
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
pub fn program_view_is_the_kernels_under_binfmt_misc() {
    let unshare = or_skip!(need_tool("unshare"));
    let mut progs = Vec::new();
    for name in VIEW_PROGRAMS {
        progs.push((name, or_skip!(fixture(name))));
    }
    let _pool = pool_shared();
    let scratch = scratch_dir("hostile-view-binfmt");
    let out = scratch.join("out");
    fs::create_dir_all(&out).unwrap();
    let ns = |args: &[&OsStr]| {
        let mut c = command(&unshare);
        c.args(["--user", "--map-root-user", "--mount"])
            .args(args)
            .current_dir(&scratch);
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
    if !r.success() {
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
            r.success(),
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

    let args = VIEW_ARGS;
    let wrap = fixture("hostile_wrap");
    let mut pairs = Vec::new();
    let mut runs = Vec::new();
    for (i, s) in VIEW_SETTINGS.iter().enumerate() {
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
        Stdin::Null,
        TIMEOUT * 2,
    );
    match o.end {
        End::Exit(0) => {}
        End::Exit(90 | 91) => {
            skip(&format!(
                "binfmt_misc in a user namespace: {}",
                o.stdout_str().trim()
            ));
            return;
        }
        _ => panic!("`{}`: {}", o.what, o.short()),
    }

    let mut failures = Vec::new();
    for &(p, m) in &pairs {
        let (d, h) = (ns_outcome(&out, &runs[p]), ns_outcome(&out, &runs[m]));
        if d.stderr_str().lines().any(|l| l.starts_with("hugeload:")) {
            failures.push(format!(
                "`{}`: the unmarked copy went through hugeload:\n{}",
                d.what,
                d.stderr_str()
            ));
            continue;
        }
        if !h
            .stderr_str()
            .lines()
            .any(|l| l.starts_with("hugeload: load "))
        {
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
