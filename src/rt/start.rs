//! From the entry stub to a mode. `hugeload_start` runs first, on the
//! kernel's stack, with the image relocated; it moves the stack pointer
//! below room for the program's new initial stack and continues in `run`.

use super::arch;
use super::boot::Boot;
use super::launch;

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
    let boot = unsafe { Boot::read(sp) };
    launch::main(&boot)
}
