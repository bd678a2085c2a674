//! Seeded mutations of the corpus's good program, and a big program
//! truncated while hugeload loads it.

use crate::common::*;
use crate::corpus::corpus_dir;
use crate::harness::*;
use crate::verdict::*;
use std::fs;
use std::thread;
use std::time::Duration;

const SIGBUS: i32 = 7;
const SIGSEGV: i32 = 11;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The 8-byte fields of the ELF header and the two program headers.
const WIDE_FIELDS: &[usize] = &[
    24, 32, 40, // e_entry, e_phoff, e_shoff
    72, 80, 88, 96, 104, 112, // text p_offset..p_align
    128, 136, 144, 152, 160, 168, // data p_offset..p_align
];

/// Mutates `good` in 1-3 ways; says how.
fn mutate(rng: &mut Rng, good: &[u8]) -> (Vec<u8>, String) {
    let mut b = good.to_vec();
    let mut how = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let kind = rng.below(100);
        if kind < 55 {
            // A byte of the headers (ELF header + 2 program headers).
            let at = rng.below(176) as usize;
            let v = match rng.below(4) {
                0 => b[at] ^ (1 << rng.below(8)),
                1 => 0,
                2 => 0xff,
                _ => rng.below(256) as u8,
            };
            b[at] = v;
            how.push(format!("[{at}]={v:#x}"));
        } else if kind < 75 {
            let at = WIDE_FIELDS[rng.below(WIDE_FIELDS.len() as u64) as usize];
            let v: u64 = match rng.below(8) {
                0 => 0,
                1 => u64::MAX,
                2 => 1 << 47,
                3 => 0x1000,
                4 => 0x40_0000,
                5 => le64(&b, at).wrapping_add(0x1000),
                6 => le64(&b, at).wrapping_sub(1),
                _ => rng.next(),
            };
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            how.push(format!("u64[{at}]={v:#x}"));
        } else if kind < 85 {
            // The code.
            let at = 0x1000 + rng.below(41) as usize;
            let v = rng.below(256) as u8;
            b[at] = v;
            how.push(format!("[{at:#x}]={v:#x}"));
        } else if kind < 95 {
            let at = rng.below(b.len() as u64) as usize;
            let v = rng.below(256) as u8;
            b[at] = v;
            how.push(format!("[{at:#x}]={v:#x}"));
        } else {
            let len = rng.below(b.len() as u64 + 4096) as usize;
            b.resize(len, 0);
            how.push(format!("len={len}"));
        }
    }
    (b, how.join(" "))
}

/// 300 seeded mutations of tests/corpus/good-static.bad, with the corpus's
/// rules. Violating files are kept in the scratch directory.
#[test]
pub fn mutated_files_are_refused_or_run_like_the_kernel() {
    or_skip!(need_tool("strace"));
    const CASES: usize = 300;
    let scratch = scratch_dir("hostile-mutants");
    let good = fs::read(corpus_dir().join("good-static.bad")).unwrap();
    let mut rng = Rng(0x6875_6765_6c6f_6164);
    let (mut tally, mut failures, mut lines) = (Tally::default(), Vec::new(), Vec::new());
    for i in 0..CASES {
        let (bytes, how) = mutate(&mut rng, &good);
        let path = scratch.join(format!("mutant-{i:03}.bad"));
        fs::write(&path, &bytes).unwrap();
        set_mode(&path, 0o755);
        match try_file(&path, &scratch, &mut tally).result() {
            Ok(l) => {
                lines.push(format!("{l}\n    mutation: {how}"));
                let _ = fs::remove_file(&path);
            }
            Err(e) => failures.push(format!("{e}\n    mutation: {how}")),
        }
    }
    finish("mutants", &tally, &failures, &lines);
}

/// A big program whose file is truncated, at random moments and to random
/// sizes, while hugeload loads it, 30 times. Accepted:
/// - the program's own run (exit 0, the full output);
/// - a refusal: exit 126 whose last stderr line is `hugeload: PATH: reason`,
///   before any `total text` report line;
/// - SIGBUS after hugeload reported the load done (its `total text` line):
///   the program touched a file page beyond the new end of file. A direct
///   run cannot see its file shrink (the kernel denies writes to a running
///   executable: ETXTBSY), but gets the same SIGBUS when the file is shorter
///   than its segments at exec time (checked first).
///
/// hugeload itself never dies: a signal before the report line, or any
/// other signal, fails.
#[test]
pub fn file_truncated_while_loading() {
    let prog = or_skip!(fixture("view-64"));
    let _pool = pool_shared();
    let scratch = scratch_dir("hostile-truncate");
    let bytes = fs::read(&prog).unwrap();

    // The kernel runs a program whose file is shorter than its segments
    // into a signal: SIGBUS when it touches a page past the end of the file
    // (truncated-4096.bad), SIGSEGV when exec cannot zero the partial bss
    // page (this program cut in half).
    let short = corpus_dir().join("truncated-4096.bad");
    let d = run_limited(kernel_command(&short, &[]), Stdin::Null, FILE_LIMIT);
    assert_eq!(
        d.end,
        End::Signal(SIGBUS),
        "{}: {}",
        short.display(),
        d.short()
    );
    let half = scratch.join("half");
    fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    set_mode(&half, 0o755);
    let d = run_limited(kernel_command(&half, &["sum"]), Stdin::Null, FILE_LIMIT);
    assert!(
        matches!(d.end, End::Signal(SIGBUS | SIGSEGV)),
        "direct run of a program cut in half: {}",
        d.short()
    );

    let expected = run_limited(kernel_command(&prog, &["sum"]), Stdin::Null, FILE_LIMIT);
    assert_eq!(expected.end, End::Exit(0), "{}", expected.short());
    let victim = scratch.join("victim");
    let victim_str = victim.to_string_lossy().into_owned();
    let mut rng = Rng(0x7472_756e_6361_7465);
    let (mut ran, mut refused, mut sigbus) = (0, 0, 0);
    let mut failures = Vec::new();
    const ROUNDS: usize = 30;
    for round in 0..ROUNDS {
        fs::write(&victim, &bytes).unwrap();
        set_mode(&victim, 0o755);
        // One round in four truncates before hugeload starts, the others
        // while it loads or runs (a load of this program takes tens of ms).
        let delay = Duration::from_micros(rng.below(150_000));
        let cut = rng.below(bytes.len() as u64);
        let file = fs::OpenOptions::new().write(true).open(&victim).unwrap();
        let before = round % 4 == 0;
        if before {
            file.set_len(cut).unwrap();
        }
        let truncator = thread::spawn(move || {
            if !before {
                thread::sleep(delay);
                file.set_len(cut).unwrap();
            }
        });
        let h = run_limited(hl(&["-v"], &victim, &["sum"]), Stdin::Null, FILE_LIMIT);
        truncator.join().unwrap();
        let delay = if before { Duration::ZERO } else { delay };
        let stderr = h.stderr_str();
        let loaded = stderr.contains("hugeload: total text ");
        // A file hugeload would not load (cut short) goes to the kernel,
        // which may run it into the same SIGBUS as a direct run.
        let handed = stderr.contains(": handed to the kernel (execve)");
        let last = stderr.lines().last().unwrap_or("");
        match h.end {
            End::Exit(0) if h.stdout == expected.stdout => ran += 1,
            End::Exit(126)
                if !loaded
                    && h.stdout.is_empty()
                    && last.starts_with(&format!("hugeload: {victim_str}: ")) =>
            {
                refused += 1
            }
            End::Signal(SIGBUS) if loaded => sigbus += 1,
            End::Signal(SIGBUS | SIGSEGV) if handed && !loaded => sigbus += 1,
            _ => failures.push(format!(
                "round {round}, truncated to {cut} bytes after {delay:?}: {}",
                h.short()
            )),
        }
    }
    note(&format!(
        "{ROUNDS} truncation rounds: ran {ran}, refused 126 {refused}, program SIGBUS {sigbus}, \
         failures {}",
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "`hugeload -v {victim_str} sum` while the file is truncated: {} of {ROUNDS} rounds \
         ended otherwise than the program's run, a one-line 126, or the program's SIGBUS (or SIGSEGV once handed to the kernel) \
         after the load (a signal with no `total text` line is hugeload's own death):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
