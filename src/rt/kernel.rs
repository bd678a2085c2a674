//! Handing a program to the kernel: a file hugeload will not load itself
//! (32-bit, an executable stack, a layout it is stricter about than the
//! kernel) still runs, as `execve` runs it, in the launcher. If the kernel
//! refuses it too, hugeload's own reason is printed.

use super::boot::Boot;
use super::diag::{Failure, Report};
use super::sys::{self, CPath, Errno};
use hugeload::error::LoadError;

/// What a hand-over needs of the request: argv0, where the program's
/// arguments start in hugeload's argv, binfmt_misc's AT_EXECFD.
pub struct Args<'a> {
    pub argv0: &'a [u8],
    pub rest: usize,
    pub execfd: Option<sys::Fd>,
}

/// `execve(path, [argv0, ARGS...], environ)`; returns `refused` if the
/// kernel will not run it either.
pub fn hand_over(
    boot: &Boot,
    request: &Args,
    path: &CPath,
    refused: Failure,
    report: &Report,
) -> Failure {
    report.say(|l| {
        l.bytes(refused.text())
            .str(": handed to the kernel (execve), which loads it without huge pages");
    });
    // A spare word first, for the /bin/sh run below.
    let Some(mut v) = Vectors::new(boot, request, 1) else {
        return refused;
    };
    // SAFETY: `path` is NUL-terminated; `argv` and `envp` are NULL-ended
    // arrays of pointers to NUL-terminated strings that live in the
    // kernel's area of the stack, and `v` outlives the call.
    let r = unsafe { sys::execve(path, v.argv, v.envp) };
    // A file with neither an ELF header nor `#!`: as execvp and env do,
    // through /bin/sh, with argv [/bin/sh, PATH, ARGS...].
    if r == Err(Errno::ENOEXEC) && refused.error == LoadError::NotElfOrScript {
        const SH: &[u8] = b"/bin/sh\0";
        let Some(sh) = CPath::from_parts(&[&SH[..SH.len() - 1]]) else {
            return refused;
        };
        v.put(0, SH.as_ptr() as u64);
        v.put(1, path.as_bytes().as_ptr() as u64);
        // SAFETY: as above; argv[0] is a static string and argv[1] the
        // NUL-terminated `path`, alive across the call.
        let _ = unsafe { sys::execve(&sh, v.argv - 8, v.envp) };
    }
    refused
}

/// binfmt_misc mode: a marked program hugeload will not load itself (it
/// changed since it was marked: an executable stack, say) cannot go back to
/// the kernel by its path, which would hand it to hugeload again. So the
/// kernel gets a copy in memory with the marker cleared (a memfd, run with
/// execveat): the program runs as it would unmarked. Returns `refused` if
/// the file cannot be read (execute-only) or the kernel refuses the copy.
pub fn hand_over_unmarked(
    boot: &Boot,
    request: &Args,
    path: &CPath,
    refused: Failure,
    report: &Report,
) -> Failure {
    use linux_raw_sys::general::{MFD_CLOEXEC, O_CLOEXEC, O_RDONLY};
    let file = match request.execfd {
        Some(fd) => fd,
        None => match sys::open(path, O_RDONLY | O_CLOEXEC) {
            Ok(fd) => fd,
            Err(_) => return refused,
        },
    };
    let Some(name) = CPath::from_parts(&[b"hugeload:unmarked"]) else {
        return refused;
    };
    let Ok(copy) = sys::memfd_create(&name, MFD_CLOEXEC) else {
        return refused;
    };
    let size = sys::fstat(file).map(|st| st.st_size as u64).unwrap_or(0);
    let copied = sys::copy_all(file, copy, size).is_ok()
        && sys::pwrite(copy, &[0], hugeload::elf::MARK_INDEX as u64).is_ok();
    if !copied {
        sys::close(copy);
        return refused;
    }
    report.say(|l| {
        l.bytes(refused.text())
            .str(": handed to the kernel as an unmarked copy, which loads it without huge pages");
    });
    let Some(v) = Vectors::new(boot, request, 0) else {
        sys::close(copy);
        return refused;
    };
    // SAFETY: NULL-ended arrays of pointers to the kernel's NUL-terminated
    // strings, alive across the call.
    let _ = unsafe { sys::execveat_fd(copy, v.argv, v.envp) };
    sys::close(copy);
    refused
}

/// The argv and envp arrays of an execve, in a scratch buffer: `spare`
/// free words, then argv0 and the arguments hugeload got, NULL, the
/// environment, NULL. Every string is the kernel's, above the initial
/// stack pointer, NUL-terminated where it ends (argv0 may be the tail of
/// one).
struct Vectors {
    room: sys::Scratch,
    argv: usize,
    envp: usize,
}

impl Vectors {
    fn new(boot: &Boot, request: &Args, spare: usize) -> Option<Vectors> {
        let args = boot.args_from(request.rest);
        let argc = 1 + args.clone().count();
        let words = spare + argc + 1 + boot.envc + 1;
        let mut room = sys::Scratch::new(words * 8).ok()?;
        let base = room.bytes_mut().as_ptr() as usize;
        let mut v = Vectors {
            room,
            argv: base + 8 * spare,
            envp: base + 8 * (spare + argc + 1),
        };
        v.put(spare, request.argv0.as_ptr() as u64);
        for (i, a) in args.enumerate() {
            v.put(spare + 1 + i, a.as_ptr() as u64);
        }
        v.put(spare + argc, 0);
        for (i, e) in boot.env_ptrs().enumerate() {
            v.put(spare + argc + 1 + i, e);
        }
        v.put(spare + argc + 1 + boot.envc, 0);
        Some(v)
    }

    /// Word `i` of the buffer (the spare words come first).
    fn put(&mut self, i: usize, value: u64) {
        self.room.bytes_mut()[8 * i..8 * i + 8].copy_from_slice(&value.to_ne_bytes());
    }
}
