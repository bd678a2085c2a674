//! `$ORIGIN` of the program in launcher and binfmt_misc modes. ld.so takes
//! the main program's `$ORIGIN` from `/proc/self/exe`, which names hugeload
//! unless hugeload could change it (that needs CAP_SYS_ADMIN or
//! CAP_CHECKPOINT_RESTORE). So, before ld.so runs, the program's
//! DT_RUNPATH and DT_RPATH strings that use `$ORIGIN` are expanded here,
//! with the program's real directory, into a page of their own, and the
//! entries in the program's (still writable, private) dynamic section point
//! at them: ld.so reads them from memory and sees plain directories. Not for
//! secure-execution programs, whose `$ORIGIN` ld.so restricts.

use super::diag::Report;
use super::file::{self, OpenFile};
use super::sys;
use goblin::elf::dynamic::{DT_NULL, DT_RPATH, DT_RUNPATH, DT_STRTAB};
use hugeload::elf::{DYN_SIZE, Image, PAGE};
use hugeload::libsearch;
use linux_raw_sys::general::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};

/// Expands `$ORIGIN` in the loaded program (`image` at `bias`, read from
/// `file`); says under `-v` what it did.
pub fn expand_in_memory(file: &OpenFile, image: &Image, bias: u64, report: &Report) {
    let Some(dynamic) = image.dynamic else { return };
    // The dynamic section must lie in a writable segment's file bytes: the
    // kernel (and hugeload) map it private and writable; ld.so writes it too.
    let addr = image.dynamic_vaddr;
    let writable = image
        .loads
        .iter()
        .any(|s| s.is_write() && s.vaddr <= addr && addr + dynamic.len <= s.vaddr + s.filesz);
    if !writable {
        return;
    }
    let entries = (bias + addr) as *mut u64;
    let count = dynamic.len as usize / DYN_SIZE;
    // SAFETY (reads and writes of the entries): `[bias + addr, + len)` is
    // the program's dynamic section, mapped private and writable just now
    // (checked above); nothing else runs yet.
    let entry = |i: usize| unsafe { (*entries.add(2 * i), *entries.add(2 * i + 1)) };
    let Some(end) = (0..count).find(|&i| entry(i).0 == DT_NULL) else {
        return;
    };
    let Some(strtab) = (0..end).map(entry).find(|e| e.0 == DT_STRTAB).map(|e| e.1) else {
        return;
    };
    let strings = bias.wrapping_add(strtab);
    let uses_origin = (0..end)
        .filter(|&i| matches!(entry(i).0, DT_RPATH | DT_RUNPATH))
        .filter_map(|i| read_string(image, bias, strtab, entry(i).1))
        .any(|list| libsearch::expand_origin(list, b"/", &mut [0u8; 4096]).is_some());
    if !uses_origin {
        return;
    }
    let mut dir_buf = [0u8; 4096];
    let Some(path) = file::canonical_path(file, &mut dir_buf) else {
        return;
    };
    let dir_len = path.iter().rposition(|&b| b == b'/').unwrap_or(0).max(1);
    let dir = &dir_buf[..dir_len];
    let mut page: Option<(usize, usize)> = None;
    for i in (0..end).filter(|&i| matches!(entry(i).0, DT_RPATH | DT_RUNPATH)) {
        let Some(list) = read_string(image, bias, strtab, entry(i).1) else {
            continue;
        };
        let mut out = [0u8; 4096];
        let Some(n) = libsearch::expand_origin(list, dir, &mut out[..4095]) else {
            continue;
        };
        // A page for the expanded strings, read-only once written.
        let (base, used) = match page {
            Some(p) => p,
            None => {
                // SAFETY: a fresh private mapping where the kernel likes.
                let Ok(base) = (unsafe {
                    sys::mmap(
                        0,
                        PAGE as usize,
                        PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                }) else {
                    return;
                };
                (base, 0)
            }
        };
        if used + n + 1 > PAGE as usize {
            page = Some((base, used));
            continue;
        }
        // SAFETY: `[base + used, + n + 1)` lies in the page just mapped,
        // writable and used by nothing else.
        unsafe {
            core::ptr::copy_nonoverlapping(out.as_ptr(), (base + used) as *mut u8, n);
            *((base + used + n) as *mut u8) = 0;
            *entries.add(2 * i + 1) = ((base + used) as u64).wrapping_sub(strings);
        }
        page = Some((base, used + n + 1));
        report.say(|l| {
            l.str("$ORIGIN of the program expanded for ld.so: ")
                .bytes(&out[..n]);
        });
    }
    if let Some((base, _)) = page {
        // SAFETY: the page is ours; it goes from RW to R.
        let _ = unsafe { sys::mprotect(base, PAGE as usize, PROT_READ) };
    }
}

/// The NUL-terminated string at `offset` of the string table at link-time
/// address `strtab`, read from the program's memory where a segment maps
/// it from the file.
fn read_string(image: &Image, bias: u64, strtab: u64, offset: u64) -> Option<&'static [u8]> {
    let start = strtab.checked_add(offset)?;
    let seg = image
        .loads
        .iter()
        .find(|s| s.is_read() && s.vaddr <= start && start < s.vaddr + s.filesz)?;
    let limit = (seg.vaddr + seg.filesz - start).min(4096) as usize;
    let p = (bias + start) as *const u8;
    // SAFETY: `[p, p + limit)` lies in a segment's file bytes, mapped
    // readable by this load; it lives as long as the process.
    let bytes = unsafe { core::slice::from_raw_parts(p, limit) };
    let len = bytes.iter().position(|&b| b == 0)?;
    Some(&bytes[..len])
}
