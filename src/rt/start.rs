//! From the entry stub to a mode. `hugeload_start` runs first, on the
//! kernel's stack, with the image relocated; it moves the stack pointer
//! below room for the program's new initial stack and continues in `run`.

use super::arch;
use super::boot::Boot;
use super::{interp, launch};
use linux_raw_sys::auxvec::{AT_BASE, AT_EXECFD, AT_FLAGS};

/// Called by `_start` with the kernel's stack pointer.
#[unsafe(no_mangle)]
pub extern "C" fn hugeload_start(sp: usize) -> ! {
    // SAFETY: `sp` is the kernel's initial stack pointer.
    let boot = unsafe { Boot::read(sp) };
    let room = boot.stack_bound();
    // SAFETY: the region between the new stack pointer and `sp` is unused
    // stack (the stack grows down into it); `run` re-reads everything it
    // needs from above `sp`.
    unsafe { arch::switch_stack(sp - room, run, sp) }
}

extern "C" fn run(sp: usize) -> ! {
    // SAFETY: `sp` is still the kernel's initial stack pointer and nothing
    // has written above it.
    let mut boot = unsafe { Boot::read(sp) };
    // The mode follows from the auxv: as PT_INTERP, AT_BASE is hugeload's
    // base; as a binfmt_misc handler with P or O, AT_FLAGS bit 0 or
    // AT_EXECFD is there; otherwise hugeload was run as a command.
    if boot.aux(AT_BASE).unwrap_or(0) != 0 {
        interp::main(&mut boot)
    } else if boot.aux(AT_FLAGS).unwrap_or(0) & 1 != 0 || boot.aux(AT_EXECFD).is_some() {
        launch::binfmt_main(&boot)
    } else {
        launch::main(&boot)
    }
}
