//! Integration tests of libraries on 2 MiB pages: every whole 2 MiB block
//! of a library's code goes on a huge page, whether ld.so maps the library
//! at start-up (DT_NEEDED) or later (`dlopen`), and whether the page cache
//! can serve it (GNU ld: code congruent with its file offsets modulo 2 MiB)
//! or not (LLD: code one page above its file offsets, which needs a copy).
//!
//! Each case runs through the launcher and as a PT_INTERP-patched copy,
//! and checks what a user would: the same stdout and exit status as a
//! direct run; in `/proc/PID/smaps` of the running process each whole
//! 2 MiB block of the library's text (computed from its program headers at
//! the load bias its file mappings show) on 2 MiB pages: `FilePmdMapped`
//! where the block is congruent with its file offset, a copy
//! (`AnonHugePages` or hugetlb) where it is not; and under `-v` a line
//! `hugeload: library PATH ...` that names the library and what it got
//! (`N x 2M pagecache|thp|hugetlb`).
//!
//! Fixtures: `biglib.c` (about 9 MiB of code, all of it run by
//! `big_checksum`) linked by GNU ld, LLD and musl-gcc; `libuser.c` (calls it
//! through `dlopen` or as a DT_NEEDED library with RUNPATH `$ORIGIN`,
//! prints the checksum and `ready`, waits for stdin to end, exits 7);
//! `pyext.c` (the same code as a Python extension module). Real programs:
//! python3, rustc (a copy of the toolchain), java (a JDK mirror whose
//! java, libjli and libjvm are copies).
//!
//! Every run that may prime the page cache (the default backend does)
//! runs fresh copies in a scratch directory, never the system's files.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Copies, modes, commands

/// A copy of `src` at `dir/name`, made with cp (see `real_copy` on why not
/// `fs::copy`): its page cache is what writing it left (dirty, small
/// folios), so hugeload has to prime it to serve it from the page cache.
fn fresh_copy(src: &Path, dir: &Path, name: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let dst = dir.join(name);
    let _ = fs::remove_file(&dst);
    let mut c = command("cp");
    c.arg("--").arg(src).arg(&dst);
    let r = run(c);
    assert!(
        r.success(),
        "cp {} {}: {}",
        src.display(),
        dst.display(),
        r.short()
    );
    dst
}

/// hugeload copied to `/tmp/hlL<pid>/hugeload`, no longer than musl's
/// ld.so path (24 bytes, shorter than glibc's): `patchelf
/// --set-interpreter` then rewrites PT_INTERP in place for both libcs and
/// keeps the program's layout.
fn short_hugeload() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(format!("/tmp/hlL{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hugeload");
        let tmp = dir.join(".hugeload.tmp");
        let mut c = command("cp");
        c.arg("--").arg(hugeload()).arg(&tmp);
        assert!(run(c).success());
        set_mode(&tmp, 0o755);
        fs::rename(&tmp, &path).unwrap();
        assert!(
            path.as_os_str().len() <= MUSL_INTERP.len(),
            "{}",
            path.display()
        );
        path
    })
    .clone()
}

/// How the program is started through hugeload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `hugeload -v [OPTS] PROGRAM ARGS`.
    Launcher,
    /// A copy of the program whose PT_INTERP names hugeload, run directly
    /// with `HUGELOAD_VERBOSE=1` and the options as `HUGELOAD_*` variables.
    PtInterp,
}

/// hugeload's options for a run (the same in both modes).
#[derive(Clone, Copy, Debug, Default)]
struct Opts {
    backend: Option<&'static str>,
    strategy: Option<&'static str>,
    perf_map: bool,
}

const DEFAULT: Opts = Opts {
    backend: None,
    strategy: None,
    perf_map: false,
};

/// The program to run in `mode`: `prog` itself for the launcher, else its
/// PT_INTERP-patched copy `prog-pt` next to it (same directory, so that
/// `$ORIGIN` is the same).
fn program_for(mode: Mode, prog: &Path) -> Result<PathBuf, Skip> {
    match mode {
        Mode::Launcher => Ok(prog.to_path_buf()),
        Mode::PtInterp => {
            let name = format!("{}-pt", prog.file_name().unwrap().to_string_lossy());
            let patched = prog.with_file_name(name);
            let _ = fs::remove_file(&patched);
            copy_with_interp(prog, &patched, &short_hugeload())
        }
    }
}

/// The command that runs `program` (from [`program_for`]) with `args`
/// through hugeload in `mode`, with `-v`. `LD_LIBRARY_PATH` (cargo sets
/// it to the toolchain's lib) is removed: ld.so must find what the
/// program's own RUNPATH names.
fn hl_run(mode: Mode, opts: Opts, program: &Path, args: &[&str]) -> Command {
    let mut cmd = match mode {
        Mode::Launcher => {
            let mut o: Vec<String> = vec!["-v".into()];
            if let Some(b) = opts.backend {
                o.push(format!("--backend={b}"));
            }
            if let Some(s) = opts.strategy {
                o.push(format!("--strategy={s}"));
            }
            if opts.perf_map {
                o.push("--perf-map".into());
            }
            hl(&o, program, args)
        }
        Mode::PtInterp => {
            let mut c = command(program);
            c.args(args).env("HUGELOAD_VERBOSE", "1");
            if let Some(b) = opts.backend {
                c.env("HUGELOAD_BACKEND", b);
            }
            if let Some(s) = opts.strategy {
                c.env("HUGELOAD_STRATEGY", s);
            }
            if opts.perf_map {
                c.env("HUGELOAD_PERFMAP", "1");
            }
            c
        }
    };
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

/// `program args` run directly (no hugeload), stdin at its end.
fn direct_run(program: &Path, args: &[&str], configure: impl Fn(&mut Command)) -> Run {
    let mut c = command(program);
    c.args(args).env_remove("LD_LIBRARY_PATH");
    configure(&mut c);
    run(c)
}

// ---------------------------------------------------------------------------
// A held run

/// When a running program has loaded what it loads.
#[derive(Clone, Copy, Debug)]
enum Until<'a> {
    /// It printed a line `ready`.
    ReadyLine,
    /// Its main thread is blocked reading fd 0 with this file mapped.
    StdinRead(&'a Path),
}

/// What a program showed while it was held.
struct Held {
    what: String,
    pid: u32,
    run: Run,
    maps: Vec<Map>,
    /// `hugeload --stat --json PID` while it was held, when asked for.
    stat: Option<Run>,
}

impl Held {
    fn stderr(&self) -> String {
        self.run.stderr_str()
    }

    /// A readable dump for failure messages.
    fn dump(&self) -> String {
        let mut s = format!(
            "command: {}\npid: {}\n{}\nstderr:\n{}\nexecutable mappings:\n",
            self.what,
            self.pid,
            self.run.end,
            self.stderr()
        );
        for m in self.maps.iter().filter(|m| m.is_exec()) {
            s.push_str(&format!(
                "  {} {} {:x} filepmd={}K anonhuge={}K hugetlb={}K {}\n",
                m.span,
                m.perms,
                m.offset,
                m.file_pmd_bytes / 1024,
                m.anon_huge_bytes / 1024,
                m.hugetlb_bytes / 1024,
                m.name
            ));
        }
        s
    }
}

/// Starts `cmd`, waits until it is ready, reads its smaps (and, with
/// `stat`, runs `hugeload --stat --json PID`), closes its stdin and
/// collects how it ended.
fn hold(cmd: Command, until: Until<'_>, stat: bool) -> Held {
    // The default backend copies what the page cache cannot serve into
    // hugetlb pages while the pool has free ones.
    let _pool = pool_shared();
    let mut child = Running::start(cmd);
    let what = child.what.clone();
    let pid = child.pid();
    // For StdinRead: the file's name as /proc/PID/maps shows it.
    let file = match until {
        Until::StdinRead(p) => Some(canonical(p).to_string_lossy().into_owned()),
        Until::ReadyLine => None,
    };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if Instant::now() >= deadline {
            child.fail(&format!("not ready after {TIMEOUT:?}"));
        }
        if let Some(status) = child.try_wait() {
            child.fail(&format!("exited before it was ready: {status}"));
        }
        match &file {
            None => {
                if child
                    .next_line(Duration::from_millis(20))
                    .is_ok_and(|l| l == "ready")
                {
                    break;
                }
            }
            Some(file) => {
                let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
                if maps.contains(file.as_str()) && child.is_blocked_reading_stdin() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let maps = match read_smaps(pid) {
        Ok(m) => m,
        Err(e) => child.fail(&format!("read /proc/{pid}/smaps: {e}")),
    };
    let stat = stat.then(|| run(hl_command(&["--stat", "--json", &pid.to_string()])));
    let run = child.finish();
    Held {
        what,
        pid,
        run,
        maps,
        stat,
    }
}

// ---------------------------------------------------------------------------
// A library's text in a running process

/// Where one library's text lies in a process.
struct LibText {
    /// The library file (canonical: the name /proc/PID/maps shows).
    file: PathBuf,
    elf: ElfInfo,
    bias: u64,
    /// Its whole 2 MiB blocks of text (what the conservative strategy puts
    /// on huge pages), with whether each is congruent with its file offset.
    whole: Vec<(u64, bool)>,
}

impl LibText {
    /// `lib` as mapped in `h`; panics (with the dump) if it is not.
    fn of(h: &Held, lib: &Path) -> LibText {
        let file = canonical(lib);
        let elf = ElfInfo::read(&file);
        let bias = bias_from_maps(&h.maps, &file, &elf).unwrap_or_else(|| {
            panic!(
                "{} is not mapped (or its file mappings fit no single bias)\n{}",
                file.display(),
                h.dump()
            )
        });
        let whole = elf
            .interior_blocks(bias)
            .into_iter()
            .map(|b| (b, is_congruent(&elf, bias, b)))
            .collect();
        LibText {
            file,
            elf,
            bias,
            whole,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} at bias {:x}: text {:?}, whole 2 MiB blocks {:x?}",
            self.file.display(),
            self.bias,
            self.elf
                .text_spans(self.bias)
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            self.whole
        )
    }
}

/// Whether the 2 MiB block at `block` lies where its file offset says
/// modulo 2 MiB (the page cache can map it with one PMD entry).
fn is_congruent(elf: &ElfInfo, bias: u64, block: u64) -> bool {
    elf.loads()
        .filter(|p| p.p_flags & PF_X != 0)
        .find(|p| {
            let start = bias + page_down(p.p_vaddr);
            let end = bias + page_up(p.p_vaddr + p.p_memsz);
            start <= block && block < end
        })
        .is_some_and(|p| (bias + p.p_vaddr).wrapping_sub(p.p_offset) % HUGE == 0)
}

/// Bytes of the block at `b` in executable mappings, by kind:
/// (all huge, FilePmdMapped, AnonHugePages + hugetlb).
fn block_bytes(maps: &[Map], b: u64) -> (u64, u64, u64) {
    let block = Span {
        start: b,
        end: b + HUGE,
    };
    let mut out = (0, 0, 0);
    for m in maps.iter().filter(|m| m.is_exec()) {
        let overlap = m.span.overlap(&block);
        if overlap == 0 {
            continue;
        }
        out.0 += m.huge_bytes.min(overlap);
        out.1 += m.file_pmd_bytes.min(overlap);
        out.2 += (m.anon_huge_bytes + m.hugetlb_bytes).min(overlap);
    }
    out
}

/// Asserts that every whole 2 MiB block of `lib`'s text is on a 2 MiB page
/// in `h`: from the page cache (`FilePmdMapped`) where the block is
/// congruent with its file offset, a copy (`AnonHugePages` or hugetlb)
/// where it is not. Returns the library's text.
fn assert_library_huge(h: &Held, lib: &Path) -> LibText {
    let t = LibText::of(h, lib);
    assert!(
        !t.whole.is_empty(),
        "{}: no whole 2 MiB block of text: not a test of huge pages\n{}",
        t.describe(),
        h.dump()
    );
    let mut wrong = Vec::new();
    for &(b, congruent) in &t.whole {
        let (huge, file_pmd, copy) = block_bytes(&h.maps, b);
        let ok = if congruent {
            file_pmd == HUGE
        } else {
            copy == HUGE
        };
        if !ok {
            wrong.push(format!(
                "block {b:x} ({}): {huge} bytes on 2 MiB pages, {file_pmd} FilePmdMapped, \
                 {copy} AnonHugePages/hugetlb",
                if congruent {
                    "congruent: wants FilePmdMapped"
                } else {
                    "not congruent: wants a copy"
                }
            ));
        }
    }
    // smaps counts per mapping: a mapping holding several blocks must have
    // 2 MiB pages enough for all of them (one block's count must not stand
    // in for another's).
    for m in h.maps.iter().filter(|m| m.is_exec()) {
        let inside = |b: u64| m.span.start <= b && b + HUGE <= m.span.end;
        let (mut cached, mut copied) = (0, 0);
        for &(_, congruent) in t.whole.iter().filter(|(b, _)| inside(*b)) {
            if congruent {
                cached += HUGE;
            } else {
                copied += HUGE;
            }
        }
        if m.file_pmd_bytes < cached || m.anon_huge_bytes + m.hugetlb_bytes < copied {
            wrong.push(format!(
                "mapping {}: {} FilePmdMapped for {cached} bytes of congruent blocks, {} \
                 AnonHugePages/hugetlb for {copied} bytes of copied blocks",
                m.span,
                m.file_pmd_bytes,
                m.anon_huge_bytes + m.hugetlb_bytes
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "library text not on 2 MiB pages: {}\n  {}\n{}",
        t.describe(),
        wrong.join("\n  "),
        h.dump()
    );
    t
}

/// Asserts that no block `lib`'s text touches is on a 2 MiB page in `h`.
fn assert_library_small(h: &Held, lib: &Path) {
    let t = LibText::of(h, lib);
    for b in t.elf.touched_blocks(t.bias) {
        let (huge, _, _) = block_bytes(&h.maps, b);
        assert_eq!(
            huge,
            0,
            "block {b:x} of {} is on 2 MiB pages\n{}",
            t.describe(),
            h.dump()
        );
    }
}

/// The `-v` lines for `lib`: `hugeload: library PATH ...` where PATH ends
/// in `/NAME` (the library's file name; PATH is the one ld.so used) and
/// the line says what it got, `N x 2M pagecache|thp|hugetlb` (one or more
/// ranges, on one line or several); their N add up to at least the
/// library's whole blocks. Returns those lines.
fn assert_library_line(h: &Held, lib: &Path, t: &LibText) -> String {
    let stderr = h.stderr();
    let name = format!("/{}", lib.file_name().unwrap().to_string_lossy());
    let got = |l: &str| -> u64 {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.windows(4)
            .filter(|x| {
                x[1] == "x"
                    && x[2] == "2M"
                    && ["pagecache", "thp", "hugetlb"]
                        .contains(&x[3].trim_end_matches([',', ';', ')', ':']))
            })
            .filter_map(|x| x[0].trim_start_matches('(').parse::<u64>().ok())
            .sum()
    };
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.strip_prefix("hugeload: library ")
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|path| path.trim_end_matches(':').ends_with(&name))
        })
        .filter(|l| got(l) > 0)
        .collect();
    assert!(
        !lines.is_empty(),
        "no `hugeload: library .../{}` line saying `N x 2M pagecache|thp|hugetlb`\n{}",
        &name[1..],
        h.dump()
    );
    let pages: u64 = lines.iter().map(|l| got(l)).sum();
    assert!(
        pages >= t.whole.len() as u64,
        "{lines:?}: {pages} 2 MiB pages, fewer than the {} whole blocks of {}\n{}",
        t.whole.len(),
        t.describe(),
        h.dump()
    );
    lines.join("\n")
}

// ---------------------------------------------------------------------------
// The fixture library cases

/// How the program gets the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loaded {
    /// `libuser-dlopen LIB` (dlopen after start-up).
    Dlopen,
    /// `libuser-dlopen LIB --dlmopen` (glibc: into a new namespace).
    Dlmopen,
    /// A program linked with the library (DT_NEEDED, RUNPATH `$ORIGIN`).
    Startup,
}

/// How the library's code lies in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// GNU ld: congruent with its file offsets (the page cache serves it).
    Congruent,
    /// LLD: a page above its file offsets (only a copy can serve it).
    Shifted,
}

/// A fixture program and library, copied into a fresh directory.
struct Case {
    /// The program copy (not yet patched).
    prog: PathBuf,
    /// The library copy.
    lib: PathBuf,
    /// The program's arguments (the library's path for dlopen).
    args: Vec<String>,
}

impl Case {
    fn new(tag: &str, prog: &str, lib: &str, loaded: Loaded) -> Result<Case, Skip> {
        let prog_src = fixture(prog)?;
        let lib_src = fixture(lib)?;
        let dir = scratch_dir(tag);
        let prog = fresh_copy(&prog_src, &dir, prog);
        set_mode(&prog, 0o755);
        let lib = fresh_copy(&lib_src, &dir, lib);
        let args = match loaded {
            Loaded::Dlopen => vec![lib.to_string_lossy().into_owned()],
            Loaded::Dlmopen => vec![lib.to_string_lossy().into_owned(), "--dlmopen".into()],
            Loaded::Startup => Vec::new(),
        };
        Ok(Case { prog, lib, args })
    }

    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// Asserts that the library lies in its file as `layout` says (so that the
/// case tests what its name says).
fn assert_layout(lib: &Path, layout: Layout) {
    let elf = ElfInfo::read(lib);
    let text = elf
        .loads()
        .filter(|p| p.p_flags & PF_X != 0)
        .max_by_key(|p| p.p_memsz)
        .expect("no executable segment");
    let congruent = text.p_vaddr.wrapping_sub(text.p_offset) % HUGE == 0;
    assert_eq!(
        congruent,
        layout == Layout::Congruent,
        "{}: text at {:x}, file offset {:x}: not the {layout:?} layout this case is about",
        lib.display(),
        text.p_vaddr,
        text.p_offset
    );
}

/// A fixture program that gets `lib` as `loaded`, run directly and through
/// hugeload in `mode` (default backend and strategy): the same stdout and
/// exit status (7), and the library's whole blocks on 2 MiB pages as
/// [`assert_library_huge`] says, with its `-v` line.
fn library_case(mode: Mode, prog: &str, lib: &str, loaded: Loaded, layout: Layout) {
    let tag = format!("lib-{prog}-{lib}-{mode:?}");
    let case = or_skip!(Case::new(&tag, prog, lib, loaded));
    assert_layout(&case.lib, layout);
    let args = case.args();
    let d = direct_run(&case.prog, &args, |_| {});
    assert_eq!(d.code("direct run"), 7, "direct run: {}", d.short());
    assert!(d.stdout_str().starts_with("checksum "), "{}", d.short());
    let program = or_skip!(program_for(mode, &case.prog));
    let h = hold(
        hl_run(mode, DEFAULT, &program, &args),
        Until::ReadyLine,
        false,
    );
    assert_eq!(h.run.code(&h.what), 7, "exit status\n{}", h.dump());
    assert_eq!(h.run.stdout_str(), d.stdout_str(), "stdout\n{}", h.dump());
    let t = assert_library_huge(&h, &case.lib);
    let line = assert_library_line(&h, &case.lib, &t);
    note(&format!("{} whole blocks; {line}", t.whole.len()));
}

case_tests! { lld_dlopen {
    lld_library_by_dlopen_launcher: (Mode::Launcher);
    lld_library_by_dlopen_pt_interp: (Mode::PtInterp);
}}
fn lld_dlopen(mode: Mode) {
    library_case(
        mode,
        "libuser-dlopen",
        "libbig-lld.so",
        Loaded::Dlopen,
        Layout::Shifted,
    );
}

case_tests! { lld_dlmopen {
    lld_library_by_dlmopen_in_a_new_namespace_launcher: (Mode::Launcher);
    lld_library_by_dlmopen_in_a_new_namespace_pt_interp: (Mode::PtInterp);
}}
/// glibc keeps a list per link-map namespace: a library `dlmopen`ed into a
/// new one is placed too.
fn lld_dlmopen(mode: Mode) {
    library_case(
        mode,
        "libuser-dlopen",
        "libbig-lld.so",
        Loaded::Dlmopen,
        Layout::Shifted,
    );
}

case_tests! { lld_startup {
    lld_library_at_startup_launcher: (Mode::Launcher);
    lld_library_at_startup_pt_interp: (Mode::PtInterp);
}}
fn lld_startup(mode: Mode) {
    library_case(
        mode,
        "libuser-linked-lld",
        "libbig-lld.so",
        Loaded::Startup,
        Layout::Shifted,
    );
}

case_tests! { bfd_dlopen {
    gnu_ld_library_by_dlopen_from_the_page_cache_launcher: (Mode::Launcher);
    gnu_ld_library_by_dlopen_from_the_page_cache_pt_interp: (Mode::PtInterp);
}}
fn bfd_dlopen(mode: Mode) {
    library_case(
        mode,
        "libuser-dlopen",
        "libbig-bfd.so",
        Loaded::Dlopen,
        Layout::Congruent,
    );
}

case_tests! { musl_startup {
    musl_library_at_startup_launcher: (Mode::Launcher);
    musl_library_at_startup_pt_interp: (Mode::PtInterp);
}}
fn musl_startup(mode: Mode) {
    library_case(
        mode,
        "libuser-linked-musl",
        "libbig-musl.so",
        Loaded::Startup,
        Layout::Congruent,
    );
}

case_tests! { musl_dlopen {
    musl_library_by_dlopen_launcher: (Mode::Launcher);
    musl_library_by_dlopen_pt_interp: (Mode::PtInterp);
}}
fn musl_dlopen(mode: Mode) {
    library_case(
        mode,
        "libuser-dlopen-musl",
        "libbig-musl.so",
        Loaded::Dlopen,
        Layout::Congruent,
    );
}

// ---------------------------------------------------------------------------
// -b off, the environment, perf maps

case_tests! { backend_off {
    backend_off_leaves_libraries_on_4k_pages_launcher: (Mode::Launcher);
    backend_off_leaves_libraries_on_4k_pages_pt_interp: (Mode::PtInterp);
}}
/// `-b off` (HUGELOAD_BACKEND=off): the LLD library at start-up and the
/// GNU ld library by dlopen stay on 4 KiB pages; same output.
fn backend_off(mode: Mode) {
    let off = Opts {
        backend: Some("off"),
        ..DEFAULT
    };
    for (prog, lib, loaded) in [
        ("libuser-linked-lld", "libbig-lld.so", Loaded::Startup),
        ("libuser-dlopen", "libbig-bfd.so", Loaded::Dlopen),
    ] {
        let case = or_skip!(Case::new(
            &format!("lib-off-{prog}-{mode:?}"),
            prog,
            lib,
            loaded
        ));
        let args = case.args();
        let d = direct_run(&case.prog, &args, |_| {});
        let program = or_skip!(program_for(mode, &case.prog));
        let h = hold(hl_run(mode, off, &program, &args), Until::ReadyLine, false);
        assert_eq!(h.run.code(&h.what), 7, "exit status\n{}", h.dump());
        assert_eq!(h.run.stdout_str(), d.stdout_str(), "stdout\n{}", h.dump());
        assert_library_small(&h, &case.lib);
    }
}

case_tests! { no_new_env {
    children_see_no_new_environment_launcher: (Mode::Launcher);
    children_see_no_new_environment_pt_interp: (Mode::PtInterp);
}}
/// A program run through hugeload whose child execs `env` (after the
/// library was loaded at start-up, or by dlopen): the child's environment
/// is the one it gets in a direct run, variable for variable, in order.
fn no_new_env(mode: Mode) {
    for (prog, lib, loaded) in [
        ("libuser-linked-lld", "libbig-lld.so", Loaded::Startup),
        ("libuser-dlopen", "libbig-bfd.so", Loaded::Dlopen),
    ] {
        let case = or_skip!(Case::new(
            &format!("lib-env-{prog}-{mode:?}"),
            prog,
            lib,
            loaded
        ));
        let mut args = case.args();
        args.push("--exec-env");
        let program = or_skip!(program_for(mode, &case.prog));
        // The same environment for both runs, hugeload's variables
        // included (PT_INTERP mode reads them; the child must see them as a
        // direct run's child does, no more).
        let set = |c: &mut Command| {
            c.env("HUGELOAD_LIBTEST_MARK", "1");
            if mode == Mode::PtInterp {
                c.env("HUGELOAD_VERBOSE", "1");
            }
        };
        let d = direct_run(&case.prog, &args, set);
        assert_eq!(d.code("direct run"), 7, "direct run: {}", d.short());
        assert!(
            d.stdout_str().contains("\nHUGELOAD_LIBTEST_MARK=1\n"),
            "env of the direct run's child: {}",
            d.short()
        );
        let mut cmd = hl_run(mode, DEFAULT, &program, &args);
        set(&mut cmd);
        let h = hold(cmd, Until::ReadyLine, false);
        assert_eq!(h.run.code(&h.what), 7, "exit status\n{}", h.dump());
        let env_lines = |s: String| -> Vec<String> { s.lines().map(String::from).collect() };
        assert_eq!(
            env_lines(h.run.stdout_str()),
            env_lines(d.stdout_str()),
            "the child's environment (left: through hugeload, right: direct)\n{}",
            h.dump()
        );
    }
}

case_tests! { perf_map {
    perf_map_names_copied_library_code_launcher: (Mode::Launcher);
    perf_map_names_copied_library_code_pt_interp: (Mode::PtInterp);
}}
/// With perf maps on, the LLD library's copied blocks (anonymous or
/// hugetlb memory, no file behind them) get `/tmp/perf-PID.map` lines:
/// each whole block holds at least one.
fn perf_map(mode: Mode) {
    let case = or_skip!(Case::new(
        &format!("lib-perf-{mode:?}"),
        "libuser-dlopen",
        "libbig-lld.so",
        Loaded::Dlopen
    ));
    let args = case.args();
    let program = or_skip!(program_for(mode, &case.prog));
    let opts = Opts {
        perf_map: true,
        ..DEFAULT
    };
    let h = hold(hl_run(mode, opts, &program, &args), Until::ReadyLine, false);
    let map = PathBuf::from(format!("/tmp/perf-{}.map", h.pid));
    let text = fs::read_to_string(&map).unwrap_or_default();
    let _ = fs::remove_file(&map);
    assert_eq!(h.run.code(&h.what), 7, "exit status\n{}", h.dump());
    let t = assert_library_huge(&h, &case.lib);
    let entries: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let start = u64::from_str_radix(w.next()?.trim_start_matches("0x"), 16).ok()?;
            let size = u64::from_str_radix(w.next()?.trim_start_matches("0x"), 16).ok()?;
            Some((start, size))
        })
        .collect();
    for &(b, _) in &t.whole {
        assert!(
            entries.iter().any(|&(s, n)| b <= s && s + n <= b + HUGE),
            "no perf-map entry in the copied block {b:x} of {}\n{}:\n{text}\n{}",
            t.describe(),
            map.display(),
            h.dump()
        );
    }
}

// ---------------------------------------------------------------------------
// Python: an extension module imported at run time

case_tests! { python_extension {
    python_extension_module_launcher: (Mode::Launcher);
    python_extension_module_pt_interp: (Mode::PtInterp);
}}
/// python3 imports the `bigext` extension module (about 9 MiB of code,
/// loaded with dlopen by the import system): its whole blocks on 2 MiB
/// pages, the same output as a direct run.
fn python_extension(mode: Mode) {
    let ext = or_skip!(fixture("bigext.so"));
    let python = or_skip!(python_elf());
    let dir = scratch_dir(&format!("lib-python-{mode:?}"));
    let module = fresh_copy(&ext, &dir.join("modules"), "bigext.so");
    let python = fresh_copy(&python, &dir, "python3");
    set_mode(&python, 0o755);
    let script = "import sys, bigext\n\
                  print('checksum %016x' % bigext.checksum(0x2545f4914f6cdd1d), flush=True)\n\
                  print('ready', flush=True)\n\
                  sys.stdin.read()\n\
                  sys.exit(7)\n";
    let modules = dir.join("modules");
    let set = |c: &mut Command| {
        c.env("PYTHONPATH", &modules)
            .env("PYTHONDONTWRITEBYTECODE", "1");
    };
    let d = direct_run(&python, &["-c", script], set);
    assert_eq!(d.code("direct python"), 7, "{}", d.short());
    let program = or_skip!(program_for(mode, &python));
    let mut cmd = hl_run(mode, DEFAULT, &program, &["-c", script]);
    set(&mut cmd);
    let h = hold(cmd, Until::ReadyLine, false);
    assert_eq!(h.run.code(&h.what), 7, "exit status\n{}", h.dump());
    assert_eq!(h.run.stdout_str(), d.stdout_str(), "stdout\n{}", h.dump());
    let t = assert_library_huge(&h, &module);
    assert_library_line(&h, &module, &t);
}

// ---------------------------------------------------------------------------
// rustc: a copy of the toolchain

/// The rustc tests share one copy of the toolchain and run one at a time.
static RUSTC: Mutex<()> = Mutex::new(());

/// `DIR/bin/rustc` and the libraries in its `../lib` (librustc_driver,
/// libLLVM): copies of the toolchain's, made once per test process.
fn rustc_copy() -> Result<(PathBuf, Vec<PathBuf>), Skip> {
    static COPY: OnceLock<Result<(PathBuf, Vec<PathBuf>), Skip>> = OnceLock::new();
    COPY.get_or_init(|| {
        need_tool("rustc")?;
        let mut c = command("rustc");
        c.args(["--print", "sysroot"]).env_remove("LD_LIBRARY_PATH");
        let r = run(c);
        if !r.success() {
            return Err(Skip(format!("rustc --print sysroot: {}", r.short())));
        }
        let sysroot = PathBuf::from(r.stdout_str().trim());
        let dir = scratch_dir("lib-rustc");
        let rustc = fresh_copy(&sysroot.join("bin/rustc"), &dir.join("bin"), "rustc");
        set_mode(&rustc, 0o755);
        let mut libs = Vec::new();
        for e in fs::read_dir(sysroot.join("lib")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            if is_file && (name.starts_with("librustc_driver") || name.starts_with("libLLVM")) {
                if is_elf(&e.path()) {
                    libs.push(fresh_copy(&e.path(), &dir.join("lib"), &name));
                } else {
                    // libLLVM-N.so may be a linker script naming the real one.
                    fresh_copy(&e.path(), &dir.join("lib"), &name);
                }
            }
        }
        // The standard library's crates, which rustc reads (not runs) from
        // its sysroot, found from its own path: a link to the toolchain's.
        std::os::unix::fs::symlink(sysroot.join("lib/rustlib"), dir.join("lib/rustlib"))
            .unwrap_or_else(|e| panic!("link {}/lib/rustlib: {e}", dir.display()));
        assert!(
            libs.iter()
                .any(|l| l.to_string_lossy().contains("librustc_driver")),
            "no librustc_driver in {}/lib",
            sysroot.display()
        );
        Ok((rustc, libs))
    })
    .clone()
}

/// The totals of `hugeload --stat --json` (after the mappings array):
/// (text_bytes, huge_bytes).
fn stat_totals(h: &Held) -> (u64, u64) {
    let r = h.stat.as_ref().expect("no --stat run");
    let out = r.stdout_str();
    assert_eq!(r.code("hugeload --stat --json"), 0, "{}", r.short());
    let tail = out
        .rsplit_once("],")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("--stat --json: no mappings array: {out}"));
    let num = |key: &str| -> u64 {
        tail.split(&format!("\"{key}\":"))
            .nth(1)
            .and_then(|v| v.split([',', '}']).next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("--stat --json: no {key} in {tail}"))
    };
    (num("text_bytes"), num("huge_bytes"))
}

/// `rustc - --crate-type=lib --emit=metadata` (it reads the crate from
/// stdin: held there with everything loaded; then an empty crate),
/// through hugeload in `mode` with `strategy`, and `hugeload --stat
/// --json` of it while held. Exit status 0 and stdout as a direct run's.
fn rustc_held(mode: Mode, strategy: &'static str) -> Result<(Held, Vec<PathBuf>), Skip> {
    let (rustc, libs) = rustc_copy()?;
    let out = rustc.with_file_name(format!("empty-{mode:?}-{strategy}.rmeta"));
    let out = out.to_string_lossy().into_owned();
    let args = [
        "-",
        "--crate-type=lib",
        "--crate-name=empty",
        "--emit=metadata",
        "-o",
        &out,
    ];
    let d = direct_run(&rustc, &args, |_| {});
    assert_eq!(d.code("direct rustc"), 0, "{}", d.short());
    let program = program_for(mode, &rustc)?;
    let opts = Opts {
        strategy: Some(strategy),
        ..DEFAULT
    };
    let h = hold(
        hl_run(mode, opts, &program, &args),
        Until::StdinRead(&program),
        true,
    );
    assert_eq!(
        h.run.code(&h.what),
        0,
        "rustc of an empty crate\n{}",
        h.dump()
    );
    assert_eq!(h.run.stdout_str(), d.stdout_str(), "stdout\n{}", h.dump());
    Ok((h, libs))
}

case_tests! { rustc_default {
    rustc_every_whole_library_block_on_2m_pages_launcher: (Mode::Launcher);
    rustc_every_whole_library_block_on_2m_pages_pt_interp: (Mode::PtInterp);
}}
/// rustc with the default strategy: every whole 2 MiB block of the text of
/// every library it maps (librustc_driver's and libLLVM's LLD-linked main
/// text included) on a 2 MiB page, and a `-v` line for librustc_driver.
fn rustc_default(mode: Mode) {
    let _one = lock(&RUSTC);
    let (h, libs) = or_skip!(rustc_held(mode, "conservative"));
    let mut files: Vec<String> = h
        .maps
        .iter()
        .filter(|m| m.is_exec() && m.name.starts_with('/') && !m.name.starts_with("/memfd:"))
        .map(|m| m.name.clone())
        .collect();
    files.sort();
    files.dedup();
    let program = canonical(&rustc_copy().unwrap().0);
    let own = canonical(hugeload());
    let mut blocks = 0;
    for f in files.iter().map(PathBuf::from) {
        // The program itself (its text is the launcher's business, tested
        // elsewhere), and hugeload's own image where it stays mapped.
        if f == program || f == own || f.ends_with("hugeload") || !is_elf(&f) {
            continue;
        }
        let t = LibText::of(&h, &f);
        if !t.whole.is_empty() {
            blocks += assert_library_huge(&h, &f).whole.len();
        }
    }
    // librustc_driver (DT_NEEDED of rustc) and libLLVM (DT_NEEDED of
    // librustc_driver) each get their `-v` line.
    for lib in &libs {
        let t = LibText::of(&h, lib);
        if !t.whole.is_empty() {
            assert_library_line(&h, lib, &t);
        }
    }
    note(&format!("{blocks} whole library blocks on 2 MiB pages"));
}

case_tests! { rustc_aggressive {
    rustc_aggressive_95_percent_of_code_on_2m_pages_launcher: (Mode::Launcher);
    rustc_aggressive_95_percent_of_code_on_2m_pages_pt_interp: (Mode::PtInterp);
}}
/// rustc with `--strategy=aggressive`: at least 95% of the process's code
/// bytes (program and every library, as `hugeload --stat --json` counts
/// them) on 2 MiB pages.
fn rustc_aggressive(mode: Mode) {
    let _one = lock(&RUSTC);
    let (h, libs) = or_skip!(rustc_held(mode, "aggressive"));
    let (text, huge) = stat_totals(&h);
    // The count covers the libraries, not only the program.
    let lib_text: u64 = libs.iter().map(|l| ElfInfo::read(l).text_memsz()).sum();
    assert!(
        text >= lib_text,
        "--stat counts {text} bytes of code, less than librustc_driver and libLLVM's \
         {lib_text}\n{}",
        h.dump()
    );
    assert!(
        huge * 100 >= text * 95,
        "{huge} of {text} code bytes on 2 MiB pages ({}%), under 95%\n--stat: {}\n{}",
        huge * 100 / text.max(1),
        h.stat.as_ref().unwrap().stdout_str(),
        h.dump()
    );
    note(&format!("{huge} of {text} code bytes on 2 MiB pages"));
}

// ---------------------------------------------------------------------------
// java: libjvm.so by dlopen, with no --prime

/// A JDK whose java launcher, libjli and libjvm are copies and the rest
/// links to the system's (tests/pagecache.rs does the same): the launcher
/// finds libjvm next to its own real path.
fn jdk_mirror(dir: &Path) -> Result<PathBuf, Skip> {
    let java = canonical(&need_tool("java")?);
    let home = java
        .parent()
        .and_then(|b| b.parent())
        .unwrap()
        .to_path_buf();
    let libjvm = home.join("lib/server/libjvm.so");
    if !libjvm.exists() {
        return Err(Skip(format!("no {}", libjvm.display())));
    }
    let mirror = dir.join("jdk");
    let _ = fs::remove_dir_all(&mirror);
    fn walk(from: &Path, to: &Path, home: &Path) {
        const COPIED: [&str; 3] = ["bin/java", "lib/libjli.so", "lib/server/libjvm.so"];
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap().flatten() {
            let (src, dst) = (e.path(), to.join(e.file_name()));
            let rel = src
                .strip_prefix(home)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                walk(&src, &dst, home);
            } else if COPIED.contains(&rel.as_str()) {
                let copy = fresh_copy(&src, to, &e.file_name().to_string_lossy());
                set_mode(&copy, 0o755);
            } else {
                std::os::unix::fs::symlink(&src, &dst).unwrap();
            }
        }
    }
    walk(&home, &mirror, &home);
    Ok(mirror)
}

case_tests! { java_libjvm {
    java_libjvm_on_2m_pages_without_prime_launcher: (Mode::Launcher);
    java_libjvm_on_2m_pages_without_prime_pt_interp: (Mode::PtInterp);
}}
/// `java Wait.java` (prints `ready`, waits for stdin) through hugeload, on
/// a JDK mirror never primed: libjvm.so, which the launcher's libjli opens
/// with dlopen, has its whole blocks on 2 MiB pages (GNU ld: from the page
/// cache), and the output is a direct run's.
fn java_libjvm(mode: Mode) {
    let dir = scratch_dir(&format!("lib-java-{mode:?}"));
    let jdk = or_skip!(jdk_mirror(&dir));
    let libjvm = jdk.join("lib/server/libjvm.so");
    let src = dir.join("Wait.java");
    fs::write(
        &src,
        "public class Wait { public static void main(String[] a) throws Exception {\n\
         System.out.println(\"ready\"); while (System.in.read() >= 0) {} System.exit(7); } }\n",
    )
    .unwrap();
    let java = jdk.join("bin/java");
    let args = [
        "-Xshare:off",
        "-XX:TieredStopAtLevel=1",
        &src.to_string_lossy(),
    ];
    let args: Vec<&str> = args.iter().map(|s| &**s).collect();
    let d = direct_run(&java, &args, |_| {});
    assert_eq!(d.code("direct java"), 7, "{}", d.short());
    let program = or_skip!(program_for(mode, &java));
    let h = hold(
        hl_run(mode, DEFAULT, &program, &args),
        Until::ReadyLine,
        false,
    );
    assert_eq!(h.run.code(&h.what), 7, "exit status\n{}", h.dump());
    assert_eq!(h.run.stdout_str(), d.stdout_str(), "stdout\n{}", h.dump());
    let t = assert_library_huge(&h, &libjvm);
    assert_library_line(&h, &libjvm, &t);
}

// ---------------------------------------------------------------------------
// What hugeload leaves alone, and says so

/// A library hugeload must leave on 4 KiB pages, run through `libuser-dlopen
/// LIB EXTRA...` (under `wrap`, hostile_wrap's settings, if any): the same
/// stdout and exit status as a direct run under the same wrapper, the
/// library's code on 4 KiB pages, and a `-v` line containing `why`.
fn left_alone(mode: Mode, lib: &str, extra: &[&str], wrap: &[&str], why: &str) {
    let tag = format!("lib-alone-{lib}-{}-{mode:?}", wrap.join("-"));
    let case = or_skip!(Case::new(&tag, "libuser-dlopen", lib, Loaded::Dlopen));
    let mut args = case.args();
    args.extend_from_slice(extra);
    let wrapper = or_skip!(fixture("hostile_wrap"));
    let wrapped = |inner: Command| -> Command {
        if wrap.is_empty() {
            return inner;
        }
        let mut c = command(&wrapper);
        c.args(wrap)
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    };
    let mut direct = command(&case.prog);
    direct.args(&args).env_remove("LD_LIBRARY_PATH");
    let d = run(wrapped(direct));
    if d.stderr_str().starts_with("hostile_wrap:") {
        skip(d.stderr_str().trim());
        return;
    }
    assert_eq!(d.code("direct run"), 7, "direct run: {}", d.short());
    let program = or_skip!(program_for(mode, &case.prog));
    let h = hold(
        wrapped(hl_run(mode, DEFAULT, &program, &args)),
        Until::ReadyLine,
        false,
    );
    assert_eq!(h.run.code(&h.what), 7, "exit status\n{}", h.dump());
    assert_eq!(h.run.stdout_str(), d.stdout_str(), "stdout\n{}", h.dump());
    assert_library_small(&h, &case.lib);
    assert!(
        h.stderr()
            .lines()
            .any(|l| l.starts_with("hugeload: ") && l.contains(why)),
        "no -v line saying {why:?}\n{}",
        h.dump()
    );
}

case_tests! { textrel {
    library_with_text_relocations_is_left_alone_launcher: (Mode::Launcher);
    library_with_text_relocations_is_left_alone_pt_interp: (Mode::PtInterp);
}}
/// A library with text relocations (ld.so writes into its code) is left
/// as ld.so maps it.
fn textrel(mode: Mode) {
    left_alone(
        mode,
        "libbig-textrel.so",
        &[],
        &[],
        "libbig-textrel.so: left on 4 KiB pages: it has text relocations",
    );
}

case_tests! { own_seccomp {
    library_after_the_programs_seccomp_filter_is_left_alone_launcher: (Mode::Launcher);
    library_after_the_programs_seccomp_filter_is_left_alone_pt_interp: (Mode::PtInterp);
}}
/// A library opened after the program installed a seccomp filter of its
/// own is left alone (a filter may kill the process for a system call
/// hugeload makes), and the program runs on.
fn own_seccomp(mode: Mode) {
    left_alone(
        mode,
        "libbig-lld.so",
        &["--seccomp"],
        &[],
        "seccomp filter it installed",
    );
}

case_tests! { mdwe_libraries {
    libraries_under_mdwe_are_left_to_ld_so_launcher: (Mode::Launcher);
    libraries_under_mdwe_are_left_to_ld_so_pt_interp: (Mode::PtInterp);
}}
/// Under MDWE (no mprotect may add exec) hugeload cannot write its jump
/// into ld.so: it says so, and the LLD library (which would need a copy)
/// stays on 4 KiB pages; the program runs as directly.
fn mdwe_libraries(mode: Mode) {
    left_alone(
        mode,
        "libbig-lld.so",
        &[],
        &["mdwe"],
        "libraries: left as ld.so maps them (4 KiB pages, unless the page cache holds their code in 2 MiB folios): writing the hook into ld.so needs an mprotect that adds exec, which MDWE",
    );
}
