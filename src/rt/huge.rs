//! The huge-page backends: each planned huge range is placed piece by
//! piece (at most [`plan::PIECE`] bytes, or what the hugetlb pool has left),
//! each piece built completely somewhere else and moved over its place in
//! one step, on the first backend that can take it. A piece no backend can
//! take keeps (or gets back) its ordinary file mappings, so the address
//! space never has a hole and no mapping is ever writable and executable
//! at once.

use super::diag::Report;
use super::host::{self, Host};
use super::map;
use super::pagecache;
use super::sys::{self, Advice, CPath, Errno};
use super::target::cause;
pub use super::target::{Cause, Target};
use hugeload::options::Backend;
use hugeload::plan::{self, HUGE, Range};
use linux_raw_sys::general::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, MFD_HUGE_2MB,
    MFD_HUGETLB, PROT_EXEC, PROT_READ, PROT_WRITE,
};

/// Which kind of huge page a range got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeKind {
    /// The file's page cache, PMD-mapped: no copy.
    PageCache,
    Thp,
    Hugetlb,
}

impl HugeKind {
    pub fn name(self) -> &'static str {
        match self {
            HugeKind::PageCache => "pagecache",
            HugeKind::Thp => "thp",
            HugeKind::Hugetlb => "hugetlb",
        }
    }
}

/// What became of one planned huge range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub range: Range,
    pub kind: Option<HugeKind>,
    pub pagecache: Option<Cause>,
    pub hugetlb: Option<Cause>,
    pub thp: Option<Cause>,
}

pub type Outcomes = heapless::Vec<Outcome, { plan::MAX_PIECES }>;
/// Ranges on huge pages, adjacent pieces merged.
pub type Placed = heapless::Vec<Range, { plan::MAX_PIECES }>;

/// The ranges of `outcomes` that really are on huge pages, adjacent pieces
/// merged.
pub fn placed(outcomes: &[Outcome]) -> Placed {
    placed_where(outcomes, |_| true)
}

/// [`placed`], of the pieces whose kind `keep` accepts.
pub fn placed_where(outcomes: &[Outcome], keep: impl Fn(HugeKind) -> bool) -> Placed {
    let mut placed = Placed::new();
    for o in outcomes.iter().filter(|o| o.kind.is_some_and(&keep)) {
        match placed.last_mut() {
            Some(last) if last.end == o.range.start => last.end = o.range.end,
            _ => {
                let _ = placed.push(o.range);
            }
        }
    }
    placed
}

/// Puts the planned huge ranges on huge pages, piece by piece (at most
/// [`plan::PIECE`] bytes each, or what the hugetlb pool has left), each
/// piece on the first backend that can take it, or on ordinary pages.
pub fn place_ranges(t: &Target, huge: &[Range], backend: Backend, host: &Host) -> Outcomes {
    // A debugger cannot write breakpoints into hugetlb code (a shared
    // mapping), so a traced process prefers THP.
    let copies: &[HugeKind] = match backend {
        Backend::Hugetlb => &[HugeKind::Hugetlb],
        Backend::Thp => &[HugeKind::Thp],
        Backend::Auto if host.traced => &[HugeKind::Thp, HugeKind::Hugetlb],
        Backend::Auto => &[HugeKind::Hugetlb, HugeKind::Thp],
        Backend::PageCache | Backend::Off => &[],
    };
    // The page cache first: what it serves needs no copy.
    let mut runs = pagecache::Runs::new();
    if backend.uses_page_cache() {
        runs = pagecache::place(t, huge, host);
    } else {
        for &range in huge {
            let _ = runs.push(pagecache::Run { range, cause: None });
        }
    }
    let from_cache = backend.uses_page_cache();
    let mut outcomes = Outcomes::new();
    for run in &runs {
        if from_cache && run.cause.is_none() {
            let _ = outcomes.push(Outcome {
                range: run.range,
                kind: Some(HugeKind::PageCache),
                pagecache: None,
                hugetlb: None,
                thp: None,
            });
            continue;
        }
        let mut start = run.range.start;
        while start < run.range.end {
            let piece = Range::new(start, (start + plan::PIECE).min(run.range.end));
            let mut outcome = map_huge(t, piece, copies, host);
            outcome.pagecache = run.cause;
            start = outcome.range.end;
            let _ = outcomes.push(outcome);
        }
    }
    outcomes
}

/// Puts `range` on huge pages, or on ordinary pages if no backend can.
/// When the hugetlb pool has fewer free pages than the range needs, the
/// outcome covers only the part the pool could take: the caller places
/// the rest next.
fn map_huge(t: &Target, range: Range, order: &[HugeKind], host: &Host) -> Outcome {
    let mut outcome = Outcome {
        range,
        kind: None,
        pagecache: None,
        hugetlb: None,
        thp: None,
    };
    for &kind in order {
        let placed = match kind {
            HugeKind::Hugetlb => try_hugetlb(t, range).map_err(|c| outcome.hugetlb = Some(c)),
            HugeKind::Thp => try_thp(t, range, host).map_err(|c| outcome.thp = Some(c)),
            HugeKind::PageCache => continue,
        };
        if let Ok(placed) = placed {
            outcome.range = placed;
            outcome.kind = Some(kind);
            return outcome;
        }
    }
    outcome
}

/// hugetlb for `range`, or for as much of its start as the pool has pages
/// for; returns what was placed.
fn try_hugetlb(t: &Target, range: Range) -> Result<Range, Cause> {
    let c = match place_hugetlb(t, range) {
        Ok(()) => return Ok(range),
        Err(c) => c,
    };
    let free = host::hugetlb_free_pages();
    if c.errno == Some(Errno::ENOMEM) && free > 0 && free < range.len() / HUGE {
        let part = Range::new(range.start, range.start + free * HUGE);
        if place_hugetlb(t, part).is_ok() {
            return Ok(part);
        }
    }
    Err(Cause {
        pool_free: Some(free),
        ..c
    })
}

fn try_thp(t: &Target, range: Range, host: &Host) -> Result<Range, Cause> {
    let refused = |step| Cause {
        step,
        errno: None,
        pool_free: None,
    };
    if host.thp_disabled {
        return Err(refused("disabled for this process (PR_SET_THP_DISABLE)"));
    }
    if host.mdwe {
        return Err(refused(
            "needs an mprotect that adds exec, which MDWE (PR_SET_MDWE) refuses",
        ));
    }
    place_thp(t, range).map(|()| range)
}

/// Copies the bytes of `range` into memory at `dest` (the range's
/// temporary home): from the file, or, for a traced program in PT_INTERP
/// mode, from the kernel's mapping of readable segments.
fn fill(t: &Target, range: Range, dest: u64) -> Result<(), Cause> {
    let mut result = Ok(());
    plan::fills(t.image, t.bias, range, t.file.size, |f| {
        if result.is_err() {
            return;
        }
        let at = dest + (f.dest - range.start);
        let readable = t.image.loads.iter().any(|s| {
            s.is_read()
                && t.bias + s.page_start() <= f.dest
                && f.dest + f.len <= t.bias + s.file_page_end()
        });
        if t.copy_from_memory && readable {
            // SAFETY: the source is the kernel's readable mapping of these
            // file pages (their file bytes exist: the file was checked to
            // hold them, and a running program's file cannot be changed);
            // the destination is the temporary mapping made for this range.
            unsafe {
                core::ptr::copy_nonoverlapping(f.dest as *const u8, at as *mut u8, f.len as usize)
            };
            return;
        }
        // SAFETY: `[at, at + len)` lies in the writable temporary mapping
        // made for this range, which nothing else uses.
        match unsafe { sys::pread_into(t.file.fd, at as usize, f.len as usize, f.offset) } {
            Ok(n) if n as u64 == f.len => {}
            Ok(_) => result = Err(cause("read: file shrank", Errno::EIO)),
            Err(e) => result = Err(cause("read", e)),
        }
    });
    result
}

/// THP: an anonymous, 2 MiB-aligned mapping marked MADV_HUGEPAGE, filled,
/// collapsed, moved over the reservation, and only then made read+exec, so
/// that the kernel reports an executable mapping at its final address
/// (perf and other profilers see it there). If that last step fails, the
/// range gets its ordinary file mappings back at once.
fn place_thp(t: &Target, range: Range) -> Result<(), Cause> {
    let len = range.len();
    // SAFETY: a fresh mapping at an address the kernel chooses.
    let raw = unsafe {
        sys::mmap(
            0,
            (len + HUGE) as usize,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .map_err(|e| cause("mmap", e))? as u64;
    let tmp = plan::huge_up(raw);
    map::keep_only(raw, len + HUGE, tmp, len);
    let discard = |c: Cause| {
        // SAFETY: the temporary mapping is ours and unused.
        let _ = unsafe { sys::munmap(tmp as usize, len as usize) };
        c
    };
    sys::madvise(tmp as usize, len as usize, Advice::HugePage)
        .map_err(|e| discard(cause("madvise(MADV_HUGEPAGE)", e)))?;
    fill(t, range, tmp).map_err(discard)?;
    sys::madvise(tmp as usize, len as usize, Advice::Collapse)
        .map_err(|e| discard(cause("madvise(MADV_COLLAPSE)", e)))?;
    // SAFETY: the destination lies in this image's reservation (launcher)
    // or is the kernel's mapping of the same bytes (PT_INTERP); nothing
    // runs from it before the program starts.
    if let Err(e) = unsafe { sys::mremap_fixed(tmp as usize, len as usize, range.start as usize) } {
        // mremap unmaps the destination before it moves: put it back.
        let _ = restore(t, range);
        return Err(discard(cause("mremap", e)));
    }
    // SAFETY: the range is ours; it goes from RW to RX, never both
    // writable and executable.
    if let Err(e) =
        unsafe { sys::mprotect(range.start as usize, len as usize, PROT_READ | PROT_EXEC) }
    {
        let restored = restore(t, range);
        let step = if restored.is_ok() {
            "mprotect(PROT_READ|PROT_EXEC) refused (MDWE or an LSM)"
        } else {
            "mprotect(PROT_READ|PROT_EXEC) refused, and the file mapping could not be restored"
        };
        return Err(cause(step, e));
    }
    Ok(())
}

/// Puts `range` back as the kernel would have it (see [`map::restore`]).
fn restore(t: &Target, range: Range) -> Result<(), hugeload::error::LoadError> {
    map::restore(t.file, t.image, t.bias, range)
}

/// hugetlb: a memfd of 2 MiB pages (reserved when first mapped, so an empty
/// pool fails here and never with SIGBUS later), filled through a writable
/// view, then mapped read+exec over the reservation. No mprotect ever adds
/// exec, so this also works under MDWE.
fn place_hugetlb(t: &Target, range: Range) -> Result<(), Cause> {
    let name = t.name;
    let len = range.len();
    let mut label = [0u8; 64];
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    let base = &base[..base.len().min(40)];
    label[..9].copy_from_slice(b"hugeload:");
    label[9..9 + base.len()].copy_from_slice(base);
    let memfd_name = CPath::from_parts(&[&label[..9 + base.len()]]).unwrap_or_else(CPath::new);
    let fd = sys::memfd_create(&memfd_name, MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB)
        .map_err(|e| cause("memfd_create(MFD_HUGETLB)", e))?;
    let result = (|| {
        sys::ftruncate(fd, len).map_err(|e| cause("ftruncate", e))?;
        // SAFETY: a fresh shared mapping of our own memfd.
        let view = unsafe { sys::mmap(0, len as usize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) }
            .map_err(|e| cause("mmap", e))? as u64;
        let filled = fill(t, range, view);
        // SAFETY: the writable view is ours and no longer used.
        let _ = unsafe { sys::munmap(view as usize, len as usize) };
        filled?;
        // SAFETY: the destination lies in this image's reservation.
        unsafe {
            sys::mmap(
                range.start as usize,
                len as usize,
                PROT_READ | PROT_EXEC,
                MAP_SHARED | MAP_FIXED | MAP_POPULATE,
                fd,
                0,
            )
        }
        .map_err(|e| {
            // A failed MAP_FIXED may already have removed what was there.
            let _ = restore(t, range);
            cause("mmap(PROT_READ|PROT_EXEC)", e)
        })?;
        Ok(())
    })();
    sys::close(fd);
    result
}

/// Core dumps leave out shared hugetlb memory by default
/// (`/proc/PID/coredump_filter` bit 6), which would leave the program's
/// code out of its cores: turn that bit on when hugetlb holds code.
pub fn keep_hugetlb_in_core_dumps(outcomes: &[Outcome], report: &Report) {
    if !outcomes.iter().any(|o| o.kind == Some(HugeKind::Hugetlb)) {
        return;
    }
    const SHARED_HUGETLB: u64 = 1 << 6;
    let Some(path) = CPath::from_parts(&[b"/proc/self/coredump_filter"]) else {
        return;
    };
    use linux_raw_sys::general::{O_CLOEXEC, O_RDWR};
    let Ok(fd) = sys::open(&path, O_RDWR | O_CLOEXEC) else {
        return;
    };
    let mut buf = [0u8; 32];
    let n = sys::read(fd, &mut buf).unwrap_or(0);
    let text = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
    let current = core::str::from_utf8(text)
        .ok()
        .and_then(|t| u64::from_str_radix(t, 16).ok());
    if let Some(current) = current.filter(|c| c & SHARED_HUGETLB == 0) {
        let mut l = hugeload::fmt::Line::new();
        l.str("0x").hex(current | SHARED_HUGETLB, 0).str("\n");
        if sys::pwrite(fd, l.as_bytes(), 0).is_ok() {
            report.say(|l| {
                l.str("coredump_filter: shared hugetlb memory included, so cores hold the code");
            });
        }
    }
    sys::close(fd);
}
