//! `--lock` (`HUGELOAD_LOCK=1`): the program's code locked in memory
//! (`mlock`), so a latency-sensitive server never waits on a major fault
//! for it. Huge ranges first, then the rest of the code, within
//! RLIMIT_MEMLOCK (no limit with CAP_IPC_LOCK); what does not fit, or what
//! the kernel refuses, is said in one line. Locking a page-cache range
//! pins its 2 MiB folios, which other processes share.

use super::diag;
use super::image::Loaded;
use super::sys;
use hugeload::elf::Image;
use hugeload::plan::Range;

pub fn lock_code(image: &Image, loaded: &Loaded) {
    const RLIMIT_MEMLOCK: u32 = 8;
    const CAP_IPC_LOCK: u32 = 14;
    let limit = if sys::has_capability(CAP_IPC_LOCK) {
        u64::MAX
    } else {
        sys::soft_limit(RLIMIT_MEMLOCK)
    };
    let code = |f: &mut dyn FnMut(Range)| {
        for r in &loaded.huge_ranges() {
            f(*r);
        }
        for s in image.loads.iter().filter(|s| s.is_exec()) {
            let seg = Range::new(loaded.bias + s.page_start(), loaded.bias + s.page_end());
            // The parts of the segment outside the huge ranges.
            let mut start = seg.start;
            for h in loaded.huge_ranges().iter().filter(|h| h.overlaps(&seg)) {
                if h.start > start {
                    f(Range::new(start, h.start));
                }
                start = start.max(h.end);
            }
            if start < seg.end {
                f(Range::new(start, seg.end));
            }
        }
    };
    let (mut total, mut locked) = (0u64, 0u64);
    let mut refused = None;
    code(&mut |r: Range| {
        total += r.len();
        if locked + r.len() > limit {
            return;
        }
        match sys::mlock(r.start as usize, r.len() as usize) {
            Ok(()) => locked += r.len(),
            Err(e) => refused = Some(e),
        }
    });
    if locked < total {
        let mut l = diag::line();
        l.str("--lock: ")
            .dec(locked >> 10)
            .str(" KiB of ")
            .dec(total >> 10)
            .str(" KiB of code locked in memory");
        match refused {
            Some(e) => l.str(" (mlock: ").str(e.message()).str(")"),
            None => l
                .str(" (RLIMIT_MEMLOCK is ")
                .dec(limit >> 10)
                .str(" KiB; raise it with ulimit -l, or give CAP_IPC_LOCK)"),
        };
        diag::emit(&mut l);
    }
}
