//! Carrying out a mapping plan: reserve the image's address range, build
//! each huge range completely somewhere else and move it into place, and
//! map everything else from the file as the kernel would. A huge range that
//! cannot be built falls back to ordinary file mappings of that range, so
//! the address space never has a hole and no mapping is ever writable and
//! executable at once.

use super::arch;
use super::diag::Report;
use super::file::OpenFile;
use super::sys::{self, CPath, EEXIST, ENOMEM, Errno};
use hugeload::elf::{Image, PAGE, USER_TOP};
use hugeload::error::LoadError;
use hugeload::options::{Backend, Settings};
use hugeload::plan::{self, HUGE, Mapping, Plan, Range, Ranges, Source, huge_down};
use linux_raw_sys::general::{
    MADV_COLLAPSE, MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE,
    MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, MFD_HUGE_2MB, MFD_HUGETLB, PROT_EXEC, PROT_NONE,
    PROT_READ, PROT_WRITE,
};

const ADDR_NO_RANDOMIZE: u32 = 0x0040000;
const PR_GET_THP_DISABLE: u32 = 42;

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

/// Which kind of huge page a range got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeKind {
    Thp,
    Hugetlb,
}

impl HugeKind {
    pub fn name(self) -> &'static str {
        match self {
            HugeKind::Thp => "thp",
            HugeKind::Hugetlb => "hugetlb",
        }
    }
}

/// Why one backend could not give a range huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cause {
    pub step: &'static str,
    pub errno: Option<Errno>,
    /// Free pages in the hugetlb pool when a hugetlb mapping failed.
    pub pool_free: Option<u64>,
}

const fn cause(step: &'static str, errno: Errno) -> Cause {
    Cause {
        step,
        errno: Some(errno),
        pool_free: None,
    }
}

/// What became of one planned huge range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub range: Range,
    pub kind: Option<HugeKind>,
    pub hugetlb: Option<Cause>,
    pub thp: Option<Cause>,
}

pub type Outcomes = heapless::Vec<Outcome, { plan::MAX_PIECES }>;
/// Ranges on huge pages, adjacent pieces merged.
pub type Placed = heapless::Vec<Range, { plan::MAX_PIECES }>;

/// The image whose huge ranges are being placed, and where their bytes
/// come from.
struct Target<'a> {
    file: &'a OpenFile,
    image: &'a Image,
    bias: u64,
    /// For naming memfds.
    name: &'a [u8],
    /// PT_INTERP mode under a debugger: the bytes are copied from the
    /// kernel's mapping of the image rather than read from the file, so
    /// what the debugger already changed there (a breakpoint) is kept.
    copy_from_memory: bool,
}

/// A loaded image.
pub struct Loaded {
    pub bias: u64,
    pub plan: Plan,
    pub outcomes: Outcomes,
}

impl Loaded {
    pub fn entry(&self, image: &Image) -> u64 {
        self.bias + image.e_entry
    }
    pub fn phdr(&self, image: &Image) -> u64 {
        self.bias + image.phdr_vaddr
    }
    /// The ranges that really are on huge pages, adjacent pieces merged.
    pub fn huge_ranges(&self) -> Placed {
        let mut placed = Placed::new();
        for o in self.outcomes.iter().filter(|o| o.kind.is_some()) {
            match placed.last_mut() {
                Some(last) if last.end == o.range.start => last.end = o.range.end,
                _ => {
                    let _ = placed.push(o.range);
                }
            }
        }
        placed
    }
    /// One past the highest address the image occupies.
    pub fn end(&self) -> u64 {
        self.plan.reserve.end
    }
}

/// Whether memory-deny-write-execute is on (Linux 6.3+; systemd's
/// MemoryDenyWriteExecute= may use it).
fn refuses_exec_gain() -> bool {
    const PR_GET_MDWE: u32 = 66;
    sys::prctl(PR_GET_MDWE, 0, 0, 0, 0).unwrap_or(0) & 1 != 0
}

/// Whether address-space randomization is on (not `setarch -R`).
pub fn randomizes() -> bool {
    sys::personality() & ADDR_NO_RANDOMIZE == 0
}

/// Reserves `len` bytes at exactly `start`, or says why not.
/// The fixed addresses of a non-PIE image: reserved, or why not.
fn reserve_fixed(start: u64, len: u64) -> Result<(), LoadError> {
    reserve_at(start, len).map_err(|e| match e {
        EEXIST => LoadError::AddressInUse,
        e => LoadError::Os(e.0),
    })
}

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
        return Err(EEXIST);
    }
    Ok(())
}

/// Of the fresh mapping `[raw, raw + raw_len)`, keeps `[start, start +
/// len)` (which lies inside it) and unmaps the rest: how an over-allocated
/// mapping is aligned.
fn keep_only(raw: u64, raw_len: u64, start: u64, len: u64) {
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

/// The bias that puts the reservation's start (`rel_start` from the bias,
/// which may be negative) at or just above `target`, congruent to `phase`
/// modulo 2 MiB; `None` if no such bias keeps the whole reservation of
/// `len` bytes inside the user address space with a bias of 0 or more.
fn bias_near(target: u64, rel_start: i64, len: u64, phase: u64) -> Option<u64> {
    let raw = (target as i128 - rel_start as i128).max(0) as u64;
    let bias = huge_down(raw) + phase;
    let bias = if bias < raw { bias + HUGE } else { bias };
    let start = bias as i128 + rel_start as i128;
    let fits = start >= 0x10000 && start + len as i128 <= USER_TOP as i128;
    fits.then_some(bias)
}

/// Picks a PIE's bias: congruent to `phase` modulo 2 MiB, with the image
/// where the kernel would put it (`ELF_ET_DYN_BASE` plus its random offset,
/// so `brk` can follow the image as after a direct exec), and reserves the
/// `len` bytes that start `rel_start` from the bias.
fn place_pie(rel_start: i64, len: u64, phase: u64) -> Result<u64, LoadError> {
    let randomize = randomizes();
    for _ in 0..8 {
        let offset = if randomize {
            (sys::random_u64() & ((1 << arch::PIE_RANDOM_BITS) - 1)) * PAGE
        } else {
            0
        };
        if let Some(bias) = bias_near(arch::PIE_BASE + offset, rel_start, len, phase) {
            let start = (bias as i128 + rel_start as i128) as u64;
            if reserve_at(start, len).is_ok() {
                return Ok(bias);
            }
        }
        if !randomize {
            break;
        }
    }
    // Anywhere the kernel likes, over-allocated to align.
    // SAFETY: a fresh mapping at an address the kernel chooses.
    let addr = unsafe {
        sys::mmap(
            0,
            (len + HUGE) as usize,
            PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .map_err(|e| LoadError::Os(e.0))? as u64;
    match bias_near(addr, rel_start, len, phase) {
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

/// Reserves and maps the program `image` with its text on huge pages as
/// `settings` ask.
pub fn load_program(
    file: &OpenFile,
    image: &Image,
    name: &[u8],
    settings: &Settings,
) -> Result<Loaded, LoadError> {
    let strategy = settings.strategy;
    let plan = if image.is_dyn() {
        let phase = plan::choose_phase(image, strategy);
        let probe_bias = phase + 4 * HUGE;
        let probe = plan::plan(image, probe_bias, strategy, Range::ALL);
        let rel_start = probe.reserve.start.wrapping_sub(probe_bias) as i64;
        let bias = place_pie(rel_start, probe.reserve.len(), phase)?;
        plan::plan(image, bias, strategy, Range::ALL)
    } else {
        let window = Range::new(image.lo(), image.hi());
        let plan = plan::plan(image, 0, strategy, window);
        reserve_fixed(plan.reserve.start, plan.reserve.len())?;
        plan
    };
    let mut outcomes = Outcomes::new();
    if settings.backend != Backend::Off {
        let target = Target {
            file,
            image,
            bias: plan.bias,
            name,
            copy_from_memory: false,
        };
        outcomes = place_ranges(&target, &plan.huge, settings.backend);
    }
    let loaded = Loaded {
        bias: plan.bias,
        plan,
        outcomes,
    };
    map_ordinary(file, image, loaded.bias, Range::ALL, &loaded.huge_ranges())?;
    Ok(loaded)
}

/// PT_INTERP mode: the kernel has mapped `image` at `bias`. Each planned
/// huge range is built elsewhere and moved over the kernel's mapping; a
/// range that fails keeps the kernel's mapping. Aggressive rounding stays
/// inside the image: the addresses around it are not hugeload's.
pub fn remap_in_place(
    file: &OpenFile,
    image: &Image,
    bias: u64,
    name: &[u8],
    settings: &Settings,
) -> Loaded {
    let window = Range::new(bias + image.lo(), bias + image.hi());
    let plan = plan::plan(image, bias, settings.strategy, window);
    let target = Target {
        file,
        image,
        bias,
        name,
        copy_from_memory: is_traced(),
    };
    let outcomes = place_ranges(&target, &plan.huge, settings.backend);
    Loaded {
        bias,
        plan,
        outcomes,
    }
}

/// Reserves and maps an interpreter (or any image) on ordinary pages.
pub fn load_plain(file: &OpenFile, image: &Image) -> Result<Loaded, LoadError> {
    let len = image.hi() - image.lo();
    let bias = if image.is_dyn() {
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
        }
        .map_err(|e| LoadError::Os(e.0))? as u64;
        addr - image.lo()
    } else {
        reserve_fixed(image.lo(), len)?;
        0
    };
    let plan = Plan {
        bias,
        huge: Ranges::new(),
        reserve: Range::new(bias + image.lo(), bias + image.hi()),
    };
    map_ordinary(file, image, bias, Range::ALL, &[])?;
    Ok(Loaded {
        bias,
        plan,
        outcomes: Outcomes::new(),
    })
}

/// Maps the image's pages inside `window` and outside `exclude` from the
/// file, as the kernel would.
fn map_ordinary(
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
    r.map(|_| ()).map_err(|e| LoadError::Os(e.0))
}

/// Puts the planned huge ranges on huge pages, piece by piece (at most
/// [`plan::PIECE`] bytes each, or what the hugetlb pool has left), each
/// piece on the first backend that can take it, or on ordinary pages.
fn place_ranges(t: &Target, huge: &[Range], backend: Backend) -> Outcomes {
    let thp_disabled = sys::prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0).unwrap_or(0) == 1;
    // A debugger cannot write breakpoints into hugetlb code (a shared
    // mapping), so a traced process prefers THP.
    let order: &[HugeKind] = match backend {
        Backend::Hugetlb => &[HugeKind::Hugetlb],
        Backend::Thp => &[HugeKind::Thp],
        Backend::Auto if is_traced() => &[HugeKind::Thp, HugeKind::Hugetlb],
        Backend::Auto => &[HugeKind::Hugetlb, HugeKind::Thp],
        Backend::Off => &[],
    };
    let mut outcomes = Outcomes::new();
    for r in huge {
        let mut start = r.start;
        while start < r.end {
            let piece = Range::new(start, (start + plan::PIECE).min(r.end));
            let outcome = map_huge(t, piece, order, thp_disabled);
            start = outcome.range.end;
            let _ = outcomes.push(outcome);
        }
    }
    outcomes
}

/// Free 2 MiB pages in the hugetlb pool.
fn hugetlb_free_pages() -> u64 {
    let mut buf = [0u8; 32];
    sys::read_small(
        b"/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
        &mut buf,
    )
    .map(|text| text.strip_suffix(b"\n").unwrap_or(text))
    .and_then(|text| core::str::from_utf8(text).ok()?.parse().ok())
    .unwrap_or(0)
}

/// Puts `range` on huge pages, or on ordinary pages if no backend can.
/// When the hugetlb pool has fewer free pages than the range needs, the
/// outcome covers only the part the pool could take: the caller places
/// the rest next.
fn map_huge(t: &Target, range: Range, order: &[HugeKind], thp_disabled: bool) -> Outcome {
    let mut outcome = Outcome {
        range,
        kind: None,
        hugetlb: None,
        thp: None,
    };
    for &kind in order {
        let placed = match kind {
            HugeKind::Hugetlb => try_hugetlb(t, range).map_err(|c| outcome.hugetlb = Some(c)),
            HugeKind::Thp => try_thp(t, range, thp_disabled).map_err(|c| outcome.thp = Some(c)),
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
    let free = hugetlb_free_pages();
    if c.errno == Some(ENOMEM) && free > 0 && free < range.len() / HUGE {
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

fn try_thp(t: &Target, range: Range, thp_disabled: bool) -> Result<Range, Cause> {
    let refused = |step| Cause {
        step,
        errno: None,
        pool_free: None,
    };
    if thp_disabled {
        return Err(refused("disabled for this process (PR_SET_THP_DISABLE)"));
    }
    if refuses_exec_gain() {
        return Err(refused(
            "needs an mprotect that adds exec, which MDWE (PR_SET_MDWE) refuses",
        ));
    }
    place_thp(t, range).map(|()| range)
}

/// Whether a debugger traces this process (TracerPid in /proc/self/status).
fn is_traced() -> bool {
    let mut buf = [0u8; 4096];
    sys::read_small(b"/proc/self/status", &mut buf)
        .unwrap_or(b"")
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"TracerPid:"))
        .is_some_and(|v| v.iter().any(|&b| (b'1'..=b'9').contains(&b)))
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
            Ok(_) => result = Err(cause("read: file shrank", sys::EIO)),
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
    keep_only(raw, len + HUGE, tmp, len);
    let discard = |c: Cause| {
        // SAFETY: the temporary mapping is ours and unused.
        let _ = unsafe { sys::munmap(tmp as usize, len as usize) };
        c
    };
    sys::madvise(tmp as usize, len as usize, MADV_HUGEPAGE)
        .map_err(|e| discard(cause("madvise(MADV_HUGEPAGE)", e)))?;
    fill(t, range, tmp).map_err(discard)?;
    sys::madvise(tmp as usize, len as usize, MADV_COLLAPSE)
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

/// Puts `range` back as the kernel would have it, after a step that may
/// have replaced it failed: first an inaccessible reservation over all of
/// it (the gaps between segments stay unusable, never writable), then the
/// segments' ordinary mappings.
fn restore(t: &Target, range: Range) -> Result<(), LoadError> {
    // SAFETY: the range belongs to this image (reservation or the kernel's
    // mapping of it), and nothing runs from it yet.
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
    .map_err(|e| LoadError::Os(e.0))?;
    map_ordinary(t.file, t.image, t.bias, range, &[])
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
pub fn keep_hugetlb_in_core_dumps(loaded: &Loaded, report: &Report) {
    if !loaded
        .outcomes
        .iter()
        .any(|o| o.kind == Some(HugeKind::Hugetlb))
    {
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

/// Describes a fallback for the report.
pub fn say_cause(report: &Report, range: Range, o: &Outcome) {
    report.say(|l| {
        l.str("huge ")
            .hex(range.start, 16)
            .str("-")
            .hex(range.end, 16)
            .str(" on 4 KiB pages:");
        for (backend, c) in [("hugetlb", o.hugetlb), ("thp", o.thp)] {
            if let Some(c) = c {
                l.str(" ").str(backend).str(": ").str(c.step);
                if let Some(e) = c.errno {
                    l.str(": ").str(hugeload::error::errno_message(e.0));
                }
                if let Some(free) = c.pool_free {
                    l.str(" (").dec(free).str(" free pages in the pool)");
                }
                l.str(";");
            }
        }
    });
}
