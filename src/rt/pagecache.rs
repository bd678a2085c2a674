//! The page-cache backend: a 2 MiB block of text whose address is
//! congruent with its file offset is mapped straight from the file, with
//! `MADV_HUGEPAGE`, so that when the page cache holds that part of the file
//! in a 2 MiB folio the first fault maps it with one PMD entry
//! (`filemap_map_pages` → `filemap_map_pmd`). No copy, no private memory,
//! one copy shared by every process that maps the file, still file-backed
//! (perf, gdb and cores see the file).
//!
//! The cache may hold the block in small folios (the file was read
//! without `MADV_HUGEPAGE`, or written recently). Then the block is primed:
//! its dirty pages are written back (nothing new is written), its clean
//! pages are dropped if no process maps them (`POSIX_FADV_DONTNEED` drops
//! nothing else), and it is read again through a `MADV_HUGEPAGE |
//! MADV_RANDOM` mapping, which reads one 2 MiB folio per fault
//! (`do_sync_mmap_readahead`). What is PMD-mapped is checked, never
//! assumed, in `/proc/self/smaps`; a block that still is not goes to the
//! copying backends.

use super::huge::{Cause, Target};
use super::host::Host;
use super::map;
use super::sys::{self, Advice, CPath};
use hugeload::plan::{self, HUGE, Range};
use hugeload::smaps;
use linux_raw_sys::general::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_NONE, PROT_READ,
};

/// One stretch of the planned huge ranges and how the page cache fared:
/// `cause` is `None` when it is mapped from 2 MiB folios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub range: Range,
    pub cause: Option<Cause>,
}

pub type Runs = heapless::Vec<Run, { plan::MAX_PIECES }>;

/// How many blocks are probed at a time when finding which blocks the
/// cache holds small (each probe is its own mapping in smaps).
const PROBE_BATCH: usize = 32;
/// Room for this process's smaps while it loads: a few dozen mappings.
const SMAPS_ROOM: usize = 512 << 10;

const fn refused(step: &'static str) -> Cause {
    Cause {
        step,
        errno: None,
        pool_free: None,
    }
}

const SMALL_FOLIOS: Cause = refused(
    "the page cache holds it in small folios it could not drop (another process maps them, or the filesystem has no large folios)",
);

/// Maps every block of `huge` that it can from the page cache; returns
/// runs covering all of `huge`, in order.
pub fn place(t: &Target, huge: &[Range], host: &Host) -> Runs {
    let mut runs = Runs::new();
    let refuse_all = |runs: &mut Runs, cause: Cause| {
        for &r in huge {
            push(runs, r, Some(cause));
        }
    };
    if host.thp_disabled {
        refuse_all(&mut runs, refused("disabled for this process (PR_SET_THP_DISABLE)"));
        return runs;
    }
    if t.copy_from_memory {
        refuse_all(
            &mut runs,
            refused("a debugger traces the process: a copy of the mapped code keeps its breakpoints"),
        );
        return runs;
    }
    // Pass 1: map every eligible block from the file and fault it in.
    let mut mapped = Runs::new();
    for &r in huge {
        for_each_block(r, |block| {
            let cause = match plan::cache_offset(t.image, t.bias, block, t.file.size) {
                Ok(offset) => map_final(t, block, offset)
                    .inspect_err(|_| {
                        let _ = map::restore(t.file, t.image, t.bias, block);
                    })
                    .err(),
                Err(refusal) => Some(refused(refusal.message())),
            };
            push(&mut mapped, block, cause);
        });
    }
    // Pass 2: which of them really are PMD-mapped.
    let Ok(mut room) = sys::Scratch::new(SMAPS_ROOM) else {
        return mapped;
    };
    let text = read_own_smaps(room.bytes_mut());
    let mut whole = heapless::Vec::<bool, { plan::MAX_PIECES }>::new();
    for run in &mapped {
        let _ = whole.push(pmd_bytes_in(text, run.range) == run.range.len());
    }
    for (run, whole) in mapped.iter().zip(whole) {
        if run.cause.is_some() || whole {
            push(&mut runs, run.range, run.cause);
            continue;
        }
        // Some blocks are cached small: prime them, block by block.
        let _ = map::restore(t.file, t.image, t.bias, run.range);
        prime_and_map(t, run.range, room.bytes_mut(), &mut runs);
    }
    runs
}

/// Appends `range` with `cause`, merging it into the last run when they
/// touch and fared the same.
fn push(runs: &mut Runs, range: Range, cause: Option<Cause>) {
    match runs.last_mut() {
        Some(last) if last.range.end == range.start && last.cause == cause => {
            last.range.end = range.end
        }
        _ => {
            let _ = runs.push(Run { range, cause });
        }
    }
}

fn for_each_block(range: Range, mut f: impl FnMut(Range)) {
    let mut start = range.start;
    while start < range.end {
        f(Range::new(start, start + HUGE));
        start += HUGE;
    }
}

/// Maps the file's 2 MiB at `offset` read+exec at `block`, advised for
/// huge pages, and faults it in.
fn map_final(t: &Target, block: Range, offset: u64) -> Result<(), Cause> {
    let cause = |step, e| Cause {
        step,
        errno: Some(e),
        pool_free: None,
    };
    // SAFETY: the block lies in this image's reservation (launcher) or is
    // the kernel's mapping of the same file (PT_INTERP); nothing runs from
    // it yet, and a file mapping of the same bytes replaces it.
    unsafe {
        sys::mmap(
            block.start as usize,
            HUGE as usize,
            PROT_READ | PROT_EXEC,
            MAP_PRIVATE | MAP_FIXED,
            t.file.fd,
            offset,
        )
    }
    .map_err(|e| cause("mmap", e))?;
    populate(block).map_err(|e| cause("madvise(MADV_HUGEPAGE)", e))
}

/// Advises `block` (a file mapping) for huge pages and faults it in, one
/// 2 MiB folio per fault; the access pattern goes back to normal after,
/// `MADV_HUGEPAGE` stays (what reclaim takes comes back in 2 MiB folios).
fn populate(block: Range) -> Result<(), sys::Errno> {
    let (addr, len) = (block.start as usize, block.len() as usize);
    sys::madvise(addr, len, Advice::HugePage)?;
    let _ = sys::madvise(addr, len, Advice::Random);
    // SAFETY: the block is a readable mapping of file bytes made just
    // before; reading one byte faults it in.
    unsafe { core::ptr::read_volatile(addr as *const u8) };
    let _ = sys::madvise(addr, len, Advice::Normal);
    Ok(())
}

fn read_own_smaps(buf: &mut [u8]) -> &[u8] {
    let n = CPath::from_parts(&[b"/proc/self/smaps"])
        .and_then(|p| sys::read_file(&p, buf).ok())
        .unwrap_or(0);
    &buf[..n]
}

/// Bytes of `range` mapped with PMD entries from a file, per smaps.
fn pmd_bytes_in(text: &[u8], range: Range) -> u64 {
    let mut bytes = 0;
    smaps::parse(text, |m| {
        if Range::new(m.start, m.end).overlaps(&range) {
            bytes += (m.file_pmd_kb * 1024).min(Range::new(m.start, m.end).intersect(&range).len());
        }
    });
    bytes
}

/// For the blocks of `run` (restored to ordinary mappings): finds which the
/// cache holds in 2 MiB folios, primes the others, maps the ones that are
/// then, and appends the outcome of each block to `runs`.
fn prime_and_map(t: &Target, run: Range, room: &mut [u8], runs: &mut Runs) {
    let mut start = run.start;
    while start < run.end {
        let end = (start + PROBE_BATCH as u64 * HUGE).min(run.end);
        let batch = Range::new(start, end);
        let primed = prime_batch(t, batch, room);
        let mut i = 0;
        for_each_block(batch, |block| {
            let cause = if primed & (1 << i) == 0 {
                Some(SMALL_FOLIOS)
            } else {
                match plan::cache_offset(t.image, t.bias, block, t.file.size) {
                    Ok(offset) => map_final(t, block, offset).err(),
                    Err(refusal) => Some(refused(refusal.message())),
                }
            };
            if cause.is_some() {
                let _ = map::restore(t.file, t.image, t.bias, block);
            }
            push(runs, block, cause);
            i += 1;
        });
        start = end;
    }
}

/// Probes each block of `batch` in a mapping of its own (2 MiB apart, so
/// smaps reports each alone), drops and re-reads those cached small, and
/// returns a bit per block: set when the cache now holds it in a 2 MiB
/// folio.
fn prime_batch(t: &Target, batch: Range, room: &mut [u8]) -> u64 {
    let n = (batch.len() / HUGE) as usize;
    let area_len = (2 * n as u64 + 1) * HUGE;
    // SAFETY: a fresh inaccessible mapping where the kernel likes.
    let Ok(raw) = (unsafe {
        sys::mmap(0, area_len as usize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    }) else {
        return 0;
    };
    let area = plan::huge_up(raw as u64);
    let probe = |i: usize| Range::new(area + 2 * i as u64 * HUGE, area + (2 * i as u64 + 1) * HUGE);
    let offset_of = |i: usize| {
        let block = Range::new(batch.start + i as u64 * HUGE, batch.start + (i as u64 + 1) * HUGE);
        plan::cache_offset(t.image, t.bias, block, t.file.size).ok()
    };
    let map_probe = |i: usize, offset: u64| {
        let p = probe(i);
        // SAFETY: the probe lies in the area reserved just above.
        let mapped = unsafe {
            sys::mmap(
                p.start as usize,
                HUGE as usize,
                PROT_READ,
                MAP_PRIVATE | MAP_FIXED,
                t.file.fd,
                offset,
            )
        };
        mapped.is_ok() && populate(p).is_ok()
    };
    let unmap_probe = |i: usize| {
        let p = probe(i);
        // SAFETY: the probe lies in our area; an inaccessible mapping
        // replaces the file mapping, so this process maps none of its pages.
        let _ = unsafe {
            sys::mmap(
                p.start as usize,
                HUGE as usize,
                PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                -1,
                0,
            )
        };
    };
    let primed_now = |room: &mut [u8]| {
        let text = read_own_smaps(room);
        (0..n).fold(0u64, |bits, i| {
            if pmd_bytes_in(text, probe(i)) == HUGE {
                bits | 1 << i
            } else {
                bits
            }
        })
    };
    for i in 0..n {
        if let Some(offset) = offset_of(i) {
            map_probe(i, offset);
        }
    }
    let cached = primed_now(room);
    let mut dropped = false;
    for i in (0..n).filter(|&i| cached & (1 << i) == 0) {
        let Some(offset) = offset_of(i) else { continue };
        unmap_probe(i);
        let _ = sys::write_back(t.file.fd, offset, HUGE);
        let _ = sys::drop_clean_cache(t.file.fd, offset, HUGE);
        map_probe(i, offset);
        dropped = true;
    }
    let primed = if dropped { primed_now(room) } else { cached };
    // SAFETY: the whole area is ours and nothing else uses it.
    let _ = unsafe { sys::munmap(raw, area_len as usize) };
    primed
}
