//! Handing a program to the kernel: a file hugeload will not load itself
//! (32-bit, an executable stack, a layout it is stricter about than the
//! kernel) still runs, as `execve` runs it, in the launcher. If the kernel
//! refuses it too, hugeload's own reason is printed.

use super::boot::Boot;
use super::diag::{Failure, Report};
use super::load::Request;
use super::sys::{self, CPath};

/// `execve(path, [argv0, ARGS...], environ)`; returns `refused` if the
/// kernel will not run it either.
pub fn hand_over(
    boot: &Boot,
    request: &Request,
    path: &CPath,
    refused: Failure,
    report: &Report,
) -> Failure {
    report.say(|l| {
        l.bytes(refused.text())
            .str(": handed to the kernel (execve), which loads it without huge pages");
    });
    let args = boot.args_from(request.rest);
    let argc = 1 + args.clone().count();
    let words = argc + 1 + boot.envc + 1;
    let Ok(mut room) = sys::Scratch::new(words * 8) else {
        return refused;
    };
    let bytes = room.bytes_mut();
    let mut put = |i: usize, v: u64| bytes[8 * i..8 * i + 8].copy_from_slice(&v.to_ne_bytes());
    // Every string is a kernel string above the initial stack pointer,
    // NUL-terminated where it ends (argv0 may be the tail of one).
    put(0, request.argv0.as_ptr() as u64);
    for (i, a) in args.enumerate() {
        put(1 + i, a.as_ptr() as u64);
    }
    put(argc, 0);
    for (i, e) in boot.env_ptrs().enumerate() {
        put(argc + 1 + i, e);
    }
    put(argc + 1 + boot.envc, 0);
    let argv = bytes.as_ptr() as usize;
    let envp = argv + 8 * (argc + 1);
    // SAFETY: `path` is NUL-terminated; `argv` and `envp` are NULL-ended
    // arrays of pointers to NUL-terminated strings that live in the
    // kernel's area of the stack, and `room` outlives the call.
    let _ = unsafe { sys::execve(path, argv, envp) };
    refused
}
