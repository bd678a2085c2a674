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

use super::host::Host;
use super::map;
use super::prime::{self, PROBE_BATCH};
use super::sys;
use super::target::{Cause, Target};
use hugeload::plan::{self, HUGE, Range};
use linux_raw_sys::general::{MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ};

/// One stretch of the planned huge ranges and how the page cache fared:
/// `cause` is `None` when it is mapped from 2 MiB folios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub range: Range,
    pub cause: Option<Cause>,
}

pub type Runs = heapless::Vec<Run, { plan::MAX_PIECES }>;

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
/// runs covering all of `huge`, in order. Holds the file's advisory lock
/// while it does: hugeloads started together on a file cached small would
/// otherwise each keep the others from dropping its small folios; with
/// the lock, the first primes and the others find 2 MiB folios.
pub fn place(t: &Target, huge: &[Range], host: &Host) -> Runs {
    if huge.is_empty() {
        return Runs::new();
    }
    let locked = sys::lock_exclusive(t.file.fd).is_ok();
    let runs = place_locked(t, huge, host);
    if locked {
        sys::unlock(t.file.fd);
    }
    runs
}

fn place_locked(t: &Target, huge: &[Range], host: &Host) -> Runs {
    let mut runs = Runs::new();
    let refuse_all = |runs: &mut Runs, cause: Cause| {
        for &r in huge {
            push(runs, r, Some(cause));
        }
    };
    if host.thp_disabled {
        refuse_all(
            &mut runs,
            refused("disabled for this process (PR_SET_THP_DISABLE)"),
        );
        return runs;
    }
    if t.copy_from_memory && host.traced {
        refuse_all(
            &mut runs,
            refused(
                "a debugger traces the process: a copy of the mapped code keeps its breakpoints",
            ),
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
    let Ok(mut room) = sys::Scratch::new(prime::SMAPS_ROOM) else {
        return mapped;
    };
    let text = prime::read_own_smaps(room.bytes_mut());
    let mut whole = heapless::Vec::<bool, { plan::MAX_PIECES }>::new();
    for run in &mapped {
        let _ = whole.push(prime::pmd_bytes_in(text, run.range) == run.range.len());
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
    prime::populate(block).map_err(|e| cause("madvise(MADV_HUGEPAGE, MADV_POPULATE_READ)", e))
}

/// For the blocks of `run` (restored to ordinary mappings): finds which the
/// cache holds in 2 MiB folios, primes the others, maps the ones that are
/// then, and appends the outcome of each block to `runs`.
fn prime_and_map(t: &Target, run: Range, room: &mut [u8], runs: &mut Runs) {
    let mut start = run.start;
    while start < run.end {
        let end = (start + PROBE_BATCH as u64 * HUGE).min(run.end);
        let batch = Range::new(start, end);
        let mut offsets = heapless::Vec::<Option<u64>, PROBE_BATCH>::new();
        for_each_block(batch, |block| {
            let _ = offsets.push(plan::cache_offset(t.image, t.bias, block, t.file.size).ok());
        });
        let primed = prime::prime_blocks(t.file.fd, &offsets, true, room).now;
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
