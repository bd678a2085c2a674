//! What /proc shows of the process after the load: the layout fields of
//! `/proc/PID/stat`, the saved auxv (`/proc/PID/auxv`, read by gdb and
//! written into core dumps), `/proc/PID/exe` where privilege allows, the
//! name, and, in PT_INTERP mode, the interpreter named in the program's
//! headers.

use super::arch;
use super::boot::Boot;
use super::diag::Report;
use super::host::Host;
use super::huge::Placed;
use super::image::Loaded;
use super::own;
use super::sys::{self, Fd, MmLayout};
use hugeload::elf::{Image, PAGE, PHDR_SIZE, page_down, page_up};
use hugeload::plan::{self, Range};
use hugeload::stack::Written;
use linux_raw_sys::auxvec::AT_PHDR;

/// The auxv the new stack holds, as words.
fn auxv_words(addr: u64, bytes: u64) -> &'static [u64] {
    // SAFETY: the caller passes the auxv it wrote on the program's initial
    // stack (or the kernel's), which stays mapped and unchanged from here.
    unsafe { core::slice::from_raw_parts(addr as *const u64, bytes as usize / 8) }
}

/// Launcher and binfmt_misc modes: the program's code and data bounds, a
/// `brk` right after the program (as after a direct exec, so the heap does
/// not start inside hugeload's area), its command line and auxv, its
/// `/proc/self/exe` when privileged, and its name.
#[allow(clippy::too_many_arguments)]
pub fn set_for_program(
    boot: &Boot,
    host: &Host,
    report: &Report,
    image: &Image,
    loaded: &Loaded,
    written: &Written,
    execfn: &[u8],
    exe_fd: Fd,
) {
    let [start_code, end_code, start_data, end_data] = plan::code_and_data(image, loaded.bias);
    let mut brk = page_up(loaded.end().max(loaded.bias + image.hi()));
    if host.randomizes {
        brk += (sys::random_u64() % (arch::BRK_RANDOM_RANGE / PAGE)) * PAGE;
    }
    let (env_start, env_end) = boot
        .env_strings()
        .unwrap_or((written.arg_end, written.arg_end));
    let layout = MmLayout {
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
    };
    let auxv = auxv_words(written.auxv, written.auxv_len);
    let mut exe = None;
    // /proc/self/exe can name the program only with CAP_SYS_ADMIN or
    // CAP_CHECKPOINT_RESTORE, and only once no mapping of hugeload's file
    // is left.
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    let privileged =
        sys::has_capability(CAP_SYS_ADMIN) || sys::has_capability(CAP_CHECKPOINT_RESTORE);
    if !privileged {
        report.say(|l| {
            l.str("/proc/self/exe names hugeload, not the program: changing it needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (ld.so's $ORIGIN is handled; a program that reads /proc/self/exe itself, such as current_exe or node's process.execPath, sees hugeload; PT_INTERP mode has no such limit)");
        });
    } else {
        match own::detach_from_file() {
            Ok(()) => exe = Some(exe_fd),
            Err(e) => report.say(|l| {
                l.str("/proc/self/exe names hugeload: could not copy hugeload's own image out of its file: ")
                    .str(e.message());
            }),
        }
    }
    let mut r = sys::set_mm_map(&layout, auxv, exe);
    if let (Err(e), Some(_)) = (r, exe) {
        report.say(|l| {
            l.str("/proc/self/exe names hugeload: PR_SET_MM_MAP with exe_fd: ")
                .str(e.message());
        });
        r = sys::set_mm_map(&layout, auxv, None);
    }
    if let Err(e) = r {
        report.say(|l| {
            l.str("could not set brk, cmdline and auxv for the program (PR_SET_MM_MAP): ")
                .str(e.message());
        });
    }
    sys::set_name(execfn.rsplit(|&b| b == b'/').next().unwrap_or(execfn));
}

/// PT_INTERP mode: makes /proc/PID/auxv show the auxv the program gets,
/// with AT_BASE naming the real interpreter. PR_SET_MM_MAP needs every
/// layout field: they are read back from /proc/self/stat and given
/// unchanged, except, for a program hugeload `moved`, its code and data
/// bounds, and `brk` if the image now reaches past it.
pub fn save_auxv(boot: &Boot, moved: Option<(&Image, &Loaded)>, report: &Report) {
    let mut buf = [0u8; 2048];
    let fields = sys::read_small(b"/proc/self/stat", &mut buf).and_then(hugeload::procstat::parse);
    let Some(f) = fields else { return };
    let mut layout = MmLayout {
        start_code: f.start_code,
        end_code: f.end_code,
        start_data: f.start_data,
        end_data: f.end_data,
        start_brk: f.start_brk,
        brk: sys::brk_now(),
        start_stack: f.start_stack,
        arg_start: f.arg_start,
        arg_end: f.arg_end,
        env_start: f.env_start,
        env_end: f.env_end,
    };
    if let Some((image, loaded)) = moved {
        let [start_code, end_code, start_data, end_data] = plan::code_and_data(image, loaded.bias);
        (layout.start_code, layout.end_code) = (start_code, end_code);
        (layout.start_data, layout.end_data) = (start_data, end_data);
        let end = page_up(loaded.end());
        if layout.start_brk < end {
            let grown = layout.brk - layout.start_brk;
            layout.start_brk = end;
            layout.brk = end + grown;
        }
    }
    let (addr, len) = boot.auxv_on_stack();
    if let Err(e) = sys::set_mm_map(&layout, auxv_words(addr as u64, len as u64), None) {
        report.say(|l| {
            l.str("/proc/self/auxv keeps AT_BASE = hugeload (PR_SET_MM_MAP: ")
                .str(e.message())
                .str(")");
        });
    }
}

/// PT_INTERP mode: glibc names its own link-map entry after the program's
/// PT_INTERP string, so `dl_iterate_phdr` and debuggers would see
/// hugeload's path for ld.so. Point the in-memory PT_INTERP program header
/// at the real path instead (the string is NUL-terminated and stays
/// mapped). Skipped, with a note, where the header sits on code or on a
/// huge page: that page is not changed.
pub fn name_real_interp(
    boot: &Boot,
    image: &Image,
    bias: u64,
    path: &'static [u8],
    huge: &Placed,
    report: &Report,
) {
    use goblin::elf::program_header::PT_INTERP;
    /// Offset of `p_vaddr` in an Elf64_Phdr.
    const P_VADDR: u64 =
        core::mem::offset_of!(goblin::elf64::program_header::ProgramHeader, p_vaddr) as u64;
    let Some(phdr) = boot.aux(AT_PHDR) else {
        return;
    };
    let Some(index) = (0..image.e_phnum as u64).find(|i| {
        // SAFETY: AT_PHDR and the program's e_phnum (checked against
        // AT_PHNUM) describe the program headers the kernel mapped.
        unsafe { *((phdr + i * PHDR_SIZE as u64) as *const u32) == PT_INTERP }
    }) else {
        return;
    };
    let field = phdr + index * PHDR_SIZE as u64 + P_VADDR;
    let page = page_down(field);
    let holder = image.loads.iter().find(|s| {
        let start = bias + s.vaddr;
        start <= field && field + 8 <= start + s.filesz
    });
    let on_huge = huge
        .iter()
        .any(|r| r.overlaps(&Range::new(page, page + PAGE)));
    let Some(holder) = holder.filter(|s| !s.is_exec() && !on_huge) else {
        report.say(|l| {
            l.str("ld.so keeps the name of PT_INTERP (hugeload) in its link map: the program headers share a page with code");
        });
        return;
    };
    let value = (path.as_ptr() as u64).wrapping_sub(bias);
    if holder.is_write() {
        // patchelf moves the headers of a fixed-address program into a
        // writable segment of its own.
        // SAFETY: the field lies in the program's writable, private
        // mapping, which nothing uses yet.
        unsafe { *(field as *mut u64) = value };
        return;
    }
    use linux_raw_sys::general::{PROT_READ, PROT_WRITE};
    // SAFETY: the page holds the program's read-only headers, mapped private
    // by the kernel; nothing runs from it; it goes back to read-only.
    unsafe {
        if sys::mprotect(page as usize, PAGE as usize, PROT_READ | PROT_WRITE).is_err() {
            return;
        }
        *(field as *mut u64) = value;
        let _ = sys::mprotect(page as usize, PAGE as usize, PROT_READ);
    }
}
