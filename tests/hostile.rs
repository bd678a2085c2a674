//! Hostile inputs, hostile environments, and the promises hugeload makes
//! about both.
//!
//! - **Malformed files** (`hostile/corpus.rs`, `hostile/mutants.rs`): the
//!   committed corpus (tests/corpus/, see make.py; each file with its
//!   expected verdict in tests/corpus/expected.tsv), 300 seeded mutations of
//!   its good program, and a big program truncated while hugeload loads it.
//!   Each file is run by the kernel (a raw execve, no shell fallback) and
//!   through hugeload. hugeload either refuses it (exit 126/127, exactly one
//!   stderr line `hugeload: PATH: reason`, the kernel's errno class, nothing
//!   mapped: checked with strace) or runs it exactly as the kernel does
//!   (same stdout, exit status or signal): a file the kernel runs but
//!   hugeload does not load itself is handed to the kernel, and one with
//!   neither an ELF header nor `#!` runs through /bin/sh as execvp runs it.
//!   It never hangs, and is never killed by a signal the direct run did not
//!   get (`hostile/verdict.rs`).
//! - **Hostile environments** (`hostile/env.rs`): THP disabled for the
//!   process, an empty hugetlb pool, a pool that runs out part-way through
//!   the text, RLIMIT_AS and RLIMIT_DATA too small for a second copy of the
//!   text, a 16 KiB RLIMIT_STACK, MDWE, a seccomp filter like systemd's
//!   `MemoryDenyWriteExecute=`, blocked/ignored signals and signals arriving
//!   during the load, 50 concurrent launches sharing a 32-page pool. The
//!   program always runs as it does directly; `-v` says what was given up.
//! - **Promises** (`hostile/promises.rs`, `hostile/views.rs`): no mapping
//!   is ever writable and executable (strace of every mmap/mprotect/mremap),
//!   PIE bases are randomized, and the program's view of its process (auxv,
//!   status, limits, fds, environment) is the one a direct execve gives, in
//!   launcher, PT_INTERP and binfmt_misc mode.
//!
//! Tests that change the global hugetlb pool hold [`common::POOL`]
//! exclusively and restore it to at least 128 pages; tests that may take
//! pages from it hold it shared. Every child is bounded in time. Things
//! that need root, a tool or a kernel feature print `SKIP` (a failure with
//! `HUGELOAD_STRICT=1`).

#[macro_use]
mod common;

#[path = "hostile/corpus.rs"]
mod corpus;
#[path = "hostile/env.rs"]
mod env;
#[path = "hostile/harness.rs"]
mod harness;
#[path = "hostile/mutants.rs"]
mod mutants;
#[path = "hostile/promises.rs"]
mod promises;
#[path = "hostile/strace.rs"]
mod strace;
#[path = "hostile/verdict.rs"]
mod verdict;
#[path = "hostile/views.rs"]
mod views;

// The tests are the `#[test]` functions of these modules: malformed files
// (corpus, mutants), hostile environments (env), promises (promises,
// views).
