//! hugeload's own image in memory. To make `/proc/self/exe` name the
//! program, the kernel wants no mapping of hugeload's file left
//! (`replace_mm_exe_file` returns EBUSY otherwise): each of hugeload's
//! PT_LOADs is swapped, in place, for an anonymous copy of itself.

use super::sys::{self, Errno};
use goblin::elf::program_header::PT_LOAD;
use hugeload::elf::{self, EHDR_SIZE, PHDR_SIZE, page_down, page_up};
use linux_raw_sys::general::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};

unsafe extern "C" {
    /// The ELF header of hugeload's own image (linker-provided).
    static __ehdr_start: u8;
}

/// The load address of hugeload's image.
fn base() -> usize {
    // Only the address of the linker-provided symbol is taken.
    &raw const __ehdr_start as usize
}

/// # Safety
/// `[addr, addr + len)` must be mapped and readable.
unsafe fn bytes(addr: usize, len: usize) -> &'static [u8] {
    // SAFETY: the caller guarantees the range.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// Replaces every file mapping of hugeload's image with an anonymous copy
/// with the same contents and protection. Each swap is one `mremap`, so the
/// code doing it keeps running (the bytes at its addresses never change),
/// and a failure leaves the original mapping in place.
pub fn detach_from_file() -> Result<(), Errno> {
    let base = base();
    // SAFETY: hugeload's ELF header and program headers are mapped (the
    // first PT_LOAD covers them, linker.ld puts FILEHDR and PHDRS there).
    let header = unsafe { bytes(base, EHDR_SIZE) };
    let header = elf::parse_header(header, super::arch::ELF_MACHINE).map_err(|_| Errno::EINVAL)?;
    let table_len = elf::phdr_table_len(&header);
    // SAFETY: as above.
    let table = unsafe { bytes(base + header.e_phoff as usize, table_len) };
    for index in 0..table_len / PHDR_SIZE {
        let ph = elf::program_header(table, index);
        if ph.p_type != PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let start = base + page_down(ph.p_vaddr) as usize;
        let end = base + page_up(ph.p_vaddr + ph.p_memsz) as usize;
        swap_for_copy(start, end - start, super::map::prot_of(ph.p_flags))?;
    }
    Ok(())
}

fn swap_for_copy(start: usize, len: usize, prot: u32) -> Result<(), Errno> {
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses.
    let copy = unsafe {
        sys::mmap(
            0,
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }?;
    // SAFETY: both ranges are mapped, readable/writable as used, and
    // disjoint.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, copy as *mut u8, len) };
    let discard = |e: Errno| {
        // SAFETY: the copy is ours and unused.
        let _ = unsafe { sys::munmap(copy, len) };
        e
    };
    // SAFETY: the copy goes from RW to the segment's protection; a code
    // segment is never writable and executable at once.
    unsafe { sys::mprotect(copy, len, prot) }.map_err(discard)?;
    // SAFETY: the copy holds exactly the bytes of the original, so nothing
    // running from or reading the original can tell the difference.
    unsafe { sys::mremap_fixed(copy, len, start) }.map_err(discard)
}
