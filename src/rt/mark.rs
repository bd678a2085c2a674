//! binfmt_misc set-up: `--mark`/`--unmark` set or clear the marker byte
//! (`e_ident[15] = 'H'`, in EI_PAD, which the kernel ignores) that the rule
//! printed by `--binfmt-rule` matches. Only executables are marked: glibc's
//! loader rejects a nonzero EI_PAD in objects it opens, and marking ld.so
//! or hugeload itself would make the rule loop.

use super::arch;
use super::boot::Boot;
use super::diag;
use super::file::{self, ElfFile};
use super::sys::{self, CPath, Errno};
use hugeload::elf::MARK_INDEX;
use hugeload::error::LoadError;
use linux_raw_sys::general::{O_CLOEXEC, O_RDWR};

/// The marker byte.
pub const MARK: u8 = b'H';

/// Why a file is not marked.
enum Refusal {
    Load(LoadError),
    SharedLibrary,
    Itself,
}

pub fn main(boot: &Boot, first: usize, mark: bool) -> ! {
    if first >= boot.argc {
        let mut l = diag::line();
        l.str(if mark { "--mark" } else { "--unmark" })
            .str(" needs at least one FILE");
        diag::emit(&mut l);
        sys::exit(2);
    }
    let mut status = 0;
    for path in boot.args_from(first) {
        if let Err(refusal) = set_mark(path, mark) {
            let mut l = diag::line();
            l.bytes(path).str(": ");
            match refusal {
                Refusal::Load(e) => l.str(e.message()),
                Refusal::SharedLibrary => l.str(
                    "not marked: a shared library or program interpreter (glibc rejects marked libraries)",
                ),
                Refusal::Itself => l.str("not marked: this is hugeload itself (the binfmt_misc rule would loop)"),
            };
            diag::emit(&mut l);
            status = 1;
        }
    }
    sys::exit(status)
}

fn set_mark(path: &[u8], mark: bool) -> Result<(), Refusal> {
    let load = |e: LoadError| Refusal::Load(e);
    let cpath = CPath::from_parts(&[path]).ok_or(load(Errno::ENAMETOOLONG.into()))?;
    // Check what the file is through a read-only descriptor first: a
    // running program (hugeload itself, say) cannot be opened for writing.
    let elf = ElfFile::open(path).map_err(load)?;
    let checked = check_markable(&elf, mark);
    elf.file.close();
    checked?;
    let fd = sys::open(&cpath, O_RDWR | O_CLOEXEC).map_err(|e| load(e.into()))?;
    let byte = [if mark { MARK } else { 0 }];
    let written = sys::pwrite(fd, &byte, MARK_INDEX as u64).map_err(|e| load(e.into()));
    sys::close(fd);
    written
}

fn check_markable(elf: &ElfFile, mark: bool) -> Result<(), Refusal> {
    if !mark {
        return Ok(());
    }
    if elf.image.is_dyn() {
        let linking = elf.linking();
        let is_program = linking.pie_flag || (elf.image.interp.is_some() && !linking.has_soname);
        if !is_program {
            return Err(Refusal::SharedLibrary);
        }
    }
    if file::own_id() == Some(elf.file.id) {
        return Err(Refusal::Itself);
    }
    Ok(())
}

/// Prints the registration line for `/etc/binfmt.d/hugeload.conf`: ELF64,
/// little-endian, this machine (`arch::BINFMT_MAGIC`), marker byte 'H'; flags P (keep argv[0]), O (pass
/// the binary as AT_EXECFD, so execute-only files work), F (open hugeload
/// now, so containers and chroots see it).
pub fn print_rule() -> ! {
    let mut buf = [0u8; 4096];
    let n = sys::readlink(b"/proc/self/exe", &mut buf).unwrap_or(0);
    let mut l = hugeload::fmt::Line::new();
    l.str(":hugeload:M::");
    l.str(arch::BINFMT_MAGIC).str(":");
    l.str(arch::BINFMT_MASK).str(":");
    l.bytes(&buf[..n]).str(":POF\n");
    sys::write_all(1, l.as_bytes());
    sys::exit(0)
}
