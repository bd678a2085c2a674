//! `hugeload --stat [--json] PID...`: how much of a running process's code
//! (program and shared libraries, whoever loaded it) sits on 2 MiB pages,
//! from `/proc/PID/smaps`, under a header naming the command
//! (`/proc/PID/comm`); a kernel thread or a zombie, which maps nothing,
//! gets one line saying so. Arguments are checked before anything is
//! printed (a usage error exits 125); an unreadable smaps names the file
//! (exit 1); output that cannot be written is said (exit 1).

use super::boot::Boot;
use super::diag;
use super::out::{self, Out};
use super::sys::{self, CPath};
use hugeload::fmt::Line;
use hugeload::procstat::{self, Empty};
use hugeload::smaps::{self, Code, Totals};

/// No such process (not among `Errno`'s names).
const ESRCH: sys::Errno = sys::Errno(3);

/// The largest smaps file read.
const SMAPS_MAX: usize = 256 << 20;

/// `json`: `--json` came before `--stat`; it may also come anywhere among
/// the arguments after it, up to `--`. Every other argument is a process
/// ID; one that is not is a usage error (exit 125) before anything is
/// printed.
pub fn main(boot: &Boot, first: usize, json: bool) -> ! {
    let mut json = json;
    let mut count = 0;
    for arg in pid_args(boot, first, &mut json) {
        if procstat::parse_pid(arg).is_none() {
            out::usage_error(|l| {
                if arg.starts_with(b"--") {
                    l.str("--stat: unknown option: ");
                } else {
                    l.str("--stat: not a process ID: ");
                }
                out::put_quoted(l, arg);
            });
        }
        count += 1;
    }
    if count == 0 {
        out::usage_error(|l| {
            l.str("--stat: needs at least one process ID");
        });
    }
    let Ok(mut scratch) = sys::Scratch::new(SMAPS_MAX) else {
        diag::fail(b"--stat", sys::Errno::ENOMEM.into());
    };
    let buf = scratch.bytes_mut();
    let mut out = Out::new(out::STDOUT);
    let mut status = 0;
    // `json` is settled: the first pass saw every `--json`.
    for arg in pid_args(boot, first, &mut false) {
        let pid = procstat::parse_pid(arg).unwrap_or(0);
        let process = Process::read(pid, buf);
        match process {
            Ok(p) => {
                if json {
                    print_json(&mut out, &p);
                } else {
                    print_text(&mut out, &p);
                }
            }
            Err(e) => {
                out.flush();
                let mut l = diag::line();
                match e {
                    sys::Errno::ENOENT | ESRCH => {
                        l.dec(pid as u64).str(": No such process");
                    }
                    e => {
                        l.str("/proc/").dec(pid as u64).str("/smaps: ");
                        out::put_errno(&mut l, e);
                    }
                }
                diag::emit(&mut l);
                status = 1;
            }
        }
        if out.error().is_some() {
            break;
        }
    }
    out.finish_stdout();
    sys::exit(status)
}

/// The process-ID arguments from `first` on: `--json` (which sets `json`)
/// is left out, and `--` ends the options.
fn pid_args<'b>(
    boot: &'b Boot,
    first: usize,
    json: &'b mut bool,
) -> impl Iterator<Item = &'b [u8]> + 'b {
    let mut options = true;
    boot.args_from(first).filter(move |arg| {
        if options && *arg == b"--" {
            options = false;
            return false;
        }
        if options && *arg == b"--json" {
            *json = true;
            return false;
        }
        true
    })
}

/// What `--stat` read of one process.
struct Process<'b> {
    pid: u32,
    /// `/proc/PID/comm`, without its newline; empty if unreadable.
    comm: Name,
    smaps: &'b [u8],
    /// Why nothing is mapped, when nothing is.
    empty: Option<Empty>,
}

/// A short name (`comm` is at most 15 bytes; 64 leaves room).
struct Name {
    buf: [u8; 64],
    len: usize,
}

impl Name {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<'b> Process<'b> {
    fn read(pid: u32, buf: &'b mut [u8]) -> Result<Process<'b>, sys::Errno> {
        let mut path = Line::new();
        path.str("/proc/").dec(pid as u64).str("/smaps");
        let cpath = CPath::from_parts(&[path.as_bytes()]).ok_or(sys::Errno::EINVAL)?;
        let n = sys::read_file(&cpath, buf)?;
        let smaps = &buf[..n];
        let mut comm = Name {
            buf: [0; 64],
            len: 0,
        };
        let mut path = Line::new();
        path.str("/proc/").dec(pid as u64).str("/comm");
        if let Some(text) = sys::read_small(path.as_bytes(), &mut comm.buf) {
            comm.len = text.strip_suffix(b"\n").unwrap_or(text).len();
        }
        let mut any = false;
        smaps::parse(smaps, |_| any = true);
        let empty = (!any).then(|| {
            let mut path = Line::new();
            path.str("/proc/").dec(pid as u64).str("/stat");
            let mut stat = [0u8; 1024];
            sys::read_small(path.as_bytes(), &mut stat).map_or(Empty::Other, procstat::why_empty)
        });
        Ok(Process {
            pid,
            comm,
            smaps,
            empty,
        })
    }
}

/// `pid N COMMAND`, a line per code mapping, and the totals; for a
/// process with nothing mapped, one line saying why.
fn print_text(out: &mut Out, p: &Process) {
    let mut l = Line::new();
    l.str("pid ").dec(p.pid as u64);
    if let Some(empty) = p.empty {
        l.str(" ");
        match empty {
            Empty::KernelThread => l
                .str("[")
                .bytes(p.comm.as_bytes())
                .str("]: a kernel thread, no code mapped\n"),
            Empty::Zombie => l
                .bytes(p.comm.as_bytes())
                .str(": a zombie (it has exited), no code mapped\n"),
            Empty::Other => l.bytes(p.comm.as_bytes()).str(": no code mapped\n"),
        };
        out.line(&l);
        return;
    }
    if p.comm.len > 0 {
        l.str(" ").bytes(p.comm.as_bytes());
    }
    l.str("\n");
    out.line(&l);
    let totals = smaps::code(p.smaps, |c: &Code| {
        let m = &c.mapping;
        let mut l = Line::new();
        l.str("  ")
            .hex(m.start, 12)
            .str("-")
            .hex(m.end, 12)
            .str(" ")
            .bytes(&m.perms)
            .str(" huge ");
        l.dec(m.huge_bytes().min(m.len()))
            .str(" small ")
            .dec(m.len().saturating_sub(m.huge_bytes()));
        l.str(" ").str(c.backend()).str(" ").bytes(c.file);
        if c.is_copy {
            l.str(" (copy in ")
                .bytes(if m.name.is_empty() {
                    b"anonymous memory"
                } else {
                    m.name
                })
                .str(")");
        }
        l.str("\n");
        out.line(&l);
    });
    let mut l = Line::new();
    l.str("  total text ")
        .dec(totals.text_bytes)
        .str(" bytes, on huge pages ")
        .dec(totals.huge_bytes);
    l.str(" bytes (")
        .percent(totals.huge_bytes, totals.text_bytes)
        .str("), huge pages ");
    l.dec(totals.huge_pages)
        .str(" of at most ")
        .dec(totals.least_pages)
        .str(" possible");
    l.str(" (")
        .dec(totals.cache_pages)
        .str(" from the page cache, ")
        .dec(totals.huge_pages.saturating_sub(totals.cache_pages))
        .str(" copies)");
    if totals.other_bytes > 0 {
        l.str("; ")
            .dec(totals.other_bytes)
            .str(" bytes of anonymous code (JIT) not counted");
    }
    l.str("\n");
    out.line(&l);
}

fn json_string(out: &mut Out, s: &[u8]) {
    out.put(b"\"");
    hugeload::fmt::json_escape(s, |b| out.put(b));
    out.put(b"\"");
}

fn json_number(out: &mut Out, key: &str, value: u64) {
    let mut l = Line::new();
    l.str("\"").str(key).str("\":").dec(value);
    out.line(&l);
}

/// A string, or `null` when empty.
fn json_string_or_null(out: &mut Out, s: &[u8]) {
    if s.is_empty() {
        out.put(b"null");
    } else {
        json_string(out, s);
    }
}

/// One object a process: `pid`, `command` (null if unknown),
/// `kernel_thread`, `zombie`, `mappings` (each with `name` and `backend`
/// null when there is none) and the totals.
fn print_json(out: &mut Out, p: &Process) {
    let mut l = Line::new();
    l.str("{\"pid\":").dec(p.pid as u64).str(",\"command\":");
    out.line(&l);
    json_string_or_null(out, p.comm.as_bytes());
    out.put(b",\"kernel_thread\":");
    out.put(bool_text(p.empty == Some(Empty::KernelThread)));
    out.put(b",\"zombie\":");
    out.put(bool_text(p.empty == Some(Empty::Zombie)));
    out.put(b",\"mappings\":[");
    let mut first = true;
    let totals: Totals = smaps::code(p.smaps, |c: &Code| {
        let m = &c.mapping;
        if !first {
            out.put(b",");
        }
        first = false;
        out.put(b"{");
        json_number(out, "start", m.start);
        out.put(b",");
        json_number(out, "end", m.end);
        out.put(b",\"perms\":");
        json_string(out, &m.perms);
        out.put(b",\"file\":");
        json_string(out, c.file);
        out.put(b",\"name\":");
        json_string_or_null(out, m.name);
        out.put(b",");
        json_number(out, "huge_bytes", m.huge_bytes().min(m.len()));
        out.put(b",");
        json_number(out, "small_bytes", m.len().saturating_sub(m.huge_bytes()));
        out.put(b",\"backend\":");
        match c.backend() {
            "-" => out.put(b"null"),
            backend => json_string(out, backend.as_bytes()),
        }
        out.put(b"}");
    });
    out.put(b"],");
    json_number(out, "text_bytes", totals.text_bytes);
    out.put(b",");
    json_number(out, "huge_bytes", totals.huge_bytes);
    out.put(b",");
    json_number(out, "huge_pages", totals.huge_pages);
    out.put(b",");
    json_number(out, "least_pages", totals.least_pages);
    out.put(b",");
    json_number(out, "pagecache_pages", totals.cache_pages);
    out.put(b",");
    json_number(
        out,
        "copied_pages",
        totals.huge_pages.saturating_sub(totals.cache_pages),
    );
    out.put(b",");
    json_number(out, "other_code_bytes", totals.other_bytes);
    out.put(b"}\n");
}

fn bool_text(b: bool) -> &'static [u8] {
    if b { b"true" } else { b"false" }
}
