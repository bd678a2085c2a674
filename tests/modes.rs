//! Integration tests of hugeload's other ways in and out: PT_INTERP mode,
//! `$ORIGIN`, binfmt_misc (per-user-namespace, Linux 6.7+), secure
//! execution, `--stat`, `--perf-map`, gdb and core dumps.
//!
//! Every test compares with a direct run of the same program, or reads
//! `/proc/PID/*` of the program while it runs; a real program run through
//! hugeload is also checked on huge pages in its smaps. Besides the
//! launcher's fixtures, `tests/fixtures/modes_probe.c` is built (glibc PIE
//! and non-PIE, musl, static, static-pie: the fixtures `modes-*` of
//! tests/common/fixtures.rs). A test that needs something the machine lacks
//! (root, a tool, a kernel feature) prints `SKIP <test>: <reason>`; with
//! `HUGELOAD_STRICT=1` that fails.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Arguments given to the probe fixtures (an empty one, one with a space,
/// ones that look like options).
const ARGS: &[&str] = &["a", "b c", "", "--", "-v"];
const PROBE_ENV: &str = "x y=z";
/// `mov (%rdi),%eax; ret; int3`: the first bytes of `hl_crash_fn` in
/// modes_probe.c, where it faults.
const CRASH_BYTES: [u8; 4] = [0x8b, 0x07, 0xc3, 0xcc];

// ---------------------------------------------------------------------------
// Small helpers

/// Removes the `HUGELOAD_*` variables ([`hugeload::options::ENV_VARS`]),
/// and `LD_LIBRARY_PATH` (cargo sets it to the toolchain's lib, which would
/// find rustc's libraries without `$ORIGIN`).
fn clean_env(cmd: &mut Command) -> &mut Command {
    clear_hugeload_env(cmd).env_remove("LD_LIBRARY_PATH")
}

/// `program` with [`clean_env`] (shadows `common::command` in this file).
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    clean_env(&mut cmd);
    cmd
}

/// Whether this process has capability `bit` in its effective set.
fn has_cap(bit: u32) -> bool {
    self_status("CapEff")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

const CAP_SYS_ADMIN: u32 = 21;

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The value of `key=` lines in a fixture's output.
fn value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn lines_without<'a>(out: &'a str, prefixes: &[&str]) -> Vec<&'a str> {
    out.lines()
        .filter(|l| !prefixes.iter().any(|p| l.starts_with(p)))
        .collect()
}

fn hugeload_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("hugeload:"))
        .collect()
}

/// modes_probe.c built as `kind`: pie, nopie, musl, static, static-pie
/// (the fixtures `modes-KIND`).
fn modes(kind: &str) -> Result<PathBuf, Skip> {
    fixture(&format!("modes-{kind}"))
}

// ---------------------------------------------------------------------------
// PT_INTERP copies

/// Copies `src` to `dst` with PT_INTERP naming hugeload (see
/// [`copy_with_interp`]).
fn patched_copy(src: &Path, dst: &Path) -> Result<PathBuf, Skip> {
    copy_with_interp(src, dst, hugeload())
}

/// `dir/plain/NAME` (a symbolic link to `program`) and `dir/patched/NAME`
/// (a PT_INTERP-patched copy): run each as `./NAME` from its directory, so
/// that argv[0] and AT_EXECFN are the same.
struct Pair {
    plain_dir: PathBuf,
    patched_dir: PathBuf,
    name: String,
    patched: PathBuf,
}

fn make_pair(tag: &str, program: &Path) -> Result<Pair, Skip> {
    let dir = scratch_dir(tag);
    let name = program.file_name().unwrap().to_string_lossy().into_owned();
    let plain_dir = dir.join("plain");
    let patched_dir = dir.join("patched");
    fs::create_dir_all(&plain_dir).unwrap();
    fs::create_dir_all(&patched_dir).unwrap();
    std::os::unix::fs::symlink(canonical(program), plain_dir.join(&name)).unwrap();
    let patched = patched_copy(program, &patched_dir.join(&name))?;
    Ok(Pair {
        plain_dir,
        patched_dir,
        name,
        patched,
    })
}

impl Pair {
    fn cmd(&self, patched: bool, args: &[&str]) -> Command {
        let dir = if patched {
            &self.patched_dir
        } else {
            &self.plain_dir
        };
        let mut c = command(format!("./{}", self.name));
        c.args(args).current_dir(dir);
        c
    }

    /// Runs both with `configure` applied; asserts the same exit status and
    /// stdout (with lines starting with one of `ignore` removed), and no
    /// stderr difference unless `verbose`. Returns (plain, patched).
    fn run_both(
        &self,
        args: &[&str],
        ignore: &[&str],
        configure: impl Fn(&mut Command),
    ) -> (Run, Run) {
        let mut p = self.cmd(false, args);
        configure(&mut p);
        let mut q = self.cmd(true, args);
        configure(&mut q);
        let what = format!("{} (cwd {})", describe(&q), self.patched_dir.display());
        let d = run(p);
        let h = run(q);
        let dc = d.code("direct run");
        let hc = h.code(&what);
        assert_eq!(
            lines_without(&h.stdout_str(), ignore),
            lines_without(&d.stdout_str(), ignore),
            "`{what}`: stdout differs from the unpatched program's\nstderr:\n{}",
            h.stderr_str()
        );
        assert_eq!(
            hc,
            dc,
            "`{what}`: exit status {hc}, unpatched {dc}\nstderr:\n{}",
            h.stderr_str()
        );
        (d, h)
    }
}

// ---------------------------------------------------------------------------
// /proc readers

/// AT_BASE in /proc/PID/auxv.
fn proc_auxv_base(pid: u32) -> u64 {
    let b = fs::read(format!("/proc/{pid}/auxv")).unwrap();
    b.chunks_exact(16)
        .map(|c| (le64(c, 0), le64(c, 8)))
        .take_while(|&(k, _)| k != 0)
        .find(|&(k, _)| k == 7)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no AT_BASE in /proc/{pid}/auxv"))
}

/// The lowest address at which `file` is mapped from offset 0, per
/// /proc/PID/maps.
fn mapping_base(pid: u32, file: &Path) -> Option<u64> {
    let want = canonical(file);
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 6 || u64::from_str_radix(w[2], 16).ok()? != 0 {
                return None;
            }
            let path = fs::canonicalize(w[5..].join(" ")).ok()?;
            (path == want).then(|| u64::from_str_radix(w[0].split('-').next()?, 16).ok())?
        })
        .min()
}

/// Removes a directory (outside target/) when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether the file system holding `path` is mounted nosuid.
fn is_nosuid(path: &Path) -> bool {
    let path = canonical(path);
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 4 && path.starts_with(w[1])).then(|| (w[1].len(), w[3].to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .is_some_and(|(_, opts)| opts.split(',').any(|o| o == "nosuid"))
}

fn proc_exe(pid: u32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

// ---------------------------------------------------------------------------
// 1. PT_INTERP mode: the fixture matrix

fn is_static(program: &Path) -> bool {
    !ElfInfo::read(program)
        .phdrs
        .iter()
        .any(|p| p.p_type == PT_INTERP)
}

/// Same stdout and exit status as the unpatched program, no stderr of its
/// own; with `HUGELOAD_VERBOSE=1 HUGELOAD_BACKEND=thp` the text is on huge
/// pages (see [`check_huge_pt_interp`]).
fn pt_interp_fixture(name: &str) {
    let prog = or_skip!(fixture(name));
    let pair = or_skip!(make_pair(&format!("interp-{name}"), &prog));
    // The probe reports AT_BASE against its own PT_INTERP: a static program
    // that now has one prints `at_base_match` where the original prints
    // `at_base_zero` (AT_BASE itself is checked with modes_probe below).
    let ignore: &[&str] = if is_static(&prog) { &["at_base_"] } else { &[] };
    let (d, h) = pair.run_both(ARGS, ignore, |c| {
        c.env("PROBE_ENV", PROBE_ENV);
    });
    assert_eq!(
        h.stderr_str(),
        d.stderr_str(),
        "{name}: stderr of the patched program (no HUGELOAD_VERBOSE)"
    );
    pair.run_both(&[], ignore, |_| {});

    let mut cmd = pair.cmd(true, &["--wait", "x"]);
    cmd.env("HUGELOAD_VERBOSE", "1")
        .env("HUGELOAD_BACKEND", "thp");
    let i = inspect(cmd, &pair.patched, Ready::Line);
    assert_eq!(
        i.run.code(&i.what),
        d.code("direct"),
        "exit status\n{}",
        i.dump()
    );
    assert!(
        i.run.stdout_str().ends_with("done\n"),
        "did not finish normally\n{}",
        i.dump()
    );
    check_huge_pt_interp(&i, "conservative");
    // The real interpreter: the one the unpatched program names (musl's
    // for a musl program, whose DT_NEEDED is libc.so), none if static.
    let stderr = i.stderr();
    match pt_interp_of(&prog) {
        Some(p) => assert!(
            stderr.contains(&format!("hugeload: interpreter {p} at 0x")),
            "{name}: the report does not name the interpreter {p}\n{stderr}"
        ),
        None => assert!(
            !stderr.contains("hugeload: interpreter "),
            "{name}: static program, but an interpreter was loaded\n{stderr}"
        ),
    }
}

/// One test per fixture of the launcher's matrix.
mod pt_interp_same_output_and_huge {
    use super::*;

    case_tests! { pt_interp_fixture {
        probe_glibc_pie: ("probe-glibc-pie");
        probe_glibc_nopie: ("probe-glibc-nopie");
        probe_glibc_static: ("probe-glibc-static");
        probe_glibc_static_pie: ("probe-glibc-static-pie");
        probe_musl: ("probe-musl");
        probe_musl_static: ("probe-musl-static");
        goprog: ("goprog");
        cxx: ("cxx");
        rustprog: ("rustprog");
        big_pie: ("big-pie");
    }}
}

// ---------------------------------------------------------------------------
// 1. PT_INTERP mode: what the program sees of itself

/// modes_probe as `kind`, patched: `/proc/PID/exe` is the patched copy;
/// `dl_iterate_phdr` names the same objects as in a direct run (ld.so by
/// its real path, never hugeload's); `/proc/PID/auxv` AT_BASE is the real
/// ld.so's mapping base (0 for a static program, as in a direct run) and
/// what the program gets from getauxval.
fn pt_interp_identity(kind: &str) {
    let prog = or_skip!(modes(kind));
    let pair = or_skip!(make_pair(&format!("identity-{kind}"), &prog));
    let hl = hugeload().to_string_lossy().into_owned();

    let direct = run(pair.cmd(false, &["info"]));
    assert_eq!(direct.code("direct"), 9);
    let dout = direct.stdout_str();

    let mut r = Running::start(pair.cmd(true, &["wait"]));
    r.wait_for_line("ready");
    let pid = r.pid();
    let exe = proc_exe(pid);
    let auxv_base = proc_auxv_base(pid);
    let interp = match kind {
        "static" | "static-pie" => None,
        "musl" => Some(MUSL_INTERP),
        _ => Some(GLIBC_INTERP),
    };
    let ldso_base = interp.map(|p| {
        mapping_base(pid, Path::new(p))
            .unwrap_or_else(|| r.fail(&format!("{p} is not mapped in /proc/{pid}/maps")))
    });
    let h = r.finish();
    let what = format!("{} wait", pair.patched.display());
    assert_eq!(h.code(&what), 9, "{}", h.stderr_str());
    let hout = h.stdout_str();

    assert_eq!(
        exe,
        canonical(&pair.patched),
        "/proc/PID/exe of the patched program"
    );
    assert_eq!(
        value(&hout, "exe"),
        Some(canonical(&pair.patched).to_string_lossy().as_ref()),
        "readlink(/proc/self/exe) in the program"
    );
    let objects = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.strip_prefix("object="))
            .map(String::from)
            .collect()
    };
    let (dobj, hobj) = (objects(&dout), objects(&hout));
    assert!(
        !hobj
            .iter()
            .any(|o| o.contains(&hl) || o.contains("hugeload")),
        "{kind}: dl_iterate_phdr names hugeload: {hobj:?}\nstderr:\n{}",
        h.stderr_str()
    );
    assert_eq!(
        hobj, dobj,
        "{kind}: dl_iterate_phdr names differ from the direct run's"
    );
    if let Some(p) = interp {
        assert!(
            hobj.iter().any(|o| o == p),
            "{kind}: no object named {p}: {hobj:?}"
        );
    }
    let printed = u64::from_str_radix(value(&hout, "at_base").unwrap(), 16).unwrap();
    assert_eq!(
        printed, auxv_base,
        "{kind}: getauxval(AT_BASE) {printed:x} vs /proc/PID/auxv AT_BASE {auxv_base:x}"
    );
    match ldso_base {
        Some(base) => assert_eq!(
            auxv_base,
            base,
            "{kind}: /proc/PID/auxv AT_BASE {auxv_base:x} vs the mapping of {} at {base:x}",
            interp.unwrap()
        ),
        None => assert_eq!(
            auxv_base, 0,
            "{kind}: static program: /proc/PID/auxv AT_BASE is {auxv_base:x}, a direct run has 0"
        ),
    }
    // The rest of what the program prints matches the direct run.
    let ignore = ["at_base=", "exe=", "base=", "ready", "done", "argv[1]="];
    assert_eq!(
        lines_without(&hout, &ignore),
        lines_without(&dout, &ignore),
        "{kind}: output vs the direct run"
    );
}

case_tests! { pt_interp_identity {
    pt_interp_identity_glibc_pie: ("pie");
    pt_interp_identity_glibc_nopie: ("nopie");
    pt_interp_identity_musl: ("musl");
    pt_interp_identity_glibc_static: ("static");
    pt_interp_identity_glibc_static_pie: ("static-pie");
}}

// ---------------------------------------------------------------------------
// 1. PT_INTERP mode: real programs

/// Runs `real ARGS` and its patched copy `ARGS`: same stdout and status.
fn real_same(tag: &str, real: &Path, cases: &[&[&str]]) -> PathBuf {
    let dir = scratch_dir(tag);
    let copy = patched_copy(real, &dir.join(real.file_name().unwrap()))
        .unwrap_or_else(|s| panic!("{}", s.0));
    for args in cases {
        let mut d = command(real);
        d.args(*args);
        let mut h = command(&copy);
        h.args(*args);
        let what = describe(&h);
        let (d, h) = (run(d), run(h));
        assert_eq!(
            h.code(&what),
            d.code("direct"),
            "`{what}`\nstderr:\n{}",
            h.stderr_str()
        );
        assert_eq!(
            h.stdout_str(),
            d.stdout_str(),
            "`{what}`: stdout\nstderr:\n{}",
            h.stderr_str()
        );
        assert!(!d.stdout.is_empty(), "`{what}`: no output to compare");
    }
    copy
}

#[test]
fn pt_interp_real_node() {
    or_skip!(need_tool("patchelf"));
    let node = canonical(&or_skip!(need_tool("node")));
    let copy = real_same(
        "interp-node",
        &node,
        &[
            &["-e", "console.log(1+1, process.argv.length)", "x"],
            &["-p", "require('os').EOL.length + require('path').sep"],
        ],
    );
    let mut cmd = command(&copy);
    cmd.args(["-e", "require('fs').readFileSync(0)"])
        .env("HUGELOAD_VERBOSE", "1")
        .env("HUGELOAD_BACKEND", "thp");
    let i = inspect(cmd, &copy, Ready::StdinRead);
    assert_eq!(i.run.code(&i.what), 0, "{}", i.dump());
    let used = check_huge_pt_interp(&i, "conservative");
    if i.elf.text_memsz() >= 26 << 20 {
        assert!(used >= 12, "node: U = {used}\n{}", i.dump());
    }
}

/// python3 as PATH finds it (see `python_elf`), patched: same output, and
/// its code on huge pages (smaps of the running copy).
#[test]
fn pt_interp_real_python() {
    or_skip!(need_tool("patchelf"));
    let python = or_skip!(python_elf());
    let copy = real_same(
        "interp-python",
        &python,
        &[
            &["-c", "import json,sys; print(json.dumps(sys.argv))", "a b"],
            &[
                "-c",
                "import hashlib; print(hashlib.sha256(b'x').hexdigest())",
            ],
        ],
    );
    or_skip!(assert_pt_interp_code_on_huge_pages(
        &copy,
        &["-c", "import sys; sys.stdin.read()"],
        false,
        0
    ));
}

/// git, patched: same output, and its code on huge pages (smaps of the
/// running copy, held at its start).
#[test]
fn pt_interp_real_git() {
    or_skip!(need_tool("patchelf"));
    let git = canonical(&or_skip!(need_tool("git")));
    let copy = real_same(
        "interp-git",
        &git,
        &[
            &["--version"],
            &["-c", "modes.test=value one", "config", "modes.test"],
        ],
    );
    or_skip!(assert_pt_interp_code_on_huge_pages(
        &copy,
        &["--version"],
        true,
        0
    ));
}

// ---------------------------------------------------------------------------
// 1. PT_INTERP mode: HUGELOAD_INTERP, and no huge pages to be had

#[test]
fn pt_interp_hugeload_interp_variable() {
    let prog = or_skip!(modes("pie"));
    let pair = or_skip!(make_pair("interp-env", &prog));
    let ignore = ["at_base=", "exe="];
    // The psABI path: same as the default.
    let (_, h) = pair.run_both(&["info"], &ignore, |c| {
        c.env("HUGELOAD_INTERP", GLIBC_INTERP)
            .env("HUGELOAD_VERBOSE", "1");
    });
    let stderr = h.stderr_str();
    assert!(
        stderr.contains(&format!("hugeload: interpreter {GLIBC_INTERP} at 0x")),
        "HUGELOAD_INTERP={GLIBC_INTERP}: report\n{stderr}"
    );
    // Another path to the same ld.so: it is the one used, and named.
    let real = canonical(Path::new(GLIBC_INTERP));
    let real = real.to_string_lossy();
    let mut c = pair.cmd(true, &["info"]);
    c.env("HUGELOAD_INTERP", real.as_ref())
        .env("HUGELOAD_VERBOSE", "1");
    let r = run(c);
    assert_eq!(r.code("HUGELOAD_INTERP=real path"), 9, "{}", r.stderr_str());
    assert!(
        r.stderr_str()
            .contains(&format!("hugeload: interpreter {real} at 0x")),
        "HUGELOAD_INTERP={real}: report\n{}",
        r.stderr_str()
    );
    assert!(
        r.stdout_str().contains(&format!("object={real}\n")),
        "HUGELOAD_INTERP={real}: dl_iterate_phdr\n{}",
        r.stdout_str()
    );
    // A missing one: an error naming it, as for a missing PT_INTERP.
    let mut c = pair.cmd(true, &["info"]);
    c.env("HUGELOAD_INTERP", "/nonexistent/ld.so");
    let r = run(c);
    assert_eq!(r.code("HUGELOAD_INTERP=/nonexistent"), 127);
    assert!(r.stdout.is_empty());
    let stderr = r.stderr_str();
    assert!(
        stderr.lines().count() == 1
            && stderr.starts_with("hugeload: ")
            && stderr.contains("/nonexistent/ld.so"),
        "HUGELOAD_INTERP=/nonexistent/ld.so: stderr\n{stderr}"
    );
}

/// A PT_INTERP-patched program under PR_SET_THP_DISABLE with
/// `HUGELOAD_BACKEND=thp`: same output, nothing on huge pages, and the
/// report says why.
#[test]
fn pt_interp_runs_without_huge_pages() {
    let wrapper = or_skip!(fixture("thp_off"));
    let prog = or_skip!(fixture("probe-glibc-pie"));
    let pair = or_skip!(make_pair("interp-thp-off", &prog));
    let name = format!("./{}", pair.name);
    let mut args = vec![name.as_str()];
    args.extend_from_slice(ARGS);
    let mut direct = command(&wrapper);
    direct.args(&args).current_dir(&pair.plain_dir);
    let mut via = command(&wrapper);
    via.args(&args)
        .current_dir(&pair.patched_dir)
        .env("HUGELOAD_BACKEND", "thp")
        .env("HUGELOAD_VERBOSE", "1");
    let what = describe(&via);
    let (d, h) = (run(direct), run(via));
    let stderr = h.stderr_str();
    assert_eq!(h.code(&what), d.code("direct"), "`{what}`\n{stderr}");
    assert_eq!(h.stdout_str(), d.stdout_str(), "`{what}`\n{stderr}");
    let report = parse_report(&stderr);
    let total = report.total(&stderr);
    assert_eq!((total.used, total.on_huge), (0, 0), "`{what}`\n{stderr}");
    assert!(report.huge.is_empty(), "`{what}`: huge lines\n{stderr}");
    assert!(
        !report.fallback.is_empty()
            && report
                .fallback
                .iter()
                .all(|f| f.reason.contains("PR_SET_THP_DISABLE")),
        "`{what}`: no `on 4 KiB pages: thp: ... (PR_SET_THP_DISABLE)` line\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// 2. $ORIGIN

/// DIR/lib/libmodesorigin.so and DIR/bin/prog with RUNPATH $ORIGIN/../lib:
/// copies of the fixtures `libmodesorigin.so` and `modes-origin`.
fn origin_fixture(dir: &Path) -> Result<PathBuf, Skip> {
    let lib = fixture("libmodesorigin.so")?;
    let prog = fixture("modes-origin")?;
    fs::create_dir_all(dir.join("lib")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(&lib, dir.join("lib/libmodesorigin.so")).unwrap();
    fs::copy(&prog, dir.join("bin/prog")).unwrap();
    Ok(dir.join("bin/prog"))
}

const ORIGIN_HELLO: &str = "hello from DIR/lib through $ORIGIN";

/// A program that finds its library through `$ORIGIN/../lib` runs through
/// the launcher as root (hugeload points /proc/self/exe at it) and as a
/// PT_INTERP-patched copy in the same directory; a copy elsewhere does not
/// (so `$ORIGIN` really decides).
#[test]
fn origin_fixture_launcher_and_pt_interp() {
    let dir = scratch_dir("origin");
    let prog = or_skip!(origin_fixture(&dir));
    let expected = format!("{ORIGIN_HELLO}\nexe={}\n", canonical(&prog).display());
    let d = run(command(&prog));
    assert_eq!(d.code("direct"), 4, "{}", d.stderr_str());
    assert_eq!(d.stdout_str(), expected);

    // Elsewhere, $ORIGIN/../lib has no library: it fails.
    let away = dir.join("elsewhere/bin");
    fs::create_dir_all(&away).unwrap();
    fs::copy(&prog, away.join("prog")).unwrap();
    let r = run(command(away.join("prog")));
    assert_ne!(r.exit_code(), Some(4), "a copy elsewhere ran");
    assert!(
        r.stderr_str().contains("libmodesorigin.so"),
        "{}",
        r.stderr_str()
    );

    // PT_INTERP copy in DIR/bin.
    let patched = or_skip!(patched_copy(&prog, &dir.join("bin/prog-patched")));
    let r = run(command(&patched));
    assert_eq!(r.code("patched"), 4, "PT_INTERP copy: {}", r.stderr_str());
    assert_eq!(
        r.stdout_str(),
        format!("{ORIGIN_HELLO}\nexe={}\n", canonical(&patched).display())
    );

    // Launcher, as root.
    or_skip!(need_root(
        "the launcher fixes /proc/self/exe with CAP_SYS_ADMIN"
    ));
    if !has_cap(CAP_SYS_ADMIN) {
        skip("root without CAP_SYS_ADMIN: the launcher cannot fix /proc/self/exe");
        return;
    }
    let (_, h) = run_both_with(&["-v"], &prog, &[], |c| {
        clean_env(c);
    });
    assert_eq!(h.stdout_str(), expected, "{}", h.stderr_str());
}

/// The real rustc (RUNPATH $ORIGIN/../lib): through the launcher as root,
/// and as a PT_INTERP-patched copy in a directory whose ../lib is rustc's
/// (a link to the toolchain's lib); a patched copy without that lib fails.
/// Through the launcher as root, `/proc/PID/exe` names the program.
#[test]
fn origin_real_rustc() {
    let rustup = or_skip!(need_tool("rustup"));
    let mut c = Command::new(rustup);
    c.args(["which", "rustc"]);
    let r = run(c);
    if !r.success() {
        skip(&format!("`rustup which rustc` failed: {}", r.stderr_str()));
        return;
    }
    let rustc = canonical(Path::new(r.stdout_str().trim()));
    let toolchain_lib = rustc.parent().unwrap().parent().unwrap().join("lib");
    let d = run({
        let mut c = command(&rustc);
        c.arg("--version");
        c
    });
    assert_eq!(d.code("rustc --version"), 0);
    assert!(d.stdout_str().starts_with("rustc "), "{}", d.stdout_str());

    let dir = scratch_dir("origin-rustc");
    fs::create_dir_all(dir.join("mirror/bin")).unwrap();
    fs::create_dir_all(dir.join("alone/bin")).unwrap();
    std::os::unix::fs::symlink(&toolchain_lib, dir.join("mirror/lib")).unwrap();
    // Every run of rustc through hugeload here uses the thp backend: the
    // default one primes the libraries rustc loads (librustc_driver and
    // libLLVM, the toolchain's own files: mirror/lib is a link to them), and
    // copies of those would cost some 350 MB a run. With thp nothing is
    // dropped or primed: hugeload only reads the files.
    let patched = or_skip!(patched_copy(&rustc, &dir.join("mirror/bin/rustc")));
    let r = run({
        let mut c = command(&patched);
        c.arg("--version").env("HUGELOAD_BACKEND", "thp");
        c
    });
    assert_eq!(r.code("patched rustc"), 0, "{}", r.stderr_str());
    assert_eq!(r.stdout_str(), d.stdout_str());
    let alone = patched_copy(&rustc, &dir.join("alone/bin/rustc")).unwrap();
    let r = run({
        let mut c = command(&alone);
        c.arg("--version").env("HUGELOAD_BACKEND", "thp");
        c
    });
    assert!(
        !r.success() && r.stderr_str().contains("librustc_driver"),
        "a patched rustc without ../lib should not find librustc_driver: {}\n{}",
        r.end,
        r.stderr_str()
    );

    or_skip!(need_root(
        "the launcher fixes /proc/self/exe with CAP_SYS_ADMIN"
    ));
    if !has_cap(CAP_SYS_ADMIN) {
        skip("root without CAP_SYS_ADMIN: the launcher cannot fix /proc/self/exe");
        return;
    }
    // -b thp: see above.
    let (_, h) = run_both_with(&["-b", "thp"], &rustc, &["--version"], |c| {
        clean_env(c);
    });
    assert!(h.stdout_str().starts_with("rustc "));
    // Its code on huge pages (smaps of the running rustc). A PT_INTERP copy
    // is not checked so: its text ends in the page before its writable data,
    // so wherever the kernel puts it, its one 2 MiB block holds writable
    // data.
    or_skip!(assert_real_code_on_huge_pages(
        &rustc,
        &rustc,
        &["--version"],
        0
    ));
    let mut c = hl(&["-v", "-b", "thp"], &rustc, &["-vV"]);
    clean_env(&mut c);
    let r = run(c);
    assert_eq!(
        r.code("hugeload -v -b thp rustc -vV"),
        0,
        "{}",
        r.stderr_str()
    );

    // /proc/PID/exe of a program run through the launcher.
    let prog = or_skip!(modes("pie"));
    let mut r = Running::start(hl(&["-v"], &prog, &["wait"]));
    r.wait_for_line("ready");
    let exe = proc_exe(r.pid());
    let out = r.finish();
    assert_eq!(out.code("launcher wait"), 9);
    assert_eq!(
        exe,
        canonical(&prog),
        "/proc/PID/exe under the launcher as root\nstderr:\n{}",
        out.stderr_str()
    );
    assert_eq!(
        value(&out.stdout_str(), "exe"),
        Some(canonical(&prog).to_string_lossy().as_ref())
    );
}

// ---------------------------------------------------------------------------
// 3. binfmt_misc

/// One program run before and after `--mark`, at the same path.
struct BinfmtCase {
    name: &'static str,
    source: PathBuf,
    args: Vec<String>,
}

fn binfmt_script(
    hl: &Path,
    out: &Path,
    work: &Path,
    modes_pie: &Path,
    cases: &[BinfmtCase],
) -> String {
    let q = |p: &Path| sh_quote(&p.to_string_lossy());
    let mut s = format!(
        "set -u\nH={}\nO={}\nW={}\nMODES={}\n",
        q(hl),
        q(out),
        q(work),
        q(modes_pie)
    );
    s.push_str(
        r#"mkdir -p "$W/bf"
if ! mount -t binfmt_misc binfmt_misc "$W/bf" 2>"$O/mount.err"; then
    echo "mount -t binfmt_misc in a user namespace failed: $(cat "$O/mount.err")"
    exit 90
fi
if ! printf '%s\n' "$("$H" --binfmt-rule)" > "$W/bf/register" 2>"$O/register.err"; then
    echo "cannot register the rule: $(cat "$O/register.err")"
    exit 91
fi
cat "$W/bf/hugeload" > "$O/rule.status"
export HUGELOAD_VERBOSE=1
NOCAPS="setpriv --bounding-set=-all --inh-caps=-all"
run() { name=$1; tag=$2; shift 2; "$@" > "$O/$name.$tag.out" 2> "$O/$name.$tag.err"; echo $? > "$O/$name.$tag.rc"; }
mark() { "$H" --mark prog > "$O/$1.mark.out" 2>&1; echo $? > "$O/$1.mark.rc"; }
"#,
    );
    for c in cases {
        let args: Vec<String> = c.args.iter().map(|a| sh_quote(a)).collect();
        let args = args.join(" ");
        s.push_str(&format!(
            "mkdir -p \"$W/{n}\" && cd \"$W/{n}\" && cp {src} prog && chmod 755 prog\n\
             run {n} plain ./prog {args}\n",
            n = c.name,
            src = q(&c.source),
        ));
        if c.name == "modes" {
            s.push_str("run modes argv0-plain \"$MODES\" exec custom-argv0 ./prog info\n");
        }
        s.push_str(&format!(
            "mark {n}\nrun {n} marked ./prog {args}\n",
            n = c.name
        ));
        if c.name == "modes" {
            s.push_str("run modes argv0-marked \"$MODES\" exec custom-argv0 ./prog info\n");
        }
        if c.name == "node" {
            // The marked node prints its own smaps: its code on huge pages.
            s.push_str(&format!(
                "run node smaps ./prog -e {}\n",
                sh_quote(NODE_PRINTS_SMAPS)
            ));
        }
    }
    // Execute-only: without capabilities (root would read it anyway).
    s.push_str(
        r#"mkdir -p "$W/xonly" && cd "$W/xonly" && cp "$MODES" prog && chmod 111 prog
run xonly plain $NOCAPS ./prog info
run xonly cat $NOCAPS cat prog
run xonly launcher $NOCAPS "$H" ./prog info
mark xonly
run xonly marked $NOCAPS ./prog info
exit 0
"#,
    );
    s
}

/// Node code that prints the process's own smaps.
const NODE_PRINTS_SMAPS: &str =
    "process.stdout.write(require('fs').readFileSync('/proc/self/smaps', 'utf8'))";

/// Reads what the script left for `name.tag`: (stdout, stderr, status).
fn binfmt_result(out: &Path, name: &str, tag: &str) -> (String, String, i32) {
    let read = |ext: &str| {
        fs::read_to_string(out.join(format!("{name}.{tag}.{ext}")))
            .unwrap_or_else(|e| panic!("binfmt case {name}.{tag}: no .{ext} ({e})"))
    };
    let rc = read("rc").trim().parse().unwrap();
    (read("out"), read("err"), rc)
}

/// In a user namespace with its own binfmt_misc (Linux 6.7+) and the rule
/// of `--binfmt-rule`: marked copies of fixtures and of node run through
/// hugeload with the same output as unmarked; unmarked copies do not go
/// through hugeload; argv[0] is kept (P); an execute-only marked file runs
/// (O, AT_EXECFD) and that descriptor is closed in the program.
#[test]
fn binfmt_misc_in_user_namespace() {
    let unshare = or_skip!(need_tool("unshare"));
    or_skip!(need_tool("setpriv"));
    let modes_pie = or_skip!(modes("pie"));
    let dir = scratch_dir("binfmt");
    let (out, work) = (dir.join("out"), dir.join("work"));
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&work).unwrap();

    // Can this machine mount binfmt_misc in a user namespace?
    let probe_dir = dir.join("probe-mount");
    fs::create_dir_all(&probe_dir).unwrap();
    let mut c = command(&unshare);
    c.args(["--user", "--map-root-user", "--mount", "mount", "-t"])
        .args(["binfmt_misc", "binfmt_misc"])
        .arg(&probe_dir);
    let r = run(c);
    if !r.success() {
        skip(&format!(
            "cannot mount binfmt_misc in a user namespace (Linux {}; needs 6.7+ and \
             unprivileged user namespaces): {}",
            kernel_release(),
            r.stderr_str().trim()
        ));
        return;
    }

    let mut skipped = Vec::new();
    let mut cases = Vec::new();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (name, fix) in [
        ("probe-pie", "probe-glibc-pie"),
        ("probe-musl", "probe-musl"),
        ("probe-static", "probe-glibc-static"),
        ("goprog", "goprog"),
    ] {
        match fixture(fix) {
            Ok(p) => cases.push(BinfmtCase {
                name,
                source: p,
                args: args(&["a", "b c", ""]),
            }),
            Err(s) => skipped.push(s.0),
        }
    }
    cases.push(BinfmtCase {
        name: "modes",
        source: modes_pie.clone(),
        args: args(&["info", "x"]),
    });
    match need_tool("node") {
        Ok(node) => cases.push(BinfmtCase {
            name: "node",
            source: canonical(&node),
            args: args(&["-e", "console.log(1+1, process.argv.slice(1))", "z"]),
        }),
        Err(s) => skipped.push(s.0),
    }
    // A marked program that changed since it was marked: it now asks for an
    // executable stack, which hugeload does not load (and --mark would
    // refuse). The kernel runs an unmarked copy.
    let probe = or_skip!(fixture("probe-glibc-pie"));
    let mut bytes = fs::read(&probe).unwrap();
    bytes[15] = b'H';
    let elf = ElfInfo::read(&probe);
    let stack = elf
        .phdrs
        .iter()
        .position(|p| p.p_type == 0x6474_e551)
        .expect("probe has a PT_GNU_STACK");
    let at = elf.e_phoff as usize + stack * 56 + 4;
    bytes[at] |= PF_X as u8;
    let changed = work.join("changed-src");
    fs::create_dir_all(&work).unwrap();
    fs::write(&changed, &bytes).unwrap();
    set_mode(&changed, 0o755);
    let mut text = binfmt_script(hugeload(), &out, &work, &modes_pie, &cases);
    let tail = text.rfind("exit 0\n").unwrap();
    text.insert_str(
        tail,
        &format!(
            "mkdir -p \"$W/changed\" && cd \"$W/changed\" && cp {} prog && chmod 755 prog\n\
             run changed marked ./prog a\n",
            sh_quote(&changed.to_string_lossy())
        ),
    );
    let script = dir.join("binfmt.sh");
    fs::write(&script, text).unwrap();
    let mut c = command(&unshare);
    c.args(["--user", "--map-root-user", "--mount", "sh"])
        .arg(&script);
    let what = describe(&c);
    let r = run(c);
    match r.exit_code() {
        Some(0) => {}
        Some(90 | 91) => {
            skip(&format!(
                "binfmt_misc in a user namespace (Linux {}): {}",
                kernel_release(),
                r.stdout_str().trim()
            ));
            return;
        }
        _ => panic!("`{what}`: {}\n{}{}", r.end, r.stdout_str(), r.stderr_str()),
    }
    let rule = fs::read_to_string(out.join("rule.status")).unwrap();
    assert!(
        rule.contains("flags: POF") && rule.contains(&*hugeload().to_string_lossy()),
        "registered rule:\n{rule}"
    );

    for c in &cases {
        let n = c.name;
        let mark = fs::read_to_string(out.join(format!("{n}.mark.rc"))).unwrap();
        assert_eq!(mark.trim(), "0", "{n}: --mark failed");
        let (pout, perr, prc) = binfmt_result(&out, n, "plain");
        let (mout, merr, mrc) = binfmt_result(&out, n, "marked");
        assert!(
            hugeload_lines(&perr).is_empty(),
            "{n}: the unmarked copy went through hugeload:\n{perr}"
        );
        assert!(
            merr.lines().any(|l| l.starts_with("hugeload: load ./prog")),
            "{n}: the marked copy did not go through hugeload (HUGELOAD_VERBOSE=1):\n{merr}"
        );
        assert_eq!(mrc, prc, "{n}: exit status marked vs unmarked\n{merr}");
        assert_eq!(
            lines_without(&mout, &["at_base="]),
            lines_without(&pout, &["at_base="]),
            "{n}: stdout marked vs unmarked\n{merr}"
        );
        assert!(!pout.is_empty(), "{n}: no output");
        if n.starts_with("probe") || n == "modes" {
            assert!(mout.contains("argv[0]=./prog\n"), "{n}: argv[0]:\n{mout}");
        }
        if n == "modes" {
            assert_eq!(
                value(&mout, "fds"),
                value(&pout, "fds"),
                "modes: open descriptors (AT_EXECFD must be closed)"
            );
            let (aout, aerr, arc) = binfmt_result(&out, n, "argv0-marked");
            let (bout, _, brc) = binfmt_result(&out, n, "argv0-plain");
            assert!(
                aerr.lines().any(|l| l.starts_with("hugeload: load ")),
                "argv0: not through hugeload\n{aerr}"
            );
            assert_eq!((arc, brc), (9, 9), "argv0 runs\n{aerr}");
            assert!(
                bout.contains("argv[0]=custom-argv0\n"),
                "direct run: argv[0]\n{bout}"
            );
            assert_eq!(
                lines_without(&aout, &["at_base="]),
                lines_without(&bout, &["at_base="]),
                "argv[0] not preserved (P flag)\n{aerr}"
            );
        }
    }

    // The marked node's code on huge pages, from its own smaps while it ran
    // through hugeload (HUGELOAD_VERBOSE=1: the report is on its stderr).
    if cases.iter().any(|c| c.name == "node") {
        let (sout, serr, src) = binfmt_result(&out, "node", "smaps");
        let prog = work.join("node/prog");
        let what = format!(
            "{} -e {NODE_PRINTS_SMAPS:?} (marked, run by binfmt_misc)",
            prog.display()
        );
        assert_eq!(src, 0, "`{what}`\n{serr}");
        let run = Run {
            what: what.clone(),
            end: End::Exit(src),
            core_dumped: false,
            stdout: sout.clone().into_bytes(),
            stderr: serr.into_bytes(),
        };
        let maps = parse_smaps(sout.as_bytes());
        let i = Inspection::new(what, run, maps, &prog, ElfInfo::read(&prog), None);
        let used = check_huge(&i, "conservative");
        if !i.elf.interior_blocks(i.bias).is_empty() {
            assert!(
                used >= 1,
                "node under binfmt_misc: no huge page\n{}",
                i.dump()
            );
        }
        if i.elf.text_memsz() >= 26 << 20 {
            assert!(
                used >= 12,
                "node under binfmt_misc: U = {used}\n{}",
                i.dump()
            );
            // Straight from the page cache: no copy under its text.
            assert_from_page_cache(&i, used, 12);
        }
    }

    // The program changed since it was marked runs as an unmarked copy, as
    // it runs directly (outside the namespace, no rule: the kernel).
    let (cout, cerr, crc) = binfmt_result(&out, "changed", "marked");
    let mut direct = command(&changed);
    direct.arg("a");
    let d = run(direct);
    assert_eq!(crc, d.code("the changed program, directly"), "{cerr}");
    assert!(
        cerr.contains("handed to the kernel as an unmarked copy"),
        "the changed program: no hand-over line (HUGELOAD_VERBOSE=1):\n{cerr}"
    );
    let argv = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("argv["))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        argv(&cout),
        vec!["argv[0]=./prog".to_string(), "argv[1]=a".to_string()],
        "{cout}"
    );
    let _ = argv(&d.stdout_str());

    // Execute-only.
    let (_, _, crc) = binfmt_result(&out, "xonly", "cat");
    assert_ne!(
        crc, 0,
        "the execute-only file is readable without capabilities: the test proves nothing"
    );
    let (_, lerr, lrc) = binfmt_result(&out, "xonly", "launcher");
    assert_ne!(lrc, 9, "the launcher read an execute-only file?\n{lerr}");
    let mark = fs::read_to_string(out.join("xonly.mark.rc")).unwrap();
    assert_eq!(mark.trim(), "0", "xonly: --mark failed");
    let (pout, perr, prc) = binfmt_result(&out, "xonly", "plain");
    let (mout, merr, mrc) = binfmt_result(&out, "xonly", "marked");
    assert_eq!(prc, 9, "execute-only, unmarked\n{perr}");
    assert_eq!(mrc, 9, "execute-only, marked: did not run\n{merr}");
    assert!(
        merr.lines().any(|l| l.starts_with("hugeload: load ./prog")),
        "execute-only marked: not through hugeload\n{merr}"
    );
    // Without CAP_SYS_ADMIN /proc/self/exe stays hugeload's (documented).
    let ignore = ["exe=", "at_base="];
    assert_eq!(
        lines_without(&mout, &ignore),
        lines_without(&pout, &ignore),
        "execute-only: output marked vs unmarked (fds= shows AT_EXECFD left open)\n{merr}"
    );
    for s in skipped {
        skip(&s);
    }
}

/// `--mark` refuses libc.so.6, ld.so, hugeload itself and a text file
/// (exit 1, one line naming the file, file unchanged); it sets byte 15 to
/// 'H' of a program (which still runs without the rule), and `--unmark`
/// clears it.
#[test]
fn mark_refuses_and_unmark_clears() {
    let dir = scratch_dir("mark");
    let libc = dir.join("libc.so.6");
    fs::copy("/lib/x86_64-linux-gnu/libc.so.6", &libc).unwrap();
    let ldso = dir.join("ld-linux-x86-64.so.2");
    fs::copy(canonical(Path::new(GLIBC_INTERP)), &ldso).unwrap();
    set_mode(&ldso, 0o755);
    let text = dir.join("text");
    fs::write(&text, "just text\n").unwrap();
    set_mode(&text, 0o755);
    let hl_copy = dir.join("hugeload");
    fs::copy(hugeload(), &hl_copy).unwrap();
    set_mode(&hl_copy, 0o755);

    let refused = |runner: &Path, file: &Path, reason: &str| {
        let before = fs::read(file).unwrap();
        let mut c = command(runner);
        c.arg("--mark").arg(file);
        let what = describe(&c);
        let r = run(c);
        let stderr = r.stderr_str();
        assert_eq!(r.code(&what), 1, "`{what}`\n{stderr}");
        assert!(r.stdout.is_empty(), "`{what}`: stdout");
        assert!(
            stderr.lines().count() == 1
                && stderr.starts_with("hugeload: ")
                && stderr.contains(&*file.to_string_lossy())
                && stderr.contains(reason),
            "`{what}`: expected one line naming the file and {reason:?}:\n{stderr}"
        );
        assert!(
            fs::read(file).unwrap() == before,
            "`{what}` changed the file"
        );
    };
    refused(hugeload(), &libc, "shared library");
    refused(hugeload(), &ldso, "program interpreter");
    refused(hugeload(), &text, "not an ELF");
    refused(&hl_copy, &hl_copy, "hugeload itself");
    refused(hugeload(), hugeload(), "hugeload itself");

    // A program: marked, still runs without the rule, unmarked.
    let prog = or_skip!(modes("pie"));
    let original = fs::read(&prog).unwrap();
    let copy = dir.join("prog");
    fs::write(&copy, &original).unwrap();
    set_mode(&copy, 0o755);
    let before = run({
        let mut c = command(&copy);
        c.arg("info");
        c
    });
    let r = run({
        let mut c = hl_command(&["--mark"]);
        c.arg(&copy);
        c
    });
    assert_eq!(r.code("--mark"), 0, "{}", r.stderr_str());
    assert!(r.stderr.is_empty() && r.stdout.is_empty());
    let marked = fs::read(&copy).unwrap();
    assert_eq!(marked[15], b'H', "byte 15 after --mark");
    let mut expect = original.clone();
    expect[15] = b'H';
    assert!(marked == expect, "--mark changed more than byte 15");
    let after = run({
        let mut c = command(&copy);
        c.arg("info");
        c
    });
    if !fs::exists("/proc/sys/fs/binfmt_misc/hugeload").unwrap_or(false) {
        assert_eq!(after.code("marked, no rule"), before.code("unmarked"));
        assert_eq!(
            lines_without(&after.stdout_str(), &["at_base="]),
            lines_without(&before.stdout_str(), &["at_base="]),
            "a marked program run directly (no rule)"
        );
    }
    let r = run({
        let mut c = hl_command(&["--unmark"]);
        c.arg(&copy);
        c
    });
    assert_eq!(r.code("--unmark"), 0, "{}", r.stderr_str());
    assert!(
        fs::read(&copy).unwrap() == original,
        "--unmark did not restore the file"
    );
}

// ---------------------------------------------------------------------------
// 4. Secure execution

/// Whether user `nobody` can execute hugeload (search every directory on
/// its path, read and execute the file).
fn others_can_exec(p: &Path) -> bool {
    let p = canonical(p);
    let file_ok = fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005);
    file_ok
        && p.ancestors()
            .skip(1)
            .all(|d| fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// A setuid-root PT_INTERP-patched program run by nobody with
/// `HUGELOAD_VERBOSE=1 HUGELOAD_INTERP=/nonexistent HUGELOAD_BACKEND=off`:
/// the environment is ignored (no report, the real ld.so, huge pages with
/// the default backend), and the program runs with euid 0.
#[test]
fn secure_execution_ignores_environment() {
    or_skip!(need_root("a setuid-root copy"));
    let setpriv = or_skip!(need_tool("setpriv"));
    let prog = or_skip!(modes("pie"));
    if !others_can_exec(hugeload()) {
        skip(&format!(
            "user nobody cannot execute {} (a directory on its path is not searchable)",
            hugeload().display()
        ));
        return;
    }
    let dir = PathBuf::from(format!("/tmp/hugeload-modes-secure-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o755);
    let _cleanup = RemoveDir(dir.clone());
    if is_nosuid(&dir) {
        skip(&format!("{} is on a nosuid mount", dir.display()));
        return;
    }
    let copy = patched_copy(&prog, &dir.join("prog")).unwrap_or_else(|s| panic!("{}", s.0));
    let meta = fs::metadata(&copy).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "copy owned by root");
    set_mode(&copy, 0o4755);
    let bad_env = [
        ("HUGELOAD_VERBOSE", "1"),
        ("HUGELOAD_INTERP", "/nonexistent"),
        ("HUGELOAD_BACKEND", "off"),
    ];

    // Without secure execution (root runs it: euid == uid) the variables
    // are read, so the next run shows they are ignored, not unused.
    let mut c = command(&copy);
    c.arg("info").envs(bad_env);
    let r = run(c);
    assert_eq!(
        r.code("root, HUGELOAD_INTERP=/nonexistent"),
        127,
        "HUGELOAD_INTERP=/nonexistent did not matter for a non-secure run:\n{}",
        r.stderr_str()
    );

    let mut c = command(setpriv);
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .arg("wait")
        .envs(bad_env);
    let mut running = Running::start(c);
    running.wait_for_line("ready");
    let pid = running.pid();
    let maps = read_smaps(pid).unwrap();
    let h = running.finish();
    let what = "setuid-root copy run by nobody";
    let out = h.stdout_str();
    assert_eq!(
        h.code(what),
        9,
        "{what}: stdout\n{out}\nstderr:\n{}",
        h.stderr_str()
    );
    assert_eq!(
        h.stderr_str(),
        "",
        "{what}: stderr (HUGELOAD_VERBOSE must be ignored)"
    );
    assert!(out.contains("euid=0 uid=65534\n"), "{what}: ids\n{out}");
    assert!(out.contains("secure=1\n"), "{what}: AT_SECURE\n{out}");
    assert!(
        out.contains(&format!("object={GLIBC_INTERP}\n")),
        "{what}: ld.so\n{out}"
    );
    let elf = ElfInfo::read(&copy);
    let bias = u64::from_str_radix(value(&out, "base").unwrap(), 16).unwrap();
    if let Some(b) = bias_from_maps(&maps, &copy, &elf) {
        assert_eq!(b, bias, "{what}: base");
    }
    let interior = elf.interior_blocks(bias);
    assert!(!interior.is_empty(), "{what}: no whole 2 MiB block of text");
    let mut huge = 0;
    for b in elf.touched_blocks(bias) {
        huge += huge_bytes_in(
            &maps,
            &Span {
                start: b,
                end: b + HUGE,
            },
        )
        .0;
    }
    assert_eq!(
        huge,
        interior.len() as u64 * HUGE,
        "{what}: smaps bytes on 2 MiB pages in the text vs its {} whole 2 MiB blocks \
         (HUGELOAD_BACKEND=off must be ignored)",
        interior.len()
    );
}

// ---------------------------------------------------------------------------
// 5. --stat

/// The numbers of `hugeload --stat` text output: (pid, text, huge bytes,
/// huge pages) per process.
fn parse_stat_text(out: &str) -> Vec<(u32, u64, u64, u64)> {
    let mut all = Vec::new();
    let mut pid = None;
    for l in out.lines() {
        if let Some(p) = l.strip_prefix("pid ") {
            pid = Some(p.split_whitespace().next().unwrap().parse().unwrap());
        } else if let Some(t) = l.trim_start().strip_prefix("total text ") {
            let w: Vec<&str> = t.split_whitespace().collect();
            assert!(
                w.len() >= 11 && w[1] == "bytes," && w[2..5] == ["on", "huge", "pages"],
                "bad total line {l:?}"
            );
            let n = |s: &str| s.trim_end_matches(',').parse::<u64>().unwrap();
            assert_eq!(w[8..10], ["huge", "pages"], "bad total line {l:?}");
            all.push((pid.expect("total before pid"), n(w[0]), n(w[5]), n(w[10])));
        }
    }
    all
}

/// Checks `--stat --json` output with python3's json module: one object a
/// line; every value whose key mentions "bytes" or "pages" is an integer.
/// Returns (pid, text_bytes, huge_bytes, huge_pages) per line.
fn parse_stat_json(out: &str) -> Vec<(u32, u64, u64, u64)> {
    const CHECK: &str = r#"
import json, sys
def walk(v, path):
    if isinstance(v, dict):
        for k, x in v.items():
            if ("bytes" in k or "pages" in k) and not isinstance(x, dict | list):
                assert type(x) is int, f"{path}.{k} = {x!r} is not an integer"
            walk(x, f"{path}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            walk(x, f"{path}[{i}]")
for n, line in enumerate(sys.stdin):
    o = json.loads(line)
    assert isinstance(o, dict), "line %d is not an object" % n
    walk(o, "line%d" % n)
    print(o["pid"], o["text_bytes"], o["huge_bytes"], o["huge_pages"])
"#;
    let mut c = Command::new("python3");
    c.args(["-c", CHECK]);
    let r = run_input(c, Some(out.as_bytes()));
    assert!(
        r.success(),
        "--stat --json output does not pass the JSON check:\n{out}\n{}",
        r.stderr_str()
    );
    r.stdout_str()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (
                w[0].parse().unwrap(),
                w[1].parse().unwrap(),
                w[2].parse().unwrap(),
                w[3].parse().unwrap(),
            )
        })
        .collect()
}

fn stat(args: &[&str]) -> Run {
    let mut c = hl_command(&["--stat"]);
    c.args(args);
    run(c)
}

/// `--stat` of a program launched with `-v`: its huge bytes and pages
/// agree with the load-time report and with smaps; `--json` parses.
#[test]
fn stat_of_a_program_loaded_by_hugeload() {
    or_skip!(need_tool("python3"));
    let prog = or_skip!(modes("pie"));
    let mut r = Running::start(hl(&["-v", "--backend=thp"], &prog, &["wait"]));
    r.wait_for_line("ready");
    let pid = r.pid();
    let ps = pid.to_string();
    let text = stat(&[&ps]);
    let json = stat(&["--json", &ps]);
    let maps = read_smaps(pid).unwrap();
    let run = r.finish();
    assert_eq!(run.code("launched fixture"), 9);
    let stderr = run.stderr_str();
    let total = parse_report(&stderr).total(&stderr).clone();
    assert!(total.used >= 1, "no huge page at load time\n{stderr}");

    assert_eq!(text.code("--stat"), 0, "{}", text.stderr_str());
    let t = parse_stat_text(&text.stdout_str());
    assert_eq!(t.len(), 1, "--stat output:\n{}", text.stdout_str());
    let (tpid, _, thuge, tpages) = t[0];
    assert_eq!(tpid, pid);
    assert_eq!(
        (thuge, tpages),
        (total.used * HUGE, total.used),
        "--stat (huge bytes, pages) vs -v at load time (U = {})\n--stat:\n{}\n-v:\n{stderr}",
        total.used,
        text.stdout_str()
    );
    let smaps_huge: u64 = maps
        .iter()
        .filter(|m| m.is_exec())
        .map(|m| m.huge_bytes)
        .sum();
    assert_eq!(thuge, smaps_huge, "--stat huge bytes vs smaps");
    assert!(
        text.stdout_str()
            .contains(&*canonical(&prog).to_string_lossy()),
        "--stat does not name the program:\n{}",
        text.stdout_str()
    );

    assert_eq!(json.code("--stat --json"), 0, "{}", json.stderr_str());
    let j = parse_stat_json(&json.stdout_str());
    assert_eq!(j, t, "--stat --json vs --stat");
}

/// `--stat` of a process hugeload did not load: runs, 0 huge bytes; of a
/// PID that does not exist: exit 1, one line.
#[test]
fn stat_of_other_and_missing_processes() {
    or_skip!(need_tool("python3"));
    let mut sleep = command("sleep");
    sleep.arg("30");
    let sleep = Running::start(sleep);
    let pid = sleep.pid();
    let deadline = Instant::now() + TIMEOUT;
    while !fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("libc")) {
        assert!(Instant::now() < deadline, "sleep never mapped libc");
        thread::sleep(Duration::from_millis(5));
    }
    let ps = pid.to_string();
    let text = stat(&[&ps]);
    let json = stat(&["--json", &ps, &std::process::id().to_string()]);
    drop(sleep);
    assert_eq!(text.code("--stat sleep"), 0, "{}", text.stderr_str());
    let t = parse_stat_text(&text.stdout_str());
    assert_eq!(t.len(), 1, "{}", text.stdout_str());
    assert_eq!(t[0].0, pid);
    assert!(
        t[0].1 > 0,
        "no text counted for sleep:\n{}",
        text.stdout_str()
    );
    assert_eq!(
        (t[0].2, t[0].3),
        (0, 0),
        "huge bytes of sleep:\n{}",
        text.stdout_str()
    );
    assert_eq!(
        json.code("--stat --json sleep self"),
        0,
        "{}",
        json.stderr_str()
    );
    let j = parse_stat_json(&json.stdout_str());
    assert_eq!(j.len(), 2, "one line per process:\n{}", json.stdout_str());
    assert_eq!(j[0], t[0]);
    assert_eq!(j[1].0, std::process::id());

    // A PID that does not exist.
    let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let missing = (2..pid_max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap()
        .to_string();
    for args in [&[missing.as_str()][..], &["--json", &missing]] {
        let r = stat(args);
        let what = format!("hugeload --stat {}", args.join(" "));
        let stderr = r.stderr_str();
        assert_eq!(r.code(&what), 1, "`{what}`\n{stderr}");
        assert!(r.stdout.is_empty(), "`{what}`: stdout {:?}", r.stdout_str());
        assert!(
            stderr.lines().count() == 1
                && stderr.ends_with('\n')
                && stderr.starts_with("hugeload: ")
                && stderr.contains(&missing),
            "`{what}`: expected one line naming the PID:\n{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. perf maps

/// Runs the command `make` builds. With `backend` hugetlb, when the `-v`
/// report says the pool had too few free pages (something else on the
/// machine lowered or drained it since the test raised it), raises the
/// pool again and reruns, three runs at most.
fn run_hugetlb_retry(backend: &str, make: impl Fn() -> Command) -> (String, Run) {
    let mut tries = 0;
    loop {
        let c = make();
        let what = describe(&c);
        let r = run(c);
        tries += 1;
        let short = r.stderr_str().contains("free pages in the pool)");
        if backend != "hugetlb" || !short || tries == 3 {
            return (what, r);
        }
        let _ = ensure_hugetlb_pool(HUGETLB_POOL_PAGES);
        thread::sleep(Duration::from_millis(300));
    }
}

fn perf_can_record(dir: &Path) -> Result<PathBuf, Skip> {
    let perf = need_tool("perf")?;
    let data = dir.join("check.data");
    let mut c = Command::new(&perf);
    c.args(["record", "-q", "-e", "cpu-clock", "-o"])
        .arg(&data)
        .args(["--", "/bin/true"]);
    let r = run(c);
    if !r.success() || !data.exists() {
        let paranoid =
            fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").unwrap_or_default();
        return Err(Skip(format!(
            "perf cannot record here (perf_event_paranoid {}): {}",
            paranoid.trim(),
            r.stderr_str().trim()
        )));
    }
    Ok(perf)
}

/// One `perf record` of the spinning fixture; returns (report text,
/// hot function address, huge ranges of the -v report).
fn perf_run(
    perf: &Path,
    dir: &Path,
    backend: &str,
    perf_map: bool,
) -> (String, u64, Vec<HugeLine>) {
    let prog = modes("pie").unwrap_or_else(|s| panic!("{}", s.0));
    let data = dir.join(format!("{backend}-{perf_map}.data"));
    let (what, r) = run_hugetlb_retry(backend, || {
        let mut c = command(perf);
        c.args(["record", "-q", "-e", "cpu-clock", "-o"])
            .arg(&data)
            .arg("--")
            .arg(hugeload());
        if perf_map {
            c.arg("--perf-map");
        }
        c.args(["-v", "-b", backend])
            .arg(&prog)
            .args(["spin", "600"]);
        c
    });
    let stderr = r.stderr_str();
    assert_eq!(r.code(&what), 9, "`{what}`\n{stderr}");
    let out = r.stdout_str();
    assert!(out.contains("spun=1\n"), "`{what}`: {out}");
    let pid: u32 = value(&out, "pid").unwrap().parse().unwrap();
    let hot =
        u64::from_str_radix(value(&out, "hot").unwrap().trim_start_matches("0x"), 16).unwrap();
    let map = PathBuf::from(format!("/tmp/perf-{pid}.map"));
    let report = parse_report(&stderr);
    let in_huge = report
        .huge
        .iter()
        .any(|h| h.backend == backend && h.range.start <= hot && hot < h.range.end);
    assert!(
        in_huge,
        "`{what}`: hl_hot_spin at {hot:x} is not in a reported {backend} range\n{stderr}"
    );
    if perf_map {
        let text = fs::read_to_string(&map)
            .unwrap_or_else(|e| panic!("`{what}`: {}: {e}\n{stderr}", map.display()));
        assert!(text.contains("hl_hot_spin"), "{}:\n{text}", map.display());
    } else {
        // A stale map of an earlier process with this PID would name it.
        let _ = fs::remove_file(&map);
    }
    let mut c = Command::new(perf);
    c.args(["report", "--stdio", "--sort", "sym", "-i"])
        .arg(&data);
    let rep = run(c);
    let _ = fs::remove_file(&map);
    assert!(rep.success(), "perf report: {}", rep.stderr_str());
    (rep.stdout_str(), hot, report.huge)
}

fn perf_names_functions(backend: &str) {
    let dir = scratch_dir(&format!("perf-{backend}"));
    let perf = or_skip!(perf_can_record(&dir));
    or_skip!(modes("pie"));
    let _guard = (backend == "hugetlb").then(pool_exclusive);
    if backend == "hugetlb" {
        or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    }
    let (with, _, _) = perf_run(&perf, &dir, backend, true);
    assert!(
        with.contains("[.] hl_hot_spin"),
        "perf report with --perf-map ({backend}) does not name hl_hot_spin:\n{with}"
    );
    // Without the map perf cannot name code that has no file behind it:
    // it shows the raw address (why --perf-map exists).
    let (without, hot, _) = perf_run(&perf, &dir, backend, false);
    assert!(
        !without.contains("hl_hot_spin"),
        "perf named hl_hot_spin without a perf map ({backend}): the code is not where the \
         test thinks\n{without}"
    );
    let raw = without.lines().any(|l| {
        l.split("[.] 0x")
            .nth(1)
            .and_then(|a| u64::from_str_radix(a.trim(), 16).ok())
            .is_some_and(|a| hot <= a && a < hot + 16)
    });
    assert!(
        raw,
        "perf report without a map ({backend}) shows no raw address in hl_hot_spin \
         ({hot:x}):\n{without}"
    );
}

case_tests! { perf_names_functions {
    perf_map_names_functions_thp: ("thp");
    perf_map_names_functions_hugetlb: ("hugetlb");
}}

// ---------------------------------------------------------------------------
// 7. gdb and cores

fn gdb(args: &[&str], extra: impl FnOnce(&mut Command)) -> Run {
    let mut c = command("gdb");
    c.args(["-nx", "-batch"]).args(args);
    extra(&mut c);
    run(c)
}

/// `gdb -p PID` on a program blocked under the launcher (as root, so
/// /proc/PID/exe names the program) shows the program's functions.
#[test]
fn gdb_attach_under_launcher() {
    or_skip!(need_tool("gdb"));
    or_skip!(need_root("gdb -p, and /proc/PID/exe fixed by the launcher"));
    if fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|s| s.trim() == "3") {
        skip("kernel.yama.ptrace_scope is 3: no process may attach");
        return;
    }
    let prog = or_skip!(modes("pie"));
    let mut r = Running::start(hl(&["-b", "thp"], &prog, &["block"]));
    r.wait_for_line("ready");
    r.wait_blocked_on_stdin();
    let pid = r.pid().to_string();
    let g = gdb(&["-p", &pid, "-ex", "bt"], |_| {});
    let out = r.finish();
    assert_eq!(out.code("blocked fixture"), 9, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "ready\ndone\n");
    let bt = g.stdout_str();
    assert!(
        bt.contains("in modes_block_in_read ()") && bt.contains("in main ()"),
        "gdb -p: backtrace lacks the program's functions\nstdout:\n{bt}\nstderr:\n{}",
        g.stderr_str()
    );
}

/// Serializes the tests that change /proc/sys/kernel/core_pattern.
static CORE_LOCK: Mutex<()> = Mutex::new(());

/// Sets core_pattern; puts the old one back when dropped.
struct CorePattern {
    old: String,
}

impl CorePattern {
    fn set(pattern: &str) -> Result<CorePattern, Skip> {
        const KNOB: &str = "/proc/sys/kernel/core_pattern";
        let old = fs::read_to_string(KNOB).map_err(|e| Skip(format!("{KNOB}: {e}")))?;
        fs::write(KNOB, pattern).map_err(|e| Skip(format!("cannot write {KNOB}: {e}")))?;
        Ok(CorePattern { old })
    }
}

impl Drop for CorePattern {
    fn drop(&mut self) {
        let _ = fs::write("/proc/sys/kernel/core_pattern", self.old.trim_end());
    }
}

/// The bytes at `addr` in a core file, if a PT_LOAD with contents holds
/// them.
fn core_bytes(core: &[u8], addr: u64, n: u64) -> Option<Vec<u8>> {
    let phoff = le64(core, 32) as usize;
    let phnum = le16(core, 56) as usize;
    (0..phnum).find_map(|i| {
        let p = &core[phoff + i * 56..phoff + (i + 1) * 56];
        let (ty, off, vaddr, filesz) = (le32(p, 0), le64(p, 8), le64(p, 16), le64(p, 32));
        (ty == PT_LOAD && vaddr <= addr && addr + n <= vaddr + filesz).then(|| {
            let at = (off + addr - vaddr) as usize;
            core[at..at + n as usize].to_vec()
        })
    })
}

/// A program that crashes in code on huge pages (THP and hugetlb) dumps a
/// core holding that code: `gdb PROGRAM CORE` names the functions and
/// shows the real instruction bytes at the faulting pc.
#[test]
fn core_dump_holds_huge_page_code() {
    or_skip!(need_tool("gdb"));
    or_skip!(need_root("writes /proc/sys/kernel/core_pattern"));
    let prog = or_skip!(modes("pie"));
    let _hugetlb = pool_exclusive();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let _core = lock(&CORE_LOCK);
    let dir = PathBuf::from(format!("/tmp/hugeload-modes-cores-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let _remove = RemoveDir(dir.clone());
    let pattern = or_skip!(CorePattern::set(&format!("{}/core.%p", dir.display())));
    for backend in ["thp", "hugetlb"] {
        let (what, r) = run_hugetlb_retry(backend, || {
            for e in fs::read_dir(&dir).unwrap().flatten() {
                let _ = fs::remove_file(e.path());
            }
            let mut c = command("sh");
            c.args(["-c", "ulimit -c unlimited || exit 99; exec \"$@\"", "sh"])
                .arg(hugeload())
                .args(["-v", "-b", backend])
                .arg(&prog)
                .arg("crash");
            c
        });
        let stderr = r.stderr_str();
        if r.exit_code() == Some(99) {
            skip(&format!("cannot raise RLIMIT_CORE: {stderr}"));
            return;
        }
        assert_eq!(r.signal(), Some(11), "`{what}`: {}\n{stderr}", r.end);
        assert!(r.core_dumped, "`{what}`: no core dumped\n{stderr}");
        let core = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("core.")
            })
            .unwrap_or_else(|| panic!("`{what}`: no core file in {}", dir.display()));
        let g = gdb(
            &[
                "-ex",
                "bt",
                "-ex",
                "x/4xb $pc",
                "-ex",
                "info symbol $pc",
                "-ex",
                "p/x $pc",
            ],
            |c| {
                c.arg(&prog).arg(&core);
            },
        );
        let out = g.stdout_str();
        let ctx = format!(
            "{backend}: gdb {} {}\n{out}\n{}\nhugeload -v:\n{stderr}",
            prog.display(),
            core.display(),
            g.stderr_str()
        );
        for f in ["hl_crash_fn", "modes_crash_here", "main"] {
            assert!(
                out.contains(&format!("in {f} (")),
                "{ctx}\nbacktrace lacks {f}"
            );
        }
        let pc = out
            .lines()
            .find_map(|l| l.strip_prefix("$1 = 0x"))
            .and_then(|a| u64::from_str_radix(a.trim(), 16).ok())
            .unwrap_or_else(|| panic!("{ctx}\nno pc"));
        let in_huge = parse_report(&stderr)
            .huge
            .iter()
            .any(|h| h.backend == backend && h.range.start <= pc && pc < h.range.end);
        assert!(
            in_huge,
            "{ctx}\nthe crash pc {pc:x} is not in a {backend} huge range"
        );
        let shown: Vec<u8> = out
            .lines()
            .find(|l| l.contains("<hl_crash_fn>:"))
            .map(|l| {
                l.split(':')
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(shown, CRASH_BYTES, "{ctx}\nx/4xb $pc");
        let bytes = fs::read(&core).unwrap();
        assert_eq!(
            core_bytes(&bytes, pc, 4).as_deref(),
            Some(&CRASH_BYTES[..]),
            "{ctx}\nthe core file does not hold the code at the pc ({backend})"
        );
    }
    drop(pattern);
}

/// `gdb --args ./patched` stops at a breakpoint in the program and at one
/// in libc.
fn gdb_pt_interp(kind: &str) {
    or_skip!(need_tool("gdb"));
    let prog = or_skip!(modes(kind));
    let pair = or_skip!(make_pair(&format!("gdb-{kind}"), &prog));
    let name = format!("./{}", pair.name);
    let g = gdb(
        &[
            "-ex",
            "set breakpoint pending on",
            "-ex",
            "break modes_mark",
            "-ex",
            "break puts",
            "-ex",
            "run",
            "-ex",
            "bt",
            "-ex",
            "info symbol $pc",
            "-ex",
            "continue",
            "-ex",
            "bt",
            "-ex",
            "info symbol $pc",
            "-ex",
            "continue",
            "--args",
            &name,
            "mark",
        ],
        |c| {
            c.current_dir(&pair.patched_dir);
        },
    );
    let out = g.stdout_str();
    let ctx = format!(
        "{kind}: gdb --args {name} mark\nstdout:\n{out}\nstderr:\n{}",
        g.stderr_str()
    );
    let first = out
        .find("Breakpoint 1, ")
        .unwrap_or_else(|| panic!("{ctx}\nno stop at modes_mark"));
    let second = out
        .find("Breakpoint 2, ")
        .unwrap_or_else(|| panic!("{ctx}\nno stop at puts"));
    assert!(first < second, "{ctx}\nstops out of order");
    let (a, b) = out.split_at(second);
    assert!(a[first..].contains("modes_mark"), "{ctx}\nfirst stop");
    assert!(
        a.contains(&format!(
            "in section .text of {}",
            canonical(&pair.patched).display()
        )),
        "{ctx}\nfirst stop not in the program"
    );
    assert!(
        b.contains("libc.so.6") && b.lines().any(|l| l.starts_with("puts in section .text of")),
        "{ctx}\nsecond stop not in libc's puts"
    );
    assert!(
        b.contains("modes_mark") && b.contains("main"),
        "{ctx}\nbacktrace at puts"
    );
    assert!(
        out.contains("mark\n") && out.contains("exited with code 011"),
        "{ctx}\nexit"
    );
}

case_tests! { gdb_pt_interp {
    gdb_breakpoints_pt_interp_pie: ("pie");
    gdb_breakpoints_pt_interp_nopie: ("nopie");
}}

/// A breakpoint set before `run` in code that hugeload then moves onto huge
/// pages (`hl_hot_spin` sits in the middle of 6 MiB of text) still stops
/// the program: in PT_INTERP mode the huge-page copy is made from the
/// kernel's mapping, where gdb wrote the breakpoint, and a traced process
/// gets THP (a debugger cannot write into hugetlb code).
#[test]
fn gdb_breakpoint_in_huge_text_pt_interp() {
    or_skip!(need_tool("gdb"));
    let prog = or_skip!(modes("pie"));
    let pair = or_skip!(make_pair("gdb-huge", &prog));
    let name = format!("./{}", pair.name);
    let g = gdb(
        &[
            "-ex",
            "break hl_hot_spin",
            "-ex",
            "run",
            "-ex",
            "bt",
            "-ex",
            "continue",
            "--args",
            &name,
            "spin",
            "1",
        ],
        |c| {
            c.current_dir(&pair.patched_dir);
            c.env("HUGELOAD_VERBOSE", "1");
        },
    );
    let (out, err) = (g.stdout_str(), g.stderr_str());
    let ctx = format!("gdb --args {name} spin 1\nstdout:\n{out}\nstderr:\n{err}");
    let hot = value(&out, "hot")
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("{ctx}\nno hot= line"));
    let report = parse_report(&err);
    let holder = report
        .huge
        .iter()
        .find(|h| h.range.start <= hot && hot < h.range.end);
    let kind = &holder
        .unwrap_or_else(|| panic!("{ctx}\nhl_hot_spin is not on a huge page"))
        .backend;
    assert_eq!(kind, "thp", "{ctx}\na traced process should get THP");
    assert!(
        out.contains("Breakpoint 1, ") && out.contains("hl_hot_spin"),
        "{ctx}\nno stop"
    );
    assert!(
        !err.contains("Cannot remove breakpoints") && !err.contains("Cannot insert breakpoint"),
        "{ctx}\ngdb could not write its breakpoint"
    );
}

/// Without /proc (a chroot or a container that lacks it), a PT_INTERP
/// program still finds its real interpreter (musl's here, from the
/// program's DT_NEEDED read through the name it was run by) and gets its
/// text on huge pages: same output as the unpatched program.
#[test]
fn pt_interp_without_proc() {
    or_skip!(need_tool("unshare"));
    or_skip!(need_root(
        "mounting over /proc in a private mount namespace"
    ));
    for kind in ["musl", "pie"] {
        let prog = or_skip!(modes(kind));
        let pair = or_skip!(make_pair(&format!("noproc-{kind}"), &prog));
        let plain = pair.plain_dir.join(&pair.name);
        let script = format!(
            "mount -t tmpfs none /proc && {} info; echo \"exit=$?\"",
            sh_quote(&pair.patched.to_string_lossy())
        );
        let mut with = command("unshare");
        with.args(["--mount", "--", "/bin/sh", "-c", &script]);
        with.env("HUGELOAD_VERBOSE", "1");
        let with = run(with);
        let mut direct = command(&plain);
        direct.arg("info");
        let direct = run(direct);
        let (out, err) = (with.stdout_str(), with.stderr_str());
        let ctx = format!("{kind} without /proc\nstdout:\n{out}\nstderr:\n{err}");
        let expected = format!("exit={}", direct.exit_code().unwrap_or(-1));
        assert!(out.contains(&expected), "{ctx}\nexpected {expected}");
        assert!(
            err.contains("hugeload: load "),
            "{ctx}\nhugeload did not run"
        );
        assert!(
            !err.contains("cannot read the program"),
            "{ctx}\nprogram not found"
        );
        let wanted = if kind == "musl" {
            "ld-musl"
        } else {
            "ld-linux"
        };
        assert!(
            err.contains("interpreter /lib") && err.contains(wanted),
            "{ctx}\nwrong interpreter"
        );
    }
}

/// A stripped program whose few dynamic symbols cover little of the code
/// moved to huge pages still gets one perf-map line per moved range (next
/// to its symbols), so no sample there is left without a name; with the
/// page cache, no map is needed and none is written.
#[test]
fn perf_map_of_a_stripped_program_with_a_few_dynamic_symbols() {
    let gcc = or_skip!(need_tool("gcc"));
    let strip = or_skip!(need_tool("strip"));
    let dir = scratch_dir("perfmap-dynsym");
    let prog = dir.join("view-rdynamic");
    let mut c = Command::new(gcc);
    c.args(["-O1", "-pie", "-fPIE", "-rdynamic", "-DPAD_MB=8"])
        .arg(fixture_sources().join("view.c"))
        .arg("-o")
        .arg(&prog);
    assert!(run(c).success());
    let mut c = Command::new(strip);
    c.arg("--strip-all").arg(&prog);
    assert!(run(c).success());
    let r = run(hl(&["--perf-map", "-b", "thp"], &prog, &["base"]));
    assert_eq!(r.code("view base"), 0, "{}", r.stderr_str());
    // The map hugeload wrote for that run: the newest naming the program.
    let newest = fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("perf-"))
        .filter(|e| {
            fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&*prog.to_string_lossy()))
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("no perf map names the program");
    let text = fs::read_to_string(newest.path()).unwrap();
    let _ = fs::remove_file(newest.path());
    let range_line = format!("[{}]", prog.display());
    assert!(
        text.lines().any(|l| l.ends_with(&range_line)),
        "no range line:\n{text}"
    );
    assert!(
        text.lines().any(|l| !l.contains('[')),
        "no symbol line:\n{text}"
    );
    // The page cache: the code is the file's own mapping; no map.
    let r = run(hl(&["-v", "--perf-map"], &prog, &["base"]));
    assert!(
        r.stderr_str().contains("perf map: none written"),
        "{}",
        r.stderr_str()
    );
}
