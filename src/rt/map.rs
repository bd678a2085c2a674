//! Address space for an image: reserving its range (at its fixed addresses,
//! or where the kernel would put a PIE, with the phase the plan chose),
//! and mapping its pages from the file as the kernel would. Everything
//! here keeps the range whole: a reservation is PROT_NONE until mapped
//! over, and [`restore`] puts the kernel's mappings back over a range a
//! failed step may have emptied.

use super::arch;
use super::file::OpenFile;
use super::host::Host;
use super::sys::{self, Errno};
use hugeload::elf::{Image, PAGE};
use hugeload::error::LoadError;
use hugeload::plan::{self, HUGE, Mapping, Range, Source};
use linux_raw_sys::general::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_EXEC, PROT_NONE, PROT_READ,
    PROT_WRITE,
};

/// The mmap protection of a segment's `PF_*` flags.
pub fn prot_of(flags: u32) -> u32 {
    use goblin::elf::program_header::{PF_R, PF_W, PF_X};
    let mut prot = PROT_NONE;
    if flags & PF_R != 0 {
        prot |= PROT_READ;
    }
    if flags & PF_W != 0 {
        prot |= PROT_WRITE;
    }
    if flags & PF_X != 0 {
        prot |= PROT_EXEC;
    }
    prot
}

/// A fresh inaccessible mapping of `len` bytes where the kernel likes.
fn reserve_anywhere(len: u64) -> Result<u64, Errno> {
    // SAFETY: a fresh mapping at an address the kernel chooses.
    let addr = unsafe {
        sys::mmap(
            0,
            len as usize,
            PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }?;
    Ok(addr as u64)
}

/// Reserves `len` bytes at exactly `start`, never replacing a mapping.
fn reserve_at(start: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let got = unsafe {
        sys::mmap(
            start as usize,
            len as usize,
            PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    }?;
    if got as u64 != start {
        // A kernel older than 4.17 took the flag as a hint.
        // SAFETY: we just created this mapping and nothing uses it.
        let _ = unsafe { sys::munmap(got, len as usize) };
        return Err(Errno::EEXIST);
    }
    Ok(())
}

/// The fixed addresses of a non-PIE image: reserved, or why not.
pub fn reserve_fixed(start: u64, len: u64) -> Result<(), LoadError> {
    reserve_at(start, len).map_err(|e| match e {
        Errno::EEXIST => LoadError::AddressInUse,
        e => e.into(),
    })
}

/// Of the fresh mapping `[raw, raw + raw_len)`, keeps `[start, start +
/// len)` (which lies inside it) and unmaps the rest: how an over-allocated
/// mapping is aligned.
pub fn keep_only(raw: u64, raw_len: u64, start: u64, len: u64) {
    // SAFETY: both pieces belong to a mapping the caller just made and
    // nothing uses.
    unsafe {
        if start > raw {
            let _ = sys::munmap(raw as usize, (start - raw) as usize);
        }
        let end = raw + raw_len;
        if start + len < end {
            let _ = sys::munmap((start + len) as usize, (end - start - len) as usize);
        }
    }
}

/// Reserves a PIE's `len` bytes that start `rel_start` from its bias, with
/// the bias congruent to `phase` modulo 2 MiB, where the kernel would put
/// the image (`ELF_ET_DYN_BASE` plus its random offset, so `brk` can follow
/// the image as after a direct exec); returns the bias.
pub fn reserve_pie(host: &Host, rel_start: i64, len: u64, phase: u64) -> Result<u64, LoadError> {
    for _ in 0..8 {
        let offset = if host.randomizes {
            (sys::random_u64() & ((1 << arch::PIE_RANDOM_BITS) - 1)) * PAGE
        } else {
            0
        };
        let target = arch::PIE_BASE + offset;
        if let Some(bias) = plan::bias_near(target, rel_start, len, phase, arch::USER_TOP) {
            let start = (bias as i128 + rel_start as i128) as u64;
            if reserve_at(start, len).is_ok() {
                return Ok(bias);
            }
        }
        if !host.randomizes {
            break;
        }
    }
    // Anywhere the kernel likes, over-allocated to align.
    let addr = reserve_anywhere(len + HUGE)?;
    match plan::bias_near(addr, rel_start, len, phase, arch::USER_TOP) {
        Some(bias) if (bias as i128 + rel_start as i128) < (addr + HUGE) as i128 => {
            let start = (bias as i128 + rel_start as i128) as u64;
            keep_only(addr, len + HUGE, start, len);
            Ok(bias)
        }
        _ => {
            // SAFETY: the mapping just made, unused.
            let _ = unsafe { sys::munmap(addr as usize, (len + HUGE) as usize) };
            Err(LoadError::ImageTooLarge)
        }
    }
}

/// PT_INTERP mode: takes over the kernel's mapping of an image at `old`
/// and extends it into a reservation of `new` (which overlaps it, moved by
/// less than 2 MiB): the parts of `new` outside `old` are reserved without
/// replacing anything, then `old` becomes one inaccessible reservation,
/// and what of it lies outside `new` is given back. Nothing is changed if
/// the parts outside `old` are not free.
pub fn take_over(old: Range, new: Range) -> Result<(), LoadError> {
    let below = Range::new(new.start, old.start.min(new.end));
    let above = Range::new(old.end.max(new.start), new.end);
    for (i, part) in [below, above].iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if let Err(e) = reserve_at(part.start, part.len()) {
            if i == 1 && !below.is_empty() {
                // SAFETY: the part reserved just before, unused.
                let _ = unsafe { sys::munmap(below.start as usize, below.len() as usize) };
            }
            return Err(e.into());
        }
    }
    // SAFETY: `old` is the kernel's mapping of the image, which nothing has
    // run from or read yet; it becomes an inaccessible reservation.
    unsafe { make_inaccessible(old) }?;
    for part in [
        Range::new(old.start, new.start.min(old.end)),
        Range::new(new.end.max(old.start), old.end),
    ] {
        if !part.is_empty() {
            // SAFETY: a part of the reservation just made, outside `new`.
            let _ = unsafe { sys::munmap(part.start as usize, part.len() as usize) };
        }
    }
    Ok(())
}

/// Reserves an image that needs no huge pages (an interpreter): a PIE
/// where the kernel likes, a fixed-address image at its addresses; returns
/// the bias.
pub fn reserve_plain(image: &Image) -> Result<u64, LoadError> {
    let len = image.hi() - image.lo();
    if image.is_dyn() {
        Ok(reserve_anywhere(len)? - image.lo())
    } else {
        reserve_fixed(image.lo(), len)?;
        Ok(0)
    }
}

/// Maps the image's pages inside `window` and outside `exclude` from the
/// file, as the kernel would.
pub fn map_ordinary(
    file: &OpenFile,
    image: &Image,
    bias: u64,
    window: Range,
    exclude: &[Range],
) -> Result<(), LoadError> {
    let mut result = Ok(());
    plan::ordinary_mappings(image, bias, window, exclude, |m| {
        if result.is_ok() {
            result = map_one(file, &m);
        }
    });
    result
}

fn map_one(file: &OpenFile, m: &Mapping) -> Result<(), LoadError> {
    let prot = prot_of(m.flags);
    let len = m.range.len() as usize;
    let start = m.range.start as usize;
    let anonymous = MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS;
    // SAFETY (all three): every mapping lies inside the reservation made
    // for this image (or replaces the kernel's mapping of the same bytes),
    // which nothing uses yet.
    let r = match m.source {
        Source::File(offset) => unsafe {
            sys::mmap(start, len, prot, MAP_PRIVATE | MAP_FIXED, file.fd, offset)
        },
        Source::Zero => unsafe { sys::mmap(start, len, prot, anonymous, -1, 0) },
        Source::Partial { offset, len: data } => unsafe {
            // Only writable segments have partial pages, so the page is
            // filled where it will stay; a short read leaves zeros.
            sys::mmap(start, len, prot, anonymous, -1, 0).and_then(|_| {
                sys::pread_into(file.fd, start, (data as usize).min(len), offset).map(|_| start)
            })
        },
    };
    r.map(|_| ()).map_err(LoadError::from)
}

/// Replaces whatever `range` holds with an inaccessible anonymous mapping:
/// the range stays reserved (no hole), and no page of a file stays mapped
/// there.
///
/// # Safety
/// The range must be the caller's, and nothing may run from or use it.
pub unsafe fn make_inaccessible(range: Range) -> Result<(), Errno> {
    // SAFETY: the caller owns the range.
    unsafe {
        sys::mmap(
            range.start as usize,
            range.len() as usize,
            PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
    }
    .map(|_| ())
}

/// Maps `len` bytes of file `fd` at `offset`, read-only and private, at
/// `at` (a probe: nothing runs from it).
///
/// # Safety
/// `[at, at + len)` must be the caller's and unused.
pub unsafe fn map_file_at(at: u64, len: u64, fd: sys::Fd, offset: u64) -> Result<(), Errno> {
    // SAFETY: the caller owns the range.
    unsafe {
        sys::mmap(
            at as usize,
            len as usize,
            PROT_READ,
            MAP_PRIVATE | MAP_FIXED,
            fd,
            offset,
        )
    }
    .map(|_| ())
}

/// Puts `range` of an image back as the kernel would have it, after a step
/// that may have replaced it failed: first an inaccessible reservation
/// over all of it (the gaps between segments stay unusable, never
/// writable), then the segments' ordinary mappings.
pub fn restore(file: &OpenFile, image: &Image, bias: u64, range: Range) -> Result<(), LoadError> {
    // SAFETY: the range belongs to this image (reservation or the kernel's
    // mapping of it), and nothing runs from it yet.
    unsafe { make_inaccessible(range) }?;
    map_ordinary(file, image, bias, range, &[])
}
