//! Buffered output for reports larger than one line, and what hugeload says
//! when its standard output cannot be written (`hugeload: write error: No
//! space left on device`, exit 1, as GNU tools) or its command line makes
//! no sense (exit 125, as `env`).

use super::diag;
use super::sys::{self, Errno};
use hugeload::fmt::Line;

/// Standard output.
pub const STDOUT: sys::Fd = 1;

/// The exit status of a command line that makes no sense (as `env`, `nice`
/// and `timeout` give).
pub use hugeload::options::USAGE_STATUS;

/// A buffered writer to a file descriptor. The first write error is kept
/// (later output is dropped) until [`Out::finish`] returns it.
pub struct Out {
    fd: sys::Fd,
    buf: [u8; 16384],
    len: usize,
    error: Option<Errno>,
}

impl Out {
    pub fn new(fd: sys::Fd) -> Out {
        Out {
            fd,
            buf: [0; 16384],
            len: 0,
            error: None,
        }
    }

    pub fn put(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
    }
    pub fn line(&mut self, l: &Line) {
        self.put(l.as_bytes());
    }
    /// Writes what is buffered; a failure is kept for [`Out::finish`] and
    /// [`Out::error`].
    pub fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = sys::write_all_checked(self.fd, &self.buf[..self.len]) {
                self.error = Some(e);
            }
        }
        self.len = 0;
    }
    /// The first write error so far.
    pub fn error(&self) -> Option<Errno> {
        self.error
    }
    /// Flushes; the first write error, if any write failed.
    pub fn finish(&mut self) -> Result<(), Errno> {
        self.flush();
        self.error.map_or(Ok(()), Err)
    }
    /// Flushes standard output; on a write error, says so and exits 1
    /// ([`stdout_failed`]).
    pub fn finish_stdout(&mut self) {
        if let Err(e) = self.finish() {
            stdout_failed(e)
        }
    }
}

/// strerror's text for the errors writes meet that `Errno::message` does
/// not name.
fn write_error_text(e: Errno) -> Option<&'static str> {
    Some(match e.0 {
        28 => "No space left on device",
        32 => "Broken pipe",
        30 => "Read-only file system",
        122 => "Disk quota exceeded",
        11 => "Resource temporarily unavailable",
        _ => return None,
    })
}

/// Appends strerror's text for `e` to `l`.
pub fn put_errno(l: &mut Line, e: Errno) {
    match write_error_text(e) {
        Some(text) => l.str(text),
        None if e.message() == "Unexpected error" => l.str("Unknown error ").dec(e.0 as u64),
        None => l.str(e.message()),
    };
}

/// `hugeload: write error: REASON` on stderr, then exit 1: standard output
/// could not be written (a full disk, a closed descriptor).
pub fn stdout_failed(e: Errno) -> ! {
    let mut l = diag::line();
    l.str("write error: ");
    put_errno(&mut l, e);
    diag::emit(&mut l);
    sys::exit(1)
}

/// Writes `bytes` to standard output and exits 0, or, if they cannot be
/// written, says so ([`stdout_failed`]) and exits 1. For `--help`,
/// `--version` and other one-shot output.
#[allow(dead_code)] // for the launcher's --help and --version
pub fn print_or_fail(bytes: &[u8]) -> ! {
    match sys::write_all_checked(STDOUT, bytes) {
        Ok(()) => sys::exit(0),
        Err(e) => stdout_failed(e),
    }
}

/// A command line that makes no sense: `hugeload: ` and what `say` writes,
/// then `Try 'hugeload --help' for more information.`, exit 125.
pub fn usage_error(say: impl FnOnce(&mut Line)) -> ! {
    let mut l = diag::line();
    say(&mut l);
    diag::emit(&mut l);
    sys::write_all(2, b"Try 'hugeload --help' for more information.\n");
    sys::exit(USAGE_STATUS)
}

/// Appends `arg` quoted as GNU tools quote an operand in a message:
/// `'arg'` (a `'` inside as `'\''`).
pub fn put_quoted(l: &mut Line, arg: &[u8]) {
    l.str("'");
    for part in arg.split_inclusive(|&b| b == b'\'') {
        match part.strip_suffix(b"'") {
            Some(head) => l.bytes(head).str("'\\''"),
            None => l.bytes(part),
        };
    }
    l.str("'");
}
