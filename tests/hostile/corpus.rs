//! The committed corpus of malformed files (tests/corpus/, written by
//! make.py).

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

/// Every file of tests/corpus/, directly and through hugeload.
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
    let (mut tally, mut failures, mut lines) = (Tally::default(), Vec::new(), Vec::new());
    for f in &files {
        let path = instantiate(f, &scratch);
        match try_file(&path, &scratch, &mut tally).result() {
            Ok(l) => lines.push(l),
            Err(e) => failures.push(e),
        }
    }
    // The controls must run.
    for control in ["good-static.bad", "script-ok.bad"] {
        assert!(
            !failures.iter().any(|f| f.contains(control)),
            "control {control} failed"
        );
    }
    finish("corpus", &tally, &failures, &lines);
}
