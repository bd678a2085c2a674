//! PT_INTERP mode: the program names hugeload as its interpreter
//! (`patchelf --set-interpreter /usr/local/bin/hugeload ./server`).
//!
//! The kernel has already done the first phases: it found the program,
//! checked it, mapped it, and built the stack, passing AT_PHDR/AT_ENTRY of
//! the program with AT_BASE = hugeload's base. What is left: read the
//! program's file and check that it is what the kernel mapped, choose and
//! check the real interpreter, move each planned text range onto huge
//! pages in place (a failure leaves the kernel's mapping), map the
//! interpreter, point AT_BASE at it on the kernel's stack, and enter it
//! with that stack otherwise unchanged. No option is read: the environment
//! (`HUGELOAD_*`) configures it, except for secure-execution programs.

use super::boot::{self, Boot};
use super::diag::{Failure, Report};
use super::file::ElfFile;
use super::host::Host;
use super::huge::{self, Placed};
use super::image::{self, Loaded};
use super::load::{self, Handoff};
use super::sys;
use super::{hook, libs, lock, perfmap, procview, report};
use hugeload::options::{Backend, Settings};
use linux_raw_sys::auxvec::{AT_BASE, AT_ENTRY, AT_EXECFN, AT_PHDR, AT_PHNUM};

pub fn main(boot: &mut Boot) -> ! {
    let settings = boot.settings();
    let host = Host::probe(settings.backend);
    match run(boot, &settings, &host) {
        Ok(handoff) => handoff.enter(),
        Err(failure) => failure.exit(),
    }
}

fn run(boot: &mut Boot, settings: &Settings, host: &Host) -> Result<Handoff, Failure> {
    let report = Report {
        level: settings.verbose,
    };
    let program = read_program(boot, &report);
    let mut name_buf = [0u8; 256];
    let name = program_name(boot, &mut name_buf);
    let interp = open_real_interp(boot, program.as_ref())?;
    let mapped = program
        .as_ref()
        .and_then(|p| matching_bias(boot, p, &report).map(|bias| (p, bias)));

    // Point of no return: from here on the address space changes.
    let mut huge = Placed::new();
    let mut moved = None;
    let mut mapped = mapped;
    if let Some((program, bias)) = mapped {
        if settings.backend != Backend::Off {
            let image = &program.image;
            let loaded =
                match image::move_to_congruent(&program.file, image, bias, name, settings, host) {
                    Some(Ok(loaded)) => {
                        // The program now lives at the new bias: its entry and
                        // headers too.
                        boot.set_aux(AT_ENTRY, loaded.entry(image));
                        boot.set_aux(AT_PHDR, loaded.phdr(image));
                        mapped = Some((program, loaded.bias));
                        loaded
                    }
                    Some(Err(e)) => return Err(Failure::new(name, e)),
                    None => image::remap_in_place(&program.file, image, bias, name, settings, host),
                };
            huge = finish_program(program, &loaded, name, settings, &report);
            if settings.lock {
                lock::lock_code(image, &loaded);
            }
            if loaded.bias != bias {
                moved = Some((image, loaded));
            }
        }
    }
    let entry = match interp {
        Some((path, interp)) => {
            let loaded =
                image::map_plain(&interp.file, &interp.image).map_err(|e| Failure::new(path, e))?;
            report.say(|l| {
                l.str("interpreter ")
                    .bytes(path)
                    .str(" at 0x")
                    .hex(loaded.bias + interp.image.lo(), 0);
            });
            boot.set_aux(AT_BASE, loaded.bias);
            let program_bias = mapped.map_or(0, |(_, bias)| bias);
            let hooked = hook::install(&interp, loaded.bias, program_bias, settings, host, &report);
            let on_work_stack = boot.work_stack.1 != 0;
            if let (Some((program, _)), false, true, true) = (
                mapped,
                hooked,
                settings.backend.uses_page_cache(),
                on_work_stack,
            ) {
                let musl = program.linking().needs_musl;
                libs::prime_startup_libraries(
                    boot,
                    &program.file,
                    &program.image,
                    name,
                    path,
                    musl,
                    &report,
                );
            }
            if let Some((program, bias)) = mapped {
                procview::name_real_interp(boot, &program.image, bias, path, &huge, &report);
            }
            interp.file.close();
            loaded.entry(&interp.image)
        }
        None => {
            boot.set_aux(AT_BASE, 0);
            boot.aux(AT_ENTRY).unwrap_or(0)
        }
    };
    procview::save_auxv(boot, moved.as_ref().map(|(i, l)| (*i, l)), &report);
    if let Some(program) = &program {
        program.file.close();
    }
    // The stack is the kernel's, complete, with AT_BASE naming the
    // interpreter or 0.
    Ok(Handoff {
        entry,
        sp: boot.sp as u64,
        work_stack: boot.work_stack,
    })
}

/// The program's file: `/proc/self/exe` in this mode; without /proc (a
/// chroot, say), the name the program was run by, but never for a
/// secure-execution program, whose caller chose that name and could swap
/// the file. Either way it is used only if it matches what the kernel
/// mapped ([`matching_bias`]). A program hugeload may not read
/// (execute-only) still runs, on 4 KiB pages.
fn read_program(boot: &Boot, report: &Report) -> Option<ElfFile> {
    let program = ElfFile::open(b"/proc/self/exe").or_else(|e| {
        let execfn = boot.aux(AT_EXECFN).filter(|_| !boot.is_secure());
        match execfn {
            // SAFETY: AT_EXECFN points at the kernel's copy of the path, a
            // NUL-terminated string above the stack pointer.
            Some(addr) => ElfFile::open(unsafe { boot::cstr(addr as usize) }),
            None => Err(e),
        }
    });
    program
        .inspect_err(|e| {
            report.say(|l| {
                l.str("cannot read the program (/proc/self/exe: ")
                    .str(e.message())
                    .str("): left on 4 KiB pages");
            });
        })
        .ok()
}

/// The program's name for reports and memfds: the target of
/// `/proc/self/exe`, else AT_EXECFN.
fn program_name<'b>(boot: &Boot, buf: &'b mut [u8; 256]) -> &'b [u8] {
    // SAFETY: AT_EXECFN points at the kernel's copy of the path.
    let execfn = boot
        .aux(AT_EXECFN)
        .map(|addr| unsafe { boot::cstr(addr as usize) });
    match sys::readlink(b"/proc/self/exe", &mut buf[..]) {
        Ok(n) => &buf[..n],
        Err(_) => execfn.unwrap_or(b"program"),
    }
}

/// The real interpreter, opened and validated before anything changes;
/// none for a static program.
fn open_real_interp(
    boot: &Boot,
    program: Option<&ElfFile>,
) -> Result<Option<(&'static [u8], ElfFile)>, Failure> {
    let Some(path) = load::real_interp(boot, program) else {
        return Ok(None);
    };
    let interp = ElfFile::open(path).map_err(|e| Failure::new(path, e))?;
    Ok(Some((path, interp)))
}

/// The program's bias, if the file is the image the kernel mapped: its
/// entry, program headers and their count agree with the auxv.
fn matching_bias(boot: &Boot, program: &ElfFile, report: &Report) -> Option<u64> {
    let image = &program.image;
    let bias = boot.aux(AT_ENTRY).unwrap_or(0).wrapping_sub(image.e_entry);
    let consistent = image.phdr_vaddr != 0
        && boot.aux(AT_PHNUM) == Some(image.e_phnum as u64)
        && boot.aux(AT_PHDR) == Some(bias.wrapping_add(image.phdr_vaddr));
    if !consistent {
        report.say(|l| {
            l.str("the program in memory does not match /proc/self/exe: left on 4 KiB pages");
        });
    }
    consistent.then_some(bias)
}

/// Reports the program's mapping, keeps hugetlb code in cores, writes the
/// perf map; returns the ranges on huge pages.
fn finish_program(
    program: &ElfFile,
    loaded: &Loaded,
    name: &[u8],
    settings: &Settings,
    report: &Report,
) -> Placed {
    let image = &program.image;
    report::report_program(
        report,
        name,
        image,
        loaded,
        Some(b"(hugeload as PT_INTERP)"),
        settings,
    );
    let placed = loaded.huge_ranges();
    huge::keep_hugetlb_in_core_dumps(&loaded.outcomes, report);
    if settings.perf_map {
        perfmap::write(
            &program.file,
            loaded.bias,
            &loaded.copied_ranges(),
            name,
            report,
        );
    }
    placed
}
