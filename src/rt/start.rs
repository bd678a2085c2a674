//! From the entry stub to a mode. `hugeload_start` runs first, on the
//! kernel's stack, with the image relocated. hugeload does its work on a
//! stack of its own (an anonymous mapping with a guard page, unmapped by the
//! final jump), so that the program's stack limit does not bound hugeload
//! and the memory below the kernel's stack pointer stays free for the
//! program's new initial stack. If that mapping cannot be made, hugeload
//! runs on the kernel's stack below room for the new initial stack.

use super::arch;
use super::boot::Boot;
use super::sys;
use super::{binfmt, launcher, ptinterp};
use core::sync::atomic::{AtomicUsize, Ordering};
use hugeload::elf::PAGE;
use linux_raw_sys::auxvec::{AT_BASE, AT_EXECFD, AT_FLAGS};

/// Size of hugeload's work stack (reserved, not committed: only the pages
/// touched cost memory; the library search holds its closure there).
const WORK_STACK: usize = 2 << 20;

/// The work stack's mapping (address, length), from `hugeload_start` to
/// `run` across the stack switch; `run` hands it to the modes in `Boot`.
static WORK_STACK_MAPPING: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Called by `_start` with the kernel's stack pointer.
#[unsafe(no_mangle)]
pub extern "C" fn hugeload_start(sp: usize) -> ! {
    use linux_raw_sys::general::{
        MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, PROT_NONE, PROT_READ, PROT_WRITE,
    };
    let len = WORK_STACK + PAGE as usize;
    // SAFETY: a fresh private mapping at an address the kernel chooses.
    let stack = unsafe {
        sys::mmap(
            0,
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
            -1,
            0,
        )
    };
    // SAFETY (both arms): `run` re-reads everything it needs from above
    // `sp`; the new stack region is unused.
    match stack {
        Ok(addr) => {
            // The lowest page is a guard: an overflow faults instead of
            // writing into whatever lies below.
            // SAFETY: the page belongs to the mapping just made.
            let _ = unsafe { sys::mprotect(addr, PAGE as usize, PROT_NONE) };
            WORK_STACK_MAPPING[0].store(addr, Ordering::Relaxed);
            WORK_STACK_MAPPING[1].store(len, Ordering::Relaxed);
            unsafe { arch::switch_stack(addr + len, run, sp) }
        }
        Err(_) => {
            // SAFETY: `sp` is the kernel's initial stack pointer.
            let room = unsafe { Boot::read(sp) }.stack_bound();
            unsafe { arch::switch_stack(sp - room, run, sp) }
        }
    }
}

extern "C" fn run(sp: usize) -> ! {
    // SAFETY: `sp` is still the kernel's initial stack pointer and nothing
    // has written above it.
    let mut boot = unsafe { Boot::read(sp) };
    boot.work_stack = (
        WORK_STACK_MAPPING[0].load(Ordering::Relaxed),
        WORK_STACK_MAPPING[1].load(Ordering::Relaxed),
    );
    // The mode follows from the auxv: as PT_INTERP, AT_BASE is hugeload's
    // base; as a binfmt_misc handler with P or O, AT_FLAGS bit 0 or
    // AT_EXECFD is there; otherwise hugeload was run as a command.
    if boot.aux(AT_BASE).unwrap_or(0) != 0 {
        ptinterp::main(&mut boot)
    } else if boot.aux(AT_FLAGS).unwrap_or(0) & 1 != 0 || boot.aux(AT_EXECFD).is_some() {
        binfmt::main(&boot)
    } else {
        launcher::main(&boot)
    }
}
