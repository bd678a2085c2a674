//! The load that the launcher and binfmt_misc modes share, in the kernel's
//! phase order (`load_elf_binary`): find the file, follow `#!` lines, check
//! the ELF and its interpreter, plan. Any of these may still fail with one
//! clean line. Then, past the point of no return, map the program and its
//! interpreter, build the initial stack, set what /proc shows, and hand
//! over. Each phase is a function; [`load`] lists them.

use super::arch;
use super::boot::Boot;
use super::diag::{Failure, Report};
use super::file::{self, ElfFile, Head, OpenFile};
use super::host::Host;
use super::huge;
use super::image::{self, Loaded, Placement};
use super::sys::{self, CPath, Errno};
use super::{hook, kernel, libs, lock, origin, perfmap, procview, report};
use hugeload::auxv::{self, ProgramFacts};
use hugeload::elf::{MAX_INTERP, PHDR_SIZE};
use hugeload::error::LoadError;
use hugeload::exec;
use hugeload::interp::{self, Standard};
use hugeload::options::{ENV_INTERP, Settings};
use hugeload::plan::Range;
use hugeload::script::{self, MAX_SCRIPT_DEPTH, Shebang};
use hugeload::stack::{StackSpec, Written};

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
    /// A program hugeload will not load itself may be handed to the kernel
    /// (`execve`): the launcher. Not binfmt_misc, where the kernel would
    /// hand it back.
    pub kernel_fallback: bool,
}

impl Request<'_> {
    /// What a hand-over to the kernel needs of it.
    fn args(&self) -> kernel::Args<'_> {
        kernel::Args {
            argv0: self.argv0,
            rest: self.rest,
            execfd: self.execfd,
        }
    }
}

/// What the final jump needs.
pub struct Handoff {
    pub entry: u64,
    pub sp: u64,
    /// hugeload's work stack, unmapped on the way.
    pub work_stack: (usize, usize),
}

impl Handoff {
    pub fn enter(self) -> ! {
        // SAFETY: every mode builds a Handoff only with an entry point
        // mapped executable and a complete initial stack at `sp`, outside
        // the work stack.
        unsafe { arch::enter(self.entry as usize, self.sp as usize, self.work_stack) }
    }
}

/// Loads the program of `request`, up to the hand-off.
pub fn load(
    boot: &Boot,
    host: &Host,
    settings: &Settings,
    request: &Request,
) -> Result<Handoff, Failure> {
    let report = Report {
        level: settings.verbose,
    };
    let (execfn, opened) = find_program(boot, request)?;
    let named = CPath::from_parts(&[execfn.as_bytes()]).unwrap_or_else(CPath::new);
    let path_var = boot.trusted_env(b"PATH").unwrap_or(exec::DEFAULT_PATH);
    let checked = follow_scripts(execfn, opened, path_var).and_then(|program| {
        check_program(&program)?;
        let interp = open_interp(boot, &program)?;
        Ok((program, interp))
    });
    let (program, interp) = match checked {
        Ok(checked) => checked,
        Err(f) if request.kernel_fallback && f.error.kernel_may_run() => {
            return Err(kernel::hand_over(boot, &request.args(), &named, f, &report));
        }
        // binfmt_misc: a marked program that changed since it was marked
        // (an executable stack, say) goes to the kernel unmarked.
        Err(f) if f.error.kernel_may_run() => {
            return Err(kernel::hand_over_unmarked(
                boot,
                &request.args(),
                &named,
                f,
                &report,
            ));
        }
        Err(f) => return Err(f),
    };
    let placement = image::plan_program(&program.elf.image, settings);

    // Point of no return: from here on the address space changes.
    let interp_path = interp.as_ref().map(|i| i.path.as_bytes());
    let loaded = map_program(&program, placement, interp_path, settings, host, &report)?;
    if !boot.is_secure() {
        origin::expand_in_memory(&program.elf.file, &program.elf.image, loaded.bias, &report);
    }
    let interp_loaded = map_interp(&program, interp.as_ref())?;
    // With the hook in ld.so, each library is placed as ld.so maps it;
    // without, its code can only be primed now.
    let hooked = interp_loaded
        .as_ref()
        .is_some_and(|(i, l)| hook::install(&i.elf, l.bias, loaded.bias, settings, host, &report));
    if !hooked {
        prime_libraries(boot, &program, interp.as_ref(), settings, &report);
    }
    let written = build_stack(boot, request, &program, &loaded, interp_loaded.as_ref())?;
    if settings.perf_map {
        let moved = loaded.copied_ranges();
        perfmap::write(
            &program.elf.file,
            loaded.bias,
            &moved,
            program.path(),
            &report,
        );
    }
    procview::set_for_program(
        boot,
        host,
        &report,
        &program.elf.image,
        &loaded,
        &written,
        program.exec_name(),
        program.elf.file.fd,
    );
    let entry = match &interp_loaded {
        Some((i, l)) => l.entry(&i.elf.image),
        None => loaded.entry(&program.elf.image),
    };
    program.elf.file.close();
    if let Some((i, _)) = &interp_loaded {
        i.elf.file.close();
    }
    Ok(Handoff {
        entry,
        sp: written.sp,
        work_stack: boot.work_stack,
    })
}

/// One `#!` level: the line's buffer and where its words are.
struct ScriptLevel {
    head: Head,
    line: Shebang,
    /// A `#!/usr/bin/env NAME` line whose NAME hugeload runs itself.
    via_env: bool,
}

impl ScriptLevel {
    fn interp(&self) -> &[u8] {
        &self.head.bytes[self.line.interp.0..self.line.interp.1]
    }
    fn arg(&self) -> Option<&[u8]> {
        self.line.arg.map(|(a, b)| &self.head.bytes[a..b])
    }
    /// The words this level puts before the script: `interp arg?`, or for
    /// `#!/usr/bin/env NAME` what env runs: `NAME`.
    fn words(&self) -> (&[u8], Option<&[u8]>) {
        match (self.via_env, self.arg()) {
            (true, Some(name)) => (name, None),
            _ => (self.interp(), self.arg()),
        }
    }
}

/// The file that runs, and how it was reached.
struct Program {
    /// The path the user ran (AT_EXECFN), after a PATH search.
    execfn: CPath,
    /// The ELF that runs: `execfn`, or the last `#!` interpreter.
    path: CPath,
    levels: heapless::Vec<ScriptLevel, MAX_SCRIPT_DEPTH>,
    elf: ElfFile,
}

impl Program {
    fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }
    /// The path of the last execve a direct run makes: the user's, or
    /// what env found for a `#!/usr/bin/env NAME` line.
    fn exec_name(&self) -> &[u8] {
        match self.levels.last() {
            Some(level) if level.via_env => self.path(),
            _ => self.execfn.as_bytes(),
        }
    }
    /// A failure of the ELF that runs, named as a user reads it: the file,
    /// or the script and the interpreter that failed.
    fn fail(&self, e: LoadError) -> Failure {
        fail_at(&self.execfn, &self.path, !self.levels.is_empty(), e)
    }
}

fn fail_at(execfn: &CPath, path: &CPath, in_script: bool, e: LoadError) -> Failure {
    if in_script {
        Failure::within(execfn.as_bytes(), path.as_bytes(), e)
    } else {
        Failure::new(path.as_bytes(), e)
    }
}

/// Phase 1: the file, as execvp finds it: as given if the name holds a
/// `/`, else in `PATH` (the default path for a secure-execution program).
/// A file found in `PATH`, or binfmt_misc's AT_EXECFD, comes back open.
fn find_program(boot: &Boot, request: &Request) -> Result<(CPath, Option<OpenFile>), Failure> {
    let typed = request.typed;
    let fail = |e| Failure::new(typed, e);
    if !request.search_path || exec::is_path(typed) {
        let path = CPath::from_parts(&[typed]).ok_or(fail(Errno::ENAMETOOLONG.into()))?;
        let opened = request.execfd.map(OpenFile::from_fd).transpose();
        return Ok((path, opened.map_err(fail)?));
    }
    if typed.is_empty() {
        return Err(fail(Errno::ENOENT.into()));
    }
    let path_var = boot.trusted_env(b"PATH").unwrap_or(exec::DEFAULT_PATH);
    let mut found = CPath::new();
    let opened = exec::search_path(path_var, |dir| {
        found = CPath::from_parts(&[dir, b"/", typed]).ok_or(Errno::ENAMETOOLONG)?;
        OpenFile::open(&found)
    });
    let (_, file) = opened.map_err(fail)?;
    Ok((found, Some(file)))
}

/// Phase 2: follows `#!` lines to the ELF file that really runs.
/// A `#!/usr/bin/env NAME` line runs NAME, found in `path_var` as env
/// finds it.
fn follow_scripts(
    execfn: CPath,
    mut opened: Option<OpenFile>,
    path_var: &[u8],
) -> Result<Program, Failure> {
    let mut levels: heapless::Vec<ScriptLevel, MAX_SCRIPT_DEPTH> = heapless::Vec::new();
    let mut path = CPath::from_parts(&[execfn.as_bytes()]).unwrap_or_else(CPath::new);
    loop {
        let fail = |e| fail_at(&execfn, &path, !levels.is_empty(), e);
        let file = opened
            .take()
            .map_or_else(|| OpenFile::open(&path), Ok)
            .map_err(fail)?;
        let head = Head::read(&file).map_err(fail)?;
        if !script::is_script(head.as_bytes()) {
            let elf = ElfFile::parse(file, &head).map_err(fail)?;
            return Ok(Program {
                execfn,
                path,
                levels,
                elf,
            });
        }
        file.close();
        let line = script::parse(head.as_bytes()).map_err(fail)?;
        let mut level = ScriptLevel {
            head,
            line,
            via_env: false,
        };
        match script::env_command(level.interp(), level.arg()) {
            Some(name) if !exec::is_path(name) => {
                let mut found = CPath::new();
                let searched = exec::search_path(path_var, |dir| {
                    found = CPath::from_parts(&[dir, b"/", name]).ok_or(Errno::ENAMETOOLONG)?;
                    OpenFile::open(&found)
                });
                let (_, file) =
                    searched.map_err(|e| Failure::within(execfn.as_bytes(), name, e))?;
                opened = Some(file);
                path = found;
                level.via_env = true;
            }
            _ => {
                path = CPath::from_parts(&[level.interp()])
                    .ok_or_else(|| Failure::new(path.as_bytes(), LoadError::BadInterpPath))?;
            }
        }
        if levels.push(level).is_err() {
            return Err(Failure::new(
                execfn.as_bytes(),
                LoadError::NestedScriptTooDeep,
            ));
        }
    }
}

/// Phase 3: what the kernel would run but hugeload will not map.
fn check_program(program: &Program) -> Result<(), Failure> {
    if program.elf.image.exec_stack {
        return Err(program.fail(LoadError::ExecutableStack));
    }
    Ok(())
}

/// The program's interpreter, opened and validated.
struct Interp {
    path: CPath,
    elf: ElfFile,
}

/// Phase 4: the interpreter PT_INTERP names, validated before anything is
/// mapped. A program whose PT_INTERP is hugeload itself (patched for
/// PT_INTERP mode) gets the real interpreter instead.
fn open_interp(boot: &Boot, program: &Program) -> Result<Option<Interp>, Failure> {
    let mut buf = [0u8; MAX_INTERP];
    let named = program
        .elf
        .interp_path(&mut buf)
        .map_err(|e| program.fail(e))?;
    let Some(named) = named else {
        return Ok(None);
    };
    let mut interp = open_interp_file(program, named)?;
    if file::own_id() == Some(interp.elf.file.id) {
        interp.elf.file.close();
        match real_interp(boot, Some(&program.elf)) {
            Some(path) => interp = open_interp_file(program, path)?,
            None => return Ok(None),
        }
    }
    // Two fixed-address images that overlap cannot both be mapped (an
    // ET_EXEC program naming itself as its interpreter, say).
    let fixed =
        |img: &hugeload::elf::Image| (!img.is_dyn()).then(|| Range::new(img.lo(), img.hi()));
    if let (Some(a), Some(b)) = (fixed(&program.elf.image), fixed(&interp.elf.image)) {
        if a.overlaps(&b) {
            interp.elf.file.close();
            return Err(Failure::within(
                program.path(),
                interp.path.as_bytes(),
                LoadError::InterpOverlaps,
            ));
        }
    }
    Ok(Some(interp))
}

fn open_interp_file(program: &Program, path: &[u8]) -> Result<Interp, Failure> {
    let fail = |e| Failure::within(program.path(), path, e);
    let cpath = CPath::from_parts(&[path]).ok_or(fail(LoadError::BadInterpPath))?;
    let elf = ElfFile::open(path).map_err(|e| {
        fail(if e == LoadError::NotElfOrScript {
            LoadError::InterpNotElf
        } else {
            e
        })
    })?;
    Ok(Interp { path: cpath, elf })
}

/// The interpreter that really runs a program whose PT_INTERP names
/// hugeload: `HUGELOAD_INTERP` (not for secure-execution programs), else
/// the standard one for its libc, none for a static program; the glibc
/// loader when the program cannot be read (`None`).
///
/// The path is returned without its NUL; a NUL follows it in memory that
/// stays mapped for the life of the process (an environment string, or a
/// string of hugeload's image), so the program's link map may name it.
pub fn real_interp(boot: &Boot, program: Option<&ElfFile>) -> Option<&'static [u8]> {
    let without_nul = |s: &'static [u8]| &s[..s.len() - 1];
    let standard = Standard {
        glibc: without_nul(arch::GLIBC_INTERP),
        musl: without_nul(arch::MUSL_INTERP),
    };
    let from_env = boot.trusted_env(ENV_INTERP.as_bytes());
    interp::choose(from_env, program.map(ElfFile::linking), standard)
}

/// Phase 5: the program's image, with its text on huge pages.
fn map_program(
    program: &Program,
    placement: Placement,
    interp_path: Option<&[u8]>,
    settings: &Settings,
    host: &Host,
    report: &Report,
) -> Result<Loaded, Failure> {
    let image = &program.elf.image;
    let loaded = image::map_program(
        &program.elf.file,
        image,
        placement,
        program.path(),
        settings,
        host,
    )
    .map_err(|e| program.fail(e))?;
    report::report_program(
        report,
        program.path(),
        image,
        &loaded,
        interp_path,
        settings,
    );
    if settings.lock {
        lock::lock_code(image, &loaded);
    }
    huge::keep_hugetlb_in_core_dumps(&loaded.outcomes, report);
    Ok(loaded)
}

/// Phase 6: the interpreter's image, on ordinary pages.
fn map_interp<'i>(
    program: &Program,
    interp: Option<&'i Interp>,
) -> Result<Option<(&'i Interp, Loaded)>, Failure> {
    let Some(i) = interp else {
        return Ok(None);
    };
    let loaded = image::map_plain(&i.elf.file, &i.elf.image)
        .map_err(|e| Failure::within(program.path(), i.path.as_bytes(), e))?;
    Ok(Some((i, loaded)))
}

/// Phase 7: the code of the libraries ld.so will load, into 2 MiB
/// page-cache folios (ld.so maps them itself).
fn prime_libraries(
    boot: &Boot,
    program: &Program,
    interp: Option<&Interp>,
    settings: &Settings,
    report: &Report,
) {
    // The search's closure needs room that only the work stack is sure to
    // have.
    let on_work_stack = boot.work_stack.1 != 0;
    let (Some(interp), true) = (interp, settings.backend.uses_page_cache() && on_work_stack) else {
        return;
    };
    let mut buf = [0u8; 4096];
    let canonical = file::canonical_path(&program.elf.file, &mut buf).unwrap_or(program.path());
    libs::prime_startup_libraries(
        boot,
        &program.elf.file,
        &program.elf.image,
        canonical,
        interp.path.as_bytes(),
        program.elf.linking().needs_musl,
        report,
    );
}

/// Phase 8: the program's initial stack below the kernel's: argv (with the
/// `#!` words), the kernel's environment, and an auxv that describes the
/// program and its interpreter.
fn build_stack(
    boot: &Boot,
    request: &Request,
    program: &Program,
    loaded: &Loaded,
    interp: Option<&(&Interp, Loaded)>,
) -> Result<Written, Failure> {
    let image = &program.elf.image;
    let facts = ProgramFacts {
        phdr: loaded.phdr(image),
        phent: PHDR_SIZE as u64,
        phnum: image.e_phnum as u64,
        entry: loaded.entry(image),
        base: interp.map_or(0, |(_, l)| l.bias),
    };
    let auxv = auxv::for_program(&boot.auxv, &facts);
    let mut lines: heapless::Vec<(&[u8], Option<&[u8]>), MAX_SCRIPT_DEPTH> = heapless::Vec::new();
    for level in &program.levels {
        let _ = lines.push(level.words());
    }
    let execfn = program.execfn.as_bytes();
    let prefix = script::argv_prefix(&lines, request.argv0, execfn);
    // The last execve of a `#!/usr/bin/env NAME` chain is env's, of the
    // path it found: that is AT_EXECFN then.
    let execfn = program.exec_name();
    // argv0 and the arguments as hugeload got them lie one after the other
    // in the kernel's copy: pointed at, not copied, so a long argument does
    // not take the stack limit twice. (A `#!` chain or `--argv0` adds words
    // of its own: then all are copied.)
    let in_place = program.levels.is_empty()
        && boot
            .arg(request.rest.wrapping_sub(1))
            .is_some_and(|a| a.as_ptr() == request.argv0.as_ptr());
    let spec = StackSpec {
        execfn,
        args: prefix.iter().copied().chain(boot.args_from(request.rest)),
        args_at: in_place.then_some(request.argv0.as_ptr() as u64),
        envp: boot.env_ptrs(),
        auxv: &auxv,
    };
    let top = boot.sp as u64;
    let size = spec.size();
    // The stack may grow only as far as RLIMIT_STACK lets it: refuse with a
    // line rather than fault writing past it.
    if !boot.stack_has_room(size) {
        return Err(Failure::new(execfn, LoadError::StackLimit));
    }
    // SAFETY: `[top - size, top)` is the stack region reserved below the
    // kernel's stack pointer by `start::hugeload_start`; hugeload's own
    // frames are all below it.
    let region = unsafe { core::slice::from_raw_parts_mut((top - size) as *mut u8, size as usize) };
    spec.write(region, top)
        .ok_or_else(|| Failure::new(execfn, LoadError::ImageTooLarge))
}
