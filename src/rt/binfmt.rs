//! binfmt_misc mode: the kernel ran hugeload for a marked binary. With the
//! P flag argv is [hugeload, path, original argv0, args...] and AT_FLAGS
//! bit 0 is set; with O the binary comes as AT_EXECFD. Options are not
//! parsed (the program's arguments follow); the environment configures.
//! Running the program is the shared load (`load::load`).

use super::boot::Boot;
use super::diag::Failure;
use super::host::Host;
use super::load::{self, Request};
use hugeload::errno::Errno;
use linux_raw_sys::auxvec::{AT_EXECFD, AT_FLAGS};

pub fn main(boot: &Boot) -> ! {
    let settings = boot.settings();
    let Some(typed) = boot.arg(1) else {
        Failure::new(b"binfmt_misc", Errno::EINVAL.into()).exit()
    };
    let preserve_argv0 = boot.aux(AT_FLAGS).unwrap_or(0) & 1 != 0;
    let (argv0, rest) = match boot.arg(2) {
        Some(argv0) if preserve_argv0 => (argv0, 3),
        _ => (typed, 2),
    };
    let request = Request {
        typed,
        argv0,
        rest,
        search_path: false,
        execfd: boot.aux(AT_EXECFD).map(|fd| fd as i32),
        kernel_fallback: false,
    };
    let host = Host::probe(settings.backend);
    match load::load(boot, &host, &settings, &request) {
        Ok(handoff) => handoff.enter(),
        Err(failure) => failure.exit(),
    }
}
