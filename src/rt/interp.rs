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
use super::boot::Boot;
use super::chain;
use super::diag::{self, Report};
use super::file::{ElfFile, Head, OpenFile};
use super::launch;
use super::map::{self, Loaded};
use super::report;
use super::sys::{self, CPath};
use hugeload::error::LoadError;
use hugeload::options::Backend;
use linux_raw_sys::auxvec::{AT_BASE, AT_ENTRY, AT_PHDR, AT_PHNUM};

pub fn main(boot: &mut Boot) -> ! {
    let settings = launch::settings_from_env(boot);
    let report = Report { on: settings.verbose };
    let entry = boot.aux(AT_ENTRY).unwrap_or(0);

    // The program, as the kernel mapped it. /proc/self/exe is the program
    // in this mode.
    let exe = CPath::from_parts(&[b"/proc/self/exe"]).unwrap_or_else(CPath::new);
    let program = OpenFile::open(&exe)
        .and_then(|f| {
            let head = Head::read(&f)?;
            ElfFile::parse(f, &head)
        })
        .unwrap_or_else(|e| diag::fail(b"/proc/self/exe", e));
    let image = &program.image;
    let bias = entry.wrapping_sub(image.e_entry);
    let consistent = boot.aux(AT_PHNUM) == Some(image.e_phnum as u64)
        && boot.aux(AT_PHDR) == Some(bias.wrapping_add(image.phdr_vaddr));
    let mut exe_name = [0u8; 256];
    let exe_name = read_link(b"/proc/self/exe", &mut exe_name).unwrap_or(b"program");

    if settings.backend != Backend::Off && consistent {
        let loaded = map::remap_in_place(&program.file, image, bias, exe_name, &settings);
        report::report_program(&report, exe_name, image, &loaded, Some(b"(hugeload as PT_INTERP)"), &settings);
    } else if !consistent {
        report.say(|l| {
            l.str("the program in memory does not match /proc/self/exe: left on 4 KiB pages");
        });
    }

    // The real interpreter, or none for a static program.
    let Some(interp_path) = chain::real_interp(boot, &program) else {
        program.file.close();
        boot.set_aux(AT_BASE, 0);
        // SAFETY: the kernel's stack, unchanged but for AT_BASE, and the
        // program's entry point, mapped by the kernel.
        unsafe { arch::enter(entry as usize, boot.sp) }
    };
    let ipath = CPath::from_parts(&[interp_path]).unwrap_or_else(|| diag::fail(interp_path, LoadError::BadInterpPath));
    let interp = OpenFile::open(&ipath)
        .and_then(|f| {
            let head = Head::read(&f)?;
            ElfFile::parse(f, &head)
        })
        .unwrap_or_else(|e| diag::fail(interp_path, e));
    let loaded: Loaded = map::load_plain(&interp.file, &interp.image).unwrap_or_else(|e| diag::fail(interp_path, e));
    report.say(|l| {
        l.str("interpreter ").bytes(interp_path).str(" at 0x").hex(loaded.bias + interp.image.lo(), 0);
    });
    boot.set_aux(AT_BASE, loaded.bias);
    program.file.close();
    interp.file.close();
    // SAFETY: the interpreter's entry point was just mapped executable; the
    // stack is the kernel's, complete, with AT_BASE naming the interpreter.
    unsafe { arch::enter(loaded.entry(&interp.image) as usize, boot.sp) }
}

/// The target of symbolic link `path`.
fn read_link<'b>(path: &[u8], buf: &'b mut [u8; 256]) -> Option<&'b [u8]> {
    let n = sys::readlink(path, &mut buf[..]).ok()?;
    Some(&buf[..n])
}
