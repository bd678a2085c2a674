//! hugeload: a static-pie, libc-free ELF loader that maps a program's code
//! onto 2 MiB pages at load time. See README.md.
//!
//! This binary is the effectful shell around the pure `hugeload` library:
//! the entry stub and architecture pieces (`targets/`), system calls, and
//! the modes.
#![no_std]
#![no_main]
// A load failure carries its one line (1 KiB) back to the mode that prints
// it: there is no allocator to box it, and it is returned once per run.
#![allow(clippy::result_large_err)]

#[cfg_attr(target_arch = "x86_64", path = "../targets/x86_64/arch.rs")]
mod arch;

#[path = "rt/binfmt.rs"]
mod binfmt;
#[path = "rt/boot.rs"]
mod boot;
#[path = "rt/diag.rs"]
mod diag;
#[path = "rt/file.rs"]
mod file;
#[path = "rt/hook.rs"]
mod hook;
#[path = "rt/host.rs"]
mod host;
#[path = "rt/huge.rs"]
mod huge;
#[path = "rt/image.rs"]
mod image;
#[path = "rt/kernel.rs"]
mod kernel;
#[path = "rt/launcher.rs"]
mod launcher;
#[path = "rt/libs.rs"]
mod libs;
#[path = "rt/load.rs"]
mod load;
#[path = "rt/lock.rs"]
mod lock;
#[path = "rt/map.rs"]
mod map;
#[path = "rt/mark.rs"]
mod mark;
#[path = "rt/origin.rs"]
mod origin;
#[path = "rt/out.rs"]
mod out;
#[path = "rt/own.rs"]
mod own;
#[path = "rt/pagecache.rs"]
mod pagecache;
#[path = "rt/perfmap.rs"]
mod perfmap;
#[path = "rt/prime.rs"]
mod prime;
#[path = "rt/procview.rs"]
mod procview;
#[path = "rt/ptinterp.rs"]
mod ptinterp;
#[path = "rt/report.rs"]
mod report;
#[path = "rt/start.rs"]
mod start;
#[path = "rt/stat.rs"]
mod stat;
#[path = "rt/sys.rs"]
mod sys;
#[path = "rt/target.rs"]
mod target;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::write_all(2, b"hugeload: internal error\n");
    sys::exit(126)
}

/// The precompiled `core` refers to this in builds with unwinding tables;
/// hugeload never unwinds.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
