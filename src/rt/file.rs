//! Opening the files hugeload runs, with the checks execve would make, and
//! reading their headers into bounded buffers.

use super::arch;
use super::sys::{self, CPath, Errno, Fd};
use hugeload::elf::{self, Image, MAX_INTERP, MAX_PHDR_BYTES};
use hugeload::error::LoadError;
use hugeload::script::BINPRM_BUF_SIZE;
use linux_raw_sys::general::{O_CLOEXEC, O_RDONLY, S_IFDIR, S_IFMT, S_IFREG};

const X_OK: u32 = 1;
const ST_NOEXEC: i64 = 8;

fn os(e: Errno) -> LoadError {
    LoadError::Os(e.0)
}

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
        sys::access(path, X_OK).map_err(os)?;
        let fd = sys::open(path, O_RDONLY | O_CLOEXEC).map_err(os)?;
        Self::from_fd(fd).inspect_err(|_| sys::close(fd))
    }

    /// Takes a descriptor already open on the file (binfmt_misc's
    /// AT_EXECFD, which may be execute-only) and makes the same checks.
    pub fn from_fd(fd: Fd) -> Result<OpenFile, LoadError> {
        let (size, id) = Self::check(fd)?;
        Ok(OpenFile { fd, size, id })
    }

    fn check(fd: Fd) -> Result<(u64, (u64, u64)), LoadError> {
        let st = sys::fstat(fd).map_err(os)?;
        match st.st_mode & S_IFMT {
            S_IFREG => {}
            S_IFDIR => return Err(LoadError::Os(21)),
            _ => return Err(LoadError::Os(13)),
        }
        let fs = sys::fstatfs(fd).map_err(os)?;
        if fs.f_flags & ST_NOEXEC != 0 {
            return Err(LoadError::Os(13));
        }
        Ok((st.st_size as u64, (st.st_dev, st.st_ino)))
    }

    /// Reads `buf.len()` bytes at `offset`, or fails with ShortRead.
    pub fn read_exact(&self, buf: &mut [u8], offset: u64) -> Result<(), LoadError> {
        let n = sys::pread(self.fd, buf, offset).map_err(os)?;
        if n < buf.len() {
            return Err(LoadError::ShortRead);
        }
        Ok(())
    }

    pub fn close(&self) {
        sys::close(self.fd);
    }
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
        head.len = sys::pread(file.fd, &mut head.bytes, 0).map_err(os)?;
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
        let path = CPath::from_parts(&[path]).ok_or(LoadError::Os(36))?;
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
        elf::parse_image(&header, &table[..table_len], file.size)
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

/// How a program links, from its dynamic section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Linking {
    /// It names shared libraries (DT_NEEDED).
    pub has_needed: bool,
    /// One of them is musl's libc: `libc.musl-*.so.1` (Alpine and musl's
    /// own install) or plain `libc.so` (Debian's musl-gcc); glibc programs
    /// need `libc.so.6`.
    pub needs_musl: bool,
    /// DT_FLAGS_1 has DF_1_PIE.
    pub pie_flag: bool,
    /// It has a DT_SONAME: it is a shared library.
    pub has_soname: bool,
}

impl ElfFile {
    /// Reads the dynamic section from the file. A file without one (or
    /// with one that cannot be read) links statically.
    pub fn linking(&self) -> Linking {
        use goblin::elf::dynamic::{DT_FLAGS_1, DT_NEEDED, DT_SONAME, DT_STRTAB};
        const DF_1_PIE: u64 = 0x0800_0000;
        let mut linking = Linking::default();
        let mut strtab = None;
        self.for_each_dynamic(|tag, value| {
            if tag == DT_STRTAB {
                strtab = self.image.file_offset_of(value);
            }
        });
        self.for_each_dynamic(|tag, value| match tag {
            DT_NEEDED => {
                linking.has_needed = true;
                let mut name = [0u8; 11];
                if let Some(at) = strtab.and_then(|s| s.checked_add(value)) {
                    let n = sys::pread(self.file.fd, &mut name, at).unwrap_or(0);
                    let name = &name[..n];
                    if name.starts_with(b"libc.musl-") || name.starts_with(b"libc.so\0") {
                        linking.needs_musl = true;
                    }
                }
            }
            DT_FLAGS_1 => linking.pie_flag = value & DF_1_PIE != 0,
            DT_SONAME => linking.has_soname = true,
            _ => {}
        });
        linking
    }

    /// Calls `f(d_tag, d_val)` for the dynamic entries read from the file,
    /// a small chunk at a time, up to DT_NULL.
    fn for_each_dynamic(&self, mut f: impl FnMut(u64, u64)) {
        let Some(range) = self.image.dynamic else {
            return;
        };
        let mut chunk = [0u8; 1024];
        let mut done = 0;
        while done < range.len {
            let len = (range.len - done).min(chunk.len() as u64) as usize;
            let len = len - len % elf::DYN_SIZE;
            if len == 0
                || self
                    .file
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
}
