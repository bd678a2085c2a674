//! Priming: bringing a file's 2 MiB blocks of code into 2 MiB page-cache
//! folios, so that every congruent mapping of them, by hugeload or not
//! (ld.so's mapping of a library, a direct run of a program), gets PMD
//! mappings on its first fault.
//!
//! Each block is probed in a mapping of its own, `MADV_HUGEPAGE |
//! MADV_RANDOM`, and faulted: a block the cache does not hold comes in as
//! one 2 MiB folio. A block the cache holds in small folios is written
//! back if dirty (nothing new is written to the file) and dropped with
//! `POSIX_FADV_DONTNEED`, which drops only clean pages no process maps,
//! then read again. `/proc/self/smaps` says which probes really are
//! PMD-mapped.
//!
//! `hugeload --prime [--check] [--json] PATH...` primes files and the ELF
//! files under directories; `--check` only reports, dropping nothing.

use super::boot::Boot;
use super::diag;
use super::file::OpenFile;
use super::map;
use super::out::Out;
use super::sys::{self, Advice, CPath, Errno, Fd};
use hugeload::elf;
use hugeload::error::LoadError;
use hugeload::fmt::Line;
use hugeload::plan::{self, HUGE, Range};
use hugeload::smaps;
use linux_raw_sys::general::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_NONE};

/// How many blocks are probed at a time (each probe is its own mapping in
/// smaps, and a bit in a `u64`).
pub const PROBE_BATCH: usize = 32;
/// Room for this process's smaps while probes are mapped.
pub const SMAPS_ROOM: usize = 512 << 10;

/// A bit per block of a batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Primed {
    /// In a 2 MiB folio before anything was dropped.
    pub before: u64,
    /// In a 2 MiB folio now.
    pub now: u64,
    /// Not in the cache at all (only asked in check mode, which reads
    /// nothing: such a block is left alone).
    pub uncached: u64,
}

/// Advises `range` (a file mapping) for huge pages and faults it in
/// (MADV_POPULATE_READ), which reads one 2 MiB folio per block the cache
/// does not hold; a file that shrank meanwhile fails the call rather than
/// raising SIGBUS. The access pattern goes back to normal after;
/// `MADV_HUGEPAGE` stays, so what reclaim takes comes back in 2 MiB folios.
pub fn populate(range: Range) -> Result<(), Errno> {
    let (addr, len) = (range.start as usize, range.len() as usize);
    sys::madvise(addr, len, Advice::HugePage)?;
    let _ = sys::madvise(addr, len, Advice::Random);
    let populated = sys::madvise(addr, len, Advice::PopulateRead);
    let _ = sys::madvise(addr, len, Advice::Normal);
    populated
}

/// Bytes of `range` mapped with PMD entries from a file, per smaps.
pub fn pmd_bytes_in(text: &[u8], range: Range) -> u64 {
    let mut bytes = 0;
    smaps::parse(text, |m| {
        let mapping = Range::new(m.start, m.end);
        if mapping.overlaps(&range) {
            bytes += (m.file_pmd_kb * 1024).min(mapping.intersect(&range).len());
        }
    });
    bytes
}

pub fn read_own_smaps(buf: &mut [u8]) -> &[u8] {
    let n = CPath::from_parts(&[b"/proc/self/smaps"])
        .and_then(|p| sys::read_file(&p, buf).ok())
        .unwrap_or(0);
    &buf[..n]
}

/// Primes the blocks of file `fd` at `offsets` (`None` skips one; at most
/// [`PROBE_BATCH`]); with `drop_small`, blocks cached small are dropped
/// and read again.
pub fn prime_blocks(fd: Fd, offsets: &[Option<u64>], drop_small: bool, room: &mut [u8]) -> Primed {
    let n = offsets.len().min(PROBE_BATCH);
    let area_len = (2 * n as u64 + 1) * HUGE;
    // SAFETY: a fresh inaccessible mapping where the kernel likes.
    let Ok(raw) = (unsafe {
        sys::mmap(
            0,
            area_len as usize,
            PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }) else {
        return Primed::default();
    };
    let area = plan::huge_up(raw as u64);
    let probe = |i: usize| Range::new(area + 2 * i as u64 * HUGE, area + (2 * i as u64 + 1) * HUGE);
    let map_probe = |i: usize, offset: u64| {
        let p = probe(i);
        // SAFETY: the probe lies in the area reserved just above.
        let mapped = unsafe { map::map_file_at(p.start, HUGE, fd, offset) };
        let _ = mapped.is_ok() && populate(p).is_ok();
    };
    let unmap_probe = |i: usize| {
        // SAFETY: the probe lies in our area; after this, this process maps
        // none of the file's pages there.
        let _ = unsafe { map::make_inaccessible(probe(i)) };
    };
    let huge_now = |room: &mut [u8]| {
        let text = read_own_smaps(room);
        (0..n).fold(0u64, |bits, i| {
            if pmd_bytes_in(text, probe(i)) == HUGE {
                bits | 1 << i
            } else {
                bits
            }
        })
    };
    let mut uncached = 0u64;
    for (i, offset) in offsets.iter().take(n).enumerate() {
        let Some(offset) = *offset else { continue };
        if !drop_small {
            // Checking reads nothing: a block not wholly in the cache is
            // not faulted in (a 2 MiB folio is all or nothing, so one not
            // wholly cached is small, or not cached).
            match residency(fd, offset, probe(i)) {
                Residency::All => {}
                Residency::None => {
                    uncached |= 1 << i;
                    continue;
                }
                Residency::Part => continue,
            }
        }
        map_probe(i, offset);
    }
    let before = huge_now(room);
    let mut now = before;
    if drop_small {
        let mut dropped = false;
        for (i, offset) in offsets.iter().take(n).enumerate() {
            let Some(offset) = *offset else { continue };
            if before & (1 << i) != 0 {
                continue;
            }
            unmap_probe(i);
            let _ = sys::write_back(fd, offset, HUGE);
            let _ = sys::drop_clean_cache(fd, offset, HUGE);
            map_probe(i, offset);
            dropped = true;
        }
        if dropped {
            now = huge_now(room);
        }
    }
    // SAFETY: the whole area is ours and nothing else uses it.
    let _ = unsafe { sys::munmap(raw, area_len as usize) };
    Primed {
        before,
        now,
        uncached,
    }
}

enum Residency {
    All,
    Part,
    None,
}

/// How much of the file's 2 MiB at `offset` is in the page cache, asked
/// through a mapping at `at` that is never faulted (mincore).
fn residency(fd: Fd, offset: u64, at: Range) -> Residency {
    // SAFETY: `at` lies in the caller's reserved area.
    if unsafe { map::map_file_at(at.start, HUGE, fd, offset) }.is_err() {
        return Residency::Part;
    }
    let mut vec = [0u8; (HUGE / 4096) as usize];
    let r = sys::mincore(at.start as usize, HUGE as usize, &mut vec);
    // SAFETY: the probe is ours; back to an inaccessible reservation.
    let _ = unsafe { map::make_inaccessible(at) };
    let resident = vec.iter().filter(|&&b| b & 1 != 0).count();
    match (r, resident) {
        (Ok(()), n) if n == vec.len() => Residency::All,
        (Ok(()), 0) => Residency::None,
        _ => Residency::Part,
    }
}

/// What priming did to one file.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileReport {
    /// 2 MiB blocks of code in the file.
    pub blocks: u64,
    /// Already in 2 MiB folios.
    pub already: u64,
    /// Brought into 2 MiB folios now.
    pub primed: u64,
    /// Still small (mapped small by a process, or a filesystem without
    /// large folios).
    pub small: u64,
    /// Not in the cache (`--check` only: it reads nothing).
    pub uncached: u64,
    /// Blocks whose addresses are not congruent with their offsets, in a
    /// library or fixed-address program: ld.so and direct runs map them on
    /// 4 KiB pages whatever the cache, so they are left alone (a PIE's are
    /// primed: hugeload places a PIE congruently).
    pub not_congruent: u64,
}

/// Primes the code of the ELF file open as `file` (holding its advisory
/// lock, as the page-cache backend does).
pub fn prime_file(
    file: &OpenFile,
    image: &elf::Image,
    check_only: bool,
    room: &mut [u8],
) -> FileReport {
    let locked = sys::lock_exclusive(file.fd).is_ok();
    let report = prime_file_locked(file, image, check_only, room);
    if locked {
        sys::unlock(file.fd);
    }
    report
}

fn prime_file_locked(
    file: &OpenFile,
    image: &elf::Image,
    check_only: bool,
    room: &mut [u8],
) -> FileReport {
    let mut report = FileReport::default();
    let mut batch = heapless::Vec::<Option<u64>, PROBE_BATCH>::new();
    let mut flush = |batch: &mut heapless::Vec<Option<u64>, PROBE_BATCH>,
                     report: &mut FileReport| {
        if batch.is_empty() {
            return;
        }
        let p = prime_blocks(file.fd, batch, !check_only, room);
        let n = batch.len() as u32;
        let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        report.already += (p.before & mask).count_ones() as u64;
        report.primed += (p.now & !p.before & mask).count_ones() as u64;
        report.uncached += (p.uncached & mask).count_ones() as u64;
        report.small += (!p.now & !p.uncached & mask).count_ones() as u64;
        batch.clear();
    };
    plan::prime_blocks(image, file.size, |b| {
        report.blocks += 1;
        if !b.congruent {
            report.not_congruent += 1;
            return;
        }
        if batch.push(Some(b.offset)).is_err() {
            flush(&mut batch, &mut report);
            let _ = batch.push(Some(b.offset));
        }
    });
    flush(&mut batch, &mut report);
    report
}

/// `hugeload --prime [--check] [--json] [--list FILE] PATH...`.
pub fn main(boot: &Boot, first: usize, json: bool) -> ! {
    let is_flag = |a: &[u8]| a == b"--check" || a == b"--json";
    let check_only = boot.args_from(first).any(|a| a == b"--check");
    let json = json || boot.args_from(first).any(|a| a == b"--json");
    // --list FILE: more paths, one a line; `#` starts a comment.
    let mut list_name = None;
    let mut args = boot.args_from(first);
    while let Some(a) = args.next() {
        if a == b"--list" {
            list_name = args.next();
        }
    }
    let mut list = [0u8; 65536];
    let list_len = match list_name {
        Some(name) => match CPath::from_parts(&[name]).map(|p| sys::read_file(&p, &mut list)) {
            Some(Ok(n)) => n,
            Some(Err(e)) => fail_list(name, e),
            None => fail_list(name, Errno::ENAMETOOLONG),
        },
        None => 0,
    };
    let listed = list[..list_len]
        .split(|&b| b == b'\n')
        .map(|l| l.split(|&b| b == b'#').next().unwrap_or(b"").trim_ascii())
        .filter(|l| !l.is_empty());
    let mut skip_next = false;
    let named = boot.args_from(first).filter(|a| {
        let skip = skip_next || is_flag(a) || *a == b"--list";
        skip_next = *a == b"--list";
        !skip
    });
    let mut paths = named.chain(listed).peekable();
    if paths.peek().is_none() {
        let mut l = diag::line();
        l.str("--prime needs at least one PATH (or --list FILE)");
        diag::emit(&mut l);
        sys::exit(2);
    }
    let Ok(mut room) = sys::Scratch::new(SMAPS_ROOM) else {
        diag::fail(b"--prime", Errno::ENOMEM.into());
    };
    let mut run = Run {
        out: Out::new(1),
        room: room.bytes_mut(),
        check_only,
        json,
        failed: false,
    };
    for path in paths {
        match CPath::from_parts(&[path]) {
            Some(p) => run.path(&p, true, 0),
            None => run.fail(path, Errno::ENAMETOOLONG.into()),
        }
    }
    run.out.finish_stdout();
    sys::exit(if run.failed { 1 } else { 0 })
}

/// `--prime`'s own failures exit 1, whatever the error.
fn fail_list(name: &[u8], e: Errno) -> ! {
    let mut l = diag::line();
    l.bytes(name).str(": ").str(e.message());
    diag::emit(&mut l);
    sys::exit(1)
}

struct Run<'r> {
    out: Out,
    room: &'r mut [u8],
    check_only: bool,
    json: bool,
    failed: bool,
}

/// How deep directories are followed.
const MAX_DEPTH: usize = 24;

impl Run<'_> {
    fn fail(&mut self, path: &[u8], e: LoadError) {
        self.out.flush();
        let mut l = diag::line();
        l.bytes(path).str(": ").str(e.message());
        diag::emit(&mut l);
        self.failed = true;
    }

    /// A path named on the command line (`named`) or found in a directory.
    fn path(&mut self, path: &CPath, named: bool, depth: usize) {
        use linux_raw_sys::general::{
            O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, O_RDONLY, S_IFDIR, S_IFMT,
        };
        let follow = if named { 0 } else { O_NOFOLLOW };
        let fd = match sys::open(path, O_RDONLY | O_CLOEXEC | follow) {
            Ok(fd) => fd,
            Err(e) => return self.fail(path.as_bytes(), e.into()),
        };
        let is_dir = sys::fstat(fd).is_ok_and(|st| st.st_mode & S_IFMT == S_IFDIR);
        if is_dir {
            sys::close(fd);
            if depth >= MAX_DEPTH {
                return self.fail(path.as_bytes(), Errno::ELOOP.into());
            }
            return match sys::open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY | follow) {
                Ok(dir) => {
                    self.directory(path, dir, depth);
                    sys::close(dir);
                }
                Err(e) => self.fail(path.as_bytes(), e.into()),
            };
        }
        let file = match OpenFile::from_fd_for_reading(fd) {
            Ok(file) => file,
            Err(e) => {
                sys::close(fd);
                return self.fail(path.as_bytes(), e);
            }
        };
        self.file(path, &file, named);
        file.close();
    }

    fn directory(&mut self, path: &CPath, dir: Fd, depth: usize) {
        let mut buf = [0u8; 4096];
        loop {
            let n = match sys::getdents(dir, &mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => return self.fail(path.as_bytes(), e.into()),
            };
            let mut at = 0;
            while let Some(entry) = sys::Dirent::at(&buf[..n], at) {
                at = entry.next;
                if entry.name == b"." || entry.name == b".." || entry.is_symlink() {
                    continue;
                }
                if let Some(child) = CPath::from_parts(&[path.as_bytes(), b"/", entry.name]) {
                    self.path(&child, false, depth + 1);
                }
            }
        }
    }

    fn file(&mut self, path: &CPath, file: &OpenFile, named: bool) {
        let image = match file.read_image() {
            Ok(image) => image,
            // Under a directory, files that are not ELF are skipped.
            Err(_) if !named => return,
            Err(LoadError::NotElfOrScript) => {
                return self.fail(path.as_bytes(), LoadError::NotElf);
            }
            Err(e) => return self.fail(path.as_bytes(), e),
        };
        if file.is_being_written() {
            return self.fail(path.as_bytes(), Errno::ETXTBSY.into());
        }
        let r = prime_file(file, &image, self.check_only, self.room);
        let mut l = Line::new();
        if self.json {
            l.str("{\"path\":\"")
                .json(path.as_bytes())
                .str("\",\"blocks\":")
                .dec(r.blocks);
            l.str(",\"huge_before\":")
                .dec(r.already)
                .str(",\"primed\":")
                .dec(r.primed);
            l.str(",\"small\":")
                .dec(r.small)
                .str(",\"not_congruent\":")
                .dec(r.not_congruent);
            l.str("}\n");
        } else {
            l.bytes(path.as_bytes())
                .str(": ")
                .dec(r.blocks)
                .str(" blocks of 2 MiB code: ");
            l.dec(r.already).str(" already huge, ");
            if !self.check_only {
                l.dec(r.primed).str(" primed, ");
            }
            l.dec(r.small).str(" small");
            if self.check_only {
                l.str(", ").dec(r.uncached).str(" not cached");
            }
            if r.small > 0 {
                l.str(if self.check_only {
                    " (--check drops nothing)"
                } else {
                    " (mapped small by a running process, or a filesystem without large folios)"
                });
            }
            if r.not_congruent > 0 {
                l.str("; ").dec(r.not_congruent);
                l.str(" not possible (not congruent with their file offsets: ld.so and direct runs map them with 4 KiB pages)");
            }
            l.str("\n");
        }
        self.out.line(&l);
    }
}
