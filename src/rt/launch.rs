//! Launcher mode, `hugeload [OPTIONS] PROGRAM [ARGS...]`, read as the
//! kernel's phases: find the file, follow `#!` lines, validate the ELF and
//! its interpreter (nothing mapped yet: every error so far is a clean exit),
//! then map, build the stack, fix what /proc shows, and jump.

use super::arch;
use super::boot::Boot;
use super::diag::{self, Report};
use super::file::{self, ElfFile, Head, OpenFile};
use super::map::{self, Loaded};
use super::own;
use super::start;
use super::sys::{self, CPath};
use super::{chain, mark, perfmap, report, stat};
use hugeload::auxv::{self, ProgramFacts};
use hugeload::elf::{MAX_INTERP, PAGE, PHDR_SIZE, page_up};
use hugeload::error::LoadError;
use hugeload::options::{self, Command, Settings};
use hugeload::plan;
use hugeload::script::{self, MAX_SCRIPT_DEPTH, Shebang};
use hugeload::stack::{StackSpec, Written};
use linux_raw_sys::auxvec::{AT_EXECFD, AT_FLAGS, AT_SECURE};

const USAGE: &str = "\
usage: hugeload [OPTIONS] [--] PROGRAM [ARGS...]
Runs PROGRAM with its code on 2 MiB pages.
  -s, --strategy=conservative|aggressive   how text edges are rounded (default conservative)
  -b, --backend=auto|thp|hugetlb|off       where huge pages come from (default auto)
  -v, --verbose                            report what was mapped, and why anything was not
      --argv0=NAME                         argv[0] for the program (default: PROGRAM as given)
      --perf-map                           write /tmp/perf-PID.map for the code moved to huge pages
      --stat [--json] PID...               how much code of running processes is on huge pages
      --mark FILE... / --unmark FILE...    set/clear the binfmt_misc marker (e_ident[15] = 'H')
      --binfmt-rule                        print the binfmt_misc rule for /etc/binfmt.d/hugeload.conf
  -h, --help                               this text
  -V, --version                            the version
Environment: HUGELOAD_STRATEGY, HUGELOAD_BACKEND, HUGELOAD_VERBOSE=1, HUGELOAD_OFF=1,
HUGELOAD_PERFMAP=1, HUGELOAD_INTERP=PATH (PT_INTERP mode)
(options win; all ignored for secure-execution programs).
";

/// One `#!` level: the line's buffer and where its words are.
struct ScriptLevel {
    head: Head,
    line: Shebang,
}

impl ScriptLevel {
    fn interp(&self) -> &[u8] {
        &self.head.bytes[self.line.interp.0..self.line.interp.1]
    }
    fn arg(&self) -> Option<&[u8]> {
        self.line.arg.map(|(a, b)| &self.head.bytes[a..b])
    }
}

/// The settings from the environment, unless this is a secure-execution
/// program (setuid, setgid, file capabilities), whose environment the
/// caller chose.
pub fn settings_from_env(boot: &Boot) -> Settings {
    if is_secure(boot) {
        Settings::default()
    } else {
        Settings::from_env(|k| boot.env(k))
    }
}

pub fn is_secure(boot: &Boot) -> bool {
    boot.aux(AT_SECURE).unwrap_or(0) != 0
}

/// What to run.
pub struct Request<'a> {
    /// The name as given (before a PATH search), for messages.
    pub typed: &'a [u8],
    /// argv[0] for the program.
    pub argv0: &'a [u8],
    /// Index of the program's first argument after argv[0] in hugeload's argv.
    pub rest: usize,
    /// Search PATH for a name without `/` (launcher), or take it as a path
    /// (binfmt_misc gives the path execve was called with).
    pub search_path: bool,
    /// An fd already open on the program (binfmt_misc's AT_EXECFD).
    pub execfd: Option<sys::Fd>,
}

/// Launcher mode: hugeload's own command line.
pub fn main(boot: &Boot) -> ! {
    let mut settings = settings_from_env(boot);
    match options::parse(boot.args_from(1), &mut settings) {
        Ok(Command::Help) => {
            sys::write_all(1, USAGE.as_bytes());
            sys::exit(0)
        }
        Ok(Command::Version) => {
            sys::write_all(
                1,
                concat!("hugeload ", env!("CARGO_PKG_VERSION"), "\n").as_bytes(),
            );
            sys::exit(0)
        }
        Ok(Command::Run { program, argv0 }) => {
            let index = 1 + program;
            let typed = boot.arg(index);
            let request = Request {
                typed,
                argv0: argv0.unwrap_or(typed),
                rest: index + 1,
                search_path: true,
                execfd: None,
            };
            run(boot, &settings, &request)
        }
        Ok(Command::Mark { files }) => mark::main(boot, 1 + files, true),
        Ok(Command::Unmark { files }) => mark::main(boot, 1 + files, false),
        Ok(Command::BinfmtRule) => mark::print_rule(),
        Ok(Command::Stat { args }) => stat::main(boot, 1 + args),
        Err(e) => {
            let (text, what) = e.message();
            let mut l = diag::line();
            l.str(text).bytes(what);
            diag::emit(&mut l);
            sys::write_all(2, USAGE.as_bytes());
            sys::exit(2)
        }
    }
}

/// binfmt_misc mode: the kernel ran hugeload for a marked binary. With the
/// P flag argv is [hugeload, path, original argv0, args...] and AT_FLAGS
/// bit 0 is set; with O the binary comes as AT_EXECFD. Options are not
/// parsed (the program's arguments follow); the environment configures.
pub fn binfmt_main(boot: &Boot) -> ! {
    let settings = settings_from_env(boot);
    if boot.argc < 2 {
        diag::fail(b"binfmt_misc", LoadError::Os(22));
    }
    let preserve_argv0 = boot.aux(AT_FLAGS).unwrap_or(0) & 1 != 0;
    let typed = boot.arg(1);
    let (argv0, rest) = if preserve_argv0 && boot.argc >= 3 {
        (boot.arg(2), 3)
    } else {
        (typed, 2)
    };
    let request = Request {
        typed,
        argv0,
        rest,
        search_path: false,
        execfd: boot.aux(AT_EXECFD).map(|fd| fd as sys::Fd),
    };
    run(boot, &settings, &request)
}

/// Finds `name` as execvp does: as given if it holds a `/`, else in `PATH`;
/// a file found in `PATH` comes back open, so it is not opened twice.
fn resolve(boot: &Boot, name: &[u8]) -> Result<(CPath, Option<OpenFile>), LoadError> {
    if name.is_empty() {
        return Err(LoadError::Os(2));
    }
    if name.contains(&b'/') {
        let path = CPath::from_parts(&[name]).ok_or(LoadError::Os(36))?;
        return Ok((path, None));
    }
    let default_path: &[u8] = b"/usr/local/bin:/usr/bin:/bin";
    let path = if is_secure(boot) {
        default_path
    } else {
        boot.env(b"PATH").unwrap_or(default_path)
    };
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let Some(candidate) = CPath::from_parts(&[dir, b"/", name]) else {
            continue;
        };
        match OpenFile::open(&candidate) {
            Ok(f) => return Ok((candidate, Some(f))),
            Err(LoadError::Os(13)) => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied {
        LoadError::Os(13)
    } else {
        LoadError::CommandNotFound
    })
}

/// Loads and enters the program of `request`.
pub fn run(boot: &Boot, settings: &Settings, request: &Request) -> ! {
    let report = Report {
        on: settings.verbose,
    };
    let typed = request.typed;
    let (execfn, mut first) = if request.search_path {
        resolve(boot, typed).unwrap_or_else(|e| diag::fail(typed, e))
    } else {
        let path =
            CPath::from_parts(&[typed]).unwrap_or_else(|| diag::fail(typed, LoadError::Os(36)));
        (path, None)
    };
    // The first file may already be open: found in PATH, or binfmt_misc's
    // AT_EXECFD.
    let mut first = first
        .take()
        .map(Ok)
        .or(request.execfd.map(OpenFile::from_fd));

    // Follow #! lines to the ELF file that really runs.
    let mut levels: heapless::Vec<ScriptLevel, MAX_SCRIPT_DEPTH> = heapless::Vec::new();
    let mut path = CPath::from_parts(&[execfn.as_bytes()]).unwrap_or_else(CPath::new);
    let program = loop {
        let file = first.take().unwrap_or_else(|| OpenFile::open(&path));
        // Errors name the file the user gave, and the interpreter when it
        // is an interpreter that failed.
        let fail = |e| -> ! {
            if levels.is_empty() {
                diag::fail(path.as_bytes(), e)
            } else {
                diag::fail_in(execfn.as_bytes(), path.as_bytes(), e)
            }
        };
        let file = file.unwrap_or_else(|e| fail(e));
        let head = Head::read(&file).unwrap_or_else(|e| fail(e));
        if !script::is_script(head.as_bytes()) {
            break ElfFile::parse(file, &head).unwrap_or_else(|e| fail(e));
        }
        file.close();
        let line = script::parse(head.as_bytes()).unwrap_or_else(|e| fail(e));
        let level = ScriptLevel { head, line };
        path = CPath::from_parts(&[level.interp()])
            .unwrap_or_else(|| diag::fail(path.as_bytes(), LoadError::BadInterpPath));
        if levels.push(level).is_err() {
            diag::fail(execfn.as_bytes(), LoadError::NestedScriptTooDeep);
        }
    };
    let image = &program.image;
    let fail_program = |e| -> ! {
        if levels.is_empty() {
            diag::fail(path.as_bytes(), e)
        } else {
            diag::fail_in(execfn.as_bytes(), path.as_bytes(), e)
        }
    };
    if image.exec_stack {
        fail_program(LoadError::ExecutableStack);
    }

    // The interpreter, validated before anything is mapped.
    let mut interp_buf = [0u8; MAX_INTERP];
    let interp_path = program
        .interp_path(&mut interp_buf)
        .unwrap_or_else(|e| fail_program(e));
    let open_interp = |p: &[u8]| {
        ElfFile::open(p).unwrap_or_else(|e| {
            let e = if e == LoadError::NotElfOrScript {
                LoadError::InterpNotElf
            } else {
                e
            };
            diag::fail_in(path.as_bytes(), p, e)
        })
    };
    let mut interp = interp_path.map(|p| (p, open_interp(p)));
    // A program whose PT_INTERP is hugeload itself (patched for PT_INTERP
    // mode) gets the real interpreter instead.
    if let Some((_, i)) = interp.take_if(|(_, i)| file::own_id() == Some(i.file.id)) {
        i.file.close();
        interp = chain::real_interp(boot, &program).map(|p| (p, open_interp(p)));
    }
    let interp_path = interp.as_ref().map(|(p, _)| *p);
    let interp = interp.map(|(_, i)| i);

    // Two fixed-address images that overlap cannot both be mapped (an
    // ET_EXEC program naming itself as its interpreter, say).
    if let Some(i) = &interp {
        let fixed = |img: &hugeload::elf::Image| {
            (!img.is_dyn()).then(|| plan::Range::new(img.lo(), img.hi()))
        };
        if let (Some(a), Some(b)) = (fixed(image), fixed(&i.image)) {
            if a.overlaps(&b) {
                diag::fail_in(
                    path.as_bytes(),
                    interp_path.unwrap_or(b""),
                    LoadError::InterpOverlaps,
                );
            }
        }
    }

    // Point of no return: from here on the address space changes.
    let loaded = map::load_program(&program.file, image, path.as_bytes(), settings)
        .unwrap_or_else(|e| fail_program(e));
    report::report_program(
        &report,
        path.as_bytes(),
        image,
        &loaded,
        interp_path,
        settings,
    );
    map::keep_hugetlb_in_core_dumps(&loaded, &report);
    let interp_loaded = interp.as_ref().map(|i| {
        map::load_plain(&i.file, &i.image)
            .unwrap_or_else(|e| diag::fail_in(path.as_bytes(), interp_path.unwrap_or(b""), e))
    });

    // The program's view: auxv, argv, stack.
    let entry = match (&interp, &interp_loaded) {
        (Some(i), Some(l)) => l.entry(&i.image),
        _ => loaded.entry(image),
    };
    let facts = ProgramFacts {
        phdr: loaded.phdr(image),
        phent: PHDR_SIZE as u64,
        phnum: image.e_phnum as u64,
        entry: loaded.entry(image),
        base: interp_loaded.as_ref().map_or(0, |l| l.bias),
    };
    let auxv = auxv::for_program(&boot.auxv, &facts);

    // argv: for a script chain, [interp_n, arg_n?, ..., interp_1, arg_1?,
    // script, ARGS]; otherwise [argv0, ARGS].
    let mut prefix: heapless::Vec<&[u8], { 2 * MAX_SCRIPT_DEPTH + 1 }> = heapless::Vec::new();
    for level in levels.iter().rev() {
        let _ = prefix.push(level.interp());
        if let Some(a) = level.arg() {
            let _ = prefix.push(a);
        }
    }
    let _ = prefix.push(if levels.is_empty() {
        request.argv0
    } else {
        execfn.as_bytes()
    });
    let spec = StackSpec {
        execfn: execfn.as_bytes(),
        args: prefix.iter().copied().chain(boot.args_from(request.rest)),
        envp: boot.env_ptrs(),
        auxv: &auxv,
    };
    let top = boot.sp as u64;
    let size = spec.size();
    // SAFETY: `[top - size, top)` is the stack region reserved below the
    // kernel's stack pointer by `start::hugeload_start`; hugeload's own
    // frames are all below it.
    let region = unsafe { core::slice::from_raw_parts_mut((top - size) as *mut u8, size as usize) };
    let written = spec
        .write(region, top)
        .unwrap_or_else(|| diag::fail(execfn.as_bytes(), LoadError::ImageTooLarge));

    if settings.perf_map {
        perfmap::write(
            &program.file,
            loaded.bias,
            &loaded.huge_ranges(),
            path.as_bytes(),
            &report,
        );
    }
    set_process_view(
        boot,
        &report,
        image,
        &loaded,
        &written,
        execfn.as_bytes(),
        program.file.fd,
    );
    program.file.close();
    if let Some(i) = &interp {
        i.file.close();
    }
    // SAFETY: the entry point is mapped executable, and the stack holds a
    // complete argc/argv/envp/auxv.
    unsafe { arch::enter(entry as usize, written.sp as usize, start::work_stack()) }
}

/// What /proc shows of the process: the program's code and data bounds,
/// a `brk` right after the program (as after a direct exec, so the heap
/// does not start inside hugeload's area), its command line and auxv
/// (gdb and core dumps read the saved auxv), and its name.
fn set_process_view(
    boot: &Boot,
    report: &Report,
    image: &hugeload::elf::Image,
    loaded: &Loaded,
    written: &Written,
    execfn: &[u8],
    exe_fd: sys::Fd,
) {
    let [start_code, end_code, start_data, end_data] = plan::code_and_data(image, loaded.bias);
    let mut brk = page_up(loaded.end().max(loaded.bias + image.hi()));
    if map::randomizes() {
        brk += (sys::random_u64() % (arch::BRK_RANDOM_RANGE / PAGE)) * PAGE;
    }
    let (env_start, env_end) = boot
        .env_strings()
        .unwrap_or((written.arg_end, written.arg_end));
    let mut map = linux_raw_sys::prctl::prctl_mm_map {
        start_code,
        end_code,
        start_data,
        end_data,
        start_brk: brk,
        brk,
        start_stack: written.sp,
        arg_start: written.arg_start,
        arg_end: written.arg_end,
        env_start,
        env_end,
        auxv: written.auxv as *mut u64,
        auxv_size: written.auxv_len as u32,
        exe_fd: u32::MAX,
    };
    // /proc/self/exe can name the program only with CAP_SYS_ADMIN or
    // CAP_CHECKPOINT_RESTORE, and only once no mapping of hugeload's file
    // is left.
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    let privileged =
        sys::has_capability(CAP_SYS_ADMIN) || sys::has_capability(CAP_CHECKPOINT_RESTORE);
    if !privileged {
        report.say(|l| {
            l.str("/proc/self/exe names hugeload, not the program: changing it needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE ($ORIGIN, current_exe and self re-exec see hugeload; PT_INTERP mode has no such limit)");
        });
    } else {
        match own::detach_from_file() {
            Ok(()) => map.exe_fd = exe_fd as u32,
            Err(e) => report.say(|l| {
                l.str("/proc/self/exe names hugeload: could not copy hugeload's own image out of its file: ")
                    .str(hugeload::error::errno_message(e.0));
            }),
        }
    }
    let mut r = sys::set_mm_map(&map);
    if r.is_err() && map.exe_fd != u32::MAX {
        let e = r.err().unwrap_or(sys::EINVAL);
        report.say(|l| {
            l.str("/proc/self/exe names hugeload: PR_SET_MM_MAP with exe_fd: ")
                .str(hugeload::error::errno_message(e.0));
        });
        map.exe_fd = u32::MAX;
        r = sys::set_mm_map(&map);
    }
    if let Err(e) = r {
        report.say(|l| {
            l.str("could not set brk, cmdline and auxv for the program (PR_SET_MM_MAP): ")
                .str(hugeload::error::errno_message(e.0));
        });
    }
    let base = execfn.rsplit(|&b| b == b'/').next().unwrap_or(execfn);
    let mut comm = [0u8; 16];
    let n = base.len().min(15);
    comm[..n].copy_from_slice(&base[..n]);
    let _ = sys::prctl(
        linux_raw_sys::prctl::PR_SET_NAME,
        comm.as_ptr() as usize,
        0,
        0,
        0,
    );
}
