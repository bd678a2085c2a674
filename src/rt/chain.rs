//! Which interpreter really runs a program whose PT_INTERP names hugeload.
//! PT_INTERP now names hugeload, so the real one comes from hugeload's own
//! knowledge: `HUGELOAD_INTERP` (ignored for secure-execution programs),
//! else musl's loader when the program needs musl's libc, else the glibc
//! loader of this architecture; none for a program without DT_NEEDED.

use super::arch;
use super::boot::Boot;
use super::file::ElfFile;
use super::launch::is_secure;

/// The real interpreter of `program` (see the module comment).
///
/// The path is returned without its NUL; a NUL follows it in memory that
/// stays mapped for the life of the process (an environment string, or a
/// string of hugeload's image).
pub fn real_interp(boot: &Boot, program: &ElfFile) -> Option<&'static [u8]> {
    if let Some(path) = interp_from_env(boot) {
        return Some(path);
    }
    let linking = program.linking();
    if !linking.has_needed {
        return None;
    }
    let path = if linking.needs_musl {
        arch::MUSL_INTERP
    } else {
        arch::GLIBC_INTERP
    };
    Some(&path[..path.len() - 1])
}

fn interp_from_env(boot: &Boot) -> Option<&'static [u8]> {
    if is_secure(boot) {
        return None;
    }
    boot.env(b"HUGELOAD_INTERP").filter(|p| !p.is_empty())
}

/// The interpreter when the program cannot be read: `HUGELOAD_INTERP`, else
/// the glibc loader of this architecture.
pub fn default_interp(boot: &Boot) -> Option<&'static [u8]> {
    let glibc = &arch::GLIBC_INTERP[..arch::GLIBC_INTERP.len() - 1];
    Some(interp_from_env(boot).unwrap_or(glibc))
}
