//! A validated view of an ELF program's header and program headers, read
//! from untrusted bytes with checked arithmetic. Nothing is mapped until all
//! of this has passed.

use crate::error::LoadError;
use goblin::elf::header::{
    ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFMAG, ET_DYN, ET_EXEC, EV_CURRENT, SELFMAG,
};
use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_DYNAMIC, PT_GNU_STACK, PT_INTERP, PT_LOAD};
pub use goblin::elf64::header::Header;
pub use goblin::elf64::program_header::ProgramHeader;

/// Size of an ELF64 file header.
pub const EHDR_SIZE: usize = 64;
/// Size of an ELF64 program header.
pub const PHDR_SIZE: usize = 56;
/// The largest program header table hugeload reads (292 headers; real
/// programs have a dozen or two). The kernel's own limit is 64 KiB; this
/// one keeps hugeload's stack small, since it runs on the program's stack.
pub const MAX_PHDR_BYTES: usize = 16384;
/// How many PT_LOAD segments a program may have here.
pub const MAX_LOADS: usize = 64;
/// Longest PT_INTERP string the kernel accepts (PATH_MAX).
pub const MAX_INTERP: usize = 4096;
/// The base page size.
pub const PAGE: u64 = 4096;
/// The largest image span accepted (1 TiB): more is no program but a
/// request the kernel could not commit either.
pub const MAX_IMAGE: u64 = 1 << 40;
/// `e_ident[EI_PAD + 6]`, the byte hugeload's binfmt_misc marker uses.
pub const MARK_INDEX: usize = 15;

pub const fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

/// Rounds up to a page; callers keep `x` below the user address limit, so
/// it cannot wrap.
pub const fn page_up(x: u64) -> u64 {
    (x + PAGE - 1) & !(PAGE - 1)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(v)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}

/// True when `bytes` starts with the ELF magic.
pub fn has_elf_magic(bytes: &[u8]) -> bool {
    bytes.len() >= SELFMAG && &bytes[..SELFMAG] == ELFMAG
}

/// Reads and checks the file header: 64-bit, little-endian, current version,
/// `machine`, an executable type, program headers of the standard size.
pub fn parse_header(bytes: &[u8], machine: u16) -> Result<Header, LoadError> {
    if !has_elf_magic(bytes) {
        return Err(LoadError::NotElfOrScript);
    }
    if bytes.len() < EHDR_SIZE {
        return Err(LoadError::ShortRead);
    }
    let mut e_ident = [0u8; 16];
    e_ident.copy_from_slice(&bytes[..16]);
    match e_ident[4] {
        ELFCLASS64 => {}
        ELFCLASS32 => return Err(LoadError::Elf32),
        _ => return Err(LoadError::NotElfOrScript),
    }
    if e_ident[5] != ELFDATA2LSB {
        return Err(LoadError::BigEndian);
    }
    if e_ident[6] != EV_CURRENT {
        return Err(LoadError::BadVersion);
    }
    let header = Header {
        e_ident,
        e_type: u16_at(bytes, 16),
        e_machine: u16_at(bytes, 18),
        e_version: u32_at(bytes, 20),
        e_entry: u64_at(bytes, 24),
        e_phoff: u64_at(bytes, 32),
        e_shoff: u64_at(bytes, 40),
        e_flags: u32_at(bytes, 48),
        e_ehsize: u16_at(bytes, 52),
        e_phentsize: u16_at(bytes, 54),
        e_phnum: u16_at(bytes, 56),
        e_shentsize: u16_at(bytes, 58),
        e_shnum: u16_at(bytes, 60),
        e_shstrndx: u16_at(bytes, 62),
    };
    if header.e_machine != machine {
        return Err(LoadError::ForeignMachine);
    }
    if header.e_type != ET_EXEC && header.e_type != ET_DYN {
        return Err(LoadError::NotExecutable);
    }
    if header.e_phentsize as usize != PHDR_SIZE {
        return Err(LoadError::BadPhentsize);
    }
    if header.e_phnum == 0 {
        return Err(LoadError::NoLoadSegments);
    }
    if phdr_table_len(&header) > MAX_PHDR_BYTES {
        return Err(LoadError::TooManyHeaders);
    }
    Ok(header)
}

/// Length in bytes of the program header table.
pub fn phdr_table_len(header: &Header) -> usize {
    header.e_phnum as usize * PHDR_SIZE
}

/// Reads program header `index` of a table held in `table`.
pub fn program_header(table: &[u8], index: usize) -> ProgramHeader {
    let b = &table[index * PHDR_SIZE..(index + 1) * PHDR_SIZE];
    ProgramHeader {
        p_type: u32_at(b, 0),
        p_flags: u32_at(b, 4),
        p_offset: u64_at(b, 8),
        p_vaddr: u64_at(b, 16),
        p_paddr: u64_at(b, 24),
        p_filesz: u64_at(b, 32),
        p_memsz: u64_at(b, 40),
        p_align: u64_at(b, 48),
    }
}

/// One validated PT_LOAD, in link-time addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub flags: u32,
}

impl Segment {
    pub fn is_exec(&self) -> bool {
        self.flags & PF_X != 0
    }
    pub fn is_write(&self) -> bool {
        self.flags & PF_W != 0
    }
    pub fn is_read(&self) -> bool {
        self.flags & PF_R != 0
    }
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
    /// First page the segment occupies.
    pub fn page_start(&self) -> u64 {
        page_down(self.vaddr)
    }
    /// One past the last page the segment occupies.
    pub fn page_end(&self) -> u64 {
        page_up(self.end())
    }
    /// One past the last page that holds file bytes.
    pub fn file_page_end(&self) -> u64 {
        page_up(self.vaddr + self.filesz)
    }
    /// File offset of `page_start()`.
    pub fn page_offset(&self) -> u64 {
        page_down(self.offset)
    }
}

/// A byte range of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRange {
    pub offset: u64,
    pub len: u64,
}

/// The validated, load-relevant facts of an ELF program or interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub e_type: u16,
    pub e_entry: u64,
    pub e_phnum: u16,
    /// Link-time address of the program header table (the kernel's rule:
    /// inside the PT_LOAD whose file bytes hold `e_phoff`), or 0.
    pub phdr_vaddr: u64,
    pub loads: heapless::Vec<Segment, MAX_LOADS>,
    /// The PT_INTERP string, NUL included.
    pub interp: Option<FileRange>,
    /// Link-time address of the PT_INTERP string.
    pub interp_vaddr: u64,
    /// The file bytes of PT_DYNAMIC.
    pub dynamic: Option<FileRange>,
    /// Its link-time address.
    pub dynamic_vaddr: u64,
    /// PT_GNU_STACK asks for an executable stack.
    pub exec_stack: bool,
    /// Largest power-of-two `p_align` of the PT_LOADs.
    pub max_align: u64,
}

impl Image {
    pub fn is_dyn(&self) -> bool {
        self.e_type == ET_DYN
    }
    /// First page of the image, link-time.
    pub fn lo(&self) -> u64 {
        self.loads[0].page_start()
    }
    /// One past the last page of the image, link-time.
    pub fn hi(&self) -> u64 {
        self.loads.iter().map(|s| s.page_end()).max().unwrap_or(0)
    }
    /// Bytes of executable segments (their `p_memsz`).
    pub fn text_bytes(&self) -> u64 {
        self.loads
            .iter()
            .filter(|s| s.is_exec())
            .map(|s| s.memsz)
            .sum()
    }
}

/// Checks that a program's entry point lies in the file bytes of an
/// executable segment (a shared library opened only to be primed needs
/// no entry point).
pub fn check_entry(image: &Image) -> Result<(), LoadError> {
    let entry_ok = image
        .loads
        .iter()
        .any(|s| s.is_exec() && s.vaddr <= image.e_entry && image.e_entry < s.vaddr + s.filesz);
    if entry_ok {
        Ok(())
    } else {
        Err(LoadError::EntryOutsideImage)
    }
}

/// Validates the program header `table` of a file of `file_size` bytes for
/// a machine whose user addresses end below `user_top`.
pub fn parse_image(
    header: &Header,
    table: &[u8],
    file_size: u64,
    user_top: u64,
) -> Result<Image, LoadError> {
    let table_len = phdr_table_len(header);
    if table.len() < table_len {
        return Err(LoadError::ShortRead);
    }
    match header.e_phoff.checked_add(table_len as u64) {
        Some(end) if end <= file_size => {}
        _ => return Err(LoadError::HeadersOutsideFile),
    }
    let mut image = Image {
        e_type: header.e_type,
        e_entry: header.e_entry,
        e_phnum: header.e_phnum,
        phdr_vaddr: 0,
        loads: heapless::Vec::new(),
        interp: None,
        interp_vaddr: 0,
        dynamic: None,
        dynamic_vaddr: 0,
        exec_stack: false,
        max_align: PAGE,
    };
    for index in 0..header.e_phnum as usize {
        let ph = program_header(table, index);
        match ph.p_type {
            PT_LOAD => add_load(&mut image, &ph, file_size, user_top)?,
            PT_INTERP => {
                if image.interp.is_some() {
                    return Err(LoadError::BadInterpPath);
                }
                let len = ph.p_filesz;
                if !(2..=MAX_INTERP as u64).contains(&len) {
                    return Err(LoadError::BadInterpPath);
                }
                match ph.p_offset.checked_add(len) {
                    Some(end) if end <= file_size => {}
                    _ => return Err(LoadError::BadInterpPath),
                }
                image.interp = Some(FileRange {
                    offset: ph.p_offset,
                    len,
                });
                image.interp_vaddr = ph.p_vaddr;
            }
            PT_DYNAMIC => {
                let len = ph.p_filesz.min(MAX_DYNAMIC as u64);
                if ph
                    .p_offset
                    .checked_add(len)
                    .is_some_and(|end| end <= file_size)
                {
                    image.dynamic = Some(FileRange {
                        offset: ph.p_offset,
                        len,
                    });
                    image.dynamic_vaddr = ph.p_vaddr;
                }
            }
            PT_GNU_STACK => image.exec_stack = ph.p_flags & PF_X != 0,
            _ => {}
        }
    }
    if image.loads.is_empty() {
        return Err(LoadError::NoLoadSegments);
    }
    if image.hi() - image.lo() > MAX_IMAGE {
        return Err(LoadError::ImageTooLarge);
    }
    image.phdr_vaddr = image
        .loads
        .iter()
        .find(|s| {
            s.offset <= header.e_phoff && header.e_phoff + table_len as u64 <= s.offset + s.filesz
        })
        .map(|s| header.e_phoff - s.offset + s.vaddr)
        .unwrap_or(0);
    Ok(image)
}

fn add_load(
    image: &mut Image,
    ph: &ProgramHeader,
    file_size: u64,
    user_top: u64,
) -> Result<(), LoadError> {
    if ph.p_filesz > ph.p_memsz {
        return Err(LoadError::FileszOverMemsz);
    }
    if ph.p_memsz == 0 {
        return Ok(());
    }
    match ph.p_offset.checked_add(ph.p_filesz) {
        Some(end) if end <= file_size => {}
        _ => return Err(LoadError::SegmentOutsideFile),
    }
    match ph.p_vaddr.checked_add(ph.p_memsz) {
        Some(end) if end <= user_top => {}
        _ => return Err(LoadError::SegmentOverflow),
    }
    if ph.p_vaddr % PAGE != ph.p_offset % PAGE {
        return Err(LoadError::Misaligned);
    }
    if ph.p_flags & PF_W != 0 && ph.p_flags & PF_X != 0 {
        return Err(LoadError::WritableAndExecutable);
    }
    let segment = Segment {
        vaddr: ph.p_vaddr,
        memsz: ph.p_memsz,
        offset: ph.p_offset,
        filesz: ph.p_filesz,
        flags: ph.p_flags,
    };
    if let Some(prev) = image.loads.last() {
        if segment.vaddr < prev.vaddr {
            return Err(LoadError::SegmentsUnsorted);
        }
        if segment.vaddr < prev.end() {
            return Err(LoadError::SegmentsOverlap);
        }
    }
    if ph.p_align.is_power_of_two() && ph.p_align > image.max_align {
        image.max_align = ph.p_align;
    }
    image
        .loads
        .push(segment)
        .map_err(|_| LoadError::TooManyLoadSegments)
}

/// Most bytes of PT_DYNAMIC read (4096 entries).
pub const MAX_DYNAMIC: usize = 65536;
/// Size of one dynamic entry.
pub const DYN_SIZE: usize = 16;

impl Image {
    /// The file offset holding link-time address `vaddr`, if a PT_LOAD maps
    /// it from the file.
    pub fn file_offset_of(&self, vaddr: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)
            .map(|s| s.offset + (vaddr - s.vaddr))
    }
}

/// `(d_tag, d_val)` of each entry of a PT_DYNAMIC table, up to DT_NULL.
pub fn dynamic_entries(table: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    table
        .chunks_exact(16)
        .map(|e| (u64_at(e, 0), u64_at(e, 8)))
        .take_while(|&(tag, _)| tag != 0)
}

/// The PT_INTERP path: the bytes before the first NUL of `raw`, which must
/// end in NUL and be non-empty.
pub fn interp_path(raw: &[u8]) -> Result<&[u8], LoadError> {
    if raw.last() != Some(&0) {
        return Err(LoadError::BadInterpPath);
    }
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    if len == 0 {
        return Err(LoadError::BadInterpPath);
    }
    Ok(&raw[..len])
}

#[cfg(test)]
pub mod testing {
    //! Builders of ELF bytes for the unit tests.
    use super::*;

    pub struct Load {
        pub vaddr: u64,
        pub memsz: u64,
        pub offset: u64,
        pub filesz: u64,
        pub flags: u32,
    }

    pub fn load(vaddr: u64, memsz: u64, flags: u32) -> Load {
        Load {
            vaddr,
            memsz,
            offset: vaddr % 0x10_0000,
            filesz: memsz,
            flags,
        }
    }

    /// An ELF64 x86-64 file header followed by `phdrs` (type, load).
    pub fn elf_bytes(e_type: u16, entry: u64, phdrs: &[(u32, &Load)]) -> std::vec::Vec<u8> {
        let mut b = std::vec![0u8; EHDR_SIZE];
        b[..4].copy_from_slice(ELFMAG);
        b[4] = ELFCLASS64;
        b[5] = ELFDATA2LSB;
        b[6] = EV_CURRENT;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (p_type, l) in phdrs {
            let mut ph = [0u8; PHDR_SIZE];
            ph[0..4].copy_from_slice(&p_type.to_le_bytes());
            ph[4..8].copy_from_slice(&l.flags.to_le_bytes());
            ph[8..16].copy_from_slice(&l.offset.to_le_bytes());
            ph[16..24].copy_from_slice(&l.vaddr.to_le_bytes());
            ph[24..32].copy_from_slice(&l.vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&l.filesz.to_le_bytes());
            ph[40..48].copy_from_slice(&l.memsz.to_le_bytes());
            ph[48..56].copy_from_slice(&PAGE.to_le_bytes());
            b.extend_from_slice(&ph);
        }
        b
    }

    /// x86-64's user address limit, for the tests.
    pub const USER_TOP: u64 = 0x7fff_ffff_f000;

    /// Parses `bytes` as a file of `file_size` bytes.
    pub fn image_of(bytes: &[u8], file_size: u64) -> Result<Image, LoadError> {
        let header = parse_header(bytes, 62)?;
        let image = parse_image(
            &header,
            &bytes[header.e_phoff as usize..],
            file_size,
            USER_TOP,
        )?;
        check_entry(&image)?;
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    const R: u32 = PF_R;
    const RX: u32 = PF_R | PF_X;
    const RW: u32 = PF_R | PF_W;
    const BIG: u64 = 1 << 40;

    #[test]
    fn accepts_an_ordinary_pie() {
        let r = load(0, 0x800, R);
        let x = load(0x1000, 0x3000, RX);
        let w = load(0x5000, 0x2000, RW);
        let b = elf_bytes(
            ET_DYN,
            0x1100,
            &[(PT_LOAD, &r), (PT_LOAD, &x), (PT_LOAD, &w)],
        );
        let img = image_of(&b, BIG).unwrap();
        assert!(img.is_dyn());
        assert_eq!(img.loads.len(), 3);
        assert_eq!(img.phdr_vaddr, 64);
        assert_eq!(img.lo(), 0);
        assert_eq!(img.hi(), 0x7000);
        assert_eq!(img.text_bytes(), 0x3000);
    }

    #[test]
    fn rejects_what_is_not_a_64_bit_x86_executable() {
        let x = load(0x1000, 0x1000, RX);
        let mut b = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &x)]);
        assert_eq!(
            parse_header(b"#!/bin/sh\n", 62),
            Err(LoadError::NotElfOrScript)
        );
        assert_eq!(parse_header(&b[..40], 62), Err(LoadError::ShortRead));
        b[4] = ELFCLASS32;
        assert_eq!(parse_header(&b, 62), Err(LoadError::Elf32));
        b[4] = ELFCLASS64;
        b[5] = 2;
        assert_eq!(parse_header(&b, 62), Err(LoadError::BigEndian));
        b[5] = ELFDATA2LSB;
        assert_eq!(parse_header(&b, 183), Err(LoadError::ForeignMachine));
        b[16] = 1; // ET_REL
        assert_eq!(parse_header(&b, 62), Err(LoadError::NotExecutable));
        b[16] = 4; // ET_CORE
        assert_eq!(parse_header(&b, 62), Err(LoadError::NotExecutable));
        b[16] = 2;
        b[54] = 32;
        assert_eq!(parse_header(&b, 62), Err(LoadError::BadPhentsize));
    }

    #[test]
    fn rejects_inconsistent_segments() {
        let x = load(0x1000, 0x1000, RX);
        let ok = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &x)]);
        assert!(image_of(&ok, BIG).is_ok());
        // Program headers beyond the end of the file.
        assert_eq!(image_of(&ok, 100), Err(LoadError::HeadersOutsideFile));
        // Segment bytes beyond the end of the file.
        assert_eq!(image_of(&ok, 0x1800), Err(LoadError::SegmentOutsideFile));
        let mut bad = load(0x1000, 0x1000, RX);
        bad.filesz = 0x2000;
        let b = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &bad)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::FileszOverMemsz));
        let mut bad = load(0x1000, 0x1000, RX);
        bad.offset = 0x1010;
        let b = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &bad)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::Misaligned));
        let bad = load(0x7fff_ffff_e000, 0x10_0000, RX);
        let b = elf_bytes(ET_EXEC, 0x7fff_ffff_e000, &[(PT_LOAD, &bad)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::SegmentOverflow));
        let mut bad = load(0x1000, 0x1000, RX);
        bad.memsz = u64::MAX - 0x100;
        bad.filesz = 0;
        let b = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &bad)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::SegmentOverflow));
        let mut bad = load(0x1000, 0x1000, RX);
        bad.memsz = 1 << 41;
        bad.filesz = 0x1000;
        let b = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &bad)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::ImageTooLarge));
        let mut bad = load(0x1000, 0x1000, RX);
        bad.memsz = 0;
        let x = load(0x1000, 0x1000, RX);
        let b = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &x), (PT_LOAD, &bad)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::FileszOverMemsz));
        let wx = load(0x1000, 0x1000, RX | PF_W);
        let b = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &wx)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::WritableAndExecutable));
        let a = load(0x3000, 0x1000, RX);
        let c = load(0x1000, 0x1000, R);
        let b = elf_bytes(ET_EXEC, 0x3000, &[(PT_LOAD, &a), (PT_LOAD, &c)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::SegmentsUnsorted));
        let a = load(0x1000, 0x2000, RX);
        let c = load(0x2000, 0x1000, R);
        let b = elf_bytes(ET_EXEC, 0x1000, &[(PT_LOAD, &a), (PT_LOAD, &c)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::SegmentsOverlap));
        let b = elf_bytes(ET_EXEC, 0x9000, &[(PT_LOAD, &x)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::EntryOutsideImage));
        let n = load(0x1000, 0x1000, RX);
        let b = elf_bytes(ET_EXEC, 0x1000, &[(2, &n)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::NoLoadSegments));
    }

    #[test]
    fn reads_interp_and_stack_flags() {
        let x = load(0x1000, 0x1000, RX);
        let i = Load {
            vaddr: 0,
            memsz: 28,
            offset: 0x200,
            filesz: 28,
            flags: R,
        };
        let s = Load {
            vaddr: 0,
            memsz: 0,
            offset: 0,
            filesz: 0,
            flags: RW | PF_X,
        };
        let b = elf_bytes(
            ET_DYN,
            0x1000,
            &[(PT_INTERP, &i), (PT_LOAD, &x), (PT_GNU_STACK, &s)],
        );
        let img = image_of(&b, BIG).unwrap();
        assert_eq!(
            img.interp,
            Some(FileRange {
                offset: 0x200,
                len: 28
            })
        );
        assert!(img.exec_stack);
        assert_eq!(interp_path(b"/lib/ld.so\0"), Ok(&b"/lib/ld.so"[..]));
        assert_eq!(interp_path(b"/lib/ld.so"), Err(LoadError::BadInterpPath));
        assert_eq!(interp_path(b"\0\0"), Err(LoadError::BadInterpPath));
        let long = Load {
            vaddr: 0,
            memsz: 5000,
            offset: 0x200,
            filesz: 5000,
            flags: R,
        };
        let b = elf_bytes(ET_DYN, 0x1000, &[(PT_INTERP, &long), (PT_LOAD, &x)]);
        assert_eq!(image_of(&b, BIG), Err(LoadError::BadInterpPath));
    }
}
