//! The `--verbose` report of how a program's image was mapped.

use super::diag::Report;
use super::huge::{HugeKind, Outcome};
use super::image::Loaded;
use hugeload::options::Settings;
use hugeload::plan::{self, HUGE, Range};

fn perms(flags: u32) -> &'static str {
    use goblin::elf::program_header::{PF_R, PF_W, PF_X};
    match (flags & PF_R != 0, flags & PF_W != 0, flags & PF_X != 0) {
        (true, false, false) => "r--",
        (true, true, false) => "rw-",
        (true, false, true) => "r-x",
        (false, false, true) => "--x",
        (false, true, false) => "-w-",
        (true, true, true) | (false, true, true) => "rwx",
        (false, false, false) => "---",
    }
}

/// The `--verbose` report of the program's mapping.
pub fn report_program(
    report: &Report,
    path: &[u8],
    image: &hugeload::elf::Image,
    loaded: &Loaded,
    interp: Option<&[u8]>,
    settings: &Settings,
) {
    if !report.is_on() {
        return;
    }
    report.say(|l| {
        l.str("load ").bytes(path).str(": ");
        l.str(if image.is_dyn() {
            "ET_DYN at 0x"
        } else {
            "ET_EXEC at 0x"
        });
        l.hex(loaded.bias + image.lo(), 0);
        match interp {
            Some(i) => l.str(", interpreter ").bytes(i),
            None => l.str(", static"),
        };
    });
    // One line per run of adjacent pieces that ended the same way.
    let mut i = 0;
    while i < loaded.outcomes.len() {
        let mut o = loaded.outcomes[i];
        while let Some(next) = loaded.outcomes.get(i + 1) {
            let same = next.range.start == o.range.end
                && next.kind == o.kind
                && next.pagecache == o.pagecache
                && next.hugetlb == o.hugetlb
                && next.thp == o.thp;
            if !same {
                break;
            }
            o.range.end = next.range.end;
            i += 1;
        }
        i += 1;
        match o.kind {
            Some(kind) => report.say(|l| {
                l.str("huge ")
                    .hex(o.range.start, 16)
                    .str("-")
                    .hex(o.range.end, 16)
                    .str(" ");
                l.dec(o.range.len() / HUGE).str(" x 2M ").str(kind.name());
                let borrowed: u64 = image
                    .loads
                    .iter()
                    .filter(|s| !s.is_exec())
                    .map(|s| {
                        let r = plan::Range::new(loaded.bias + s.vaddr, loaded.bias + s.end());
                        r.intersect(&o.range).len()
                    })
                    .sum();
                if borrowed > 0 {
                    l.str(" (also makes ")
                        .dec(borrowed)
                        .str(" bytes of read-only data executable)");
                }
                // A copy: why the page cache could not serve it.
                if let Some(c) = o.pagecache {
                    l.str(" (not from the page cache: ").str(c.step);
                    if let Some(e) = c.errno {
                        l.str(": ").str(e.message());
                    }
                    l.str(")");
                }
            }),
            None => say_cause(report, o.range, &o),
        }
    }
    let actual = loaded.huge_ranges();
    for s in &image.loads {
        let planned = plan::segment_on_huge(s, loaded.bias, &loaded.plan.huge);
        let huge = plan::segment_on_huge(s, loaded.bias, &actual);
        report.say(|l| {
            l.str("segment ")
                .hex(loaded.bias + s.vaddr, 16)
                .str("-")
                .hex(loaded.bias + s.end(), 16);
            l.str(" ")
                .str(perms(s.flags))
                .str(" huge ")
                .size(huge)
                .str(" small ")
                .size(s.memsz - huge);
            if !s.is_exec() && huge > 0 {
                l.str(": read-only data that shares 2 MiB pages with code, executable there (aggressive)");
            } else if !s.is_exec() {
                l.str(": not code");
            } else if settings.backend == hugeload::options::Backend::Off {
                l.str(": huge pages off");
            } else if huge < planned {
                l.str(": no backend could give huge pages (see above)");
            } else if planned < s.memsz {
                l.str(": edges share 2 MiB pages with ");
                l.str(match settings.strategy {
                    plan::Strategy::Conservative => "other segments or unaligned space",
                    plan::Strategy::Aggressive => "writable data, or lie outside the image",
                });
            }
        });
    }
    let text = image.text_bytes();
    let on_huge = plan::text_on_huge(image, loaded.bias, &actual);
    report.say(|l| {
        l.str("total text ")
            .size(text)
            .str(" (")
            .dec(text)
            .str(" bytes), on huge pages ")
            .size(on_huge)
            .str(" (")
            .dec(on_huge)
            .str(" bytes, ");
        l.percent(on_huge, text)
            .str("), huge pages ")
            .dec(plan::huge_pages(&actual));
        l.str(" of at most ")
            .dec(plan::least_huge_pages(image, loaded.bias))
            .str(" possible");
        let cached: u64 = loaded
            .outcomes
            .iter()
            .filter(|o| o.kind == Some(HugeKind::PageCache))
            .map(|o| o.range.len() / HUGE)
            .sum();
        l.str(" (")
            .dec(cached)
            .str(" from the page cache, ")
            .dec(plan::huge_pages(&actual) - cached)
            .str(" copies)");
        l.str(", strategy ")
            .str(settings.strategy.name())
            .str(", backend ")
            .str(settings.backend.name());
    });
    // What the aggressive strategy would add, where the plan could grow.
    if settings.strategy == plan::Strategy::Conservative
        && settings.backend != hugeload::options::Backend::Off
    {
        let window = if image.is_dyn() {
            loaded.plan.reserve
        } else {
            Range::new(loaded.bias + image.lo(), loaded.bias + image.hi())
        };
        let more = plan::plan(image, loaded.bias, plan::Strategy::Aggressive, window);
        let extra =
            plan::huge_pages(&more.huge).saturating_sub(plan::huge_pages(&loaded.plan.huge));
        if extra > 0 {
            report.say(|l| {
                l.str("hint: -s aggressive would put ").dec(extra).str(
                    " more 2 MiB pages under the code (their non-code bytes become executable)",
                );
            });
        }
    }
}

/// Describes a fallback: why each backend tried could not take `range`.
fn say_cause(report: &Report, range: Range, o: &Outcome) {
    report.say(|l| {
        l.str("huge ")
            .hex(range.start, 16)
            .str("-")
            .hex(range.end, 16)
            .str(" on 4 KiB pages:");
        for (backend, c) in [
            ("pagecache", o.pagecache),
            ("hugetlb", o.hugetlb),
            ("thp", o.thp),
        ] {
            if let Some(c) = c {
                l.str(" ").str(backend).str(": ").str(c.step);
                if let Some(e) = c.errno {
                    l.str(": ").str(e.message());
                }
                if let Some(free) = c.pool_free {
                    l.str(" (").dec(free).str(" free pages in the pool)");
                }
                l.str(";");
            }
        }
    });
}
