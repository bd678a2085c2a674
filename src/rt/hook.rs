//! Libraries on 2 MiB pages, as ld.so maps them: at start-up and at every
//! `dlopen`, for glibc and musl alike.
//!
//! ld.so calls the empty function `_dl_debug_state` after each change of
//! its link map (the SVR4 debugger interface gdb reads): with `r_state`
//! `RT_CONSISTENT` once every library of the change is mapped, before any
//! library's constructor runs (glibc: before a `dlopen`ed library is even
//! relocated). hugeload maps ld.so itself, so before ld.so runs it writes a
//! jump over that function, to `arch`'s hook entry, which calls
//! [`hugeload_link_map_changed`] here; hugeload's image stays mapped for
//! the life of the process. Nothing goes in the environment, so a child
//! the program runs sees none of this; ld.so's own data structures, and
//! so gdb's library list and `dl_iterate_phdr`, are untouched.
//!
//! Each library new in the list gets what the program's text gets
//! (`huge::place_ranges`): the page cache where its blocks are congruent
//! with their file offsets (primed if cached small), else a copy (hugetlb,
//! THP), else its 4 KiB pages. A copy's bytes come from the library's
//! mapping, so the code that runs is what ld.so mapped (and whatever a
//! debugger changed there); the page cache serves only a file that is the
//! one mapped (device and inode, per smaps). Libraries with text
//! relocations are left alone.

use super::arch;
use super::diag::Report;
use super::file::{self, ElfFile, OpenFile};
use super::host::{self, Host};
use super::huge::{self, HugeKind, Target};
use super::image::Loaded;
use super::sys::{self, CPath};
use super::{lock, map, perfmap, prime};
use hugeload::dynsym::{self, STT_FUNC, STT_OBJECT, Tables};
use hugeload::elf::{Image, page_down, page_up};
use hugeload::fmt::Line;
use hugeload::linkmap::{self, MAX_OBJECTS, Object, Seen};
use hugeload::options::{Backend, Settings};
use hugeload::plan::{self, HUGE, Range};
use hugeload::smaps;
use linux_raw_sys::general::{
    MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, O_CLOEXEC, O_RDONLY, PROT_EXEC, PROT_NONE,
    PROT_READ, PROT_WRITE,
};

/// The hook's own stack (with a guard page at its foot).
const STACK_LEN: usize = 1 << 20;
/// The largest smaps read (a process with thousands of mappings).
const SMAPS_MAX: usize = 32 << 20;
/// The longest library path followed.
const NAME_MAX: usize = 4096;

/// Where ld.so keeps its `struct r_debug`.
#[derive(Clone, Copy)]
enum RDebug {
    /// glibc: the object `_r_debug`.
    At(u64),
    /// musl: `_dl_debug_addr`, a pointer to it (valid once ld.so has
    /// relocated itself).
    Behind(u64),
}

/// What the hook knows, written once before ld.so runs.
struct State {
    settings: Settings,
    r_debug: RDebug,
    /// The biases of ld.so and of the program, which hugeload placed
    /// itself: their entries in the list are skipped.
    skip: [u64; 2],
    /// The seccomp filters the process had before it ran: a filter the
    /// program installs since may kill it for a system call the hook
    /// makes, so the hook then leaves libraries alone.
    seccomp_filters: Option<u64>,
    /// Standard error when the program started: a program may close it
    /// and open something else as fd 2, which `-v` lines must not reach.
    stderr: Option<(u64, u64)>,
    seen: Seen,
    /// Whether the libraries of start-up were reported.
    started: bool,
}

/// Written by [`install`] before ld.so runs (one thread), then only by
/// the hook, which `arch`'s entry lets one caller at a time into.
static mut STATE: Option<State> = None;

/// Makes ld.so's `_dl_debug_state` (in the interpreter hugeload mapped at
/// `bias`) call the hook, for the libraries of the program at
/// `program_bias`; says under `-v` when it cannot. Whether it could.
pub fn install(
    interp: &ElfFile,
    bias: u64,
    program_bias: u64,
    settings: &Settings,
    host: &Host,
    report: &Report,
) -> bool {
    if settings.backend == Backend::Off {
        return false;
    }
    match try_install(interp, bias, program_bias, settings, host) {
        Ok(at) => {
            report.say_at(2, |l| {
                l.str("libraries: ld.so's _dl_debug_state at 0x")
                    .hex(at, 0)
                    .str(" calls hugeload after each change of its link map");
            });
            true
        }
        Err(why) => {
            report.say(|l| {
                l.str("libraries: left as ld.so maps them (4 KiB pages, unless the page cache holds their code in 2 MiB folios): ")
                    .str(why);
            });
            false
        }
    }
}

fn try_install(
    interp: &ElfFile,
    bias: u64,
    program_bias: u64,
    settings: &Settings,
    host: &Host,
) -> Result<u64, &'static str> {
    if host.mdwe {
        return Err(
            "writing the hook into ld.so needs an mprotect that adds exec, which MDWE (PR_SET_MDWE) refuses",
        );
    }
    let (file, image) = (&interp.file, &interp.image);
    let mut entries = heapless::Vec::<(u64, u64), 128>::new();
    file::for_each_dynamic(file, image, &mut |tag, value| {
        let _ = entries.push((tag, value));
    });
    let tables = Tables::from_dynamic(entries.iter().copied())
        .ok_or("the interpreter has no dynamic symbol table")?;
    let mut read = |vaddr: u64, buf: &mut [u8]| read_image_bytes(file, image, vaddr, buf);
    let function = dynsym::lookup(&tables, b"_dl_debug_state", &mut read)
        .filter(|s| s.kind == STT_FUNC)
        .ok_or("the interpreter has no _dl_debug_state")?;
    let r_debug = match dynsym::lookup(&tables, b"_r_debug", &mut read) {
        Some(s) if s.kind == STT_OBJECT => RDebug::At(bias + s.value),
        _ => dynsym::lookup(&tables, b"_dl_debug_addr", &mut read)
            .filter(|s| s.kind == STT_OBJECT)
            .map(|s| RDebug::Behind(bias + s.value))
            .ok_or("the interpreter has no _r_debug or _dl_debug_addr")?,
    };
    let in_code = image
        .loads
        .iter()
        .any(|s| s.is_exec() && s.vaddr <= function.value && function.value < s.vaddr + s.filesz);
    let mut site = [0u8; 16];
    let n = (arch::JUMP_LEN..=16)
        .rev()
        .find(|&n| read(function.value, &mut site[..n]))
        .ok_or("its _dl_debug_state is not in the file")?;
    if !in_code {
        return Err("its _dl_debug_state is not code");
    }
    let from = bias + function.value;
    let jump = arch::jump_to_hook(&site[..n], function.size, from).map_err(|r| r.message())?;
    let stack = make_stack().ok_or("no memory for the hook's stack")?;
    // SAFETY: one thread, before ld.so (the only caller of the hook) runs.
    unsafe {
        *(&raw mut STATE) = Some(State {
            settings: *settings,
            r_debug,
            skip: [bias, program_bias],
            seccomp_filters: host::seccomp_filters(),
            stderr: stderr_id(),
            seen: Seen::new(),
            started: false,
        });
    }
    arch::set_hook_stack(stack);
    write_jump(file, image, bias, from, &jump)?;
    Ok(from)
}

/// Reads the file's bytes at link-time address `vaddr`, which must lie in
/// one segment's file bytes.
fn read_image_bytes(file: &OpenFile, image: &Image, vaddr: u64, buf: &mut [u8]) -> bool {
    let len = buf.len() as u64;
    let Some(segment) = image
        .loads
        .iter()
        .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)
    else {
        return false;
    };
    let inside = vaddr
        .checked_add(len)
        .is_some_and(|end| end <= segment.vaddr + segment.filesz);
    inside
        && file
            .read_exact(buf, segment.offset + (vaddr - segment.vaddr))
            .is_ok()
}

/// A stack for the hook, with an inaccessible guard page at its foot;
/// returns its top.
fn make_stack() -> Option<usize> {
    // SAFETY: a fresh private mapping at an address the kernel chooses.
    let base = unsafe {
        sys::mmap(
            0,
            STACK_LEN,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
            -1,
            0,
        )
    }
    .ok()?;
    // SAFETY: the lowest page of the mapping just made, which nothing uses.
    let _ = unsafe { sys::mprotect(base, 4096, PROT_NONE) };
    Some(base + STACK_LEN)
}

/// Writes `jump` at `from` in ld.so's code: its page goes writable (a
/// private copy of the file's page), gets the bytes, and goes back to
/// read+exec; never both writable and executable. If it cannot go back,
/// the file's page is mapped there again.
fn write_jump(
    file: &OpenFile,
    image: &Image,
    bias: u64,
    from: u64,
    jump: &[u8; arch::JUMP_LEN],
) -> Result<(), &'static str> {
    let page = page_down(from);
    let len = (page_up(from + jump.len() as u64) - page) as usize;
    // SAFETY: the pages hold ld.so's code, which hugeload mapped and which
    // has not run yet; they lose exec while they are writable.
    unsafe { sys::mprotect(page as usize, len, PROT_READ | PROT_WRITE) }
        .map_err(|_| "mprotect of ld.so's code refused")?;
    // SAFETY: `[from, from + JUMP_LEN)` lies in the pages just made
    // writable, inside `_dl_debug_state` and its padding.
    unsafe { core::ptr::copy_nonoverlapping(jump.as_ptr(), from as *mut u8, jump.len()) };
    arch::sync_code(from as usize, jump.len());
    // SAFETY: as above; the pages go from RW to RX.
    if unsafe { sys::mprotect(page as usize, len, PROT_READ | PROT_EXEC) }.is_err() {
        let _ = map::restore(file, image, bias, Range::new(page, page + len as u64));
        return Err("mprotect(PROT_READ|PROT_EXEC) of ld.so's code refused (an LSM?)");
    }
    Ok(())
}

/// Called by `arch`'s hook entry each time ld.so calls `_dl_debug_state`.
#[unsafe(no_mangle)]
extern "C" fn hugeload_link_map_changed() {
    // SAFETY: the hook entry lets one caller at a time in, and `install`
    // wrote the state before ld.so could call.
    let state = unsafe { (*(&raw mut STATE)).as_mut() };
    if let Some(state) = state {
        state.changed();
    }
}

/// Device and inode of what fd 2 is.
fn stderr_id() -> Option<(u64, u64)> {
    sys::fstat(2).ok().map(|st| (st.st_dev, st.st_ino))
}

/// # Safety
/// `addr` must be a readable, aligned address of ld.so's data.
unsafe fn read_u64(addr: u64) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

impl State {
    /// The address of `struct r_debug`, once ld.so has set it up.
    fn r_debug(&self) -> Option<u64> {
        let at = match self.r_debug {
            RDebug::At(at) => at,
            // SAFETY: `_dl_debug_addr` is a pointer-sized object of ld.so.
            RDebug::Behind(ptr) => unsafe { read_u64(ptr) },
        };
        (at != 0 && at % 8 == 0).then_some(at)
    }

    fn changed(&mut self) {
        let Some(r) = self.r_debug() else {
            return;
        };
        // glibc keeps one list per link-map namespace (`dlmopen`, LD_AUDIT
        // modules), chained from the first (`r_debug_extended`, version 2).
        let mut lists = heapless::Vec::<u64, { linkmap::MAX_NAMESPACES }>::new();
        let mut at = r;
        while at != 0 && at % 8 == 0 && lists.push(at).is_ok() {
            // SAFETY: `at` is one of ld.so's `struct r_debug`; `r_version`
            // and `r_state` are ints, `r_next` exists from version 2 on.
            let (version, state) = unsafe {
                (
                    core::ptr::read_volatile(at as *const u32),
                    core::ptr::read_volatile((at + linkmap::R_STATE) as *const u32),
                )
            };
            // A list in the middle of a change: its libraries come with the
            // next call.
            if state != linkmap::RT_CONSISTENT {
                return;
            }
            at = if version >= 2 {
                // SAFETY: as above.
                unsafe { read_u64(at + linkmap::R_NEXT) }
            } else {
                0
            };
        }
        let mut now = heapless::Vec::<Object, MAX_OBJECTS>::new();
        for &list in &lists {
            // SAFETY: ld.so keeps `r_map` and each entry's fields valid
            // while the list is consistent (what gdb relies on).
            let mut entry = unsafe { read_u64(list + linkmap::R_MAP) };
            while entry != 0 && entry % 8 == 0 && !now.is_full() {
                // SAFETY: as above.
                let (bias, dynamic, next) = unsafe {
                    (
                        read_u64(entry + linkmap::L_ADDR),
                        read_u64(entry + linkmap::L_LD),
                        read_u64(entry + linkmap::L_NEXT),
                    )
                };
                let _ = now.push(Object {
                    entry,
                    bias,
                    dynamic,
                });
                entry = next;
            }
        }
        let mut new = heapless::Vec::<Object, MAX_OBJECTS>::new();
        self.seen.update(&now, |o| {
            let _ = new.push(*o);
        });
        let same_stderr = self.settings.verbose > 0 && stderr_id() == self.stderr;
        let report = Report {
            level: if same_stderr {
                self.settings.verbose
            } else {
                0
            },
        };
        let mut total = Total::default();
        for o in new.iter().filter(|o| !self.skip.contains(&o.bias)) {
            // SAFETY: as above; `l_name` is NUL-terminated (or null).
            let name = unsafe { name_of(o.entry) };
            if name.is_empty() {
                continue;
            }
            library(o, name, self, &report, &mut total);
        }
        if !self.started {
            self.started = true;
            total.say(&report);
        }
    }
}

/// # Safety
/// `entry` must be a `struct link_map` of ld.so's consistent list.
unsafe fn name_of(entry: u64) -> &'static [u8] {
    // SAFETY: guaranteed by the caller.
    let at = unsafe { read_u64(entry + linkmap::L_NAME) };
    if at == 0 {
        return b"";
    }
    let mut len = 0;
    // SAFETY: a NUL-terminated string of ld.so's, read up to its NUL.
    while len < NAME_MAX && unsafe { core::ptr::read_volatile((at + len as u64) as *const u8) } != 0
    {
        len += 1;
    }
    // SAFETY: the `len` bytes just read.
    unsafe { core::slice::from_raw_parts(at as *const u8, len) }
}

/// The libraries of one change, together (reported for start-up).
#[derive(Default)]
struct Total {
    libraries: u64,
    text: u64,
    huge: u64,
    cached: u64,
}

impl Total {
    fn say(&self, report: &Report) {
        if self.libraries == 0 {
            return;
        }
        report.say(|l| {
            l.str("libraries at start-up: ")
                .dec(self.libraries)
                .str(" with 2 MiB of code, text ")
                .size(self.text)
                .str(", on huge pages ")
                .size(self.huge)
                .str(" (");
            l.percent(self.huge, self.text)
                .str(", ")
                .size(self.cached)
                .str(" from the page cache)");
        });
    }
}

/// Puts the code of the library `o`, which ld.so opened as `name`, on
/// huge pages.
fn library(o: &Object, name: &[u8], state: &State, report: &Report, total: &mut Total) {
    let Some(path) = CPath::from_parts(&[name]) else {
        return;
    };
    // A name that is no file (the vDSO's) has nothing to do.
    let Ok(fd) = sys::open(&path, O_RDONLY | O_CLOEXEC) else {
        return;
    };
    let Ok(file) = OpenFile::from_fd_for_reading(fd) else {
        sys::close(fd);
        return;
    };
    if let Ok(image) = file.read_image() {
        if image.is_dyn() {
            place_library(&file, &image, o.bias, name, state, report, total);
        }
    }
    file.close();
}

fn place_library(
    file: &OpenFile,
    image: &Image,
    bias: u64,
    name: &[u8],
    state: &State,
    report: &Report,
    total: &mut Total,
) {
    let settings = &state.settings;
    let window = Range::new(bias.wrapping_add(image.lo()), bias.wrapping_add(image.hi()));
    if window.is_empty() {
        return;
    }
    let plan = plan::plan(image, bias, settings.strategy, window);
    let say = |why: &str| {
        report.say(|l| {
            l.str("library ")
                .bytes(name)
                .str(": left on 4 KiB pages: ")
                .str(why);
        })
    };
    if plan.huge.is_empty() {
        report.say_at(2, |l| {
            l.str("library ")
                .bytes(name)
                .str(": no whole 2 MiB block of code");
        });
        return;
    }
    if has_text_relocations(file, image) {
        return say("it has text relocations");
    }
    if host::seccomp_filters() != state.seccomp_filters {
        return say(
            "the program runs under a seccomp filter it installed, which may forbid what hugeload would do",
        );
    }
    let Ok(mut room) = sys::Scratch::new(SMAPS_MAX) else {
        return say("no memory to read /proc/self/smaps");
    };
    let mapped = Mapped::read(prime::read_own_smaps(room.bytes_mut()), window);
    drop(room);
    if !mapped.is_of(file, image, bias) {
        return say("the file at that path is not the one ld.so mapped (replaced since?)");
    }
    let host = Host::probe(settings.backend);
    let target = Target {
        file,
        image,
        bias,
        name,
        copy_from_memory: true,
    };
    let outcomes = huge::place_ranges(&target, &plan.huge, settings.backend, &host);
    let loaded = Loaded {
        bias,
        plan,
        outcomes,
    };
    let placed = loaded.huge_ranges();
    let on_huge = plan::text_on_huge(image, bias, &placed);
    let cached = plan::text_on_huge(
        image,
        bias,
        &huge::placed_where(&loaded.outcomes, |k| k == HugeKind::PageCache),
    );
    total.libraries += 1;
    total.text += image.text_bytes();
    total.huge += on_huge;
    total.cached += cached;
    say_library(report, name, image, &loaded, on_huge);
    if settings.perf_map {
        perfmap::add(file, bias, &loaded.copied_ranges(), name, report);
    }
    if settings.lock {
        lock::lock_code(image, &loaded);
    }
    huge::keep_hugetlb_in_core_dumps(&loaded.outcomes, report);
}

/// The file mappings of a library's address range, from one read of smaps.
struct Mapped {
    mappings: heapless::Vec<Mapping, 512>,
}

struct Mapping {
    range: Range,
    dev: (u32, u32),
    inode: u64,
}

impl Mapped {
    fn read(smaps_text: &[u8], window: Range) -> Mapped {
        let mut mappings = heapless::Vec::new();
        smaps::parse(smaps_text, |m| {
            let range = Range::new(m.start, m.end);
            if range.overlaps(&window) {
                let _ = mappings.push(Mapping {
                    range,
                    dev: m.dev,
                    inode: m.inode,
                });
            }
        });
        Mapped { mappings }
    }

    /// Whether the mapping of the library's first code page is of `file`
    /// (device and inode).
    fn is_of(&self, file: &OpenFile, image: &Image, bias: u64) -> bool {
        let Some(code) = image.loads.iter().find(|s| s.is_exec()) else {
            return false;
        };
        let at = bias.wrapping_add(code.page_start());
        let (dev, ino) = file.id;
        self.mappings.iter().any(|m| {
            m.range.start <= at
                && at < m.range.end
                && m.inode == ino
                && m.dev == smaps::dev_numbers(dev)
        })
    }
}

fn has_text_relocations(file: &OpenFile, image: &Image) -> bool {
    const DT_TEXTREL: u64 = 22;
    const DT_FLAGS: u64 = 30;
    const DF_TEXTREL: u64 = 4;
    let mut textrel = false;
    file::for_each_dynamic(file, image, &mut |tag, value| {
        textrel |= tag == DT_TEXTREL || (tag == DT_FLAGS && value & DF_TEXTREL != 0);
    });
    textrel
}

fn say_library(report: &Report, name: &[u8], image: &Image, loaded: &Loaded, on_huge: u64) {
    let count = |kind: Option<HugeKind>| -> u64 {
        loaded
            .outcomes
            .iter()
            .filter(|o| o.kind == kind)
            .map(|o| o.range.len() / HUGE)
            .sum()
    };
    report.say(|l: &mut Line| {
        l.str("library ")
            .bytes(name)
            .str(" at 0x")
            .hex(loaded.bias.wrapping_add(image.lo()), 0)
            .str(": text ")
            .size(image.text_bytes())
            .str(", on huge pages ")
            .size(on_huge)
            .str(" (");
        l.percent(on_huge, image.text_bytes()).str("):");
        let mut first = true;
        for kind in [HugeKind::PageCache, HugeKind::Hugetlb, HugeKind::Thp] {
            let n = count(Some(kind));
            if n > 0 {
                l.str(if first { " " } else { ", " })
                    .dec(n)
                    .str(" x 2M ")
                    .str(kind.name());
                first = false;
            }
        }
        let small = count(None);
        if small > 0 {
            l.str(if first { " " } else { ", " })
                .dec(small)
                .str(" x 2M on 4 KiB pages");
            first = false;
        }
        if first {
            l.str(" none");
        }
        // Why copies were made, and why blocks stayed small: the first
        // reason of each.
        if let Some(c) = loaded.outcomes.iter().find_map(|o| o.kind.and(o.pagecache)) {
            l.str(" (copies: not from the page cache: ")
                .str(c.step)
                .str(")");
        }
        if let Some(o) = loaded.outcomes.iter().find(|o| o.kind.is_none()) {
            l.str(" (4 KiB:");
            for (backend, c) in [
                ("pagecache", o.pagecache),
                ("hugetlb", o.hugetlb),
                ("thp", o.thp),
            ] {
                if let Some(c) = c {
                    l.str(" ").str(backend).str(": ").str(c.step);
                    if let Some(e) = c.errno {
                        l.str(": ").str(e.message());
                    }
                    l.str(";");
                }
            }
            l.str(")");
        }
    });
}
