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

/// Why a load stopped, as the one line it prints and the shell's exit
/// status. Built where the names are known; printed once, by the mode.
pub struct Failure {
    line: Line,
    status: i32,
    /// What stopped the load.
    pub error: LoadError,
}

impl Failure {
    /// `hugeload: PATH: reason` (an empty PATH shows as `''`).
    pub fn new(path: &[u8], error: LoadError) -> Failure {
        let mut line = line();
        if path.is_empty() {
            line.str("''");
        }
        line.bytes(path).str(": ").str(error.message());
        Failure {
            line,
            status: error.exit_status(),
            error,
        }
    }

    /// `hugeload: PATH: WHAT: reason` (WHAT is the file inside PATH that
    /// failed: an interpreter).
    pub fn within(path: &[u8], what: &[u8], error: LoadError) -> Failure {
        let mut line = line();
        line.bytes(path)
            .str(": ")
            .bytes(what)
            .str(": ")
            .str(error.message());
        Failure {
            line,
            status: error.exit_status(),
            error,
        }
    }

    /// The reason, as printed.
    pub fn text(&self) -> &[u8] {
        &self.line.as_bytes()[b"hugeload: ".len()..]
    }

    /// Prints the line and exits with the status.
    pub fn exit(mut self) -> ! {
        emit(&mut self.line);
        sys::exit(self.status)
    }
}

/// `hugeload: PATH: reason`, then exit with the shell's status.
pub fn fail(path: &[u8], error: LoadError) -> ! {
    Failure::new(path, error).exit()
}

/// The verbose report: lines only when asked for (`-v` is level 1).
#[derive(Clone, Copy)]
pub struct Report {
    pub level: u8,
}

impl Report {
    /// Emits the line built by `f` if the report is on.
    pub fn say(&self, f: impl FnOnce(&mut Line)) {
        self.say_at(1, f);
    }

    /// Emits the line built by `f` from report level `level` on (`-vv`: 2).
    pub fn say_at(&self, level: u8, f: impl FnOnce(&mut Line)) {
        if self.level >= level {
            let mut l = line();
            f(&mut l);
            emit(&mut l);
        }
    }

    pub fn is_on(&self) -> bool {
        self.level > 0
    }
}
