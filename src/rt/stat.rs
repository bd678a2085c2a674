//! `hugeload --stat [--json] PID...`: how much of a running process's code
//! (program and shared libraries, whoever loaded it) sits on 2 MiB pages,
//! from `/proc/PID/smaps`.

use super::boot::Boot;
use super::diag;
use super::out::Out;
use super::sys::{self, CPath};
use hugeload::fmt::Line;
use hugeload::smaps::{self, Code, Totals};

/// The largest smaps file read.
const SMAPS_MAX: usize = 256 << 20;

pub fn main(boot: &Boot, first: usize) -> ! {
    let json = boot.args_from(first).any(|a| a == b"--json");
    let mut pids = boot.args_from(first).filter(|a| *a != b"--json").peekable();
    if pids.peek().is_none() {
        let mut l = diag::line();
        l.str("--stat needs at least one PID");
        diag::emit(&mut l);
        sys::exit(2);
    }
    let Ok(mut scratch) = sys::Scratch::new(SMAPS_MAX) else {
        diag::fail(b"--stat", sys::Errno::ENOMEM.into());
    };
    let buf = scratch.bytes_mut();
    let mut out = Out::new(1);
    let mut status = 0;
    for pid in pids {
        match read_smaps(pid, buf) {
            Ok(n) => {
                if json {
                    print_json(&mut out, pid, &buf[..n]);
                } else {
                    print_text(&mut out, pid, &buf[..n]);
                }
            }
            Err(e) => {
                out.flush();
                let mut l = diag::line();
                l.bytes(pid).str(": ").str(match e {
                    sys::Errno::ENOENT => "No such process",
                    _ => e.message(),
                });
                diag::emit(&mut l);
                status = 1;
            }
        }
    }
    out.flush();
    sys::exit(status)
}

fn read_smaps(pid: &[u8], buf: &mut [u8]) -> Result<usize, sys::Errno> {
    if pid.is_empty() || !pid.iter().all(u8::is_ascii_digit) {
        return Err(sys::Errno::ENOENT);
    }
    let path = CPath::from_parts(&[b"/proc/", pid, b"/smaps"]).ok_or(sys::Errno::EINVAL)?;
    sys::read_file(&path, buf)
}

fn print_text(out: &mut Out, pid: &[u8], text: &[u8]) {
    let mut l = Line::new();
    l.str("pid ").bytes(pid).str("\n");
    out.line(&l);
    let totals = smaps::code(text, |c: &Code| {
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
        .str(" of least possible ")
        .dec(totals.least_pages);
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

fn print_json(out: &mut Out, pid: &[u8], text: &[u8]) {
    out.put(b"{\"pid\":");
    out.put(pid);
    out.put(b",\"mappings\":[");
    let mut first = true;
    let totals: Totals = smaps::code(text, |c: &Code| {
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
        json_string(out, m.name);
        out.put(b",");
        json_number(out, "huge_bytes", m.huge_bytes().min(m.len()));
        out.put(b",");
        json_number(out, "small_bytes", m.len().saturating_sub(m.huge_bytes()));
        out.put(b",\"backend\":");
        json_string(out, c.backend().as_bytes());
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
