//! What hugeload says: errors as one line `hugeload: PATH: reason`, and the
//! `--verbose` report.

use super::sys;
use hugeload::error::LoadError;
use hugeload::fmt::Line;

const STDERR: sys::Fd = 2;

/// Starts a line with `hugeload: `.
pub fn line() -> Line {
    let mut l = Line::new();
    l.str("hugeload: ");
    l
}

/// Writes `l` and a newline to stderr.
pub fn emit(l: &mut Line) {
    l.str("\n");
    sys::write_all(STDERR, l.as_bytes());
}

/// `hugeload: PATH: reason`, then exit with the shell's status.
pub fn fail(path: &[u8], error: LoadError) -> ! {
    let mut l = line();
    l.bytes(path).str(": ").str(error.message());
    emit(&mut l);
    sys::exit(error.exit_status())
}

/// `hugeload: PATH: WHAT: reason` (WHAT is the file inside PATH that
/// failed: an interpreter), then exit with the shell's status.
pub fn fail_in(path: &[u8], what: &[u8], error: LoadError) -> ! {
    let mut l = line();
    l.bytes(path)
        .str(": ")
        .bytes(what)
        .str(": ")
        .str(error.message());
    emit(&mut l);
    sys::exit(error.exit_status())
}

/// The verbose report: lines only when asked for.
#[derive(Clone, Copy)]
pub struct Report {
    pub on: bool,
}

impl Report {
    /// Emits the line built by `f` if the report is on.
    pub fn say(&self, f: impl FnOnce(&mut Line)) {
        if self.on {
            let mut l = line();
            f(&mut l);
            emit(&mut l);
        }
    }
}
