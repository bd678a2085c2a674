//! Property tests over the pure core (stable Rust's stand-in for a fuzzer):
//! the ELF parser and the mapping plan, with a fixed seed and a bounded
//! number of cases so CI runs the same inputs every time.
//!
//! - Arbitrary bytes, and mutations of a valid ELF, never make the parser
//!   panic: they are accepted or rejected with an error.
//! - For every layout the parser accepts, the plan keeps its promises:
//!   huge ranges are 2 MiB-aligned, sorted, disjoint, inside the
//!   reservation; they never share a page with a writable segment;
//!   conservative ranges hold only code; and the huge ranges plus the
//!   ordinary mappings cover every page of every segment exactly once (no
//!   hole, no double mapping).

use hugeload::elf::{self, PAGE, page_down, page_up};
use hugeload::plan::{self, HUGE, Range, Strategy as Rounding};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x6875_6765_6c6f_6164),
        failure_persistence: None,
        ..Config::default()
    }
}

const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// A program header: type, flags, offset, vaddr, filesz, memsz.
type Phdr = (u32, u32, u64, u64, u64, u64);

/// An ELF64 x86-64 file: header, then program headers.
fn elf_bytes(e_type: u16, entry: u64, phdrs: &[Phdr]) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&e_type.to_le_bytes());
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    b[24..32].copy_from_slice(&entry.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
    for &(p_type, flags, offset, vaddr, filesz, memsz) in phdrs {
        let mut ph = [0u8; 56];
        ph[0..4].copy_from_slice(&p_type.to_le_bytes());
        ph[4..8].copy_from_slice(&flags.to_le_bytes());
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[32..40].copy_from_slice(&filesz.to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        ph[48..56].copy_from_slice(&PAGE.to_le_bytes());
        b.extend_from_slice(&ph);
    }
    b
}

fn parse(bytes: &[u8], file_size: u64) -> Option<elf::Image> {
    let header = elf::parse_header(bytes, 62).ok()?;
    let table = bytes.get(header.e_phoff as usize..)?;
    elf::parse_image(&header, table, file_size, 0x7fff_ffff_f000).ok()
}

/// A plausible layout: up to 6 segments placed one after another with
/// random gaps, sizes and permissions (never W+X), text somewhere.
fn layout() -> impl Strategy<Value = (u16, Vec<Phdr>)> {
    let segment = (0u64..3 * HUGE, 1u64..12 * HUGE, 0u32..4, 0u64..PAGE);
    (prop::bool::ANY, prop::collection::vec(segment, 1..6)).prop_map(|(pie, segs)| {
        let mut vaddr = if pie { 0 } else { 0x40_0000 };
        let mut phdrs = Vec::new();
        let last_is_only = segs.len() == 1;
        for (i, (gap, size, kind, misalign)) in segs.into_iter().enumerate() {
            let flags = match (i, kind) {
                (1, _) | (_, 0) => PF_R | PF_X,
                (0, _) if last_is_only => PF_R | PF_X,
                (_, 1) => PF_R,
                (_, 2) => PF_R | PF_W,
                _ => PF_R | PF_X,
            };
            vaddr = page_up(vaddr + gap) + misalign;
            let filesz = if flags & PF_W != 0 { size / 2 } else { size };
            phdrs.push((1, flags, vaddr % (1 << 30), vaddr, filesz, size));
            vaddr += size;
        }
        (if pie { 3 } else { 2 }, phdrs)
    })
}

fn check_plan(image: &elf::Image, p: &plan::Plan, strategy: Rounding) -> Result<(), TestCaseError> {
    let mut previous_end = 0;
    for r in &p.huge {
        prop_assert!(r.start % HUGE == 0 && r.end % HUGE == 0 && r.start < r.end);
        prop_assert!(
            r.start >= previous_end,
            "huge ranges overlap or are unsorted"
        );
        previous_end = r.end;
        prop_assert!(
            p.reserve.contains_range(r),
            "huge range outside the reservation"
        );
        for s in &image.loads {
            let pages = Range::new(p.bias + s.page_start(), p.bias + s.page_end());
            if s.is_write() {
                prop_assert!(
                    !pages.overlaps(r),
                    "huge range shares a page with writable data"
                );
            }
            if strategy == Rounding::Conservative && !s.is_exec() {
                prop_assert!(!pages.overlaps(r), "conservative range holds non-code");
            }
        }
    }
    // Every page of every segment: exactly one of huge or ordinary.
    let mut ordinary: Vec<Range> = Vec::new();
    plan::ordinary_mappings(image, p.bias, Range::ALL, &p.huge, |m| {
        ordinary.push(m.range);
    });
    for m in &ordinary {
        prop_assert!(m.start % PAGE == 0 && m.end % PAGE == 0);
        prop_assert!(
            p.huge.iter().all(|h| !h.overlaps(m)),
            "ordinary mapping over a huge range"
        );
        prop_assert!(
            p.reserve.contains_range(m),
            "ordinary mapping outside the reservation"
        );
    }
    for s in &image.loads {
        let mut page = p.bias + s.page_start();
        while page < p.bias + s.page_end() {
            let here = Range::new(page, page + PAGE);
            let covered = p.huge.iter().any(|h| h.contains_range(&here))
                || ordinary.iter().any(|m| m.contains_range(&here));
            prop_assert!(covered, "page {:#x} of a segment is left unmapped", page);
            page += PAGE;
        }
    }
    // Fills stay inside their range and inside the file.
    for r in &p.huge {
        plan::fills(image, p.bias, *r, 1 << 40, |f| {
            assert!(f.dest >= r.start && f.dest + f.len <= r.end);
        });
    }
    prop_assert!(
        plan::huge_pages(&p.huge) <= plan::least_huge_pages(image, p.bias) + p.huge.len() as u64
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600), size in any::<u64>()) {
        let mut b = bytes;
        if b.len() >= 4 && b[0] & 1 == 0 {
            b[..4].copy_from_slice(b"\x7fELF");
        }
        let _ = parse(&b, size);
        let _ = hugeload::script::parse(&b);
        hugeload::smaps::parse(&b, |_| {});
        let _ = hugeload::smaps::code(&b, |_| {});
        let _ = hugeload::procstat::parse(&b);
    }

    #[test]
    fn parser_never_panics_on_mutated_elf((e_type, phdrs) in layout(), flips in prop::collection::vec((0usize..400, any::<u8>()), 1..12), size in 0u64..(1 << 32)) {
        let mut b = elf_bytes(e_type, 0, &phdrs);
        for (at, byte) in flips {
            let at = at % b.len();
            b[at] = byte;
        }
        if let Some(image) = parse(&b, size) {
            // Whatever it accepts, it can plan.
            let phase = plan::choose_phase(&image, Rounding::Aggressive);
            let _ = plan::plan(&image, phase + 4 * HUGE, Rounding::Aggressive, Range::ALL);
        }
    }

    #[test]
    fn plans_keep_their_promises((e_type, phdrs) in layout(), strategy in prop::bool::ANY, far in 0u64..(1 << 20)) {
        let entry = phdrs.iter().find(|p| p.1 & PF_X != 0).map_or(0, |p| p.3);
        let b = elf_bytes(e_type, entry, &phdrs);
        let image = parse(&b, 1 << 40);
        prop_assert!(image.is_some(), "a valid layout was rejected");
        let image = image.unwrap();
        let strategy = if strategy { Rounding::Aggressive } else { Rounding::Conservative };
        if image.is_dyn() {
            let phase = plan::choose_phase(&image, strategy);
            let bias = 0x5555_0000_0000 + far * HUGE + phase;
            let p = plan::plan(&image, bias, strategy, Range::ALL);
            check_plan(&image, &p, strategy)?;
            // The chosen phase is at least as good as aligning the text start.
            let spans = plan::text_spans(&image, 0);
            let start_phase = (HUGE - spans[0].start % HUGE) % HUGE;
            let q = plan::plan(&image, 0x5555_0000_0000 + start_phase, strategy, Range::ALL);
            prop_assert!(plan::text_on_huge(&image, p.bias, &p.huge) >= plan::text_on_huge(&image, q.bias, &q.huge));
        } else {
            let window = Range::new(image.lo(), image.hi());
            let p = plan::plan(&image, 0, strategy, window);
            check_plan(&image, &p, strategy)?;
            prop_assert!(p.reserve == window, "fixed-address reservation grew");
        }
    }

    #[test]
    fn stacks_are_aligned_and_round_trip(args in prop::collection::vec(prop::collection::vec(1u8..=255, 0..40), 0..20), envc in 0usize..30, top_pages in 1u64..1000) {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let envp: Vec<u64> = (0..envc as u64).map(|i| 0x7fff_0000 + i * 16).collect();
        let auxv = [(6u64, 4096u64), (31, 0)];
        let spec = hugeload::stack::StackSpec {
            execfn: b"/bin/prog",
            args: args.iter().copied(),
            args_at: None,
            envp: envp.iter().copied(),
            auxv: &auxv,
        };
        let top = 0x7ffd_0000_0000 + top_pages * PAGE - 8;
        let mut mem = vec![0u8; spec.size() as usize];
        let w = spec.write(&mut mem, top).expect("size() is enough");
        let base = top - mem.len() as u64;
        prop_assert_eq!(w.sp % 16, 0);
        prop_assert!(w.sp >= base && w.arg_end <= top);
        let word = |a: u64| u64::from_le_bytes(mem[(a - base) as usize..(a - base) as usize + 8].try_into().unwrap());
        prop_assert_eq!(word(w.sp), args.len() as u64);
        let strings = &mem[(w.arg_start - base) as usize..(w.arg_end - base) as usize];
        let joined: Vec<u8> = args.iter().flat_map(|a| a.iter().copied().chain([0])).collect();
        prop_assert_eq!(strings, &joined[..]);
    }
}

#[test]
fn page_helpers_agree() {
    assert_eq!(page_down(0x1fff), 0x1000);
    assert_eq!(page_up(0x1001), 0x2000);
}
