//! Which interpreter really runs a program whose PT_INTERP names hugeload.
//! PT_INTERP now names hugeload, so the real one comes from hugeload's own
//! knowledge: `HUGELOAD_INTERP` (ignored for secure-execution programs),
//! else musl's loader when the program needs musl's libc, else the glibc
//! loader of this architecture; none for a program without DT_NEEDED.

use super::arch;
use super::boot::Boot;
use super::file::ElfFile;
use super::launch::is_secure;

///
/// The path is returned without its NUL; a NUL follows it in memory that
/// stays mapped for the life of the process (an environment string, or a
/// string of hugeload's image).
pub fn real_interp(boot: &Boot, program: &ElfFile) -> Option<&'static [u8]> {
    if !is_secure(boot) {
        if let Some(path) = boot.env(b"HUGELOAD_INTERP").filter(|p| !p.is_empty()) {
            return Some(path);
        }
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
