//! A running program's `/proc/PID/smaps`, and the checks of hugeload's
//! `-v` report against it.

use super::*;
use std::process::Command;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// smaps

/// An owned copy of one smaps mapping.
#[derive(Clone, Debug)]
pub struct Map {
    pub span: Span,
    pub perms: String,
    pub offset: u64,
    pub name: String,
    pub huge_bytes: u64,
    pub hugetlb_bytes: u64,
    pub anon_huge_bytes: u64,
    /// Bytes mapped with PMD entries from a file's page cache.
    pub file_pmd_bytes: u64,
    pub kernel_page_kb: u64,
}

impl Map {
    pub fn is_exec(&self) -> bool {
        self.perms.as_bytes()[2] == b'x'
    }
}

pub fn read_smaps(pid: u32) -> Result<Vec<Map>, std::io::Error> {
    Ok(parse_smaps(&fs::read(format!("/proc/{pid}/smaps"))?))
}

/// The mappings of an smaps text.
pub fn parse_smaps(text: &[u8]) -> Vec<Map> {
    let mut maps = Vec::new();
    hugeload::smaps::parse(text, |m: &hugeload::smaps::Mapping| {
        maps.push(Map {
            span: Span {
                start: m.start,
                end: m.end,
            },
            perms: String::from_utf8_lossy(&m.perms).into_owned(),
            offset: m.offset,
            name: String::from_utf8_lossy(m.name).into_owned(),
            huge_bytes: m.huge_bytes(),
            hugetlb_bytes: m.hugetlb_kb * 1024,
            anon_huge_bytes: m.anon_huge_kb * 1024,
            file_pmd_bytes: m.file_pmd_kb * 1024,
            kernel_page_kb: m.kernel_page_kb,
        })
    });
    maps
}

/// Bytes PMD-mapped from a file's page cache in the executable mappings
/// within `span` (a mapping that reaches outside counts for at most its
/// overlap).
pub fn file_pmd_bytes_in(maps: &[Map], span: &Span) -> u64 {
    maps.iter()
        .filter(|m| m.is_exec() && m.span.start < span.end && span.start < m.span.end)
        .map(|m| {
            let overlap = m.span.end.min(span.end) - m.span.start.max(span.start);
            m.file_pmd_bytes.min(overlap)
        })
        .sum()
}

/// Bytes on 2 MiB pages of the executable mappings within `span`; a mapping
/// that reaches outside counts for at most its overlap. `(all, hugetlb)`.
pub fn huge_bytes_in(maps: &[Map], span: &Span) -> (u64, u64) {
    maps.iter()
        .filter(|m| m.is_exec())
        .map(|m| {
            let overlap = m.span.overlap(span);
            (m.huge_bytes.min(overlap), m.hugetlb_bytes.min(overlap))
        })
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
}

/// Bytes of `span` covered by executable mappings.
pub fn exec_bytes_in(maps: &[Map], span: &Span) -> u64 {
    maps.iter()
        .filter(|m| m.is_exec())
        .map(|m| m.span.overlap(span))
        .sum()
}

/// The load bias of `program` in a process, from the mappings of the file
/// that are still file-backed (the writable segment always is): the bias
/// under which the most of them sit where their file offset says. `None`
/// if no mapping or two biases explain equally many.
pub fn bias_from_maps(maps: &[Map], program: &Path, elf: &ElfInfo) -> Option<u64> {
    if !elf.is_pie() {
        return Some(0);
    }
    let name = fs::canonicalize(program).ok()?;
    let name = name.to_string_lossy();
    let files: Vec<&Map> = maps.iter().filter(|m| m.name == name).collect();
    // Every bias under which some mapping lies inside some segment's pages.
    let fits = |m: &Map, p: &Phdr| -> Option<u64> {
        let file_start = page_down(p.p_offset);
        let file_end = page_up(p.p_offset + p.p_filesz);
        if m.offset < file_start || m.offset + m.span.len() > file_end {
            return None;
        }
        let vaddr = page_down(p.p_vaddr) + (m.offset - file_start);
        m.span.start.checked_sub(vaddr)
    };
    let mut candidates: Vec<u64> = files
        .iter()
        .flat_map(|m| elf.loads().filter_map(|p| fits(m, p)))
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    let explained = |bias: u64| {
        files
            .iter()
            .filter(|m| elf.loads().any(|p| fits(m, p) == Some(bias)))
            .count()
    };
    let mut scored: Vec<(usize, u64)> = candidates.iter().map(|&b| (explained(b), b)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    match scored.as_slice() {
        [] => None,
        [(n, _), (m, _), ..] if n == m => None,
        [(_, b), ..] => Some(*b),
    }
}

// ---------------------------------------------------------------------------
// Inspecting a running program

/// How to know that the program has finished loading and is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// The program prints a line `ready` on stdout (fixtures' `--wait`).
    Line,
    /// The program's file is mapped and its main thread is blocked reading
    /// fd 0 (real programs: one that reads stdin, or any dynamically linked
    /// one held by [`hold_at_start`]).
    StdinRead,
}

/// One reported huge range and what smaps says about it.
#[derive(Clone, Debug)]
pub struct RangeCheck {
    pub line: HugeLine,
    /// Bytes on 2 MiB pages (any kind) of executable mappings in the range.
    pub huge_bytes: u64,
    /// Of those, hugetlb bytes.
    pub hugetlb_bytes: u64,
    /// Of those, bytes PMD-mapped from the file's page cache.
    pub file_pmd_bytes: u64,
    /// Bytes of the range covered by executable mappings.
    pub exec_bytes: u64,
}

/// What [`inspect`] saw.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub what: String,
    pub run: Run,
    pub report: Report,
    pub maps: Vec<Map>,
    pub elf: ElfInfo,
    pub bias: u64,
    /// The program's text spans at its bias.
    pub text: Vec<Span>,
    pub ranges: Vec<RangeCheck>,
    /// 2 MiB-backed bytes of executable mappings in the blocks the text
    /// touches.
    pub text_huge_bytes: u64,
    /// Of those, hugetlb bytes.
    pub text_hugetlb_bytes: u64,
}

impl Inspection {
    pub fn stderr(&self) -> String {
        self.run.stderr_str()
    }

    /// The reported huge ranges that lie in blocks the main program's text
    /// touches (hugeload may report ranges of the interpreter too).
    pub fn text_ranges(&self) -> impl Iterator<Item = &RangeCheck> {
        let blocks = self.elf.touched_blocks(self.bias);
        self.ranges.iter().filter(move |r| {
            blocks
                .iter()
                .any(|&b| r.line.range.start <= b && b < r.line.range.end)
        })
    }

    /// A readable dump for failure messages.
    pub fn dump(&self) -> String {
        let mut s = format!(
            "command: {}\nbias: {:x}\ntext spans: {:?}\nstderr:\n{}\nexecutable mappings:\n",
            self.what,
            self.bias,
            self.text.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            self.stderr()
        );
        for m in self.maps.iter().filter(|m| m.is_exec()) {
            s.push_str(&format!(
                "  {} {} {:x} huge={}K hugetlb={}K kps={}K {}\n",
                m.span,
                m.perms,
                m.offset,
                m.huge_bytes / 1024,
                m.hugetlb_bytes / 1024,
                m.kernel_page_kb,
                m.name
            ));
        }
        s
    }
}

fn maps_mention(pid: u32, name: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains(name))
}

/// Starts `cmd` (a program that blocks reading stdin), waits until it is
/// ready, reads its smaps, closes its stdin and collects how it ended.
/// `program` is the ELF file whose text is measured (the loaded main
/// program). Panics if the program is not ready within [`TIMEOUT`].
pub fn inspect(cmd: Command, program: &Path, ready: Ready) -> Inspection {
    let elf = ElfInfo::read(program);
    let canonical = canonical(program).to_string_lossy().into_owned();
    let mut child = Running::start(cmd);
    let what = child.what.clone();
    let pid = child.pid();

    let deadline = Instant::now() + TIMEOUT;
    let mut printed_base = None;
    loop {
        if Instant::now() >= deadline {
            child.fail(&format!("not ready after {TIMEOUT:?}"));
        }
        if let Some(status) = child.try_wait() {
            child.fail(&format!("exited before it was ready: {status}"));
        }
        match ready {
            Ready::Line => match child.next_line(Duration::from_millis(20)) {
                Ok(l) if l == "ready" => break,
                Ok(l) => {
                    if let Some(b) = l.strip_prefix("base=") {
                        printed_base = u64::from_str_radix(b, 16).ok();
                    }
                }
                Err(_) => {}
            },
            Ready::StdinRead => {
                if maps_mention(pid, &canonical) && child.is_blocked_reading_stdin() {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let maps = match read_smaps(pid) {
        Ok(m) => m,
        Err(e) => child.fail(&format!("read /proc/{pid}/smaps: {e}")),
    };
    let run = child.finish();
    Inspection::new(what, run, maps, program, elf, printed_base)
}

impl Inspection {
    /// What `run` (a run of `program` with `-v`) and `maps` (its smaps
    /// while it ran) say; `printed_base`: the load bias the program printed,
    /// if it did (checked against its file mappings).
    pub fn new(
        what: String,
        run: Run,
        maps: Vec<Map>,
        program: &Path,
        elf: ElfInfo,
        printed_base: Option<u64>,
    ) -> Inspection {
        let report = parse_report(&run.stderr_str());
        let bias = match (printed_base, bias_from_maps(&maps, program, &elf)) {
            (Some(p), Some(m)) => {
                assert_eq!(
                    p, m,
                    "`{what}`: the program says its base is {p:x}, its file mappings say {m:x}"
                );
                p
            }
            (Some(p), None) => p,
            (None, Some(m)) => m,
            (None, None) => panic!(
                "`{what}`: cannot find where {} is loaded (no file mapping of it)",
                program.display()
            ),
        };
        let text = elf.text_spans(bias);
        let ranges = report
            .huge
            .iter()
            .map(|line| {
                let (huge_bytes, hugetlb_bytes) = huge_bytes_in(&maps, &line.range);
                RangeCheck {
                    line: line.clone(),
                    huge_bytes,
                    hugetlb_bytes,
                    file_pmd_bytes: file_pmd_bytes_in(&maps, &line.range),
                    exec_bytes: exec_bytes_in(&maps, &line.range),
                }
            })
            .collect();
        let (mut text_huge_bytes, mut text_hugetlb_bytes) = (0, 0);
        for b in elf.touched_blocks(bias) {
            let (h, t) = huge_bytes_in(
                &maps,
                &Span {
                    start: b,
                    end: b + HUGE,
                },
            );
            text_huge_bytes += h;
            text_hugetlb_bytes += t;
        }
        Inspection {
            what,
            run,
            report,
            maps,
            elf,
            bias,
            text,
            ranges,
            text_huge_bytes,
            text_hugetlb_bytes,
        }
    }
}

/// Who chose the address of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// hugeload (launcher mode): a PIE goes where the most whole 2 MiB
    /// blocks fit in its text.
    ByHugeload,
    /// The kernel (PT_INTERP mode): hugeload takes the address it is given.
    ByKernel,
}

/// [`check_huge_placed`] for a program hugeload placed (launcher mode).
pub fn check_huge(i: &Inspection, strategy: &str) -> u64 {
    check_huge_placed(i, strategy, Placed::ByHugeload)
}

/// The checks every inspection of a program loaded with `-v` must pass:
/// - exactly one total line, with the expected strategy;
/// - each reported huge range is executable and wholly on 2 MiB pages (of
///   the reported backend: hugetlb ranges must show hugetlb pages);
/// - T of the total line is the text's size, and H the text bytes inside
///   the reported ranges;
/// - the reported ranges in the program's text hold U pages (the total
///   line's), and smaps shows exactly U * 2 MiB on huge pages in the blocks
///   the text touches;
/// - L equals the number of 2 MiB blocks the text touches (computed here
///   from the program headers) and U <= L;
/// - conservative: U equals the number of 2 MiB blocks wholly inside the
///   text (computed here); for a PIE hugeload placed, that is also the
///   best any placement gives. Aggressive: U is at least that.
///
/// Returns U.
pub fn check_huge_placed(i: &Inspection, strategy: &str, placed: Placed) -> u64 {
    let stderr = i.stderr();
    let dump = i.dump();
    if std::env::var_os("HUGELOAD_TEST_DUMP").is_some() {
        eprintln!("{}:\n{dump}", test_name());
    }
    let total = i.report.total(&stderr);
    assert_eq!(
        total.strategy, strategy,
        "strategy in the total line\n{dump}"
    );
    for r in &i.ranges {
        assert_eq!(
            r.exec_bytes,
            r.line.range.len(),
            "reported huge range {} is not wholly executable in smaps\n{dump}",
            r.line.range
        );
        assert_eq!(
            r.huge_bytes,
            r.line.range.len(),
            "reported huge range {} ({} x 2M {}) has {} bytes on 2 MiB pages in smaps\n{dump}",
            r.line.range,
            r.line.pages,
            r.line.backend,
            r.huge_bytes
        );
        if r.line.backend == "hugetlb" {
            assert_eq!(
                r.hugetlb_bytes,
                r.line.range.len(),
                "reported hugetlb range {} has {} hugetlb bytes in smaps\n{dump}",
                r.line.range,
                r.hugetlb_bytes
            );
        }
        if r.line.backend == "pagecache" {
            assert_eq!(
                r.file_pmd_bytes,
                r.line.range.len(),
                "reported page-cache range {} has {} FilePmdMapped bytes in smaps (no copy \
                 may stand in for it)\n{dump}",
                r.line.range,
                r.file_pmd_bytes
            );
        }
    }
    assert_eq!(
        total.text,
        i.elf.text_memsz(),
        "T of the total line vs the p_memsz of the executable segments\n{dump}"
    );
    let text_ranges: Vec<Span> = i.text_ranges().map(|r| r.line.range).collect();
    assert_eq!(
        total.on_huge,
        i.elf.text_bytes_in(i.bias, &text_ranges),
        "H of the total line vs the text bytes inside the reported huge ranges\n{dump}"
    );
    let reported: u64 = i.text_ranges().map(|r| r.line.pages).sum();
    assert_eq!(
        reported, total.used,
        "pages of the reported ranges in the text vs U of the total line\n{dump}"
    );
    assert_eq!(
        i.text_huge_bytes,
        total.used * HUGE,
        "smaps: bytes on 2 MiB pages in the text blocks vs U x 2 MiB\n{dump}"
    );
    assert_eq!(
        total.on_huge > 0,
        total.used > 0,
        "H and U disagree in the total line\n{dump}"
    );
    let touched = i.elf.touched_blocks(i.bias).len() as u64;
    assert_eq!(
        total.least, touched,
        "L of the total line vs the 2 MiB blocks the text touches\n{dump}"
    );
    assert!(total.used <= total.least, "U > L\n{dump}");
    let interior = i.elf.interior_blocks(i.bias).len() as u64;
    match strategy {
        "conservative" => {
            assert_eq!(
                total.used, interior,
                "conservative: U vs the 2 MiB blocks wholly inside the text\n{dump}"
            );
            let congruent = i
                .elf
                .congruent_phase()
                .filter(|_| ["auto", "pagecache"].contains(&total.backend.as_str()));
            if i.elf.is_pie() && placed == Placed::ByHugeload {
                match congruent {
                    // With the page cache in play, the main text is
                    // congruent with its file offsets.
                    Some(phase) => assert_eq!(
                        i.bias % HUGE,
                        phase,
                        "the PIE's base is not congruent with its text's file offsets\n{dump}"
                    ),
                    None => assert_eq!(
                        interior,
                        i.elf.best_interior_count() as u64,
                        "conservative: the PIE was placed where fewer whole 2 MiB blocks fit \
                         in its text than the best placement gives\n{dump}"
                    ),
                }
            }
        }
        _ => assert!(
            total.used >= interior,
            "aggressive: U below the conservative count {interior}\n{dump}"
        ),
    }
    total.used
}

/// The checks of a PT_INTERP-mode inspection (hugeload run by the kernel
/// as the program's interpreter, under `HUGELOAD_VERBOSE=1
/// HUGELOAD_BACKEND=thp`): those of [`check_huge_placed`] at the address
/// the kernel chose, every range on THP, the report saying PT_INTERP mode,
/// and a text over 4 MiB getting at least one huge page. Returns U.
pub fn check_huge_pt_interp(i: &Inspection, strategy: &str) -> u64 {
    let stderr = i.stderr();
    let dump = i.dump();
    let used = check_huge_placed(i, strategy, Placed::ByKernel);
    let total = i.report.total(&stderr);
    assert_eq!(total.backend, "thp", "backend\n{dump}");
    assert!(
        stderr.contains("(hugeload as PT_INTERP)"),
        "the report does not say PT_INTERP mode\n{dump}"
    );
    for r in &i.ranges {
        assert_eq!(r.line.backend, "thp", "backend of {}\n{dump}", r.line.range);
    }
    if i.elf.text_memsz() > FOUR_MIB {
        assert!(used >= 1, "text over 4 MiB, no huge page\n{dump}");
    }
    used
}

/// The checks of a program whose text the page cache served: every
/// reported range is `pagecache` and PMD-mapped from the file, no
/// anonymous or hugetlb huge page lies under its text, at least `least`
/// blocks.
pub fn assert_from_page_cache(i: &Inspection, used: u64, least: u64) {
    let dump = i.dump();
    assert!(used >= least, "U = {used} < {least}\n{dump}");
    for r in i.text_ranges() {
        assert_eq!(r.line.backend, "pagecache", "{dump}");
        assert_eq!(r.file_pmd_bytes, r.line.range.len(), "{dump}");
    }
    let blocks = i.elf.touched_blocks(i.bias);
    let under_text = |m: &Map| {
        m.is_exec()
            && blocks
                .iter()
                .any(|&b| m.span.start < b + HUGE && b < m.span.end)
    };
    let anon: u64 = i
        .maps
        .iter()
        .filter(|m| under_text(m))
        .map(|m| m.anon_huge_bytes)
        .sum();
    let tlb: u64 = i
        .maps
        .iter()
        .filter(|m| under_text(m))
        .map(|m| m.hugetlb_bytes)
        .sum();
    assert_eq!(anon, 0, "anonymous huge pages under the text\n{dump}");
    assert_eq!(tlb, 0, "hugetlb pages under the text\n{dump}");
    let total = i.report.total(&i.stderr());
    assert_eq!(
        total.cached, used,
        "page-cache count of the total line\n{dump}"
    );
    assert_eq!(total.copies, 0, "copies in the total line\n{dump}");
}
