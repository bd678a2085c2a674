//! Reading `/proc/PID/smaps`: which mappings are executable and how many of
//! their bytes sit on 2 MiB pages (anonymous THP, file THP, shmem THP,
//! hugetlb).

/// One mapping of an smaps file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mapping<'a> {
    pub start: u64,
    pub end: u64,
    pub perms: [u8; 4],
    pub offset: u64,
    /// The device (major, minor) and inode of a file mapping; zeros else.
    pub dev: (u32, u32),
    pub inode: u64,
    /// The path or pseudo-name (`[stack]`, `/memfd:…`), or empty.
    pub name: &'a [u8],
    pub rss_kb: u64,
    pub anon_huge_kb: u64,
    pub file_pmd_kb: u64,
    pub shmem_pmd_kb: u64,
    pub hugetlb_kb: u64,
    pub kernel_page_kb: u64,
}

impl Mapping<'_> {
    pub fn is_exec(&self) -> bool {
        self.perms[2] == b'x'
    }
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// Bytes on 2 MiB pages, whatever backs them.
    pub fn huge_bytes(&self) -> u64 {
        (self.anon_huge_kb + self.file_pmd_kb + self.shmem_pmd_kb + self.hugetlb_kb) * 1024
    }
}

/// The (major, minor) numbers of a `stat` device number, as smaps and
/// /proc/PID/maps print them (the kernel's `new_encode_dev` undone).
pub fn dev_numbers(st_dev: u64) -> (u32, u32) {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc << 4 | d as u64)
    })
}

fn dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(d as u64)
    })
}

fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|f| !f.is_empty())
}

/// Parses a mapping header line: `start-end perms offset dev inode [name]`.
fn header(line: &[u8]) -> Option<Mapping<'_>> {
    let mut f = fields(line);
    let range = f.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let start = hex(&range[..dash])?;
    let end = hex(&range[dash + 1..])?;
    let perms_field = f.next()?;
    if perms_field.len() != 4 {
        return None;
    }
    let mut perms = [0u8; 4];
    perms.copy_from_slice(perms_field);
    let offset = hex(f.next()?)?;
    let dev_field = f.next()?;
    let colon = dev_field.iter().position(|&b| b == b':')?;
    let dev = (
        hex(&dev_field[..colon])? as u32,
        hex(&dev_field[colon + 1..])? as u32,
    );
    let inode = f.next()?;
    let inode_number = dec(inode)?;
    // The name is the rest of the line after the inode, trimmed.
    let inode_end = inode.as_ptr() as usize - line.as_ptr() as usize + inode.len();
    let rest = &line[inode_end..];
    let first = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    Some(Mapping {
        start,
        end,
        perms,
        offset,
        dev,
        inode: inode_number,
        name: &rest[first..],
        ..Mapping::default()
    })
}

/// Calls `f` for every mapping of an smaps text.
pub fn parse<'a>(text: &'a [u8], mut f: impl FnMut(&Mapping<'a>)) {
    let mut current: Option<Mapping<'a>> = None;
    for line in text.split(|&b| b == b'\n') {
        if let Some(m) = header(line) {
            if let Some(done) = current.take() {
                f(&done);
            }
            current = Some(m);
            continue;
        }
        let Some(m) = current.as_mut() else { continue };
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let key = &line[..colon];
        let Some(value) = fields(&line[colon + 1..]).next().and_then(dec) else {
            continue;
        };
        match key {
            b"Rss" => m.rss_kb = value,
            b"AnonHugePages" => m.anon_huge_kb = value,
            b"FilePmdMapped" => m.file_pmd_kb = value,
            b"ShmemPmdMapped" => m.shmem_pmd_kb = value,
            b"Private_Hugetlb" | b"Shared_Hugetlb" => m.hugetlb_kb += value,
            b"KernelPageSize" => m.kernel_page_kb = value,
            _ => {}
        }
    }
    if let Some(done) = current {
        f(&done);
    }
}

/// An executable mapping of a program or shared library, with the file it
/// belongs to: its own name, or, for an anonymous or `/memfd:hugeload:`
/// copy that directly follows a mapping of a file, that file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code<'a> {
    pub mapping: Mapping<'a>,
    pub file: &'a [u8],
    /// The mapping is a copy made by a loader (anonymous or memfd).
    pub is_copy: bool,
}

impl Code<'_> {
    /// What backs its 2 MiB pages: `thp`, `hugetlb`, `pagecache` (a file's own
    /// 2 MiB folios, no copy), `shmem-thp`
    /// or `-` for none.
    pub fn backend(&self) -> &'static str {
        let m = &self.mapping;
        if m.hugetlb_kb > 0 {
            "hugetlb"
        } else if m.anon_huge_kb > 0 {
            "thp"
        } else if m.file_pmd_kb > 0 {
            "pagecache"
        } else if m.shmem_pmd_kb > 0 {
            "shmem-thp"
        } else {
            "-"
        }
    }
}

/// Totals over the code of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes of executable mappings of programs and libraries.
    pub text_bytes: u64,
    /// Of those, bytes on 2 MiB pages.
    pub huge_bytes: u64,
    /// 2 MiB pages used (`huge_bytes / 2 MiB`).
    pub huge_pages: u64,
    /// Of those, pages of the files' own page cache (no copy).
    pub cache_pages: u64,
    /// The 2 MiB blocks those mappings touch: the fewest pages that could
    /// hold them at their addresses.
    pub least_pages: u64,
    /// Executable anonymous mappings not attached to a file (JIT code),
    /// left out of the totals.
    pub other_bytes: u64,
}

const HUGE: u64 = 2 << 20;

fn is_loader_copy(name: &[u8]) -> bool {
    name.is_empty() || name.starts_with(b"/memfd:hugeload:")
}

/// Calls `f` for each executable mapping of a program or library in an
/// smaps text, and returns the totals.
pub fn code<'a>(text: &'a [u8], mut f: impl FnMut(&Code<'a>)) -> Totals {
    let mut totals = Totals::default();
    let mut previous: Option<(u64, &'a [u8])> = None;
    let mut last_block: Option<u64> = None;
    parse(text, |m| {
        let is_file = m.name.starts_with(b"/") && !m.name.starts_with(b"/memfd:");
        let owner = if is_file {
            Some((m.name, false))
        } else if is_loader_copy(m.name) {
            previous
                .filter(|(end, _)| *end == m.start)
                .map(|(_, file)| (file, true))
        } else {
            None
        };
        if let Some((file, _)) = owner {
            previous = Some((m.end, file));
        } else {
            previous = None;
        }
        if !m.is_exec() || m.name.starts_with(b"[") {
            return;
        }
        let Some((file, is_copy)) = owner else {
            totals.other_bytes += m.len();
            return;
        };
        let code = Code {
            mapping: *m,
            file,
            is_copy,
        };
        totals.text_bytes += m.len();
        totals.huge_bytes += m.huge_bytes();
        totals.cache_pages += m.file_pmd_kb * 1024 / HUGE;
        let mut block = m.start & !(HUGE - 1);
        while block < m.end {
            if last_block.is_none_or(|b| block > b) {
                totals.least_pages += 1;
                last_block = Some(block);
            }
            block += HUGE;
        }
        f(&code);
    });
    totals.huge_pages = totals.huge_bytes / HUGE;
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] =
        b"00400000-00a00000 r--p 00000000 fe:00 1234                       /usr/bin/node
Size:               6144 kB
Rss:                6144 kB
AnonHugePages:         0 kB
KernelPageSize:        4 kB
00c00000-02600000 r-xp 00000000 00:00 0 
Size:              26624 kB
Rss:               26624 kB
AnonHugePages:     26624 kB
Private_Hugetlb:       0 kB
VmFlags: rd ex mr mw me hg
7f0000000000-7f0000400000 r-xs 00000000 00:01 99                 /memfd:hugeload:node (deleted)
Rss:                   0 kB
Shared_Hugetlb:     4096 kB
KernelPageSize:     2048 kB
";

    #[test]
    fn reads_mappings_and_their_huge_bytes() {
        let mut seen = std::vec::Vec::new();
        parse(SAMPLE, |m| seen.push(*m));
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].name, b"/usr/bin/node");
        assert_eq!((seen[0].dev, seen[0].inode), ((0xfe, 0), 1234));
        assert!(!seen[0].is_exec());
        assert_eq!(seen[1].start, 0xc00000);
        assert_eq!(seen[1].name, b"");
        assert!(seen[1].is_exec());
        assert_eq!(seen[1].huge_bytes(), 26624 * 1024);
        assert_eq!(seen[2].name, b"/memfd:hugeload:node (deleted)");
        assert_eq!((seen[2].dev, seen[2].inode), ((0, 1), 99));
        assert_eq!(seen[2].huge_bytes(), 4 << 20);
        assert_eq!(seen[2].kernel_page_kb, 2048);
    }

    #[test]
    fn device_numbers_match_glibc_makedev() {
        // makedev(major, minor) as glibc's <sys/sysmacros.h> builds it.
        let makedev = |ma: u64, mi: u64| {
            ((ma & 0xfffff000) << 32)
                | ((ma & 0xfff) << 8)
                | ((mi & 0xffffff00) << 12)
                | (mi & 0xff)
        };
        for (ma, mi) in [(8, 1), (0xfe, 0), (0, 29), (259, 3), (0x12345, 0x6789ab)] {
            assert_eq!(dev_numbers(makedev(ma, mi)), (ma as u32, mi as u32));
        }
    }

    #[test]
    fn attributes_loader_copies_and_counts_totals() {
        let text = b"00400000-00c00000 r-xp 00000000 fe:00 1 /usr/bin/node
AnonHugePages:         0 kB
00c00000-02600000 r-xp 00000000 00:00 0 
AnonHugePages:     26624 kB
02600000-02601000 r-xp 02200000 fe:00 1 /usr/bin/node
7f0000000000-7f0000200000 r-xp 00000000 00:00 0 
7f0000200000-7f0000300000 r-xp 00000000 fe:00 2 /usr/lib/libc.so.6
7ffff7fc0000-7ffff7fc2000 r-xp 00000000 00:00 0                  [vdso]
";
        let mut seen = std::vec::Vec::new();
        let totals = code(text, |c| {
            seen.push((c.file.to_vec(), c.is_copy, c.backend()))
        });
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[1], (b"/usr/bin/node".to_vec(), true, "thp"));
        assert_eq!(seen[3], (b"/usr/lib/libc.so.6".to_vec(), false, "-"));
        assert_eq!(totals.text_bytes, 0x2201000 + 0x100000);
        assert_eq!(totals.huge_bytes, 26624 * 1024);
        assert_eq!(totals.huge_pages, 13);
        assert_eq!(totals.other_bytes, 0x200000);
        // 0x400000..0x2601000 touches 18 blocks; libc one more.
        assert_eq!(totals.least_pages, 19);
    }
}
