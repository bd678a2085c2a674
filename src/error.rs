//! Why a program cannot be loaded, as a small `Copy` value with a message
//! and the shell-style exit status a user expects.

use crate::errno::Errno;

/// Everything that stops hugeload from running a program. The message is the
/// `reason` of the one-line diagnostic `hugeload: PATH: reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// A system call failed with this errno while opening or reading a file.
    Os(Errno),
    /// PROGRAM has no `/` and no `PATH` entry holds it.
    CommandNotFound,
    NotElfOrScript,
    /// A file to prime is not an ELF file.
    NotElf,
    Elf32,
    BigEndian,
    ForeignMachine,
    BadVersion,
    NotExecutable,
    BadPhentsize,
    TooManyHeaders,
    HeadersOutsideFile,
    NoLoadSegments,
    TooManyLoadSegments,
    FileszOverMemsz,
    Misaligned,
    SegmentOutsideFile,
    SegmentOverflow,
    SegmentsUnsorted,
    SegmentsOverlap,
    WritableAndExecutable,
    ExecutableStack,
    BadInterpPath,
    InterpNotElf,
    NestedScriptTooDeep,
    ScriptNoInterpreter,
    ScriptLineTooLong,
    ImageTooLarge,
    EntryOutsideImage,
    AddressInUse,
    InterpOverlaps,
    ShortRead,
    /// The program's initial stack does not fit under RLIMIT_STACK.
    StackLimit,
}

impl From<Errno> for LoadError {
    fn from(e: Errno) -> LoadError {
        LoadError::Os(e)
    }
}

impl LoadError {
    /// The exit status a shell would give: 127 when the file is not there,
    /// 126 when it is there but cannot be run.
    pub fn exit_status(self) -> i32 {
        match self {
            LoadError::Os(Errno::ENOENT) | LoadError::CommandNotFound => 127,
            _ => 126,
        }
    }

    /// Whether the kernel may still run a file hugeload refused for this
    /// reason: a format or layout hugeload does not load itself (32-bit, an
    /// executable stack, W+X, a layout it finds stricter reasons to
    /// refuse), or hugeload ran out of file descriptors. Not for a file that
    /// is missing or may not be run.
    pub fn kernel_may_run(self) -> bool {
        // Out of file descriptors: the kernel needs none to execute a file.
        if matches!(self, LoadError::Os(Errno::EMFILE | Errno::ENFILE)) {
            return true;
        }
        !matches!(
            self,
            LoadError::Os(_)
                | LoadError::CommandNotFound
                | LoadError::NotElf
                | LoadError::StackLimit
        )
    }

    /// The reason, as the second half of `hugeload: PATH: reason`.
    pub fn message(self) -> &'static str {
        match self {
            LoadError::Os(errno) => errno.message(),
            LoadError::CommandNotFound => "command not found",
            LoadError::NotElfOrScript => "cannot execute: not an ELF executable or #! script",
            LoadError::NotElf => "not an ELF file",
            LoadError::Elf32 => "cannot execute: 32-bit ELF (hugeload loads 64-bit programs)",
            LoadError::BigEndian => "cannot execute: big-endian ELF",
            LoadError::ForeignMachine => "cannot execute: ELF for another machine architecture",
            LoadError::BadVersion => "cannot execute: unknown ELF version",
            LoadError::NotExecutable => {
                "cannot execute: not an executable (ELF type is not EXEC or DYN)"
            }
            LoadError::BadPhentsize => "cannot execute: bad program header size",
            LoadError::TooManyHeaders => "cannot execute: too many program headers",
            LoadError::HeadersOutsideFile => "cannot execute: program headers lie outside the file",
            LoadError::NoLoadSegments => "cannot execute: no loadable segment",
            LoadError::TooManyLoadSegments => "cannot execute: too many loadable segments",
            LoadError::FileszOverMemsz => "cannot execute: segment file size exceeds memory size",
            LoadError::Misaligned => "cannot execute: segment offset and address are not congruent",
            LoadError::SegmentOutsideFile => "cannot execute: segment lies outside the file",
            LoadError::SegmentOverflow => "cannot execute: segment lies outside the address space",
            LoadError::SegmentsUnsorted => "cannot execute: loadable segments are not sorted",
            LoadError::SegmentsOverlap => "cannot execute: loadable segments overlap",
            LoadError::WritableAndExecutable => {
                "cannot execute: a segment is writable and executable (hugeload never maps W+X)"
            }
            LoadError::ExecutableStack => {
                "cannot execute: the program asks for an executable stack (hugeload never maps W+X)"
            }
            LoadError::BadInterpPath => "cannot execute: malformed program interpreter path",
            LoadError::InterpNotElf => {
                "cannot execute: the program interpreter is not a usable ELF"
            }
            LoadError::NestedScriptTooDeep => "cannot execute: too many levels of #! interpreters",
            LoadError::ScriptNoInterpreter => "cannot execute: #! line names no interpreter",
            LoadError::ScriptLineTooLong => "cannot execute: #! line is too long",
            LoadError::ImageTooLarge => "cannot execute: image too large for the address space",
            LoadError::EntryOutsideImage => {
                "cannot execute: entry point lies outside the executable segments"
            }
            LoadError::AddressInUse => "cannot execute: the program's fixed addresses are in use",
            LoadError::InterpOverlaps => {
                "cannot execute: the interpreter's fixed addresses overlap the program's"
            }
            LoadError::ShortRead => "cannot execute: file is shorter than its headers say",
            LoadError::StackLimit => {
                "cannot execute: its arguments and environment do not fit the stack limit (ulimit -s)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_127_and_the_rest_126() {
        assert_eq!(LoadError::Os(Errno::ENOENT).exit_status(), 127);
        assert_eq!(LoadError::CommandNotFound.exit_status(), 127);
        assert_eq!(LoadError::Os(Errno::EACCES).exit_status(), 126);
        assert_eq!(LoadError::Elf32.exit_status(), 126);
        assert_eq!(LoadError::Os(Errno::EACCES).message(), "Permission denied");
    }
}
