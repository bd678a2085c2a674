//! What the backends share: the image whose huge ranges are being placed,
//! and why a backend could not take a range.

use super::file::OpenFile;
use super::sys::Errno;
use hugeload::elf::Image;

/// The image whose huge ranges are being placed, and where their bytes
/// come from.
pub struct Target<'a> {
    pub file: &'a OpenFile,
    pub image: &'a Image,
    pub bias: u64,
    /// For naming memfds.
    pub name: &'a [u8],
    /// PT_INTERP mode under a debugger: the bytes are copied from the
    /// kernel's mapping of the image rather than read from the file, so
    /// what the debugger already changed there (a breakpoint) is kept.
    pub copy_from_memory: bool,
}

/// Why one backend could not give a range huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cause {
    pub step: &'static str,
    pub errno: Option<Errno>,
    /// Free pages in the hugetlb pool when a hugetlb mapping failed.
    pub pool_free: Option<u64>,
}

pub const fn cause(step: &'static str, errno: Errno) -> Cause {
    Cause {
        step,
        errno: Some(errno),
        pool_free: None,
    }
}
