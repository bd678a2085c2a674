//! The mapping plan: which address ranges of a program go on 2 MiB pages,
//! and how everything else is mapped, as plain data over numbers.
//!
//! Addresses here are run-time addresses (`bias + p_vaddr`). The plan only
//! depends on the bias modulo 2 MiB, so a PIE's placement is chosen with
//! [`choose_phase`] and the plan made again at the final bias.

use crate::elf::{Image, PAGE, Segment};

/// The huge page size this plan targets.
pub const HUGE: u64 = 2 << 20;
/// At most this many separate huge ranges per image.
pub const MAX_RANGES: usize = 16;
/// Huge ranges are placed in pieces of at most this size, so that a
/// hugetlb pool too small for the whole text still serves part of it.
pub const PIECE: u64 = 16 << 20;
/// At most this many pieces per image (4 GiB of text).
pub const MAX_PIECES: usize = 256;

pub const fn huge_down(x: u64) -> u64 {
    x & !(HUGE - 1)
}

pub const fn huge_up(x: u64) -> u64 {
    (x + HUGE - 1) & !(HUGE - 1)
}

/// How the edges of the text are rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Only 2 MiB blocks that hold nothing but code (and the gaps between
    /// code segments) go on huge pages; the ragged edges stay on 4 KiB pages.
    Conservative,
    /// Edge blocks go on huge pages too when the rest of the block holds
    /// nothing or read-only segments (those bytes become executable). Never
    /// when a writable segment shares the block.
    Aggressive,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Conservative => "conservative",
            Strategy::Aggressive => "aggressive",
        }
    }
}

/// A half-open address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Range {
        Range { start, end }
    }
    pub const ALL: Range = Range::new(0, u64::MAX);
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    pub fn intersect(&self, other: &Range) -> Range {
        Range::new(self.start.max(other.start), self.end.min(other.end))
    }
    pub fn overlaps(&self, other: &Range) -> bool {
        !self.intersect(other).is_empty()
    }
    pub fn contains_range(&self, other: &Range) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

pub type Ranges = heapless::Vec<Range, MAX_RANGES>;

/// The plan for one image at one bias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub bias: u64,
    /// Ranges to put on huge pages: 2 MiB-aligned, sorted, disjoint.
    pub huge: Ranges,
    /// The address range to reserve: every page of the image and every
    /// huge range.
    pub reserve: Range,
}

fn occupied(segment: &Segment, bias: u64) -> Range {
    Range::new(bias + segment.page_start(), bias + segment.page_end())
}

/// Executable segments merged into spans: consecutive PT_LOADs that are
/// both executable share a span, with the gap between them.
pub fn text_spans(image: &Image, bias: u64) -> Ranges {
    let mut spans = Ranges::new();
    let mut previous_exec = false;
    for segment in &image.loads {
        let pages = occupied(segment, bias);
        if segment.is_exec() {
            match spans.last_mut() {
                Some(last) if previous_exec => last.end = last.end.max(pages.end),
                _ => {
                    // More spans than we track: the rest stay on small pages.
                    let _ = spans.push(pages);
                }
            }
        }
        previous_exec = segment.is_exec();
    }
    spans
}

/// Whether 2 MiB block `block` goes on huge pages.
fn is_huge_block(
    image: &Image,
    bias: u64,
    spans: &Ranges,
    block: Range,
    strategy: Strategy,
    window: Range,
) -> bool {
    match strategy {
        Strategy::Conservative => {
            spans.iter().any(|s| s.contains_range(&block))
                && image
                    .loads
                    .iter()
                    .filter(|s| !s.is_exec())
                    .all(|s| !occupied(s, bias).overlaps(&block))
        }
        Strategy::Aggressive => {
            window.contains_range(&block)
                && spans.iter().any(|s| s.overlaps(&block))
                && image
                    .loads
                    .iter()
                    .filter(|s| s.is_write())
                    .all(|s| !occupied(s, bias).overlaps(&block))
        }
    }
}

/// Plans `image` at `bias`. With the aggressive strategy, edge blocks may
/// reach outside the image only within `window` (a PIE's reservation can
/// grow; a fixed-address program's cannot).
pub fn plan(image: &Image, bias: u64, strategy: Strategy, window: Range) -> Plan {
    let spans = text_spans(image, bias);
    let mut huge = Ranges::new();
    for span in &spans {
        let mut block_start = huge_down(span.start);
        while block_start < span.end {
            let block = Range::new(block_start, block_start + HUGE);
            let already = huge.last().is_some_and(|r| r.end > block.start);
            if !already && is_huge_block(image, bias, &spans, block, strategy, window) {
                match huge.last_mut() {
                    Some(last) if last.end == block.start => last.end = block.end,
                    _ => {
                        if huge.push(block).is_err() {
                            break;
                        }
                    }
                }
            }
            block_start += HUGE;
        }
    }
    let mut reserve = Range::new(bias + image.lo(), bias + image.hi());
    if let (Some(first), Some(last)) = (huge.first(), huge.last()) {
        reserve.start = reserve.start.min(first.start);
        reserve.end = reserve.end.max(last.end);
    }
    Plan {
        bias,
        huge,
        reserve,
    }
}

/// For a PIE: the bias modulo 2 MiB that puts the most text on huge pages.
/// Candidates put the start or the end of a text span on a 2 MiB boundary;
/// a bias must stay a multiple of the image's alignment. Ties go to the
/// first candidate (the start of the first span).
pub fn choose_phase(image: &Image, strategy: Strategy) -> u64 {
    let step = image.max_align.clamp(PAGE, HUGE);
    let spans = text_spans(image, 0);
    let mut best_phase = 0;
    let mut best_bytes = None;
    for span in &spans {
        for edge in [span.start, span.end] {
            let phase = (HUGE - edge % HUGE) % HUGE;
            if !phase.is_multiple_of(step) {
                continue;
            }
            // A bias of 2 MiB and more keeps every block address positive.
            let probe = plan(image, phase + 2 * HUGE, strategy, Range::ALL);
            let bytes = text_on_huge(image, probe.bias, &probe.huge);
            if best_bytes.is_none_or(|b| bytes > b) {
                best_bytes = Some(bytes);
                best_phase = phase;
            }
        }
    }
    best_phase
}

/// Bytes of executable segments (at `bias`) that lie in `huge`.
pub fn text_on_huge(image: &Image, bias: u64, huge: &[Range]) -> u64 {
    image
        .loads
        .iter()
        .filter(|s| s.is_exec())
        .map(|s| segment_on_huge(s, bias, huge))
        .sum()
}

/// Bytes of `segment` (its `p_memsz`, at `bias`) that lie in `huge`.
pub fn segment_on_huge(segment: &Segment, bias: u64, huge: &[Range]) -> u64 {
    let range = Range::new(bias + segment.vaddr, bias + segment.end());
    huge.iter().map(|h| h.intersect(&range).len()).sum()
}

/// The fewest 2 MiB pages that can hold the text at this bias: the blocks
/// its pages touch. For a PIE placed by [`choose_phase`] this is
/// `ceil(span / 2 MiB)`.
pub fn least_huge_pages(image: &Image, bias: u64) -> u64 {
    let mut count = 0;
    let mut last_block = None;
    for span in &text_spans(image, bias) {
        let mut block = huge_down(span.start);
        while block < span.end {
            if last_block.is_none_or(|b| block > b) {
                count += 1;
                last_block = Some(block);
            }
            block += HUGE;
        }
    }
    count
}

/// 2 MiB pages in `huge`.
pub fn huge_pages(huge: &[Range]) -> u64 {
    huge.iter().map(|r| r.len() / HUGE).sum()
}

/// Where the bytes of an ordinary mapping come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The file, from this offset.
    File(u64),
    /// Anonymous zero pages (bss).
    Zero,
    /// An anonymous page holding `len` bytes of the file from `offset`,
    /// then zeros: the last file page of a writable segment whose data end
    /// inside it (where the kernel maps the file and clears the rest,
    /// `padzero`). Read rather than mapped, a file that shrinks under the
    /// loader gives zeros there instead of SIGBUS.
    Partial { offset: u64, len: u64 },
}

/// One ordinary (4 KiB page) mapping of part of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub range: Range,
    /// `PF_*` flags of the segment.
    pub flags: u32,
    pub source: Source,
}

/// Calls `f` for every ordinary mapping of `image` at `bias` that lies in
/// `window` and outside every range of `exclude` (sorted), in segment order.
pub fn ordinary_mappings(
    image: &Image,
    bias: u64,
    window: Range,
    exclude: &[Range],
    mut f: impl FnMut(Mapping),
) {
    for segment in &image.loads {
        let start = bias + segment.page_start();
        let file_end = if segment.filesz == 0 {
            start
        } else {
            bias + segment.file_page_end()
        };
        let end = bias + segment.page_end();
        let data_end = bias + segment.vaddr + segment.filesz;
        let needs_padzero = segment.is_write()
            && segment.filesz > 0
            && segment.memsz > segment.filesz
            && !data_end.is_multiple_of(PAGE);
        // The page where a writable segment's data end, if it must be
        // padded with zeros.
        let partial_start = if needs_padzero {
            file_end - PAGE
        } else {
            file_end
        };
        let file_part = Range::new(start, partial_start);
        let partial = Range::new(partial_start, file_end);
        let zero_part = Range::new(file_end, end);
        let offset_of = |at: u64| segment.page_offset() + (at - start);
        for_each_piece(file_part.intersect(&window), exclude, |piece| {
            f(Mapping {
                range: piece,
                flags: segment.flags,
                source: Source::File(offset_of(piece.start)),
            });
        });
        for_each_piece(partial.intersect(&window), exclude, |piece| {
            f(Mapping {
                range: piece,
                flags: segment.flags,
                source: Source::Partial {
                    offset: offset_of(piece.start),
                    len: data_end - piece.start,
                },
            });
        });
        for_each_piece(zero_part.intersect(&window), exclude, |piece| {
            f(Mapping {
                range: piece,
                flags: segment.flags,
                source: Source::Zero,
            });
        });
    }
}

/// Calls `f` with the parts of `range` outside every range of `exclude`.
fn for_each_piece(range: Range, exclude: &[Range], mut f: impl FnMut(Range)) {
    let mut start = range.start;
    for cut in exclude {
        if cut.end <= start || cut.start >= range.end {
            continue;
        }
        if cut.start > start {
            f(Range::new(start, cut.start));
        }
        start = start.max(cut.end);
    }
    if start < range.end {
        f(Range::new(start, range.end));
    }
}

/// A copy of file bytes into a huge range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub dest: u64,
    pub offset: u64,
    pub len: u64,
}

/// Calls `f` for each copy that fills huge range `range` the way the kernel's
/// page-granular file mappings would show it: for every segment, its pages
/// from the file up to the last page holding file bytes, cut at `file_size`.
/// Everything else in the range is zero.
pub fn fills(image: &Image, bias: u64, range: Range, file_size: u64, mut f: impl FnMut(Fill)) {
    for segment in &image.loads {
        if segment.filesz == 0 {
            continue;
        }
        let start = bias + segment.page_start();
        let pages = Range::new(start, bias + segment.file_page_end());
        let part = pages.intersect(&range);
        if part.is_empty() {
            continue;
        }
        let offset = segment.page_offset() + (part.start - start);
        let len = part.len().min(file_size.saturating_sub(offset));
        if len > 0 {
            f(Fill {
                dest: part.start,
                offset,
                len,
            });
        }
    }
}

/// `start_code`, `end_code`, `start_data`, `end_data` as the kernel computes
/// them for `/proc/PID/stat` (fs/binfmt_elf.c).
pub fn code_and_data(image: &Image, bias: u64) -> [u64; 4] {
    let mut start_code = u64::MAX;
    let mut end_code = 0;
    let mut start_data = 0;
    let mut end_data = 0;
    for s in &image.loads {
        if s.is_exec() {
            start_code = start_code.min(s.vaddr);
            end_code = end_code.max(s.vaddr + s.filesz);
        }
        start_data = start_data.max(s.vaddr);
        end_data = end_data.max(s.vaddr + s.filesz);
    }
    if start_code == u64::MAX {
        start_code = 0;
    }
    [
        start_code + bias,
        end_code + bias,
        start_data + bias,
        end_data + bias,
    ]
}

/// Why a 2 MiB block cannot be mapped straight from the page cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheRefusal {
    /// Its address is not congruent with its file offset modulo 2 MiB (an
    /// LLD layout, or a base that does not align it), or segments in it
    /// map the file with different offsets.
    NotCongruent,
    /// It shares its 2 MiB with writable data.
    Writable,
    /// It holds zero-filled memory (bss) of a segment.
    ZeroFill,
    /// Its file range passes the end of the file.
    PastEndOfFile,
}

impl CacheRefusal {
    pub fn message(self) -> &'static str {
        match self {
            CacheRefusal::NotCongruent => {
                "its address is not congruent with its file offset modulo 2 MiB"
            }
            CacheRefusal::Writable => "it shares its 2 MiB with writable data",
            CacheRefusal::ZeroFill => "it holds zero-filled (bss) memory",
            CacheRefusal::PastEndOfFile => "it reaches past the end of the file",
        }
    }
}

/// The file offset whose 2 MiB the block `block` (2 MiB-aligned, at its
/// final address) can map straight from the page cache, if one read-only
/// file mapping shows exactly what the segments put there: every segment
/// in it is read-only, maps from the file (no bss) with the same
/// address-to-offset distance, that offset is congruent with the address
/// modulo 2 MiB (the condition for a PMD mapping of a 2 MiB folio), and
/// the block's 2 MiB lie inside the file. Gaps between segments show the
/// file's bytes there, read-only.
pub fn cache_offset(
    image: &Image,
    bias: u64,
    block: Range,
    file_size: u64,
) -> Result<u64, CacheRefusal> {
    let mut distance = None;
    for s in &image.loads {
        if !occupied(s, bias).overlaps(&block) {
            continue;
        }
        if s.is_write() {
            return Err(CacheRefusal::Writable);
        }
        let zero = Range::new(bias + s.file_page_end(), bias + s.page_end());
        if s.memsz > s.filesz && zero.overlaps(&block) {
            return Err(CacheRefusal::ZeroFill);
        }
        let d = s.vaddr as i128 - s.offset as i128;
        if distance.is_some_and(|x| x != d) {
            return Err(CacheRefusal::NotCongruent);
        }
        distance = Some(d);
    }
    let d = distance.ok_or(CacheRefusal::NotCongruent)?;
    let offset = block.start as i128 - bias as i128 - d;
    if offset < 0 || offset % HUGE as i128 != 0 {
        return Err(CacheRefusal::NotCongruent);
    }
    if offset + HUGE as i128 > file_size as i128 {
        return Err(CacheRefusal::PastEndOfFile);
    }
    Ok(offset as u64)
}

/// A 2 MiB block of a file that a mapping can take from one 2 MiB folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileBlock {
    /// Its file offset (a multiple of 2 MiB).
    pub offset: u64,
    /// Its segment's addresses are congruent with its file offsets: a
    /// mapping at the link-time layout (ld.so's 2 MiB-aligned base, a
    /// fixed-address program) maps it with 2 MiB pages.
    pub congruent: bool,
}

/// The 2 MiB file blocks of code that priming reads into 2 MiB folios, in
/// file order. A program (it has an entry point, or an interpreter): the
/// blocks hugeload's conservative plan puts on huge pages where it places
/// the program (a PIE congruently, see [`congruent_phase`]), each mapped
/// by one 2 MiB of the file. A library: the blocks wholly inside an
/// executable segment's file bytes, where ld.so maps them (a 2 MiB-aligned
/// base); `congruent` says whether they are congruent there.
pub fn prime_blocks(image: &Image, file_size: u64, mut f: impl FnMut(FileBlock)) {
    let is_program = !image.is_dyn() || image.interp.is_some();
    if !is_program {
        return text_file_blocks(image, f);
    }
    let bias = if image.is_dyn() {
        congruent_phase(image).unwrap_or(0) + 4 * HUGE
    } else {
        0
    };
    let window = if image.is_dyn() {
        Range::ALL
    } else {
        Range::new(image.lo(), image.hi())
    };
    let planned = plan(image, bias, Strategy::Conservative, window);
    for r in &planned.huge {
        let mut start = r.start;
        while start < r.end {
            let block = Range::new(start, start + HUGE);
            match cache_offset(image, bias, block, file_size) {
                Ok(offset) => f(FileBlock {
                    offset,
                    congruent: true,
                }),
                Err(CacheRefusal::NotCongruent) => f(FileBlock {
                    offset: 0,
                    congruent: false,
                }),
                Err(_) => {}
            }
            start += HUGE;
        }
    }
}

/// The 2 MiB file blocks that lie wholly inside an executable segment's
/// file bytes, in file order.
pub fn text_file_blocks(image: &Image, mut f: impl FnMut(FileBlock)) {
    for s in image.loads.iter().filter(|s| s.is_exec()) {
        let congruent = (s.vaddr % HUGE) == (s.offset % HUGE);
        let mut offset = huge_up(s.offset);
        while offset
            .checked_add(HUGE)
            .is_some_and(|end| end <= s.offset + s.filesz)
        {
            f(FileBlock { offset, congruent });
            offset += HUGE;
        }
    }
}

/// The bias modulo 2 MiB that makes the largest executable segment's
/// addresses congruent with its file offsets, so its 2 MiB blocks can be
/// mapped from the page cache; `None` if the image's alignment forbids it.
pub fn congruent_phase(image: &Image) -> Option<u64> {
    let text = image
        .loads
        .iter()
        .filter(|s| s.is_exec())
        .max_by_key(|s| s.filesz)?;
    let phase = text.offset.wrapping_sub(text.vaddr) % HUGE;
    let step = image.max_align.clamp(PAGE, HUGE);
    phase.is_multiple_of(step).then_some(phase)
}

/// Where a PIE goes, planned before anything is mapped: the plan at a
/// probe bias that has the chosen phase, and the reservation it needs
/// relative to the bias. The placement phase picks the real bias (phase
/// plus a multiple of 2 MiB) and moves the plan there with [`Plan::moved_to`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieLayout {
    /// The bias modulo 2 MiB.
    pub phase: u64,
    /// The reservation's start minus the bias (negative when aggressive
    /// rounding reaches below the image).
    pub rel_start: i64,
    /// The reservation's length.
    pub len: u64,
    pub plan: Plan,
}

/// The layout of a PIE (see [`PieLayout`]) whose bias is `phase` modulo
/// 2 MiB ([`choose_phase`] or [`congruent_phase`]).
pub fn pie_layout(image: &Image, strategy: Strategy, phase: u64) -> PieLayout {
    // 4 MiB and more keeps every address of the probe positive.
    let probe_bias = phase + 4 * HUGE;
    let plan = plan(image, probe_bias, strategy, Range::ALL);
    PieLayout {
        phase,
        rel_start: plan.reserve.start.wrapping_sub(probe_bias) as i64,
        len: plan.reserve.len(),
        plan,
    }
}

impl Plan {
    /// The same plan at `bias`, which must differ from this plan's bias by
    /// a multiple of 2 MiB (a plan depends only on the bias modulo 2 MiB
    /// when its window is unbounded).
    pub fn moved_to(&self, bias: u64) -> Plan {
        let shift = |a: u64| a.wrapping_sub(self.bias).wrapping_add(bias);
        let mut huge = Ranges::new();
        for r in &self.huge {
            let _ = huge.push(Range::new(shift(r.start), shift(r.end)));
        }
        Plan {
            bias,
            huge,
            reserve: Range::new(shift(self.reserve.start), shift(self.reserve.end)),
        }
    }
}

/// The bias that puts a reservation (starting `rel_start` from the bias,
/// `len` bytes long) at or just above `target`, congruent to `phase`
/// modulo 2 MiB; `None` unless the whole reservation lies between 64 KiB
/// (`mmap_min_addr`'s usual value) and `user_top`.
pub fn bias_near(target: u64, rel_start: i64, len: u64, phase: u64, user_top: u64) -> Option<u64> {
    let raw = (target as i128 - rel_start as i128).max(0) as u64;
    let bias = huge_down(raw) + phase;
    let bias = if bias < raw { bias + HUGE } else { bias };
    let start = bias as i128 + rel_start as i128;
    let fits = start >= 0x10000 && start + len as i128 <= user_top as i128;
    fits.then_some(bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::page_up;
    use crate::elf::testing::*;
    use goblin::elf::header::{ET_DYN, ET_EXEC};
    use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_LOAD};
    const R: u32 = PF_R;
    const RX: u32 = PF_R | PF_X;
    const RW: u32 = PF_R | PF_W;
    const M: u64 = 1 << 20;

    fn image(e_type: u16, entry: u64, loads: &[Load]) -> Image {
        let phdrs: std::vec::Vec<(u32, &Load)> = loads.iter().map(|l| (PT_LOAD, l)).collect();
        image_of(&elf_bytes(e_type, entry, &phdrs), 1 << 40).unwrap()
    }

    /// A classic non-PIE: headers at 0x400000, 5 MiB of text at 0x401000,
    /// rodata and data after it.
    fn non_pie(text: u64) -> Image {
        image(
            ET_EXEC,
            0x401000,
            &[
                load(0x400000, 0x1000, R),
                load(0x401000, text, RX),
                load(page_up(0x401000 + text), 0x20000, R),
                load(page_up(0x401000 + text) + 0x21000, 0x3000, RW),
            ],
        )
    }

    #[test]
    fn conservative_takes_the_aligned_interior_of_non_pie_text() {
        let img = non_pie(5 * M);
        let p = plan(&img, 0, Strategy::Conservative, Range::ALL);
        // Text 0x401000..0x901000: blocks 0x600000 and 0x800000 are whole.
        assert_eq!(&p.huge[..], &[Range::new(0x600000, 0x800000)][..]);
        assert_eq!(huge_pages(&p.huge), 1);
        assert_eq!(least_huge_pages(&img, 0), 3); // 0x400000..0xa00000
        assert_eq!(p.reserve, Range::new(0x400000, img.hi()));
    }

    #[test]
    fn conservative_interior_of_a_long_text() {
        let img = non_pie(9 * M);
        let p = plan(&img, 0, Strategy::Conservative, Range::ALL);
        // Text 0x401000..0xd01000: whole blocks 0x600000..0xc00000.
        assert_eq!(&p.huge[..], &[Range::new(0x600000, 0xc00000)][..]);
        assert_eq!(text_on_huge(&img, p.bias, &p.huge), 6 * M);
    }

    #[test]
    fn aggressive_rounds_over_read_only_neighbours_but_never_writable_ones() {
        let img = non_pie(9 * M);
        let window = Range::new(img.lo(), img.hi());
        let p = plan(&img, 0, Strategy::Aggressive, window);
        // Head block 0x400000 holds headers (R): taken. Tail block 0xc00000
        // holds text, rodata (R) and data (RW) at 0xd22000: refused.
        assert_eq!(&p.huge[..], &[Range::new(0x400000, 0xc00000)][..]);
        // Move the data out of the tail block: now the tail is taken too,
        // but only inside the window (the image).
        let img = image(
            ET_EXEC,
            0x401000,
            &[
                load(0x400000, 0x1000, R),
                load(0x401000, 9 * M, RX),
                load(0xd01000, 0x400000, R),
                load(0x1101000, 0x3000, RW),
            ],
        );
        let window = Range::new(img.lo(), img.hi());
        let p = plan(&img, 0, Strategy::Aggressive, window);
        assert_eq!(&p.huge[..], &[Range::new(0x400000, 0xe00000)][..]);
        assert_eq!(text_on_huge(&img, p.bias, &p.huge), 9 * M);
        assert_eq!(huge_pages(&p.huge), least_huge_pages(&img, 0));
    }

    #[test]
    fn tiny_text_gets_nothing_conservatively() {
        let img = non_pie(0x3000);
        let p = plan(&img, 0, Strategy::Conservative, Range::ALL);
        assert!(p.huge.is_empty());
        // Aggressive: the one block holds the RW data too.
        let window = Range::new(img.lo(), img.hi());
        let p = plan(&img, 0, Strategy::Aggressive, window);
        assert!(p.huge.is_empty());
    }

    /// A PIE whose text starts at an odd page offset (0x1f000).
    fn pie(text: u64) -> Image {
        let text_end = page_up(0x1f000 + text);
        image(
            ET_DYN,
            0x1f000,
            &[
                load(0, 0x1e000, R),
                load(0x1f000, text, RX),
                load(text_end, 0x40000, R),
                load(text_end + 0x41000, 0x5000, RW),
            ],
        )
    }

    #[test]
    fn pie_phase_puts_text_start_on_a_boundary() {
        let img = pie(5 * M + 0x1234);
        let phase = choose_phase(&img, Strategy::Conservative);
        assert_eq!((phase + 0x1f000) % M, 0);
        let bias = 0x5555_5540_0000 + phase;
        let p = plan(&img, bias, Strategy::Conservative, Range::ALL);
        assert_eq!(
            &p.huge[..],
            &[Range::new(bias + 0x1f000, bias + 0x1f000 + 4 * M)][..]
        );
        assert_eq!(least_huge_pages(&img, bias), 3);
        assert_eq!(huge_pages(&p.huge), 2);
    }

    #[test]
    fn aggressive_pie_covers_all_text() {
        let img = pie(5 * M + 0x1234);
        let phase = choose_phase(&img, Strategy::Aggressive);
        let bias = 0x5555_5540_0000 + phase;
        let p = plan(&img, bias, Strategy::Aggressive, Range::ALL);
        assert_eq!(text_on_huge(&img, p.bias, &p.huge), img.text_bytes());
        assert_eq!(huge_pages(&p.huge), least_huge_pages(&img, bias));
        assert_eq!(huge_pages(&p.huge), 3);
        // The reservation covers the huge ranges as well as the image.
        assert!(
            p.reserve
                .contains_range(&Range::new(p.huge[0].start, p.huge[0].end))
        );
        assert!(p.reserve.start <= bias);
    }

    #[test]
    fn aggressive_tiny_pie_aligns_the_end_when_data_follows() {
        // gcc's hello world layout: R, RX, R, RW all within 16 KiB.
        let img = image(
            ET_DYN,
            0x1040,
            &[
                load(0, 0x600, R),
                load(0x1000, 0x180, RX),
                load(0x2000, 0x100, R),
                load(0x3db8, 0x260, RW),
            ],
        );
        let phase = choose_phase(&img, Strategy::Aggressive);
        let bias = 0x7f00_0000_0000 + phase;
        let p = plan(&img, bias, Strategy::Aggressive, Range::ALL);
        assert_eq!(huge_pages(&p.huge), 1);
        assert_eq!(p.huge[0].end, bias + 0x2000);
        assert_eq!(text_on_huge(&img, p.bias, &p.huge), 0x180);
        // Conservative: nothing.
        let phase = choose_phase(&img, Strategy::Conservative);
        let p = plan(
            &img,
            0x7f00_0000_0000 + phase,
            Strategy::Conservative,
            Range::ALL,
        );
        assert!(p.huge.is_empty());
    }

    #[test]
    fn adjacent_executable_segments_merge_across_their_gap() {
        // Like node: .init/.plt, .text and a small stub as three RX loads.
        let img = image(
            ET_EXEC,
            0xb72000,
            &[
                load(0x400000, 0x76e5d8, R),
                load(0xb6f000, 0x1e90, RX),
                load(0xb72000, 0x1a8bca0, RX),
                load(0x2600000, 0x1f1, RX),
                load(0x2601000, 0x3038cae, R),
                load(0x563aec8, 0x4dfc8, RW),
            ],
        );
        let spans = text_spans(&img, 0);
        assert_eq!(&spans[..], &[Range::new(0xb6f000, 0x2601000)][..]);
        let p = plan(&img, 0, Strategy::Conservative, Range::ALL);
        assert_eq!(&p.huge[..], &[Range::new(0xc00000, 0x2600000)][..]);
        assert_eq!(huge_pages(&p.huge), 13);
        assert_eq!(least_huge_pages(&img, 0), 15);
        let window = Range::new(img.lo(), img.hi());
        let p = plan(&img, 0, Strategy::Aggressive, window);
        assert_eq!(&p.huge[..], &[Range::new(0xa00000, 0x2800000)][..]);
        assert_eq!(huge_pages(&p.huge), 15);
        assert_eq!(text_on_huge(&img, p.bias, &p.huge), img.text_bytes());
    }

    #[test]
    fn neighbour_data_in_the_same_block_stops_aggressive_rounding() {
        // Text ends 0x100 bytes before a writable segment's page.
        let img = image(
            ET_EXEC,
            0x400000,
            &[
                load(0x400000, 3 * M - 0x1000, RX),
                load(0x400000 + 3 * M, 0x1000, RW),
            ],
        );
        let window = Range::new(img.lo(), img.hi());
        let p = plan(&img, 0, Strategy::Aggressive, window);
        assert_eq!(&p.huge[..], &[Range::new(0x400000, 0x600000)][..]);
    }

    #[test]
    fn ordinary_mappings_skip_huge_ranges_and_split_bss() {
        let img = image(
            ET_EXEC,
            0x401000,
            &[
                load(0x400000, 0x1000, R),
                load(0x401000, 5 * M, RX),
                Load {
                    vaddr: 0x902010,
                    memsz: 0x5000,
                    offset: 0x502010,
                    filesz: 0x100,
                    flags: RW,
                },
            ],
        );
        let huge = [Range::new(0x600000, 0x800000)];
        let mut maps = std::vec::Vec::new();
        ordinary_mappings(&img, 0, Range::ALL, &huge, |m| maps.push(m));
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[0].range, Range::new(0x400000, 0x401000));
        assert_eq!(maps[1].range, Range::new(0x401000, 0x600000));
        assert_eq!(maps[1].source, Source::File(0x1000));
        assert_eq!(maps[2].range, Range::new(0x800000, 0x901000));
        assert_eq!(maps[2].source, Source::File(0x400000));
        assert_eq!(maps[3].range, Range::new(0x902000, 0x903000));
        assert_eq!(
            maps[3].source,
            Source::Partial {
                offset: 0x502000,
                len: 0x110
            }
        );
        assert_eq!(maps[4].range, Range::new(0x903000, 0x908000));
        assert_eq!(maps[4].source, Source::Zero);
        // The fallback for one huge range maps exactly that range.
        let mut maps = std::vec::Vec::new();
        ordinary_mappings(&img, 0, huge[0], &[], |m| maps.push(m));
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].range, huge[0]);
        assert_eq!(maps[0].source, Source::File(0x200000));
    }

    #[test]
    fn a_bss_only_segment_is_all_zero_pages_of_its_own() {
        let img = image(
            ET_EXEC,
            0x400000,
            &[
                load(0x400000, 0x1800, RX),
                Load {
                    vaddr: 0x402010,
                    memsz: 0x3000,
                    offset: 0x2010,
                    filesz: 0,
                    flags: RW,
                },
            ],
        );
        let mut maps = std::vec::Vec::new();
        ordinary_mappings(&img, 0, Range::ALL, &[], |m| maps.push(m));
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[1].range, Range::new(0x402000, 0x406000));
        assert_eq!(maps[1].source, Source::Zero);
    }

    #[test]
    fn fills_copy_whole_file_pages_and_stop_at_the_file_end() {
        let img = non_pie(9 * M);
        let mut fills_seen = std::vec::Vec::new();
        let range = Range::new(0x400000, 0xc00000);
        fills(&img, 0, range, 1 << 40, |f| fills_seen.push(f));
        assert_eq!(
            fills_seen,
            [
                Fill {
                    dest: 0x400000,
                    offset: 0,
                    len: 0x1000
                },
                Fill {
                    dest: 0x401000,
                    offset: 0x1000,
                    len: 0xc00000 - 0x401000
                },
            ]
        );
        let mut fills_seen = std::vec::Vec::new();
        fills(&img, 0, range, 0x3000, |f| fills_seen.push(f));
        assert_eq!(fills_seen[1].len, 0x2000);
    }

    #[test]
    fn a_moved_plan_is_the_plan_at_the_new_bias() {
        for strategy in [Strategy::Conservative, Strategy::Aggressive] {
            for text in [300 * 1024, 5 * M, 33 * M + 12345] {
                let img = pie(text);
                let layout = pie_layout(&img, strategy, choose_phase(&img, strategy));
                for k in [0u64, 1, 7, 0x2a_aaaa] {
                    let bias = layout.phase + k * HUGE;
                    let want = plan(&img, bias, strategy, Range::ALL);
                    assert_eq!(layout.plan.moved_to(bias), want, "{strategy:?} {text} {k}");
                }
                let rel = layout.plan.reserve.start as i128 - layout.plan.bias as i128;
                assert_eq!(rel, layout.rel_start as i128);
            }
        }
    }

    #[test]
    fn bias_near_keeps_the_phase_and_the_address_space() {
        const TOP: u64 = 0x7fff_ffff_f000;
        let phase = 0x1000;
        let b = bias_near(0x5555_5555_4000, 0, 8 * M, phase, TOP).unwrap();
        assert_eq!(b % HUGE, phase);
        assert!((0x5555_5555_4000..0x5555_5555_4000 + HUGE).contains(&b));
        // A reservation below the bias (aggressive rounding) still starts at
        // or above the target.
        let b = bias_near(0x5555_5555_4000, -(HUGE as i64), 8 * M, 0, TOP).unwrap();
        assert!(b as i128 - HUGE as i128 >= 0x5555_5555_4000);
        // Too close to the top, or below the lowest address: none.
        assert_eq!(bias_near(TOP - M, 0, 8 * M, 0, TOP), None);
        assert_eq!(bias_near(0, -(4 * HUGE as i64), M, 0, TOP), None);
    }

    #[test]
    fn page_cache_blocks_need_congruence_read_only_file_bytes_and_the_file() {
        // GNU ld: text at offset == vaddr, rodata after it at the same
        // distance, data on its own.
        let at = |vaddr: u64, memsz: u64, flags: u32| Load {
            offset: vaddr,
            ..load(vaddr, memsz, flags)
        };
        let img = image(
            ET_DYN,
            0x1000,
            &[
                at(0, 0x1000, R),
                at(0x1000, 9 * M, RX),
                at(0x1000 + 9 * M, 3 * M, R),
                at(0xc0_3000, 0x5000, RW),
            ],
        );
        let file = 13 * M;
        let block = |b: u64, k: u64| Range::new(b + k * HUGE, b + (k + 1) * HUGE);
        let bias = 7 * HUGE;
        assert_eq!(congruent_phase(&img), Some(0));
        assert_eq!(cache_offset(&img, bias, block(bias, 1), file), Ok(HUGE));
        // The first block holds the headers' segment too, at the same
        // distance: one file mapping shows both.
        assert_eq!(cache_offset(&img, bias, block(bias, 0), file), Ok(0));
        // A block with rodata and text.
        assert_eq!(cache_offset(&img, bias, block(bias, 4), file), Ok(4 * HUGE));
        // The block with data in it.
        assert_eq!(
            cache_offset(&img, bias, block(bias, 6), file),
            Err(CacheRefusal::Writable)
        );
        // Past the end of a shorter file.
        assert_eq!(
            cache_offset(&img, bias, block(bias, 4), 9 * M),
            Err(CacheRefusal::PastEndOfFile)
        );
        // A bias off the 2 MiB grid: nothing is congruent.
        let odd = bias + 0x1000;
        assert_eq!(
            cache_offset(&img, odd, Range::new(bias + HUGE, bias + 2 * HUGE), file),
            Err(CacheRefusal::NotCongruent)
        );
        // LLD: text one page above its offset; the congruent phase shifts
        // the bias by that page.
        let mut lld_text = load(0x2000, 9 * M, RX);
        lld_text.offset = 0x1000;
        let lld = image(ET_DYN, 0x2000, &[load(0, 0x1000, R), lld_text]);
        let phase = congruent_phase(&lld).unwrap();
        assert_eq!(phase, HUGE - 0x1000);
        let b = 3 * HUGE + phase;
        let blk = Range::new(b + 0x1000 + HUGE, b + 0x1000 + 2 * HUGE);
        assert_eq!(cache_offset(&lld, b, blk, file), Ok(HUGE));
        // bss in an executable segment.
        let mut bss_text = load(0x1000, 5 * M, RX);
        bss_text.filesz = M;
        let bss = image(ET_DYN, 0x1000, &[bss_text]);
        assert_eq!(
            cache_offset(&bss, bias, block(bias, 1), file),
            Err(CacheRefusal::ZeroFill)
        );
    }

    #[test]
    fn text_file_blocks_are_the_whole_2m_blocks_of_code() {
        let mut text = load(0x1000, 7 * M, RX);
        text.offset = 0x1000;
        let mut lld = load(0x80_2000, 5 * M, RX);
        lld.offset = 0x80_1000;
        let img = image(ET_DYN, 0x1000, &[load(0, 0x1000, R), text, lld]);
        let mut blocks = std::vec::Vec::new();
        text_file_blocks(&img, |b| blocks.push(b));
        let want = [
            FileBlock {
                offset: HUGE,
                congruent: true,
            },
            FileBlock {
                offset: 2 * HUGE,
                congruent: true,
            },
            FileBlock {
                offset: 5 * HUGE,
                congruent: false,
            },
        ];
        assert_eq!(blocks, want);
    }

    #[test]
    fn a_programs_prime_blocks_are_its_planned_blocks() {
        // A fixed-address program (node's layout) whose big text segment
        // ends in a block it shares only with the gap before a second,
        // tiny executable segment: the plan takes that block (code and a
        // gap between code), and so does priming; a library's rule (wholly
        // inside one segment's file bytes) would not.
        let at = |vaddr: u64, memsz: u64, flags: u32| Load {
            offset: vaddr - 0x40_0000,
            ..load(vaddr, memsz, flags)
        };
        let img = image(
            ET_EXEC,
            0x40_1000,
            &[
                at(0x40_0000, 0x1000, R),
                at(0x40_1000, 0x7f_e000, RX),
                at(0xc0_0000, 0x100, RX),
            ],
        );
        let mut blocks = std::vec::Vec::new();
        prime_blocks(&img, 16 * M, |b| blocks.push(b));
        let offsets: std::vec::Vec<u64> = blocks.iter().map(|b| b.offset).collect();
        assert_eq!(offsets, [HUGE, 2 * HUGE, 3 * HUGE]);
        let mut inside = 0;
        text_file_blocks(&img, |_| inside += 1);
        assert_eq!(inside, 2);
    }

    #[test]
    fn code_and_data_follow_the_kernel() {
        let img = non_pie(5 * M);
        let [sc, ec, sd, ed] = code_and_data(&img, 0);
        assert_eq!(sc, 0x401000);
        assert_eq!(ec, 0x401000 + 5 * M);
        assert_eq!(sd, img.loads[3].vaddr);
        assert_eq!(ed, img.loads[3].vaddr + 0x3000);
    }
}
