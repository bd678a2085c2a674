//! `/tmp/perf-PID.map` for code that hugeload moved into anonymous or
//! hugetlb memory. perf names such memory `//anon` or `/memfd:…` and finds
//! no symbols there; a map file (`START SIZE NAME`, hexadecimal, one
//! function per line) gives them back. The functions come from the
//! program's `.symtab`, else `.dynsym`.

use crate::elf::{u32_at, u64_at};
use crate::plan::Range;
use goblin::elf::section_header::{SHT_DYNSYM, SHT_SYMTAB};
use goblin::elf::sym::STT_FUNC;

/// Size of an ELF64 section header.
pub const SHDR_SIZE: usize = 64;
/// Size of an ELF64 symbol.
pub const SYM_SIZE: usize = 24;

/// The parts of a section header this needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    pub sh_type: u32,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
}

/// Section header `index` of a table held in `table`, if it is there.
pub fn section(table: &[u8], index: usize) -> Option<Section> {
    let b = table.get(index * SHDR_SIZE..(index + 1) * SHDR_SIZE)?;
    Some(Section {
        sh_type: u32_at(b, 4),
        offset: u64_at(b, 24),
        size: u64_at(b, 32),
        link: u32_at(b, 40),
    })
}

/// The symbol table to use and its string table: `.symtab` if the file
/// has one, else `.dynsym`.
pub fn symbol_tables(table: &[u8]) -> Option<(Section, Section)> {
    let count = table.len() / SHDR_SIZE;
    let find = |kind| {
        (0..count)
            .filter_map(|i| section(table, i))
            .find(|s| s.sh_type == kind)
    };
    let symtab = find(SHT_SYMTAB).or_else(|| find(SHT_DYNSYM))?;
    let strtab = section(table, symtab.link as usize)?;
    Some((symtab, strtab))
}

/// Calls `f(start, size, name)` for every function of `symtab` whose
/// run-time address lies in one of `ranges`.
pub fn functions_in(
    symtab: &[u8],
    strtab: &[u8],
    bias: u64,
    ranges: &[Range],
    mut f: impl FnMut(u64, u64, &[u8]),
) {
    for sym in symtab.chunks_exact(SYM_SIZE) {
        let info = sym[4];
        let value = u64_at(sym, 8);
        let size = u64_at(sym, 16);
        if info & 0xf != STT_FUNC || size == 0 || value == 0 {
            continue;
        }
        let start = bias.wrapping_add(value);
        if !ranges.iter().any(|r| r.start <= start && start < r.end) {
            continue;
        }
        let name_at = u32_at(sym, 0) as usize;
        let Some(rest) = strtab.get(name_at..) else {
            continue;
        };
        let name = &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())];
        if !name.is_empty() {
            f(start, size, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: u32, info: u8, value: u64, size: u64) -> [u8; SYM_SIZE] {
        let mut b = [0u8; SYM_SIZE];
        b[0..4].copy_from_slice(&name.to_le_bytes());
        b[4] = info;
        b[8..16].copy_from_slice(&value.to_le_bytes());
        b[16..24].copy_from_slice(&size.to_le_bytes());
        b
    }

    #[test]
    fn lists_functions_in_moved_ranges_only() {
        let strtab = b"\0hot_loop\0cold\0data\0";
        let mut symtab = std::vec::Vec::new();
        symtab.extend_from_slice(&sym(1, 0x12, 0x20_0010, 0x40)); // FUNC in range
        symtab.extend_from_slice(&sym(10, 0x12, 0x10_0000, 0x40)); // FUNC outside
        symtab.extend_from_slice(&sym(15, 0x11, 0x20_0100, 0x8)); // OBJECT
        symtab.extend_from_slice(&sym(1, 0x12, 0x20_0200, 0)); // size 0
        let mut seen = std::vec::Vec::new();
        let ranges = [Range::new(0x1000_0020_0000, 0x1000_0040_0000)];
        functions_in(&symtab, strtab, 0x1000_0000_0000, &ranges, |a, s, n| {
            seen.push((a, s, n.to_vec()))
        });
        assert_eq!(seen, [(0x1000_0020_0010, 0x40, b"hot_loop".to_vec())]);
    }

    #[test]
    fn prefers_symtab_to_dynsym() {
        let mut table = std::vec![0u8; 4 * SHDR_SIZE];
        let mut put = |i: usize, kind: u32, off: u64, size: u64, link: u32| {
            let b = &mut table[i * SHDR_SIZE..(i + 1) * SHDR_SIZE];
            b[4..8].copy_from_slice(&kind.to_le_bytes());
            b[24..32].copy_from_slice(&off.to_le_bytes());
            b[32..40].copy_from_slice(&size.to_le_bytes());
            b[40..44].copy_from_slice(&link.to_le_bytes());
        };
        put(1, SHT_DYNSYM, 0x100, 48, 0);
        put(2, SHT_SYMTAB, 0x200, 96, 3);
        put(3, 3, 0x300, 20, 0);
        let (symtab, strtab) = symbol_tables(&table).unwrap();
        assert_eq!(symtab.offset, 0x200);
        assert_eq!(strtab.offset, 0x300);
        assert_eq!(section(&table, 9), None);
    }
}
