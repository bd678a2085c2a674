//! Opening the files hugeload runs, with the checks execve would make, and
//! reading their headers into bounded buffers.

use super::arch;
use super::sys::{self, CPath, Errno, Fd};
use hugeload::elf::{self, Image, MAX_INTERP, MAX_PHDR_BYTES};
use hugeload::error::LoadError;
use hugeload::interp::{Linking, NAME_PREFIX};
use hugeload::script::BINPRM_BUF_SIZE;
use linux_raw_sys::general::{O_CLOEXEC, O_RDONLY, S_IFDIR, S_IFMT, S_IFREG};

const X_OK: u32 = 1;
const ST_NOEXEC: i64 = 8;

/// An open file that execve would agree to run.
pub struct OpenFile {
    pub fd: Fd,
    pub size: u64,
    /// Device and inode, to recognise a file.
    pub id: (u64, u64),
}

impl OpenFile {
    /// Opens `path` for loading: it must exist, be a regular file, carry
    /// execute permission for us, and live on a mount that allows exec.
    pub fn open(path: &CPath) -> Result<OpenFile, LoadError> {
        sys::access(path, X_OK)?;
        let fd = sys::open(path, O_RDONLY | O_CLOEXEC)?;
        Self::from_fd(fd).inspect_err(|_| sys::close(fd))
    }

    /// Takes a descriptor already open on the file (binfmt_misc's
    /// AT_EXECFD, which may be execute-only) and makes the same checks.
    pub fn from_fd(fd: Fd) -> Result<OpenFile, LoadError> {
        let (size, id) = Self::check(fd)?;
        Ok(OpenFile { fd, size, id })
    }

    /// Takes a descriptor open on a file to read (to prime it), not to
    /// run: it must be a regular file.
    pub fn from_fd_for_reading(fd: Fd) -> Result<OpenFile, LoadError> {
        let (size, id) = Self::regular(fd)?;
        Ok(OpenFile { fd, size, id })
    }

    fn regular(fd: Fd) -> Result<(u64, (u64, u64)), LoadError> {
        let st = sys::fstat(fd)?;
        match st.st_mode & S_IFMT {
            S_IFREG => Ok((st.st_size as u64, (st.st_dev, st.st_ino))),
            S_IFDIR => Err(Errno::EISDIR.into()),
            _ => Err(Errno::EACCES.into()),
        }
    }

    /// The file's ELF image (program headers validated), for any ELF type
    /// that is loaded (programs and shared libraries: no entry point
    /// needed).
    pub fn read_image(&self) -> Result<Image, LoadError> {
        let head = Head::read(self)?;
        ElfFile::read_headers(self, &head)
    }

    /// Whether some process has the file open for writing (when this
    /// process can tell).
    pub fn is_being_written(&self) -> bool {
        sys::open_for_writing(self.fd) == Some(true)
    }

    fn check(fd: Fd) -> Result<(u64, (u64, u64)), LoadError> {
        let (size, id) = Self::regular(fd)?;
        let fs = sys::fstatfs(fd)?;
        if fs.f_flags & ST_NOEXEC != 0 {
            return Err(Errno::EACCES.into());
        }
        Ok((size, id))
    }

    /// Reads `buf.len()` bytes at `offset`, or fails with ShortRead.
    pub fn read_exact(&self, buf: &mut [u8], offset: u64) -> Result<(), LoadError> {
        let n = sys::pread(self.fd, buf, offset)?;
        if n < buf.len() {
            return Err(LoadError::ShortRead);
        }
        Ok(())
    }

    pub fn close(&self) {
        sys::close(self.fd);
    }
}

/// The path `file` was opened by, resolved (links followed, absolute), as
/// `/proc/self/fd/N` names it.
pub fn canonical_path<'b>(file: &OpenFile, buf: &'b mut [u8; 4096]) -> Option<&'b [u8]> {
    let mut link = hugeload::fmt::Line::new();
    link.str("/proc/self/fd/").dec(file.fd as u64);
    let n = sys::readlink(link.as_bytes(), &mut buf[..]).ok()?;
    buf[..n].starts_with(b"/").then_some(&buf[..n])
}

/// Device and inode of the running hugeload (`/proc/self/exe`, before
/// anything changes that link), to recognise it.
pub fn own_id() -> Option<(u64, u64)> {
    let path = CPath::from_parts(&[b"/proc/self/exe"])?;
    let fd = sys::open(&path, O_RDONLY | O_CLOEXEC).ok()?;
    let st = sys::fstat(fd);
    sys::close(fd);
    st.ok().map(|st| (st.st_dev, st.st_ino))
}

/// The first bytes of a file: what the kernel looks at to pick a format.
pub struct Head {
    pub bytes: [u8; BINPRM_BUF_SIZE],
    pub len: usize,
}

impl Head {
    pub fn read(file: &OpenFile) -> Result<Head, LoadError> {
        let mut head = Head {
            bytes: [0; BINPRM_BUF_SIZE],
            len: 0,
        };
        head.len = sys::pread(file.fd, &mut head.bytes, 0)?;
        Ok(head)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A validated ELF file.
pub struct ElfFile {
    pub file: OpenFile,
    pub image: Image,
}

impl ElfFile {
    /// Opens `path` for loading (see [`OpenFile::open`]) and validates it.
    pub fn open(path: &[u8]) -> Result<ElfFile, LoadError> {
        let path = CPath::from_parts(&[path]).ok_or(Errno::ENAMETOOLONG)?;
        let file = OpenFile::open(&path)?;
        let head = Head::read(&file).inspect_err(|_| file.close())?;
        ElfFile::parse(file, &head)
    }

    /// Validates the ELF whose first bytes are `head`. Takes the file; it is
    /// closed on failure.
    pub fn parse(file: OpenFile, head: &Head) -> Result<ElfFile, LoadError> {
        match Self::read_image(&file, head) {
            Ok(image) => Ok(ElfFile { file, image }),
            Err(e) => {
                file.close();
                Err(e)
            }
        }
    }

    fn read_image(file: &OpenFile, head: &Head) -> Result<Image, LoadError> {
        let image = Self::read_headers(file, head)?;
        elf::check_entry(&image)?;
        Ok(image)
    }

    fn read_headers(file: &OpenFile, head: &Head) -> Result<Image, LoadError> {
        let header = elf::parse_header(head.as_bytes(), arch::ELF_MACHINE)?;
        let table_len = elf::phdr_table_len(&header);
        if header
            .e_phoff
            .checked_add(table_len as u64)
            .is_none_or(|e| e > file.size)
        {
            return Err(LoadError::HeadersOutsideFile);
        }
        let mut table = [0u8; MAX_PHDR_BYTES];
        file.read_exact(&mut table[..table_len], header.e_phoff)?;
        elf::parse_image(&header, &table[..table_len], file.size, arch::USER_TOP)
    }

    /// Reads the PT_INTERP path into `buf`; returns it without its NUL.
    pub fn interp_path<'b>(
        &self,
        buf: &'b mut [u8; MAX_INTERP],
    ) -> Result<Option<&'b [u8]>, LoadError> {
        let Some(range) = self.image.interp else {
            return Ok(None);
        };
        let raw = &mut buf[..range.len as usize];
        self.file.read_exact(raw, range.offset)?;
        elf::interp_path(raw).map(Some)
    }
}

impl ElfFile {
    /// How the program links, from the dynamic section in the file. A file
    /// without one (or with one that cannot be read) links statically.
    pub fn linking(&self) -> Linking {
        Linking::scan(
            |f| for_each_dynamic(&self.file, &self.image, f),
            |strtab, offset, buf: &mut [u8; NAME_PREFIX]| {
                let at = self
                    .image
                    .file_offset_of(strtab)
                    .and_then(|s| s.checked_add(offset));
                at.map_or(0, |at| sys::pread(self.file.fd, buf, at).unwrap_or(0))
            },
        )
    }
}

/// Calls `f(d_tag, d_val)` for the dynamic entries read from the file,
/// a small chunk at a time, up to DT_NULL.
pub fn for_each_dynamic(file: &OpenFile, image: &Image, f: &mut dyn FnMut(u64, u64)) {
    let Some(range) = image.dynamic else {
        return;
    };
    let mut chunk = [0u8; 1024];
    let mut done = 0;
    while done < range.len {
        let len = (range.len - done).min(chunk.len() as u64) as usize;
        let len = len - len % elf::DYN_SIZE;
        if len == 0
            || file
                .read_exact(&mut chunk[..len], range.offset + done)
                .is_err()
        {
            return;
        }
        let mut entries = 0;
        for (tag, value) in elf::dynamic_entries(&chunk[..len]) {
            f(tag, value);
            entries += 1;
        }
        if entries * elf::DYN_SIZE < len {
            return; // DT_NULL
        }
        done += len as u64;
    }
}

/// Whether `file` holds the same bytes as the running hugeload
/// (`/proc/self/exe`): a copy of it, whatever its name or inode.
pub fn is_copy_of_self(file: &OpenFile) -> bool {
    /// Larger files are not hugeload (it is about 100 KiB).
    const MAX: u64 = 16 << 20;
    if file.size == 0 || file.size > MAX {
        return false;
    }
    let Some(path) = CPath::from_parts(&[b"/proc/self/exe"]) else {
        return false;
    };
    let Ok(own) = sys::open(&path, O_RDONLY | O_CLOEXEC) else {
        return false;
    };
    let same = sys::fstat(own).is_ok_and(|st| st.st_size as u64 == file.size)
        && same_bytes(own, file.fd, file.size);
    sys::close(own);
    same
}

/// Whether the first `len` bytes of `a` and `b` are equal.
fn same_bytes(a: Fd, b: Fd, len: u64) -> bool {
    let mut x = [0u8; 4096];
    let mut y = [0u8; 4096];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(x.len() as u64) as usize;
        let (Ok(got_a), Ok(got_b)) = (
            sys::pread(a, &mut x[..n], at),
            sys::pread(b, &mut y[..n], at),
        ) else {
            return false;
        };
        if got_a != n || got_b != n || x[..n] != y[..n] {
            return false;
        }
        at += n as u64;
    }
    true
}
