//! The libraries a program loads at start-up, primed before ld.so runs:
//! its DT_NEEDED closure, found as its ld.so will find it
//! (`hugeload::libsearch`: DT_RPATH/DT_RUNPATH with `$ORIGIN`,
//! `LD_LIBRARY_PATH` except for secure-execution programs, ld.so.cache, the
//! default directories; musl's rules for musl programs). ld.so maps a
//! library of 2 MiB or more on a 2 MiB boundary (`thp_get_unmapped_area`),
//! so the blocks of a library whose code is congruent with its file
//! offsets (GNU ld's layout) get 2 MiB pages from the primed page cache
//! with no help. `-v` says, per library, what it got.

use super::arch;
use super::boot::Boot;
use super::diag::Report;
use super::file::{self, OpenFile};
use super::prime::{self, FileReport};
use super::sys::{self, CPath};
use hugeload::elf::Image;
use hugeload::fmt::Line;
use hugeload::ldcache::LdCache;
use hugeload::libsearch::{self, Closure, DynInfo, Env, Glibc, Libc};
use linux_raw_sys::auxvec::AT_PLATFORM;
use linux_raw_sys::general::{O_CLOEXEC, O_RDONLY};

/// The largest ld.so.cache read.
const LDCACHE_MAX: u64 = 16 << 20;

/// The parts of a file's dynamic section the search needs, with the
/// strings it names (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH) copied
/// into a small table of their own: a whole `.dynstr` can be megabytes.
struct Dynamic {
    entries: heapless::Vec<(u64, u64), 256>,
    strings: heapless::Vec<u8, STRINGS_MAX>,
}

/// Room for the strings of one dynamic section the search reads.
const STRINGS_MAX: usize = 32 << 10;

impl Dynamic {
    fn read(file: &OpenFile, image: &Image) -> Dynamic {
        use goblin::elf::dynamic::{DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME};
        let mut d = Dynamic {
            entries: heapless::Vec::new(),
            strings: heapless::Vec::new(),
        };
        file::for_each_dynamic(file, image, &mut |tag, value| {
            let _ = d.entries.push((tag, value));
        });
        let strtab = libsearch::strtab_location(d.entries.iter().copied())
            .and_then(|(addr, size)| Some((image.file_offset_of(addr)?, size)));
        for entry in d.entries.iter_mut() {
            if !matches!(entry.0, DT_NEEDED | DT_RPATH | DT_RUNPATH | DT_SONAME) {
                continue;
            }
            // An entry whose string cannot be read points past the table:
            // the search sees it as missing.
            let at = d.strings.len() as u64;
            let mut buf = [0u8; libsearch::PATH_MAX];
            let string = strtab
                .filter(|&(_, size)| entry.1 < size)
                .and_then(|(offset, size)| {
                    let len = (size - entry.1).min(buf.len() as u64) as usize;
                    let n =
                        sys::pread(file.fd, &mut buf[..len], offset.checked_add(entry.1)?).ok()?;
                    let end = buf[..n].iter().position(|&b| b == 0)?;
                    Some(&buf[..=end])
                });
            entry.1 = match string.map(|s| d.strings.extend_from_slice(s)) {
                Some(Ok(())) => at,
                _ => u64::MAX,
            };
        }
        d
    }

    fn info(&self) -> DynInfo<'_> {
        DynInfo::parse(self.entries.iter().copied(), &self.strings)
    }
}

/// A whole small file, read into a scratch buffer.
fn read_whole(path: &[u8], max: u64) -> Option<(sys::Scratch, usize)> {
    let path = CPath::from_parts(&[path])?;
    let fd = sys::open(&path, O_RDONLY | O_CLOEXEC).ok()?;
    let size = sys::fstat(fd).map(|st| st.st_size as u64).unwrap_or(0);
    let read = (|| {
        if size == 0 || size > max {
            return None;
        }
        let mut buf = sys::Scratch::new(size as usize).ok()?;
        let n = sys::pread(fd, buf.bytes_mut(), 0).ok()?;
        Some((buf, n))
    })();
    sys::close(fd);
    read
}

/// Finds the libraries `program` (at canonical `path`, interpreter
/// `interp`) loads at start-up and primes their code; reports each under
/// `-v`.
pub fn prime_startup_libraries(
    boot: &Boot,
    program: &OpenFile,
    image: &Image,
    path: &[u8],
    interp: &[u8],
    musl: bool,
    report: &Report,
) {
    let mut path_file = musl
        .then(|| read_whole(arch::MUSL_PATH_FILE, 1 << 16))
        .flatten();
    let mut cache_file = (!musl)
        .then(|| read_whole(b"/etc/ld.so.cache", LDCACHE_MAX))
        .flatten();
    let libc = if musl {
        let system_path = path_file
            .as_mut()
            .map(|(b, n)| &b.bytes_mut()[..*n] as &[u8]);
        Libc::Musl { system_path }
    } else {
        let cache = cache_file
            .as_mut()
            .and_then(|(b, n)| LdCache::parse(&b.bytes_mut()[..*n], arch::LDCACHE_FLAGS));
        // SAFETY: AT_PLATFORM points at the kernel's NUL-terminated string
        // above the stack pointer.
        let platform = boot
            .aux(AT_PLATFORM)
            .map_or(&b""[..], |a| unsafe { super::boot::cstr(a as usize) });
        Libc::Glibc(Glibc {
            cache,
            system_dirs: arch::SYSTEM_DIRS,
            lib: arch::LIB,
            platform,
        })
    };
    let env = Env {
        libc,
        library_path: boot.trusted_env(b"LD_LIBRARY_PATH"),
        secure: boot.is_secure(),
    };
    let dynamic = Dynamic::read(program, image);
    let Ok(mut closure) = Closure::<256, 65536>::new(path, &dynamic.info(), &env) else {
        return;
    };
    let soname = interp.rsplit(|&b| b == b'/').next();
    let _ = closure.add_interp(interp, soname);
    // Room for smaps, made when a library has 2 MiB of code to prime.
    let mut room: Option<sys::Scratch> = None;
    let mut buf = [0u8; libsearch::PATH_MAX];
    while let Some(job) = closure.next_job() {
        let mut opened: Option<(OpenFile, Image)> = None;
        let found = closure.search(job, &env, &mut buf, |candidate| {
            opened = open_library(candidate);
            opened.is_some()
        });
        let (Some(found), Some((file, lib))) = (found, opened) else {
            report.say(|l| {
                l.str("library ")
                    .bytes(closure.name(job))
                    .str(" (needed by ")
                    .bytes(closure.needer(job))
                    .str("): not found; ld.so will say more");
            });
            continue;
        };
        let mut found_path = CPath::new();
        if let Some(p) = CPath::from_parts(&[found]) {
            found_path = p;
        }
        let d = Dynamic::read(&file, &lib);
        let is_new = closure.found(job, found_path.as_bytes(), &d.info(), &env);
        if is_new == Ok(true) {
            let mut any = false;
            hugeload::plan::prime_blocks(&lib, file.size, |_| any = true);
            if any && room.is_none() {
                room = sys::Scratch::new(prime::SMAPS_ROOM).ok();
            }
            let r = match room.as_mut() {
                Some(room) if any => prime::prime_file(&file, &lib, false, room.bytes_mut()),
                _ => FileReport::default(),
            };
            say_library(report, found_path.as_bytes(), &r);
        }
        file.close();
    }
}

/// Opens a candidate library: a regular file holding an ELF image for this
/// machine (ld.so skips a candidate that is not, and tries the next).
fn open_library(path: &[u8]) -> Option<(OpenFile, Image)> {
    let cpath = CPath::from_parts(&[path])?;
    let fd = sys::open(&cpath, O_RDONLY | O_CLOEXEC).ok()?;
    let Ok(file) = OpenFile::from_fd_for_reading(fd) else {
        sys::close(fd);
        return None;
    };
    match file.read_image() {
        Ok(image) => Some((file, image)),
        Err(_) => {
            file.close();
            None
        }
    }
}

fn say_library(report: &Report, path: &[u8], r: &FileReport) {
    // What each library finally got is said when ld.so has mapped it
    // (`hook`); its priming is detail.
    report.say_at(2, |l: &mut Line| {
        l.str("library ").bytes(path).str(" before ld.so: ");
        if r.blocks == 0 {
            l.str("no whole 2 MiB block of code");
            return;
        }
        l.dec(r.blocks).str(" x 2M of code: ");
        l.dec(r.already).str(" already huge, ");
        l.dec(r.primed).str(" primed, ");
        l.dec(r.small).str(" small");
        if r.small > 0 {
            l.str(" (mapped small by a running process, or a filesystem without large folios)");
        }
        if r.not_congruent > 0 {
            l.str(", ").dec(r.not_congruent);
            l.str(" not possible from the page cache (not congruent with their file offsets)");
        }
    });
}
