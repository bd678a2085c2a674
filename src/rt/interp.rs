//! PT_INTERP mode: the program names hugeload as its interpreter
//! (`patchelf --set-interpreter /usr/local/bin/hugeload ./server`).
//!
//! The kernel has mapped the program and passes its AT_PHDR/AT_ENTRY, with
//! AT_BASE = hugeload's base. hugeload builds a huge-page copy of each
//! planned text range elsewhere and moves it over the kernel's mapping in
//! one step (a failure leaves the kernel's mapping as it was), then maps the
//! real interpreter, sets AT_BASE to it on the kernel's stack, and enters it
//! with that stack unchanged otherwise. No option is read: the environment
//! (`HUGELOAD_*`) configures it, except for secure-execution programs.

use super::arch;
use super::boot::{self, Boot};
use super::chain;
use super::diag::{self, Report};
use super::file::ElfFile;
use super::launch;
use super::map::{self, Loaded};
use super::start;
use super::sys;
use super::{perfmap, report};
use hugeload::elf::{Image, PAGE, PHDR_SIZE, page_down};
use hugeload::options::Backend;
use hugeload::plan::Range;
use linux_raw_sys::auxvec::{AT_BASE, AT_ENTRY, AT_PHDR, AT_PHNUM};

pub fn main(boot: &mut Boot) -> ! {
    let settings = launch::settings_from_env(boot);
    let report = Report {
        on: settings.verbose,
    };
    let entry = boot.aux(AT_ENTRY).unwrap_or(0);

    // The program, as the kernel mapped it; /proc/self/exe is the program
    // in this mode. A program hugeload may not read (execute-only) still
    // runs, on 4 KiB pages, with the standard interpreter.
    // Without /proc (a chroot, say), the name the program was run by; never
    // for a secure-execution program, whose caller chose that name and
    // could swap the file. Either way the file must match what the kernel
    // mapped (checked below) before anything is taken from it.
    let program = ElfFile::open(b"/proc/self/exe").or_else(|e| {
        let execfn = boot
            .aux(linux_raw_sys::auxvec::AT_EXECFN)
            .filter(|_| !launch::is_secure(boot));
        match execfn {
            // SAFETY: AT_EXECFN points at the kernel's copy of the path, a
            // NUL-terminated string above the stack pointer.
            Some(addr) => ElfFile::open(unsafe { boot::cstr(addr as usize) }),
            None => Err(e),
        }
    });
    let program = match program {
        Ok(p) => Some(p),
        Err(e) => {
            report.say(|l| {
                l.str("cannot read the program (/proc/self/exe: ")
                    .str(e.message())
                    .str("): left on 4 KiB pages");
            });
            None
        }
    };
    let mut exe_name = [0u8; 256];
    let execfn = boot
        .aux(linux_raw_sys::auxvec::AT_EXECFN)
        // SAFETY: AT_EXECFN points at the kernel's copy of the path.
        .map(|addr| unsafe { boot::cstr(addr as usize) });
    let exe_name = read_link(b"/proc/self/exe", &mut exe_name)
        .or(execfn)
        .unwrap_or(b"program");

    // The real interpreter, or none for a static program, checked before
    // anything changes.
    let interp_path = match &program {
        Some(p) => chain::real_interp(boot, p),
        None => chain::default_interp(boot),
    };
    let interp =
        interp_path.map(|path| ElfFile::open(path).unwrap_or_else(|e| diag::fail(path, e)));

    // The program's text onto huge pages, if the program in memory is the
    // one in the file.
    let mut huge = map::Placed::new();
    let mut program_bias = None;
    if let Some(program) = &program {
        let image = &program.image;
        let bias = entry.wrapping_sub(image.e_entry);
        let consistent = image.phdr_vaddr != 0
            && boot.aux(AT_PHNUM) == Some(image.e_phnum as u64)
            && boot.aux(AT_PHDR) == Some(bias.wrapping_add(image.phdr_vaddr));
        if !consistent {
            report.say(|l| {
                l.str("the program in memory does not match /proc/self/exe: left on 4 KiB pages");
            });
        } else {
            program_bias = Some(bias);
            if settings.backend != Backend::Off {
                let loaded = map::remap_in_place(&program.file, image, bias, exe_name, &settings);
                report::report_program(
                    &report,
                    exe_name,
                    image,
                    &loaded,
                    Some(b"(hugeload as PT_INTERP)"),
                    &settings,
                );
                huge = loaded.huge_ranges();
                map::keep_hugetlb_in_core_dumps(&loaded, &report);
                if settings.perf_map {
                    perfmap::write(&program.file, bias, &huge, exe_name, &report);
                }
            }
        }
    }

    let entry = match (&interp, interp_path) {
        (Some(interp), Some(path)) => {
            let loaded: Loaded = map::load_plain(&interp.file, &interp.image)
                .unwrap_or_else(|e| diag::fail(path, e));
            report.say(|l| {
                l.str("interpreter ")
                    .bytes(path)
                    .str(" at 0x")
                    .hex(loaded.bias + interp.image.lo(), 0);
            });
            boot.set_aux(AT_BASE, loaded.bias);
            if let (Some(program), Some(bias)) = (&program, program_bias) {
                name_real_interp(boot, &program.image, bias, path, &huge, &report);
            }
            interp.file.close();
            loaded.entry(&interp.image)
        }
        _ => {
            boot.set_aux(AT_BASE, 0);
            entry
        }
    };
    save_auxv(boot, &report);
    if let Some(program) = &program {
        program.file.close();
    }
    // SAFETY: the entry point (the interpreter's, just mapped executable, or
    // a static program's, mapped by the kernel); the stack is the kernel's,
    // complete, with AT_BASE naming the interpreter or 0.
    unsafe { arch::enter(entry as usize, boot.sp, start::work_stack()) }
}

/// The target of symbolic link `path`.
fn read_link<'b>(path: &[u8], buf: &'b mut [u8; 256]) -> Option<&'b [u8]> {
    let n = sys::readlink(path, &mut buf[..]).ok()?;
    Some(&buf[..n])
}

/// glibc names its own link-map entry after the program's PT_INTERP string,
/// so `dl_iterate_phdr` and debuggers would see hugeload's path for ld.so.
/// Point the in-memory PT_INTERP program header at the real path instead
/// (the string is NUL-terminated and stays mapped). Skipped, with a note,
/// where the header sits on code or on a huge page: that page is not
/// changed.
fn name_real_interp(
    boot: &Boot,
    image: &Image,
    bias: u64,
    path: &'static [u8],
    huge: &map::Placed,
    report: &Report,
) {
    use goblin::elf::program_header::PT_INTERP;
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
    let field = phdr + index * PHDR_SIZE as u64 + 16; // p_vaddr
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

/// Makes /proc/PID/auxv (read by gdb and written into core dumps) show
/// the auxv the program gets, with AT_BASE naming the real interpreter.
/// PR_SET_MM_MAP needs every layout field: they are read back from
/// /proc/self/stat and given unchanged.
fn save_auxv(boot: &Boot, report: &Report) {
    let mut buf = [0u8; 2048];
    let fields = sys::read_small(b"/proc/self/stat", &mut buf).and_then(hugeload::procstat::parse);
    let Some(f) = fields else { return };
    let brk = sys::brk_now();
    let (auxv, auxv_len) = boot.auxv_on_stack();
    let map = linux_raw_sys::prctl::prctl_mm_map {
        start_code: f.start_code,
        end_code: f.end_code,
        start_data: f.start_data,
        end_data: f.end_data,
        start_brk: f.start_brk,
        brk,
        start_stack: f.start_stack,
        arg_start: f.arg_start,
        arg_end: f.arg_end,
        env_start: f.env_start,
        env_end: f.env_end,
        auxv: auxv as *mut u64,
        auxv_size: auxv_len as u32,
        exe_fd: u32::MAX,
    };
    let r = sys::set_mm_map(&map);
    if let Err(e) = r {
        report.say(|l| {
            l.str("/proc/self/auxv keeps AT_BASE = hugeload (PR_SET_MM_MAP: ")
                .str(hugeload::error::errno_message(e.0))
                .str(")");
        });
    }
}
