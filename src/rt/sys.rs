//! Typed wrappers over the system calls hugeload makes. Every `unsafe`
//! block here only passes arguments to the kernel; the functions that can
//! change memory the caller may be using are themselves `unsafe fn`.

pub use hugeload::errno::Errno;
use linux_raw_sys::general::{stat, statfs};
use syscalls::{Sysno, syscall};

pub type Result<T> = core::result::Result<T, Errno>;

fn check(r: core::result::Result<usize, syscalls::Errno>) -> Result<usize> {
    r.map_err(|e| Errno::from_raw(e.into_raw()))
}

pub type Fd = i32;
pub const AT_FDCWD: i32 = -100;

/// A NUL-terminated path, built in place.
pub struct CPath {
    buf: [u8; 4097],
    len: usize,
}

impl CPath {
    pub fn new() -> CPath {
        CPath {
            buf: [0; 4097],
            len: 0,
        }
    }
    /// `parts` joined; `None` if longer than PATH_MAX or holding a NUL.
    pub fn from_parts(parts: &[&[u8]]) -> Option<CPath> {
        let mut p = CPath::new();
        for part in parts {
            if part.contains(&0) || p.len + part.len() >= p.buf.len() {
                return None;
            }
            p.buf[p.len..p.len + part.len()].copy_from_slice(part);
            p.len += part.len();
        }
        p.buf[p.len] = 0;
        Some(p)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    fn ptr(&self) -> usize {
        self.buf.as_ptr() as usize
    }
}

pub fn write(fd: Fd, bytes: &[u8]) -> Result<usize> {
    // SAFETY: the kernel reads `bytes.len()` bytes of a live slice.
    check(unsafe { syscall!(Sysno::write, fd, bytes.as_ptr(), bytes.len()) })
}

pub fn write_all(fd: Fd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

pub fn exit(status: i32) -> ! {
    loop {
        // SAFETY: exit_group takes a status and does not return.
        let _ = unsafe { syscall!(Sysno::exit_group, status) };
    }
}

pub fn open(path: &CPath, flags: u32) -> Result<Fd> {
    // SAFETY: `path` is NUL-terminated and lives across the call.
    check(unsafe { syscall!(Sysno::openat, AT_FDCWD, path.ptr(), flags, 0) }).map(|fd| fd as Fd)
}

/// openat(2) with a mode for a file it may create.
pub fn open_mode(path: &CPath, flags: u32, mode: u32) -> Result<Fd> {
    // SAFETY: `path` is NUL-terminated and lives across the call.
    check(unsafe { syscall!(Sysno::openat, AT_FDCWD, path.ptr(), flags, mode) }).map(|fd| fd as Fd)
}

pub fn close(fd: Fd) {
    // SAFETY: closing a descriptor touches no memory.
    let _ = unsafe { syscall!(Sysno::close, fd) };
}

/// X_OK (and similar) for the effective ids, as execve checks them.
pub fn access(path: &CPath, mode: u32) -> Result<()> {
    use linux_raw_sys::general::AT_EACCESS;
    // SAFETY: `path` is NUL-terminated.
    let r = unsafe { syscall!(Sysno::faccessat2, AT_FDCWD, path.ptr(), mode, AT_EACCESS) };
    match check(r) {
        Err(Errno::ENOSYS) => {
            // ENOSYS: kernels before 5.8; faccessat checks the real ids.
            // SAFETY: as above.
            check(unsafe { syscall!(Sysno::faccessat, AT_FDCWD, path.ptr(), mode) }).map(|_| ())
        }
        r => r.map(|_| ()),
    }
}

pub fn fstat(fd: Fd) -> Result<stat> {
    let mut st = core::mem::MaybeUninit::<stat>::zeroed();
    // SAFETY: the kernel fills a `struct stat` we own.
    check(unsafe { syscall!(Sysno::fstat, fd, st.as_mut_ptr()) })?;
    // SAFETY: zero-initialised and then written by the kernel.
    Ok(unsafe { st.assume_init() })
}

pub fn fstatfs(fd: Fd) -> Result<statfs> {
    let mut st = core::mem::MaybeUninit::<statfs>::zeroed();
    // SAFETY: the kernel fills a `struct statfs` we own.
    check(unsafe { syscall!(Sysno::fstatfs, fd, st.as_mut_ptr()) })?;
    // SAFETY: zero-initialised and then written by the kernel.
    Ok(unsafe { st.assume_init() })
}

/// Reads up to `buf.len()` bytes at `offset`, retrying short reads; returns
/// how many were read (fewer only at the end of the file).
pub fn pread(fd: Fd, buf: &mut [u8], offset: u64) -> Result<usize> {
    // SAFETY: the destination is a live, writable slice.
    unsafe { pread_into(fd, buf.as_mut_ptr() as usize, buf.len(), offset) }
}

/// Like [`pread`] into raw memory.
///
/// # Safety
/// `[addr, addr + len)` must be writable memory that nothing else uses.
pub unsafe fn pread_into(fd: Fd, addr: usize, len: usize, offset: u64) -> Result<usize> {
    let mut done = 0;
    while done < len {
        let chunk = (len - done).min(0x4000_0000);
        // SAFETY: the caller guarantees the destination range.
        let r = unsafe { syscall!(Sysno::pread64, fd, addr + done, chunk, offset + done as u64) };
        match check(r) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// mmap(2).
///
/// # Safety
/// With `MAP_FIXED` this replaces whatever was mapped there: the caller
/// must own that range.
pub unsafe fn mmap(
    addr: usize,
    len: usize,
    prot: u32,
    flags: u32,
    fd: Fd,
    off: u64,
) -> Result<usize> {
    // SAFETY: the caller guarantees what a fixed mapping replaces.
    check(unsafe { syscall!(Sysno::mmap, addr, len, prot, flags, fd, off) })
}

/// # Safety
/// Nothing may still use `[addr, addr + len)`.
pub unsafe fn munmap(addr: usize, len: usize) -> Result<()> {
    // SAFETY: the caller guarantees the range is unused.
    check(unsafe { syscall!(Sysno::munmap, addr, len) }).map(|_| ())
}

/// # Safety
/// The caller owns the range and nothing relies on its old protection.
pub unsafe fn mprotect(addr: usize, len: usize, prot: u32) -> Result<()> {
    // SAFETY: the caller guarantees the range.
    check(unsafe { syscall!(Sysno::mprotect, addr, len, prot) }).map(|_| ())
}

/// Moves `[old, old + len)` to `new`, replacing what was there.
///
/// # Safety
/// The caller owns both ranges.
pub unsafe fn mremap_fixed(old: usize, len: usize, new: usize) -> Result<()> {
    use linux_raw_sys::general::{MREMAP_FIXED, MREMAP_MAYMOVE};
    // SAFETY: the caller guarantees both ranges.
    let r = unsafe {
        syscall!(
            Sysno::mremap,
            old,
            len,
            len,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            new
        )
    };
    match check(r) {
        Ok(got) if got == new => Ok(()),
        Ok(_) => Err(Errno::EINVAL),
        Err(e) => Err(e),
    }
}

/// The madvise(2) advice hugeload gives: none of it changes what memory
/// holds (no MADV_DONTNEED, MADV_FREE, MADV_REMOVE...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    /// Back the range with transparent huge pages.
    HugePage,
    /// Collapse the range into huge pages now (Linux 6.1+).
    Collapse,
    /// Expect random access: no readahead beyond the fault (for a file
    /// mapping with HugePage, each fault reads one 2 MiB folio).
    Random,
    /// Back to the default access pattern.
    Normal,
    /// Fault the range in for reading, as a read of each page would,
    /// without reading it (Linux 5.14+): a page past the end of a file
    /// fails the call (EFAULT) instead of raising SIGBUS.
    PopulateRead,
}

pub fn madvise(addr: usize, len: usize, advice: Advice) -> Result<()> {
    use linux_raw_sys::general::{
        MADV_COLLAPSE, MADV_HUGEPAGE, MADV_NORMAL, MADV_POPULATE_READ, MADV_RANDOM,
    };
    let advice = match advice {
        Advice::HugePage => MADV_HUGEPAGE,
        Advice::Collapse => MADV_COLLAPSE,
        Advice::Random => MADV_RANDOM,
        Advice::Normal => MADV_NORMAL,
        Advice::PopulateRead => MADV_POPULATE_READ,
    };
    // SAFETY: the advice values above keep the contents of any range.
    check(unsafe { syscall!(Sysno::madvise, addr, len, advice) }).map(|_| ())
}

/// posix_fadvise(POSIX_FADV_DONTNEED): asks the kernel to drop the file's
/// cached pages in the range. It drops only clean pages that no process
/// maps; it never changes the file.
pub fn drop_clean_cache(fd: Fd, offset: u64, len: u64) -> Result<()> {
    const POSIX_FADV_DONTNEED: usize = 4;
    // SAFETY: no memory is passed.
    check(unsafe { syscall!(Sysno::fadvise64, fd, offset, len, POSIX_FADV_DONTNEED) }).map(|_| ())
}

/// sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER): writes the range's
/// dirty cached pages back to the file (what the kernel would write
/// anyway) and waits, so that they become clean and droppable. Works on a
/// read-only descriptor.
pub fn write_back(fd: Fd, offset: u64, len: u64) -> Result<()> {
    const FLAGS: usize = 1 | 2 | 4;
    // SAFETY: no memory is passed.
    check(unsafe { syscall!(Sysno::sync_file_range, fd, offset, len, FLAGS) }).map(|_| ())
}

pub fn memfd_create(name: &CPath, flags: u32) -> Result<Fd> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { syscall!(Sysno::memfd_create, name.ptr(), flags) }).map(|fd| fd as Fd)
}

pub fn ftruncate(fd: Fd, len: u64) -> Result<()> {
    // SAFETY: no memory is passed.
    check(unsafe { syscall!(Sysno::ftruncate, fd, len) }).map(|_| ())
}

/// prctl(2) with raw arguments.
///
/// # Safety
/// Where `option` takes pointers, the arguments must point at memory of
/// the kind and size that option reads or writes.
unsafe fn prctl(option: u32, a2: usize, a3: usize, a4: usize, a5: usize) -> Result<usize> {
    // SAFETY: the caller guarantees what the arguments point at.
    check(unsafe { syscall!(Sysno::prctl, option, a2, a3, a4, a5) })
}

/// Whether THP is disabled for this process (PR_SET_THP_DISABLE).
pub fn thp_disabled() -> bool {
    const PR_GET_THP_DISABLE: u32 = 42;
    // SAFETY: the query takes no pointer.
    unsafe { prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) }.unwrap_or(0) == 1
}

/// Whether memory-deny-write-execute is on (PR_GET_MDWE, Linux 6.3+;
/// systemd's MemoryDenyWriteExecute= may use it): no mprotect may then
/// add exec.
pub fn mdwe_refuses_exec_gain() -> bool {
    const PR_GET_MDWE: u32 = 66;
    // SAFETY: the query takes no pointer.
    unsafe { prctl(PR_GET_MDWE, 0, 0, 0, 0) }.unwrap_or(0) & 1 != 0
}

/// Sets the thread's name (`/proc/self/comm`) to the first 15 bytes of
/// `name`.
pub fn set_name(name: &[u8]) {
    let mut comm = [0u8; 16];
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name[..n]);
    // SAFETY: PR_SET_NAME reads 16 bytes, NUL-terminated, from `comm`.
    let _ = unsafe {
        prctl(
            linux_raw_sys::prctl::PR_SET_NAME,
            comm.as_ptr() as usize,
            0,
            0,
            0,
        )
    };
}

pub fn getpid() -> u64 {
    // SAFETY: getpid takes no arguments.
    check(unsafe { syscall!(Sysno::getpid) }).unwrap_or(0) as u64
}

/// Random bytes from the kernel, without blocking; zeros if unavailable.
pub fn random_u64() -> u64 {
    let mut v = [0u8; 8];
    use linux_raw_sys::general::GRND_NONBLOCK;
    // SAFETY: the kernel writes at most 8 bytes into `v`.
    let _ = unsafe { syscall!(Sysno::getrandom, v.as_mut_ptr(), 8, GRND_NONBLOCK) };
    u64::from_le_bytes(v)
}

/// The process's personality flags.
pub fn personality() -> u32 {
    // SAFETY: 0xffffffff only queries.
    check(unsafe { syscall!(Sysno::personality, 0xffff_ffffusize) }).unwrap_or(0) as u32
}

/// Whether the effective capability set holds capability `cap`.
pub fn has_capability(cap: u32) -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: the kernel reads the header and writes two data structs.
    let r = unsafe { syscall!(Sysno::capget, &mut header as *mut Header, data.as_mut_ptr()) };
    if check(r).is_err() || cap >= 64 {
        return false;
    }
    data[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0
}

/// readlink(2) into `buf`; returns the length.
pub fn readlink(path: &[u8], buf: &mut [u8]) -> Result<usize> {
    let path = CPath::from_parts(&[path]).ok_or(Errno::EINVAL)?;
    // SAFETY: `path` is NUL-terminated; the kernel writes at most
    // `buf.len()` bytes.
    check(unsafe {
        syscall!(
            Sysno::readlinkat,
            AT_FDCWD,
            path.ptr(),
            buf.as_mut_ptr(),
            buf.len()
        )
    })
}

/// pwrite(2) of all of `bytes` at `offset`.
pub fn pwrite(fd: Fd, bytes: &[u8], offset: u64) -> Result<()> {
    // SAFETY: the kernel reads `bytes.len()` bytes of a live slice.
    let n = check(unsafe { syscall!(Sysno::pwrite64, fd, bytes.as_ptr(), bytes.len(), offset) })?;
    if n == bytes.len() {
        Ok(())
    } else {
        Err(Errno::EIO)
    }
}

/// read(2), retrying on EINTR.
pub fn read(fd: Fd, buf: &mut [u8]) -> Result<usize> {
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        match check(unsafe { syscall!(Sysno::read, fd, buf.as_mut_ptr(), buf.len()) }) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// The current program break (brk(0) changes nothing).
pub fn brk_now() -> u64 {
    // SAFETY: brk(0) only queries.
    check(unsafe { syscall!(Sysno::brk, 0) }).unwrap_or(0) as u64
}

/// The layout fields of `/proc/PID/stat` that PR_SET_MM_MAP sets.
#[derive(Clone, Copy, Debug, Default)]
pub struct MmLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

/// prctl(PR_SET_MM, PR_SET_MM_MAP): sets the layout fields /proc shows,
/// the saved auxv (`/proc/PID/auxv`: its words, AT_NULL pair included) and,
/// with privilege, the exe file (`/proc/PID/exe`), in one call.
pub fn set_mm_map(layout: &MmLayout, auxv: &[u64], exe_fd: Option<Fd>) -> Result<()> {
    use linux_raw_sys::prctl::{PR_SET_MM, PR_SET_MM_MAP, prctl_mm_map};
    let map = prctl_mm_map {
        start_code: layout.start_code,
        end_code: layout.end_code,
        start_data: layout.start_data,
        end_data: layout.end_data,
        start_brk: layout.start_brk,
        brk: layout.brk,
        start_stack: layout.start_stack,
        arg_start: layout.arg_start,
        arg_end: layout.arg_end,
        env_start: layout.env_start,
        env_end: layout.env_end,
        auxv: auxv.as_ptr() as *mut u64,
        auxv_size: core::mem::size_of_val(auxv) as u32,
        exe_fd: exe_fd.map_or(u32::MAX, |fd| fd as u32),
    };
    // SAFETY: the kernel reads `map` and the `auxv_size` bytes of the live
    // slice `auxv` points at.
    unsafe {
        prctl(
            PR_SET_MM,
            PR_SET_MM_MAP as usize,
            &map as *const _ as usize,
            core::mem::size_of_val(&map),
            0,
        )
    }
    .map(|_| ())
}

/// Reads the whole file at `path` into `buf` (up to its length); returns
/// how many bytes were read.
pub fn read_file(path: &CPath, buf: &mut [u8]) -> Result<usize> {
    use linux_raw_sys::general::{O_CLOEXEC, O_RDONLY};
    let fd = open(path, O_RDONLY | O_CLOEXEC)?;
    let mut n = 0;
    while n < buf.len() {
        match read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => {
                close(fd);
                return Err(e);
            }
        }
    }
    close(fd);
    Ok(n)
}

/// execve(2); returns only on failure.
///
/// # Safety
/// `argv` and `envp` must point at NULL-terminated arrays of pointers to
/// NUL-terminated strings.
pub unsafe fn execve(path: &CPath, argv: usize, envp: usize) -> Result<()> {
    // SAFETY: the caller guarantees the arrays; `path` is NUL-terminated.
    check(unsafe { syscall!(Sysno::execve, path.ptr(), argv, envp) }).map(|_| ())
}

/// execveat(fd, "", argv, envp, AT_EMPTY_PATH): executes the open file.
///
/// # Safety
/// As [`execve`].
pub unsafe fn execveat_fd(fd: Fd, argv: usize, envp: usize) -> Result<()> {
    const AT_EMPTY_PATH: usize = 0x1000;
    let empty = b"\0";
    // SAFETY: the caller guarantees the arrays; the path is an empty string.
    check(unsafe {
        syscall!(
            Sysno::execveat,
            fd,
            empty.as_ptr(),
            argv,
            envp,
            AT_EMPTY_PATH
        )
    })
    .map(|_| ())
}

/// Copies the first `len` bytes of `from` to `to` (sendfile, from offset 0).
pub fn copy_all(from: Fd, to: Fd, len: u64) -> Result<()> {
    let mut offset: u64 = 0;
    while offset < len {
        let chunk = (len - offset).min(1 << 30) as usize;
        // SAFETY: the kernel reads and updates the `offset` word.
        let n =
            check(unsafe { syscall!(Sysno::sendfile, to, from, &mut offset as *mut u64, chunk) })?;
        if n == 0 {
            return Err(Errno::EIO);
        }
    }
    Ok(())
}

/// getdents64(2): directory entries of `dir` into `buf`; 0 at the end.
pub fn getdents(dir: Fd, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    check(unsafe { syscall!(Sysno::getdents64, dir, buf.as_mut_ptr(), buf.len()) })
}

/// One entry of a getdents64 buffer.
pub struct Dirent<'b> {
    pub name: &'b [u8],
    pub d_type: u8,
    /// Where the next entry starts.
    pub next: usize,
}

impl<'b> Dirent<'b> {
    /// The entry at `at` of `buf` (what getdents64 returned), if whole.
    pub fn at(buf: &'b [u8], at: usize) -> Option<Dirent<'b>> {
        // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16,
        // d_type u8, d_name[] NUL-terminated.
        let head = buf.get(at..at.checked_add(19)?)?;
        let reclen = u16::from_ne_bytes([head[16], head[17]]) as usize;
        let entry = buf.get(at..at.checked_add(reclen)?)?;
        let name = entry.get(19..)?;
        let len = name.iter().position(|&b| b == 0)?;
        Some(Dirent {
            name: &name[..len],
            d_type: head[18],
            next: at + reclen.max(1),
        })
    }
    pub fn is_symlink(&self) -> bool {
        const DT_LNK: u8 = 10;
        self.d_type == DT_LNK
    }
}

/// Whether a process has `fd`'s file open for writing: a read lease
/// (F_SETLEASE) is refused with EAGAIN then. `None` when this process may
/// not take leases on the file (not its owner, no CAP_LEASE).
pub fn open_for_writing(fd: Fd) -> Option<bool> {
    const F_SETLEASE: usize = 1024;
    const F_RDLCK: usize = 0;
    const F_UNLCK: usize = 2;
    // SAFETY: F_SETLEASE takes an integer.
    match check(unsafe { syscall!(Sysno::fcntl, fd, F_SETLEASE, F_RDLCK) }) {
        Ok(_) => {
            // SAFETY: as above.
            let _ = unsafe { syscall!(Sysno::fcntl, fd, F_SETLEASE, F_UNLCK) };
            Some(false)
        }
        Err(Errno(11)) => Some(true),
        Err(_) => None,
    }
}

/// mincore(2): a byte per page of `[addr, addr + len)`, bit 0 set when
/// the page is resident. Faults nothing in.
pub fn mincore(addr: usize, len: usize, vec: &mut [u8]) -> Result<()> {
    if vec.len() < len.div_ceil(4096) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the kernel writes one byte per page into `vec`, which holds
    // that many.
    check(unsafe { syscall!(Sysno::mincore, addr, len, vec.as_mut_ptr()) }).map(|_| ())
}

/// flock(2) with LOCK_EX: waits for an exclusive advisory lock on the
/// open file (a read-only descriptor is enough).
pub fn lock_exclusive(fd: Fd) -> Result<()> {
    const LOCK_EX: usize = 2;
    loop {
        // SAFETY: no memory is passed.
        match check(unsafe { syscall!(Sysno::flock, fd, LOCK_EX) }) {
            Err(Errno::EINTR) => continue,
            r => return r.map(|_| ()),
        }
    }
}

/// flock(2) with LOCK_UN.
pub fn unlock(fd: Fd) {
    const LOCK_UN: usize = 8;
    // SAFETY: no memory is passed.
    let _ = unsafe { syscall!(Sysno::flock, fd, LOCK_UN) };
}

/// mlock(2): faults in and locks the pages of `[addr, addr + len)`.
pub fn mlock(addr: usize, len: usize) -> Result<()> {
    // SAFETY: locking changes no contents; the kernel checks the range.
    check(unsafe { syscall!(Sysno::mlock, addr, len) }).map(|_| ())
}

/// The soft limit of resource `resource` (getrlimit), `u64::MAX` for
/// unlimited.
pub fn soft_limit(resource: u32) -> u64 {
    let mut lim = [0u64; 2];
    // SAFETY: the kernel writes two words into `lim`.
    match check(unsafe { syscall!(Sysno::prlimit64, 0, resource, 0, lim.as_mut_ptr()) }) {
        Ok(_) => lim[0],
        Err(_) => 0,
    }
}

/// A private anonymous buffer, unmapped when dropped: room for reading
/// /proc files too large for the stack.
pub struct Scratch {
    addr: usize,
    len: usize,
}

impl Scratch {
    pub fn new(len: usize) -> Result<Scratch> {
        use linux_raw_sys::general::{
            MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, PROT_READ, PROT_WRITE,
        };
        // SAFETY: a fresh private mapping at an address the kernel chooses.
        let addr = unsafe {
            mmap(
                0,
                len,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1,
                0,
            )
        }?;
        Ok(Scratch { addr, len })
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is ours, writable, and lives as long as `self`.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours; no slice of it outlives `self`.
        let _ = unsafe { munmap(self.addr, self.len) };
    }
}

/// Reads a small file (under /proc or /sys) into `buf` with one read;
/// `None` if it cannot be opened or read.
pub fn read_small<'b>(path: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    use linux_raw_sys::general::{O_CLOEXEC, O_RDONLY};
    let path = CPath::from_parts(&[path])?;
    let fd = open(&path, O_RDONLY | O_CLOEXEC).ok()?;
    let n = read(fd, buf);
    close(fd);
    Some(&buf[..n.ok()?])
}

/// write(2) of all of `bytes`, retrying short writes and EINTR; the first
/// error otherwise (a write that takes nothing is EIO). [`write_all`]
/// ignores errors: for diagnostics, where there is nothing left to tell.
pub fn write_all_checked(fd: Fd, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        match write(fd, bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `fd` is a file of a binfmt_misc filesystem (its `register`,
/// say).
pub fn is_on_binfmt_misc(fd: Fd) -> bool {
    const BINFMTFS_MAGIC: i64 = 0x4249_4e4d;
    fstatfs(fd).is_ok_and(|fs| fs.f_type == BINFMTFS_MAGIC)
}
