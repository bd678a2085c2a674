//! ELF program headers, read independently of hugeload's parser, and the
//! one little-endian reader of the tests.

use super::*;

// ---------------------------------------------------------------------------
// Little-endian integers

/// The `n`-byte (at most 8) little-endian integer at `at`; `None` when it
/// does not lie wholly inside `b`.
pub fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    assert!(n <= 8, "le: {n} bytes");
    let bytes = b.get(at..at.checked_add(n)?)?;
    Some(
        bytes
            .iter()
            .rev()
            .fold(0u64, |v, &x| (v << 8) | u64::from(x)),
    )
}

fn le_in(b: &[u8], at: usize, n: usize) -> u64 {
    le(b, at, n).unwrap_or_else(|| panic!("{n}-byte field at {at} is past the end ({})", b.len()))
}

pub fn le16(b: &[u8], at: usize) -> u16 {
    le_in(b, at, 2) as u16
}
pub fn le32(b: &[u8], at: usize) -> u32 {
    le_in(b, at, 4) as u32
}
pub fn le64(b: &[u8], at: usize) -> u64 {
    le_in(b, at, 8)
}

// ---------------------------------------------------------------------------
// Program headers

pub const PT_LOAD: u32 = 1;
pub const PT_INTERP: u32 = 3;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;

#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

#[derive(Clone, Debug)]
pub struct ElfInfo {
    /// ET_EXEC (2) or ET_DYN (3).
    pub e_type: u16,
    pub e_phoff: u64,
    pub phdrs: Vec<Phdr>,
}

/// A closed half-open address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn overlap(&self, other: &Span) -> u64 {
        self.end
            .min(other.end)
            .saturating_sub(self.start.max(other.start))
    }
    pub fn contains(&self, other: &Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}-{:x}", self.start, self.end)
    }
}

impl ElfInfo {
    /// Reads the ELF header and program headers of a 64-bit x86-64 file.
    pub fn read(path: &Path) -> ElfInfo {
        let b = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            b.len() >= 64 && b[..4] == *b"\x7fELF" && b[4] == 2 && b[5] == 1,
            "{}: not a 64-bit little-endian ELF",
            path.display()
        );
        let e_type = le16(&b, 16);
        let phoff = le64(&b, 32) as usize;
        let phentsize = le16(&b, 54) as usize;
        let phnum = le16(&b, 56) as usize;
        assert_eq!(phentsize, 56, "{}: e_phentsize", path.display());
        let phdrs = (0..phnum)
            .map(|i| {
                let p = &b[phoff + i * 56..phoff + (i + 1) * 56];
                Phdr {
                    p_type: le32(p, 0),
                    p_flags: le32(p, 4),
                    p_offset: le64(p, 8),
                    p_vaddr: le64(p, 16),
                    p_filesz: le64(p, 32),
                    p_memsz: le64(p, 40),
                    p_align: le64(p, 48),
                }
            })
            .collect();
        ElfInfo {
            e_type,
            e_phoff: phoff as u64,
            phdrs,
        }
    }

    pub fn is_pie(&self) -> bool {
        self.e_type == 3
    }

    pub fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.phdrs.iter().filter(|p| p.p_type == PT_LOAD)
    }

    /// The pages a segment occupies at `bias`.
    fn pages(p: &Phdr, bias: u64) -> Span {
        Span {
            start: bias + page_down(p.p_vaddr),
            end: bias + page_up(p.p_vaddr + p.p_memsz),
        }
    }

    /// The text at `bias`: the pages of the executable PT_LOADs, with
    /// consecutive executable PT_LOADs merged (the gap between them counts
    /// as text).
    pub fn text_spans(&self, bias: u64) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        let mut previous_exec = false;
        for p in self.loads() {
            let exec = p.p_flags & PF_X != 0;
            if exec {
                let pages = Self::pages(p, bias);
                match spans.last_mut() {
                    Some(last) if previous_exec => last.end = last.end.max(pages.end),
                    _ => spans.push(pages),
                }
            }
            previous_exec = exec;
        }
        spans
    }

    /// Sum of `p_memsz` of the executable PT_LOADs.
    pub fn text_memsz(&self) -> u64 {
        self.loads()
            .filter(|p| p.p_flags & PF_X != 0)
            .map(|p| p.p_memsz)
            .sum()
    }

    /// Bytes of the executable PT_LOADs (their `p_memsz`, at `bias`) that lie
    /// in `ranges`.
    pub fn text_bytes_in(&self, bias: u64, ranges: &[Span]) -> u64 {
        self.loads()
            .filter(|p| p.p_flags & PF_X != 0)
            .map(|p| {
                let seg = Span {
                    start: bias + p.p_vaddr,
                    end: bias + p.p_vaddr + p.p_memsz,
                };
                ranges.iter().map(|r| r.overlap(&seg)).sum::<u64>()
            })
            .sum()
    }

    /// Every 2 MiB block that the text touches at `bias` (sorted, distinct):
    /// the least number of huge pages that can hold the text.
    pub fn touched_blocks(&self, bias: u64) -> Vec<u64> {
        let mut blocks = Vec::new();
        for s in self.text_spans(bias) {
            let mut b = huge_down(s.start);
            while b < s.end {
                if blocks.last().is_none_or(|&l| l < b) {
                    blocks.push(b);
                }
                b += HUGE;
            }
        }
        blocks
    }

    /// The 2 MiB blocks that lie wholly inside the text at `bias` and share
    /// no page with a non-executable segment: what the conservative strategy
    /// puts on huge pages.
    pub fn interior_blocks(&self, bias: u64) -> Vec<u64> {
        let spans = self.text_spans(bias);
        let others: Vec<Span> = self
            .loads()
            .filter(|p| p.p_flags & PF_X == 0)
            .map(|p| Self::pages(p, bias))
            .collect();
        self.touched_blocks(bias)
            .into_iter()
            .filter(|&b| {
                let block = Span {
                    start: b,
                    end: b + HUGE,
                };
                spans.iter().any(|s| s.contains(&block))
                    && others.iter().all(|o| o.overlap(&block) == 0)
            })
            .collect()
    }

    /// For a PIE: the most interior blocks any 4 KiB-aligned placement can
    /// give (a multiple of the segments' alignment, up to 2 MiB).
    /// The bias modulo 2 MiB that makes the largest executable segment's
    /// addresses congruent with its file offsets (hugeload's PIE placement
    /// when the page cache may serve it), if the alignment allows it.
    pub fn congruent_phase(&self) -> Option<u64> {
        let text = self
            .loads()
            .filter(|p| p.p_flags & PF_X != 0)
            .max_by_key(|p| p.p_filesz)?;
        let phase = text.p_offset.wrapping_sub(text.p_vaddr) % HUGE;
        let align = self
            .loads()
            .map(|p| p.p_align)
            .max()
            .unwrap_or(PAGE)
            .clamp(PAGE, HUGE);
        phase.is_multiple_of(align).then_some(phase)
    }

    pub fn best_interior_count(&self) -> usize {
        let align = self
            .loads()
            .map(|p| p.p_align)
            .max()
            .unwrap_or(PAGE)
            .clamp(PAGE, HUGE);
        (0..HUGE / align)
            .map(|k| self.interior_blocks(64 * HUGE + k * align).len())
            .max()
            .unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// PT_INTERP

/// Copies `src` to `dst` with PT_INTERP naming `interp`: `patchelf
/// --set-interpreter` for a dynamically linked program; for a static one
/// (patchelf refuses those) [`add_pt_interp`]. A skip if patchelf is
/// needed and missing.
pub fn copy_with_interp(src: &Path, dst: &Path, interp: &Path) -> Result<PathBuf, Skip> {
    let interp = interp.to_string_lossy().into_owned();
    let elf = ElfInfo::read(src);
    if let Some(dir) = dst.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    if elf.phdrs.iter().any(|p| p.p_type == PT_INTERP) {
        let patchelf = need_tool("patchelf")?;
        fs::copy(src, dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        let mut cmd = std::process::Command::new(patchelf);
        cmd.args(["--set-interpreter", &interp]).arg(dst);
        let what = describe(&cmd);
        let r = run(cmd);
        assert!(r.success(), "`{what}`: {}", r.stderr_str());
    } else {
        let mut bytes = fs::read(src).unwrap();
        add_pt_interp(&mut bytes, interp.as_bytes())
            .unwrap_or_else(|e| panic!("{}: cannot add a PT_INTERP: {e}", src.display()));
        fs::write(dst, &bytes).unwrap();
    }
    set_mode(dst, 0o755);
    let now = pt_interp_of(dst);
    assert_eq!(now.as_deref(), Some(interp.as_str()), "{}", dst.display());
    Ok(dst.to_path_buf())
}

/// The PT_INTERP string of an ELF file.
pub fn pt_interp_of(path: &Path) -> Option<String> {
    let b = fs::read(path).ok()?;
    let elf = ElfInfo::read(path);
    let p = elf.phdrs.iter().find(|p| p.p_type == PT_INTERP)?;
    let s = &b[p.p_offset as usize..(p.p_offset + p.p_filesz) as usize];
    Some(String::from_utf8_lossy(s.strip_suffix(b"\0").unwrap_or(s)).into_owned())
}

/// Gives a static executable a PT_INTERP naming `interp`, as patchelf would
/// if it handled static files: the string goes into the zero padding after
/// the end of a PT_LOAD (which grows to hold it, so the string is mapped,
/// as ld.so and debuggers expect), and a program header that a static
/// program does not use at run time (PT_NOTE, else PT_GNU_RELRO, else Go's
/// PT_PAX_FLAGS) becomes the PT_INTERP, moved before the PT_LOADs.
pub fn add_pt_interp(b: &mut [u8], interp: &[u8]) -> Result<(), String> {
    const PT_NOTE: u32 = 4;
    const PT_PHDR: u32 = 6;
    const PT_GNU_RELRO: u32 = 0x6474_e552;
    const PT_PAX_FLAGS: u32 = 0x6504_1580;
    let phoff = le64(b, 32) as usize;
    let phnum = le16(b, 56) as usize;
    let mut ph: Vec<[u8; 56]> = (0..phnum)
        .map(|i| b[phoff + i * 56..phoff + (i + 1) * 56].try_into().unwrap())
        .collect();
    let ty = |p: &[u8; 56]| le32(p, 0);
    if ph.iter().any(|p| ty(p) == PT_INTERP) {
        return Err("it already has a PT_INTERP".into());
    }
    let victim = [PT_NOTE, PT_GNU_RELRO, PT_PAX_FLAGS]
        .iter()
        .find_map(|&t| ph.iter().rposition(|p| ty(p) == t))
        .ok_or("no spare program header")?;
    let mut string = interp.to_vec();
    string.push(0);
    let len = string.len() as u64;
    let loads: Vec<usize> = (0..phnum).filter(|&i| ty(&ph[i]) == PT_LOAD).collect();
    let fits = |i: usize| -> Option<u64> {
        let (off, filesz, memsz) = (le64(&ph[i], 8), le64(&ph[i], 32), le64(&ph[i], 40));
        let end = off + filesz;
        let at = (end + 7) & !7;
        let page_end = page_up(end);
        let free = filesz == memsz
            && end % PAGE != 0
            && at + len <= page_end
            && at + len <= b.len() as u64
            && b[end as usize..(at + len) as usize].iter().all(|&x| x == 0)
            && loads.iter().all(|&j| {
                let (o, f) = (le64(&ph[j], 8), le64(&ph[j], 32));
                j == i || o + f <= end || o >= at + len
            });
        free.then_some(at)
    };
    let (load, at) = loads
        .iter()
        .find_map(|&i| fits(i).map(|at| (i, at)))
        .ok_or("no PT_LOAD has room for the string after its end")?;
    let grown = at + len - le64(&ph[load], 8);
    ph[load][32..40].copy_from_slice(&grown.to_le_bytes());
    ph[load][40..48].copy_from_slice(&grown.to_le_bytes());
    let vaddr = le64(&ph[load], 16) + (at - le64(&ph[load], 8));
    b[at as usize..(at + len) as usize].copy_from_slice(&string);
    let mut new = [0u8; 56];
    new[0..4].copy_from_slice(&PT_INTERP.to_le_bytes());
    new[4..8].copy_from_slice(&4u32.to_le_bytes()); // PF_R
    new[8..16].copy_from_slice(&at.to_le_bytes());
    new[16..24].copy_from_slice(&vaddr.to_le_bytes());
    new[24..32].copy_from_slice(&vaddr.to_le_bytes());
    new[32..40].copy_from_slice(&len.to_le_bytes());
    new[40..48].copy_from_slice(&len.to_le_bytes());
    new[48..56].copy_from_slice(&1u64.to_le_bytes());
    ph.remove(victim);
    let pos = usize::from(ty(&ph[0]) == PT_PHDR);
    ph.insert(pos, new);
    for (i, p) in ph.iter().enumerate() {
        b[phoff + i * 56..phoff + (i + 1) * 56].copy_from_slice(p);
    }
    Ok(())
}
