//! The pure core of hugeload: parsing and validating untrusted ELF bytes,
//! planning which address ranges go on which pages, and laying out the new
//! initial stack. Nothing here performs a system call or touches memory it
//! was not handed, so all of it is unit-tested on the host with `cargo test`.
//!
//! The effectful shell (system calls, the entry stub, the modes) lives in the
//! `hugeload` binary (`src/main.rs` and `src/rt/`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod auxv;
pub mod dynsym;
pub mod elf;
pub mod errno;
pub mod error;
pub mod exec;
pub mod fmt;
pub mod interp;
pub mod jump;
pub mod ldcache;
pub mod libsearch;
pub mod linkmap;
pub mod options;
pub mod perfmap;
pub mod plan;
pub mod procstat;
pub mod script;
pub mod smaps;
pub mod stack;
