//! Writes `/tmp/perf-PID.map` naming the functions that now run from
//! anonymous or hugetlb memory, so `perf report` shows their names (see
//! `hugeload::perfmap`). Only asked for with `--perf-map` or
//! `HUGELOAD_PERFMAP=1` (never for secure-execution programs).

use super::arch;
use super::diag::Report;
use super::file::OpenFile;
use super::out::Out;
use super::sys::{self, CPath};
use hugeload::elf::{self, EHDR_SIZE};
use hugeload::fmt::Line;
use hugeload::perfmap;
use hugeload::plan::Range;
use linux_raw_sys::general::{
    MAP_ANONYMOUS, MAP_PRIVATE, O_APPEND, O_CLOEXEC, O_CREAT, O_NOFOLLOW, O_TRUNC, O_WRONLY,
    PROT_READ, PROT_WRITE,
};

/// A copy of part of a file in anonymous memory, unmapped when dropped.
/// Read rather than mapped: a file that shrinks meanwhile gives zeros, not
/// SIGBUS.
struct View {
    addr: usize,
    len: usize,
}

impl View {
    fn new(file: &OpenFile, offset: u64, len: u64) -> Option<View> {
        let end = offset.checked_add(len)?;
        if end > file.size || len == 0 {
            return None;
        }
        let len = len as usize;
        // SAFETY: a fresh private mapping at an address the kernel chooses.
        let addr = unsafe {
            sys::mmap(
                0,
                len,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
        }
        .ok()?;
        let view = View { addr, len };
        // SAFETY: the destination is the mapping just made.
        unsafe { sys::pread_into(file.fd, addr, len, offset) }.ok()?;
        Some(view)
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping lives as long as `self`.
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours; no slice of it outlives `self`.
        let _ = unsafe { sys::munmap(self.addr, self.len) };
    }
}

pub fn write(file: &OpenFile, bias: u64, moved: &[Range], path: &[u8], report: &Report) {
    if moved.is_empty() {
        report.say(|l| {
            l.str("perf map: none written, no code was copied (code from the page cache is the file's own mapping: perf names it)");
        });
        return;
    }
    write_with(file, bias, moved, path, report, O_TRUNC);
}

/// Adds the functions of a library's copied ranges to the process's perf
/// map (made if there is none yet).
pub fn add(file: &OpenFile, bias: u64, moved: &[Range], path: &[u8], report: &Report) {
    if !moved.is_empty() {
        write_with(file, bias, moved, path, report, O_APPEND);
    }
}

fn write_with(
    file: &OpenFile,
    bias: u64,
    moved: &[Range],
    path: &[u8],
    report: &Report,
    mode: u32,
) {
    let mut name = Line::new();
    name.str("/tmp/perf-").dec(sys::getpid()).str(".map");
    let Some(map_path) = CPath::from_parts(&[name.as_bytes()]) else {
        return;
    };
    let fd = match sys::open_mode(
        &map_path,
        O_WRONLY | O_CREAT | mode | O_NOFOLLOW | O_CLOEXEC,
        0o644,
    ) {
        Ok(fd) => fd,
        Err(e) => {
            report.say(|l| {
                l.bytes(name.as_bytes()).str(": ").str(e.message());
            });
            return;
        }
    };
    let mut out = Out::new(fd);
    let mut count = 0u64;
    let mut covered = 0u64;
    let mut header = [0u8; EHDR_SIZE];
    let header = file
        .read_exact(&mut header, 0)
        .ok()
        .and_then(|()| elf::parse_header(&header, arch::ELF_MACHINE).ok());
    if let Some(header) = header {
        let tables = View::new(
            file,
            header.e_shoff,
            header.e_shnum as u64 * perfmap::SHDR_SIZE as u64,
        );
        let symbols = tables
            .as_ref()
            .and_then(|t| perfmap::symbol_tables(t.bytes()));
        if let Some((symtab, strtab)) = symbols {
            if let (Some(syms), Some(strs)) = (
                View::new(file, symtab.offset, symtab.size),
                View::new(file, strtab.offset, strtab.size),
            ) {
                perfmap::functions_in(
                    syms.bytes(),
                    strs.bytes(),
                    bias,
                    moved,
                    |start, size, fname| {
                        covered += size;
                        let mut l = Line::new();
                        l.hex(start, 0)
                            .str(" ")
                            .hex(size, 0)
                            .str(" ")
                            .bytes(fname)
                            .str("\n");
                        out.line(&l);
                        count += 1;
                    },
                );
            }
        }
    }
    // A stripped program, or one whose few (dynamic) symbols cover less
    // than half of the moved code: one line per moved range too, naming the
    // file, so that no sample there is left without a name.
    let moved_bytes: u64 = moved.iter().map(|r| r.len()).sum();
    if count == 0 || covered < moved_bytes / 2 {
        for r in moved {
            let mut l = Line::new();
            l.hex(r.start, 0)
                .str(" ")
                .hex(r.len(), 0)
                .str(" [")
                .bytes(path)
                .str("]\n");
            out.line(&l);
        }
    }
    out.flush();
    sys::close(fd);
    report.say(|l| {
        l.str("perf map ")
            .bytes(name.as_bytes())
            .str(": ")
            .dec(count)
            .str(" functions");
    });
}
