//! hugeload's commands behave like the tools people already use:
//! `--binfmt-rule` and `--stat` fail loudly when their output cannot be
//! written; `--stat` takes process IDs as `kill` does, names the command,
//! says what a kernel thread is and which file it could not read;
//! `--mark` refuses, with its own reason, what hugeload would not load
//! itself, and takes `--`.
//!
//! `HUGELOAD_STRICT=1` turns skips (no root to switch users, no user
//! namespace for binfmt_misc, a tool missing) into failures.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TRY_HELP: &str = "Try 'hugeload --help' for more information.";

/// `hugeload ARGS... > TARGET`, through `sh`.
fn hl_redirected(args: &[&str], target: &str) -> Run {
    let mut c = command("sh");
    c.arg("-c")
        .arg(format!("exec \"$0\" \"$@\" > {target}"))
        .arg(hugeload())
        .args(args);
    run(c)
}

/// A private directory under /tmp that user nobody can search, with a copy
/// of hugeload in it; removed when dropped.
struct NobodyDir {
    dir: PathBuf,
}

impl NobodyDir {
    fn new(tag: &str) -> Result<NobodyDir, Skip> {
        need_root("switch to the nobody user")?;
        need_tool("setpriv")?;
        let dir = PathBuf::from(format!("/tmp/hl-commands-{tag}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755);
        let hl = dir.join("hugeload");
        fs::copy(hugeload(), &hl).unwrap();
        set_mode(&hl, 0o755);
        Ok(NobodyDir { dir })
    }
    fn hugeload(&self) -> PathBuf {
        self.dir.join("hugeload")
    }
    /// `setpriv` to nobody, running this directory's hugeload with `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = command("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(self.hugeload())
            .args(args)
            .current_dir(&self.dir);
        c
    }
}

impl Drop for NobodyDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Asserts that `r` ended with `code` and wrote exactly `lines` on stderr
/// and nothing on stdout.
fn assert_said(r: &Run, what: &str, code: i32, lines: &[&str]) {
    let stderr = r.stderr_str();
    assert_eq!(r.code(what), code, "`{what}`\nstderr:\n{stderr}");
    assert!(r.stdout.is_empty(), "`{what}`: stdout {:?}", r.stdout_str());
    let got: Vec<&str> = stderr.lines().collect();
    assert_eq!(got, lines, "`{what}`: stderr");
    assert!(
        stderr.ends_with('\n'),
        "`{what}`: stderr ends without a newline"
    );
}

/// A `sleep 30` that has mapped libc (so its smaps is complete).
fn sleeping() -> Running {
    let mut c = command("sleep");
    c.arg("30");
    let r = Running::start(c);
    let pid = r.pid();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("libc")) {
        assert!(
            std::time::Instant::now() < deadline,
            "sleep never mapped libc"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    r
}

// ---------------------------------------------------------------------------
// 1. Standard output that cannot be written

/// `--binfmt-rule > /dev/full`: one line `hugeload: write error: No space
/// left on device`, exit 1 (as GNU tools), not a silent success.
#[test]
fn binfmt_rule_to_a_full_device_fails() {
    let r = hl_redirected(&["--binfmt-rule"], "/dev/full");
    assert_said(
        &r,
        "hugeload --binfmt-rule > /dev/full",
        1,
        &["hugeload: write error: No space left on device"],
    );
}

/// `--stat PID > /dev/full`, text and JSON: the same.
#[test]
fn stat_to_a_full_device_fails() {
    let me = std::process::id().to_string();
    for args in [&["--stat", &me][..], &["--stat", "--json", &me]] {
        let r = hl_redirected(args, "/dev/full");
        assert_said(
            &r,
            &format!("hugeload {} > /dev/full", args.join(" ")),
            1,
            &["hugeload: write error: No space left on device"],
        );
    }
}

/// `--binfmt-rule > register` registers the rule (one write, as the kernel
/// wants it); a second time, binfmt_misc refuses with EEXIST, and hugeload
/// says that a rule named hugeload is already registered, exit 1. In a
/// user namespace with its own binfmt_misc (Linux 6.7+).
#[test]
fn binfmt_rule_registered_twice_says_so() {
    let unshare = or_skip!(need_tool("unshare"));
    let dir = scratch_dir("register");
    let mount = dir.join("bf");
    fs::create_dir_all(&mount).unwrap();
    let script = format!(
        "set -u\n\
         mount -t binfmt_misc binfmt_misc {m} 2>&1 || exit 90\n\
         {h} --binfmt-rule > {m}/register 2>&1; echo \"first=$?\"\n\
         cat {m}/hugeload\n\
         {h} --binfmt-rule > {m}/register 2>{d}/second.err; echo \"second=$?\"\n",
        m = sh_quote(&mount.to_string_lossy()),
        h = sh_quote(&hugeload().to_string_lossy()),
        d = sh_quote(&dir.to_string_lossy()),
    );
    let mut c = command(&unshare);
    c.args(["--user", "--map-root-user", "--mount", "sh", "-c", &script]);
    let r = run(c);
    if r.exit_code() == Some(90) {
        skip(&format!(
            "cannot mount binfmt_misc in a user namespace (Linux {}; needs 6.7+): {}",
            kernel_release(),
            r.stdout_str().trim()
        ));
        return;
    }
    let out = r.stdout_str();
    assert!(
        r.success() && out.contains("first=0\n") && out.contains("flags: POF"),
        "first registration: {}",
        r.short()
    );
    assert!(out.contains("second=1\n"), "second registration: {out}");
    let err = fs::read_to_string(dir.join("second.err")).unwrap();
    let register = format!("{}/register", mount.display());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("hugeload: {register}: File exists (")),
        "second registration: {err}"
    );
    assert!(
        err.contains("a rule named hugeload is already registered"),
        "{err}"
    );
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

// ---------------------------------------------------------------------------
// 2. --stat

/// Anything but a process ID (a word, a negative number, an unknown
/// option, nothing at all) is a usage error: one line naming it, the
/// `Try` line, exit 125, nothing printed for the good IDs around it.
#[test]
fn stat_rejects_what_is_not_a_process_id() {
    let me = std::process::id().to_string();
    for (args, line) in [
        (&["x"][..], "hugeload: --stat: not a process ID: 'x'"),
        (&[&me, "-1"], "hugeload: --stat: not a process ID: '-1'"),
        (&["--", "-1"], "hugeload: --stat: not a process ID: '-1'"),
        (&[&me, ""], "hugeload: --stat: not a process ID: ''"),
        (&["12a"], "hugeload: --stat: not a process ID: '12a'"),
        (
            &["--json", "it's"],
            "hugeload: --stat: not a process ID: 'it'\\''s'",
        ),
        (&["--jsn", &me], "hugeload: --stat: unknown option: '--jsn'"),
        (&[], "hugeload: --stat: needs at least one process ID"),
        (
            &["--json"],
            "hugeload: --stat: needs at least one process ID",
        ),
    ] {
        let mut c = hl_command(&["--stat"]);
        c.args(args);
        let what = describe(&c);
        assert_said(&run(c), &what, 125, &[line, TRY_HELP]);
    }
}

/// A kernel thread (no user address space) gets one line saying so, not a
/// table of zeros; JSON marks it `kernel_thread`.
#[test]
fn stat_of_a_kernel_thread() {
    // kthreadd is PID 2 outside a PID namespace; any kernel thread will do.
    let kthread = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                let after = &s[s.rfind(')').unwrap() + 1..];
                let flags: u64 = after.split_whitespace().nth(6).unwrap().parse().unwrap();
                flags & 0x0020_0000 != 0
            })
        });
    let Some(pid) = kthread else {
        skip("no kernel thread visible in /proc (a PID namespace?)");
        return;
    };
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    let comm = comm.trim_end();
    let ps = pid.to_string();
    let r = run(hl_command(&["--stat", &ps]));
    assert_eq!(r.code("--stat kthread"), 0, "{}", r.stderr_str());
    assert_eq!(
        r.stdout_str(),
        format!("pid {pid} [{comm}]: a kernel thread, no code mapped\n")
    );
    let r = run(hl_command(&["--stat", &ps, "--json"]));
    assert_eq!(r.code("--stat kthread --json"), 0, "{}", r.stderr_str());
    let out = r.stdout_str();
    assert!(
        out.starts_with(&format!(
            "{{\"pid\":{pid},\"command\":\"{comm}\",\"kernel_thread\":true,"
        )) && out.contains("\"mappings\":[]")
            && out.ends_with("}\n"),
        "{out}"
    );
}

/// A zombie (exited, not yet reaped) gets one line saying so.
#[test]
fn stat_of_a_zombie() {
    // `sleep 0` exits at once; its parent became `sleep 30`, which never
    // reaps it.
    let mut c = command("sh");
    c.args(["-c", "sleep 0 & exec sleep 30"]);
    let parent = Running::start(c);
    let ppid = parent.pid().to_string();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let zombie = loop {
        // A process whose state is Z and whose parent is `sleep 30`.
        let zombie = fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut w = stat[stat.rfind(')')? + 1..].split_whitespace();
            (w.next() == Some("Z") && w.next() == Some(&*ppid)).then_some(pid.to_string())
        });
        if let Some(z) = zombie {
            break z;
        }
        assert!(std::time::Instant::now() < deadline, "no zombie");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let text = run(hl_command(&["--stat", &zombie]));
    let json = run(hl_command(&["--stat", "--json", &zombie]));
    drop(parent);
    assert_eq!(text.code("--stat zombie"), 0, "{}", text.stderr_str());
    assert_eq!(
        text.stdout_str(),
        format!("pid {zombie} sleep: a zombie (it has exited), no code mapped\n")
    );
    assert_eq!(
        json.code("--stat --json zombie"),
        0,
        "{}",
        json.stderr_str()
    );
    assert!(
        json.stdout_str().starts_with(&format!(
            "{{\"pid\":{zombie},\"command\":\"sleep\",\"kernel_thread\":false,\"zombie\":true,\"mappings\":[],"
        )),
        "{}",
        json.stdout_str()
    );
}

/// The header names the command (`pid N sleep`, from /proc/PID/comm);
/// `--json` works before or after the PIDs, gives `command`, and `null`
/// (never `"-"`) for a mapping without a huge-page backend.
#[test]
fn stat_names_the_command_and_json_uses_null() {
    let python = or_skip!(need_tool("python3"));
    let sleep = sleeping();
    let pid = sleep.pid().to_string();
    let text = run(hl_command(&["--stat", &pid]));
    let before = run(hl_command(&["--stat", "--json", &pid]));
    let after = run(hl_command(&["--stat", &pid, "--json"]));
    let dashdash = run(hl_command(&["--stat", "--json", "--", &pid]));
    drop(sleep);
    assert_eq!(text.code("--stat"), 0, "{}", text.stderr_str());
    assert_eq!(
        text.stdout_str().lines().next(),
        Some(format!("pid {pid} sleep").as_str()),
        "{}",
        text.stdout_str()
    );
    for (r, what) in [
        (&before, "--stat --json PID"),
        (&after, "--stat PID --json"),
        (&dashdash, "--stat --json -- PID"),
    ] {
        assert_eq!(r.code(what), 0, "{}", r.stderr_str());
        assert_eq!(r.stdout, before.stdout, "{what} vs --stat --json PID");
    }
    const CHECK: &str = r#"
import json, sys
o = json.loads(sys.stdin.read())
assert o["command"] == "sleep", o["command"]
assert o["kernel_thread"] is False and o["zombie"] is False
backends = [m["backend"] for m in o["mappings"]]
assert backends and None in backends, backends
assert "-" not in backends, backends
for m in o["mappings"]:
    assert m["name"] is None or m["name"], m
print("ok")
"#;
    let mut c = Command::new(python);
    c.args(["-c", CHECK]);
    let r = run_input(c, Some(&before.stdout));
    assert!(
        r.success(),
        "--stat --json: {}\n{}",
        before.stdout_str(),
        r.stderr_str()
    );
}

/// An smaps that may not be read (another user's process, as nobody)
/// names the file: `hugeload: /proc/PID/smaps: Permission denied`, exit 1.
#[test]
fn stat_names_the_smaps_it_cannot_read() {
    let nobody = or_skip!(NobodyDir::new("stat"));
    let sleep = sleeping();
    let pid = sleep.pid().to_string();
    let c = nobody.command(&["--stat", &pid]);
    let what = describe(&c);
    let r = run(c);
    drop(sleep);
    assert_said(
        &r,
        &what,
        1,
        &[&format!("hugeload: /proc/{pid}/smaps: Permission denied")],
    );
}

// ---------------------------------------------------------------------------
// 3. --mark

/// Runs `hugeload --mark FILE` (in FILE's directory, by its name) and
/// asserts the one line `hugeload: NAME: REASON` (exit 1), and that the
/// file is unchanged.
fn assert_refused(runner: Command, file: &Path, reason: &str) {
    let before = fs::read(file).unwrap();
    let what = describe(&runner);
    let r = run(runner);
    let name = file.file_name().unwrap().to_string_lossy();
    assert_said(&r, &what, 1, &[&format!("hugeload: {name}: {reason}")]);
    assert!(
        fs::read(file).unwrap() == before,
        "`{what}` changed the file"
    );
}

fn mark_command(file: &Path) -> Command {
    let mut c = hl_command(&["--mark"]);
    c.arg(file.file_name().unwrap())
        .current_dir(file.parent().unwrap());
    c
}

/// Writes `bytes` to `dir/name`, mode 755.
fn write_exe(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    set_mode(&p, 0o755);
    p
}

/// `bytes` (a 64-bit ELF) with `change(p_type, p_flags) -> p_flags` applied
/// to each program header.
fn with_flags(bytes: &[u8], change: impl Fn(u32, u32) -> u32) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let phoff = le64(&b, 32) as usize;
    for i in 0..le16(&b, 56) as usize {
        let at = phoff + i * 56;
        let flags = change(le32(&b, at), le32(&b, at + 4));
        b[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
    }
    b
}

/// A `#!` script gets its own reason.
#[test]
fn mark_refuses_a_script() {
    let dir = scratch_dir("mark-script");
    let script = write_exe(&dir, "script", b"#!/bin/sh\necho hi\n");
    assert_refused(
        mark_command(&script),
        &script,
        "not marked: a #! script; mark its interpreter, or run it with hugeload",
    );
}

/// What hugeload would not load itself (the kernel would hand the marked
/// file to it, and it cannot hand it back): an executable stack, a W+X
/// segment, a 32-bit ELF, an invalid layout. `--unmark` still clears a
/// marker set on such a file by other means.
#[test]
fn mark_refuses_what_hugeload_would_not_load() {
    let prog = or_skip!(fixture("probe-glibc-pie"));
    let original = fs::read(&prog).unwrap();
    let dir = scratch_dir("mark-unloadable");
    const PT_GNU_STACK: u32 = 0x6474_e551;
    let execstack = write_exe(
        &dir,
        "execstack",
        &with_flags(
            &original,
            |t, f| if t == PT_GNU_STACK { f | PF_X } else { f },
        ),
    );
    let wx = write_exe(
        &dir,
        "wx",
        &with_flags(&original, |t, f| {
            if t == PT_LOAD && f & PF_X != 0 {
                f | PF_W
            } else {
                f
            }
        }),
    );
    // The first PT_LOAD at a higher address than the second: unsorted.
    let mut unsorted = original.clone();
    let phoff = le64(&unsorted, 32) as usize;
    let loads: Vec<usize> = (0..le16(&unsorted, 56) as usize)
        .map(|i| phoff + i * 56)
        .filter(|&at| le32(&unsorted, at) == PT_LOAD)
        .collect();
    let (a, b) = (loads[0], loads[1]);
    let (pa, pb) = (unsorted[a..a + 56].to_vec(), unsorted[b..b + 56].to_vec());
    unsorted[a..a + 56].copy_from_slice(&pb);
    unsorted[b..b + 56].copy_from_slice(&pa);
    let unsorted = write_exe(&dir, "unsorted", &unsorted);
    let elf32 = write_exe(
        &dir,
        "elf32",
        &fs::read(or_skip!(fixture("elf32"))).unwrap(),
    );

    let tail = "; hugeload would not load it (the binfmt_misc rule hands marked files to hugeload)";
    for (file, reason) in [
        (
            &execstack,
            "it asks for an executable stack (PT_GNU_STACK with PF_X)",
        ),
        (&wx, "a segment is writable and executable"),
        (&elf32, "a 32-bit ELF"),
        (&unsorted, "loadable segments are not sorted"),
    ] {
        assert_refused(
            mark_command(file),
            file,
            &format!("not marked: {reason}{tail}"),
        );
    }

    // Marked by other means: --unmark clears it all the same.
    let mut marked = fs::read(&wx).unwrap();
    marked[15] = b'H';
    fs::write(&wx, &marked).unwrap();
    let mut c = hl_command(&["--unmark"]);
    c.arg(&wx);
    let r = run(c);
    assert_eq!(r.code("--unmark wx"), 0, "{}", r.stderr_str());
    assert_eq!(fs::read(&wx).unwrap()[15], 0, "--unmark left the marker");
}

/// A copy of hugeload (another inode, the same bytes) is hugeload itself.
#[test]
fn mark_knows_a_copy_of_hugeload() {
    let dir = scratch_dir("mark-copy");
    let copy = write_exe(&dir, "not-hugeload", &fs::read(hugeload()).unwrap());
    assert_refused(
        mark_command(&copy),
        &copy,
        "not marked: this is hugeload itself (the binfmt_misc rule would loop)",
    );
}

/// `--` ends the options: `--mark -- -oddname` marks `-oddname`; without
/// it, `-oddname` is an unknown option (usage error, 125, file unchanged).
#[test]
fn mark_takes_dashdash() {
    let prog = or_skip!(fixture("probe-glibc-pie"));
    let original = fs::read(&prog).unwrap();
    let dir = scratch_dir("mark-dashdash");
    let odd = write_exe(&dir, "-oddname", &original);

    let mut c = hl_command(&["--mark", "-oddname"]);
    c.current_dir(&dir);
    let what = describe(&c);
    assert_said(
        &run(c),
        &what,
        125,
        &[
            "hugeload: --mark: unknown option: '-oddname' (put -- before a FILE that starts with -)",
            TRY_HELP,
        ],
    );
    assert!(
        fs::read(&odd).unwrap() == original,
        "`{what}` changed the file"
    );

    for (option, byte) in [("--mark", b'H'), ("--unmark", 0)] {
        let mut c = hl_command(&[option, "--", "-oddname"]);
        c.current_dir(&dir);
        let what = describe(&c);
        let r = run(c);
        assert_eq!(r.code(&what), 0, "`{what}`: {}", r.stderr_str());
        assert!(r.stderr.is_empty() && r.stdout.is_empty(), "{}", r.short());
        let now = fs::read(&odd).unwrap();
        let mut expect = original.clone();
        expect[15] = byte;
        assert!(now == expect, "`{what}`: byte 15 is {:#x}", now[15]);
    }

    let mut c = hl_command(&["--mark", "--"]);
    c.current_dir(&dir);
    let what = describe(&c);
    assert_said(
        &run(c),
        &what,
        125,
        &["hugeload: --mark: needs at least one FILE", TRY_HELP],
    );
}

/// A file the user may not write: what is missing, said.
#[test]
fn mark_says_it_needs_write_permission() {
    let nobody = or_skip!(NobodyDir::new("mark"));
    let prog = or_skip!(fixture("probe-glibc-pie"));
    let file = write_exe(&nobody.dir, "prog", &fs::read(&prog).unwrap());
    set_mode(&file, 0o555);
    assert_refused(
        nobody.command(&["--mark", "prog"]),
        &file,
        "not marked: no write permission (the marker is one byte in the file)",
    );
}
