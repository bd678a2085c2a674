//! binfmt_misc set-up: `--mark`/`--unmark` set or clear the marker byte
//! (`e_ident[15] = 'H'`, in EI_PAD, which the kernel ignores) that the rule
//! printed by `--binfmt-rule` matches. Only executables hugeload loads
//! itself are marked: under the rule the kernel hands a marked file to
//! hugeload, which cannot hand it back, so a program it refuses (an
//! executable stack, a W+X segment, a 32-bit or otherwise invalid ELF)
//! would no longer run. glibc's loader rejects a nonzero EI_PAD in objects
//! it opens (libraries, ld.so), and marking hugeload itself (or a copy of
//! it) would make the rule loop.

use super::arch;
use super::boot::Boot;
use super::diag;
use super::file::{self, ElfFile, Head, OpenFile};
use super::out;
use super::sys::{self, CPath, Errno};
use hugeload::elf::{self, MARK_INDEX};
use hugeload::error::LoadError;
use hugeload::script;
use linux_raw_sys::general::{O_CLOEXEC, O_RDWR};

/// The marker byte.
pub const MARK: u8 = b'H';

/// EROFS (not among `Errno`'s names).
const EROFS: Errno = Errno(30);

/// Why a file is not marked (or unmarked).
enum Refusal {
    /// It cannot be opened or read: `PATH: reason`, as other tools say it.
    Os(Errno),
    /// Not an ELF file at all.
    NotElf,
    /// A `#!` script.
    Script,
    /// An ELF file hugeload would refuse to load.
    Unloadable(LoadError),
    SharedLibrary,
    Itself,
    /// The file may not be written.
    NotWritable(Errno),
}

pub fn main(boot: &Boot, first: usize, mark: bool) -> ! {
    let what = if mark { "--mark" } else { "--unmark" };
    let mut count = 0;
    for arg in file_args(boot, first) {
        if arg.len() > 1 && arg[0] == b'-' {
            out::usage_error(|l| {
                l.str(what).str(": unknown option: ");
                out::put_quoted(l, arg);
                l.str(" (put -- before a FILE that starts with -)");
            });
        }
        count += 1;
    }
    // Operands after `--` may start with `-`.
    count += operands_after_dashdash(boot, first);
    if count == 0 {
        out::usage_error(|l| {
            l.str(what).str(": needs at least one FILE");
        });
    }
    let mut status = 0;
    let mut options = true;
    for path in boot.args_from(first) {
        if options && path == b"--" {
            options = false;
            continue;
        }
        if let Err(refusal) = set_mark(path, mark) {
            say_refusal(path, mark, refusal);
            status = 1;
        }
    }
    sys::exit(status)
}

/// The arguments before `--`.
fn file_args(boot: &Boot, first: usize) -> impl Iterator<Item = &[u8]> {
    boot.args_from(first).take_while(|a| *a != b"--")
}

/// How many arguments follow the first `--`.
fn operands_after_dashdash(boot: &Boot, first: usize) -> usize {
    boot.args_from(first)
        .skip_while(|a| *a != b"--")
        .skip(1)
        .count()
}

fn say_refusal(path: &[u8], mark: bool, refusal: Refusal) {
    let not = if mark {
        "not marked: "
    } else {
        "not unmarked: "
    };
    let mut l = diag::line();
    l.bytes(path).str(": ");
    match refusal {
        Refusal::Os(e) => out::put_errno(&mut l, e),
        Refusal::NotElf => {
            l.str(not).str("not an ELF executable");
        }
        Refusal::Script => {
            l.str(not)
                .str("a #! script; mark its interpreter, or run it with hugeload");
        }
        Refusal::Unloadable(e) => {
            l.str(not)
                .str(unloadable_reason(e))
                .str("; hugeload would not load it (the binfmt_misc rule hands marked files to hugeload)");
        }
        Refusal::SharedLibrary => {
            l.str(not)
                .str("a shared library or program interpreter (glibc rejects marked libraries)");
        }
        Refusal::Itself => {
            l.str(not)
                .str("this is hugeload itself (the binfmt_misc rule would loop)");
        }
        Refusal::NotWritable(Errno::EACCES | Errno::EPERM) => {
            l.str(not)
                .str("no write permission (the marker is one byte in the file)");
        }
        Refusal::NotWritable(EROFS) => {
            l.str(not)
                .str("read-only file system (the marker is one byte in the file)");
        }
        Refusal::NotWritable(Errno::ETXTBSY) => {
            l.str(not)
                .str("Text file busy (it is running; mark a copy, then rename it over the file)");
        }
        Refusal::NotWritable(e) => {
            l.str(not);
            out::put_errno(&mut l, e);
        }
    }
    diag::emit(&mut l);
}

/// What hugeload refuses in a file, as the first half of `not marked:
/// REASON; hugeload would not load it`.
fn unloadable_reason(e: LoadError) -> &'static str {
    match e {
        LoadError::ExecutableStack => "it asks for an executable stack (PT_GNU_STACK with PF_X)",
        LoadError::WritableAndExecutable => "a segment is writable and executable",
        LoadError::Elf32 => "a 32-bit ELF",
        e => {
            let m = e.message();
            m.strip_prefix("cannot execute: ").unwrap_or(m)
        }
    }
}

fn set_mark(path: &[u8], mark: bool) -> Result<(), Refusal> {
    let cpath = CPath::from_parts(&[path]).ok_or(Refusal::Os(Errno::ENAMETOOLONG))?;
    // Check what the file is through a read-only descriptor first: a
    // running program (hugeload itself, say) cannot be opened for writing.
    let opened = OpenFile::open(&cpath).map_err(|e| match e {
        LoadError::Os(e) => Refusal::Os(e),
        e => Refusal::Unloadable(e),
    })?;
    let head = Head::read(&opened).inspect_err(|_| opened.close());
    let head = head.map_err(|e| match e {
        LoadError::Os(e) => Refusal::Os(e),
        e => Refusal::Unloadable(e),
    })?;
    let byte = if mark {
        let checked = check_markable(opened, &head);
        checked?;
        MARK
    } else {
        opened.close();
        if !elf::has_elf_magic(head.as_bytes()) {
            return Err(Refusal::NotElf);
        }
        if head.as_bytes().get(MARK_INDEX) != Some(&MARK) {
            return Ok(()); // not marked: nothing to write
        }
        0
    };
    let fd = sys::open(&cpath, O_RDWR | O_CLOEXEC).map_err(Refusal::NotWritable)?;
    let written = sys::pwrite(fd, &[byte], MARK_INDEX as u64).map_err(Refusal::NotWritable);
    sys::close(fd);
    written
}

/// Whether hugeload may mark the file (it takes it, and closes it): an
/// executable that hugeload itself loads, neither a library nor hugeload.
fn check_markable(opened: OpenFile, head: &Head) -> Result<(), Refusal> {
    if script::is_script(head.as_bytes()) {
        opened.close();
        return Err(Refusal::Script);
    }
    if !elf::has_elf_magic(head.as_bytes()) {
        opened.close();
        return Err(Refusal::NotElf);
    }
    let elf = ElfFile::parse(opened, head).map_err(|e| match e {
        LoadError::Os(e) => Refusal::Os(e),
        LoadError::NotElfOrScript => Refusal::NotElf,
        e => Refusal::Unloadable(e),
    })?;
    let checked = check_elf(&elf);
    elf.file.close();
    checked
}

fn check_elf(elf: &ElfFile) -> Result<(), Refusal> {
    if elf.image.is_dyn() {
        let linking = elf.linking();
        let is_program = linking.pie_flag || (elf.image.interp.is_some() && !linking.has_soname);
        if !is_program {
            return Err(Refusal::SharedLibrary);
        }
    }
    if file::own_id() == Some(elf.file.id) || file::is_copy_of_self(&elf.file) {
        return Err(Refusal::Itself);
    }
    // What the launcher would hand to the kernel, and binfmt_misc mode
    // refuses (load::check_program).
    if elf.image.exec_stack {
        return Err(Refusal::Unloadable(LoadError::ExecutableStack));
    }
    Ok(())
}

/// Prints the registration line for `/etc/binfmt.d/hugeload.conf`: ELF64,
/// little-endian, this machine (`arch::BINFMT_MAGIC`), marker byte 'H'; flags P (keep argv[0]), O (pass
/// the binary as AT_EXECFD, so execute-only files work), F (open hugeload
/// now, so containers and chroots see it). Written in one write, so that
/// it can go straight to binfmt_misc's `register`; a failure there (a rule
/// of that name already registered) or anywhere else is said, exit 1.
pub fn print_rule() -> ! {
    let mut buf = [0u8; 4096];
    let n = sys::readlink(b"/proc/self/exe", &mut buf).unwrap_or(0);
    let mut l = hugeload::fmt::Line::new();
    l.str(":hugeload:M::");
    l.str(arch::BINFMT_MAGIC).str(":");
    l.str(arch::BINFMT_MASK).str(":");
    l.bytes(&buf[..n]).str(":POF\n");
    match sys::write_all_checked(out::STDOUT, l.as_bytes()) {
        Ok(()) => sys::exit(0),
        Err(e) if sys::is_on_binfmt_misc(out::STDOUT) => register_failed(e),
        Err(e) => out::stdout_failed(e),
    }
}

/// `hugeload: .../register: File exists (a rule named hugeload is already
/// registered: ...)`, exit 1.
fn register_failed(e: Errno) -> ! {
    let mut at = [0u8; 4096];
    let n = sys::readlink(b"/proc/self/fd/1", &mut at).unwrap_or(0);
    let register: &[u8] = if n > 0 { &at[..n] } else { b"register" };
    let mut l = diag::line();
    l.bytes(register).str(": ");
    out::put_errno(&mut l, e);
    if e == Errno::EEXIST {
        let dir = register
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(&b""[..], |i| &register[..=i]);
        l.str(" (a rule named hugeload is already registered; `echo -1 > ")
            .bytes(dir)
            .str("hugeload` removes it)");
    }
    diag::emit(&mut l);
    sys::exit(1)
}
