//! The committed corpus of malformed files (tests/corpus/, written by
//! make.py), each with its expected verdict (tests/corpus/expected.tsv).

use crate::common::*;
use crate::verdict::*;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

pub fn corpus_dir() -> PathBuf {
    manifest_dir().join("tests/corpus")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The corpus file with `@SELF@` (its own path) and `@HUGELOAD@` put in: a
/// `#!` line is rewritten; a PT_INTERP string is rewritten with its
/// p_filesz/p_memsz set to the new length (NUL included), as make.py lays
/// it out. Files without a placeholder are used in place.
fn instantiate(src: &Path, dir: &Path) -> PathBuf {
    let bytes = fs::read(src).unwrap();
    let out = dir.join(src.file_name().unwrap());
    let hl_path = hugeload().to_string_lossy().into_owned();
    let self_path = out.to_string_lossy().into_owned();
    let value = |placeholder: &[u8]| -> &str {
        if placeholder == b"@SELF@" {
            &self_path
        } else {
            &hl_path
        }
    };
    let placeholders: [&[u8]; 2] = [b"@SELF@", b"@HUGELOAD@"];
    let Some(ph) = placeholders.into_iter().find(|p| find(&bytes, p).is_some()) else {
        return src.to_path_buf();
    };
    let new = if bytes.starts_with(b"#!") {
        let at = find(&bytes, ph).unwrap();
        [&bytes[..at], value(ph).as_bytes(), &bytes[at + ph.len()..]].concat()
    } else {
        let mut b = bytes.clone();
        let phoff = le64(&b, 32) as usize;
        let phnum = le16(&b, 56) as usize;
        let mut done = false;
        for i in 0..phnum {
            let h = phoff + i * 56;
            if le32(&b, h) != PT_INTERP {
                continue;
            }
            let off = le64(&b, h + 8) as usize;
            let filesz = le64(&b, h + 32) as usize;
            if find(&b[off..off + filesz], ph).is_none() {
                continue;
            }
            let mut s = value(ph).as_bytes().to_vec();
            s.push(0);
            assert!(
                off + s.len() <= 0x1000,
                "{}: the path does not fit before the text",
                src.display()
            );
            b[off..off + filesz].fill(0);
            b[off..off + s.len()].copy_from_slice(&s);
            let len = (s.len() as u64).to_le_bytes();
            b[h + 32..h + 40].copy_from_slice(&len);
            b[h + 40..h + 48].copy_from_slice(&len);
            done = true;
        }
        assert!(done, "{}: placeholder outside PT_INTERP", src.display());
        b
    };
    fs::write(&out, new).unwrap();
    set_mode(&out, 0o755);
    out
}

// ---------------------------------------------------------------------------
// The expected verdicts

/// One line of tests/corpus/expected.tsv.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    file: String,
    /// `126` or `127` (refused), `run` (runs as the kernel runs it), `hung`
    /// (hangs as the kernel's run does).
    hugeload: String,
    /// A fragment of hugeload's one-line reason (`hugeload: PATH: REASON`),
    /// `-` when it does not refuse the file.
    reason: String,
    /// The kernel's verdict: `exit N`, `signal NAME`, `errno NAME` (execve
    /// refused the file) or `hung`.
    kernel: String,
}

fn expected_table() -> Vec<Expected> {
    let path = corpus_dir().join("expected.tsv");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(
                f.len() == 4 && f.iter().all(|c| !c.is_empty()),
                "{}:{}: expected 4 tab-separated columns (file, hugeload, reason, kernel): {l:?}",
                path.display(),
                n + 1
            );
            Expected {
                file: f[0].to_string(),
                hugeload: f[1].to_string(),
                reason: f[2].to_string(),
                kernel: f[3].to_string(),
            }
        })
        .collect()
}

fn errno_name(e: i32) -> String {
    let name = match e {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        26 => "ETXTBSY",
        36 => "ENAMETOOLONG",
        40 => "ELOOP",
        80 => "ELIBBAD",
        _ => return e.to_string(),
    };
    name.to_string()
}

fn signal_name(s: i32) -> String {
    let name = match s {
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        _ => return s.to_string(),
    };
    name.to_string()
}

/// The kernel's verdict in the table's words.
fn kernel_verdict(end: End) -> String {
    match end {
        End::Exit(c) => format!("exit {c}"),
        End::Signal(s) => format!("signal {}", signal_name(s)),
        End::ExecError(e) => format!("errno {}", errno_name(e)),
        End::Hung => "hung".to_string(),
    }
}

/// hugeload's verdict in the table's words.
fn hugeload_verdict(t: &Tried) -> String {
    match &t.verdict {
        Ok(Verdict::Refused(code)) => code.to_string(),
        Ok(Verdict::RanLikeKernel) => "run".to_string(),
        Ok(Verdict::BothHung) => "hung".to_string(),
        Err(_) => format!("a violation ({})", t.hl.end),
    }
}

/// What differs between the table's line for a file and its runs.
fn differences(e: &Expected, t: &Tried) -> Vec<String> {
    let mut d = Vec::new();
    let kernel = kernel_verdict(t.direct.end);
    if kernel != e.kernel {
        d.push(format!(
            "the kernel: expected `{}`, got `{kernel}`",
            e.kernel
        ));
    }
    let hugeload = hugeload_verdict(t);
    if hugeload != e.hugeload {
        d.push(format!(
            "hugeload: expected `{}`, got `{hugeload}`",
            e.hugeload
        ));
    }
    let reason = refusal_reason(&t.hl, &t.path.to_string_lossy()).map(str::to_string);
    match (e.reason.as_str(), &reason) {
        ("-", None) => {}
        ("-", Some(r)) => d.push(format!("reason: expected none, got {r:?}")),
        (want, Some(r)) if r.contains(want) => {}
        (want, r) => d.push(format!(
            "reason: expected one containing {want:?}, got {r:?}"
        )),
    }
    d
}

/// Every file of tests/corpus/, directly and through hugeload: by the rules
/// (see tests/hostile.rs), and with the verdicts tests/corpus/expected.tsv
/// gives it (hugeload's status, a fragment of its reason, the kernel's
/// verdict). A failure names every file that differs.
#[test]
pub fn corpus_files_are_refused_or_run_like_the_kernel() {
    or_skip!(need_tool("strace"));
    let scratch = scratch_dir("hostile-corpus");
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some(OsStr::new("bad")))
        .collect();
    files.sort();
    assert!(files.len() >= 60, "corpus has {} files", files.len());
    let table = expected_table();
    let mut table_errors = Vec::new();
    for e in &table {
        if table.iter().filter(|x| x.file == e.file).count() > 1 {
            table_errors.push(format!("{}: more than one line in expected.tsv", e.file));
        }
        if !files
            .iter()
            .any(|f| f.file_name() == Some(OsStr::new(&e.file)))
        {
            table_errors.push(format!("{}: in expected.tsv, not in tests/corpus/", e.file));
        }
    }
    let (mut tally, mut failures, mut lines) = (Tally::default(), Vec::new(), Vec::new());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let path = instantiate(f, &scratch);
        let t = try_file(&path, &scratch, &mut tally);
        match t.result() {
            Ok(l) => lines.push(l),
            Err(e) => failures.push(e),
        }
        let row = format!(
            "{name}\t{}\t{}\t{}",
            hugeload_verdict(&t),
            refusal_reason(&t.hl, &t.path.to_string_lossy()).unwrap_or("-"),
            kernel_verdict(t.direct.end)
        );
        match table.iter().find(|e| e.file == name) {
            None => table_errors.push(format!(
                "{name}: no line in expected.tsv; this run would be:\n    {row}"
            )),
            Some(e) => {
                let d = differences(e, &t);
                if !d.is_empty() {
                    table_errors.push(format!(
                        "{name}: {}\n    expected: {}\t{}\t{}\t{}\n    this run: {row}\n    {}",
                        d.join("; "),
                        e.file,
                        e.hugeload,
                        e.reason,
                        e.kernel,
                        t.show().replace('\n', "\n    ")
                    ));
                }
            }
        }
    }
    // The controls must run.
    for control in ["good-static.bad", "script-ok.bad"] {
        assert!(
            !failures.iter().any(|f| f.contains(control)),
            "control {control} failed"
        );
    }
    assert!(
        table_errors.is_empty(),
        "{} corpus files differ from tests/corpus/expected.tsv:\n\n{}\n\n\
         {} files broke the rules:\n\n{}",
        table_errors.len(),
        table_errors.join("\n\n"),
        failures.len(),
        failures.join("\n\n")
    );
    finish("corpus", &tally, &failures, &lines);
}
