//! Looking up a symbol in an ELF file's dynamic symbol table through its
//! hash table (`DT_GNU_HASH`, else `DT_HASH`), as ld.so does, reading only
//! the few words the lookup needs. hugeload uses it to find, in the
//! interpreter it maps, the function ld.so calls after each change of its
//! link map (`_dl_debug_state`) and the structure that describes the link
//! map (`_r_debug`; musl's `_dl_debug_addr`).
//!
//! The file is untrusted: every read goes through `read`, which says
//! whether the bytes at a link-time address exist; a table that points
//! anywhere else, loops, or is absurdly large gives `None`.

use crate::elf::{u32_at, u64_at};

/// `DT_HASH`, `DT_STRTAB`, `DT_SYMTAB`, `DT_STRSZ`, `DT_SYMENT`,
/// `DT_GNU_HASH`.
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_GNU_HASH: u64 = 0x6fff_fef5;

/// Size of an ELF64 symbol.
const SYM_SIZE: u64 = 24;
/// The longest name looked up.
pub const NAME_MAX: usize = 64;
/// No chain is followed further than this.
const CHAIN_MAX: u64 = 1 << 20;

/// Where the dynamic symbol table and its helpers are (link-time
/// addresses), from the dynamic section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub symtab: u64,
    pub strtab: u64,
    pub strsz: u64,
    pub gnu_hash: Option<u64>,
    pub hash: Option<u64>,
}

impl Tables {
    /// The tables a dynamic section names; `None` without a symbol table,
    /// a string table, or any hash table.
    pub fn from_dynamic(entries: impl Iterator<Item = (u64, u64)>) -> Option<Tables> {
        let mut t = Tables::default();
        let (mut symtab, mut strtab) = (None, None);
        for (tag, value) in entries {
            match tag {
                DT_SYMTAB => symtab = Some(value),
                DT_STRTAB => strtab = Some(value),
                DT_STRSZ => t.strsz = value,
                DT_GNU_HASH => t.gnu_hash = Some(value),
                DT_HASH => t.hash = Some(value),
                DT_SYMENT if value != SYM_SIZE => return None,
                _ => {}
            }
        }
        t.symtab = symtab?;
        t.strtab = strtab?;
        (t.gnu_hash.is_some() || t.hash.is_some()).then_some(t)
    }
}

/// A defined symbol: its link-time value, size and type (`STT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub value: u64,
    pub size: u64,
    pub kind: u8,
}

/// `STT_OBJECT`, `STT_FUNC`.
pub const STT_OBJECT: u8 = 1;
pub const STT_FUNC: u8 = 2;

fn gnu_hash(name: &[u8]) -> u32 {
    name.iter()
        .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32))
}

fn sysv_hash(name: &[u8]) -> u32 {
    name.iter().fold(0u32, |h, &c| {
        let h = (h << 4).wrapping_add(c as u32);
        let g = h & 0xf000_0000;
        (h ^ (g >> 24)) & !g
    })
}

/// Looks `name` up; `read(vaddr, buf)` fills `buf` with the file's bytes
/// at link-time address `vaddr`, or says they do not exist. Only defined
/// symbols (`st_shndx != 0`) are returned.
pub fn lookup(
    tables: &Tables,
    name: &[u8],
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<Symbol> {
    if name.is_empty() || name.len() > NAME_MAX {
        return None;
    }
    match tables.gnu_hash {
        Some(at) => lookup_gnu(tables, at, name, read),
        None => lookup_sysv(tables, tables.hash?, name, read),
    }
}

fn u32_of(read: &mut dyn FnMut(u64, &mut [u8]) -> bool, at: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    read(at, &mut b).then(|| u32_at(&b, 0))
}

/// Symbol `index` if it is defined and named `name`.
fn symbol_named(
    tables: &Tables,
    index: u64,
    name: &[u8],
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<Symbol> {
    let mut sym = [0u8; SYM_SIZE as usize];
    let at = tables.symtab.checked_add(index.checked_mul(SYM_SIZE)?)?;
    if !read(at, &mut sym) {
        return None;
    }
    let st_name = u32_at(&sym, 0) as u64;
    let shndx = u16::from_le_bytes([sym[6], sym[7]]);
    if shndx == 0 || st_name.checked_add(name.len() as u64 + 1)? > tables.strsz {
        return None;
    }
    let mut found = [0u8; NAME_MAX + 1];
    let found = &mut found[..name.len() + 1];
    if !read(tables.strtab.checked_add(st_name)?, found) {
        return None;
    }
    (&found[..name.len()] == name && found[name.len()] == 0).then(|| Symbol {
        value: u64_at(&sym, 8),
        size: u64_at(&sym, 16),
        kind: sym[4] & 0xf,
    })
}

fn lookup_gnu(
    tables: &Tables,
    at: u64,
    name: &[u8],
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<Symbol> {
    let mut head = [0u8; 16];
    if !read(at, &mut head) {
        return None;
    }
    let nbuckets = u32_at(&head, 0) as u64;
    let symoffset = u32_at(&head, 4) as u64;
    let bloom_words = u32_at(&head, 8) as u64;
    if nbuckets == 0 {
        return None;
    }
    let hash = gnu_hash(name);
    let buckets = at + 16 + bloom_words.checked_mul(8)?;
    let chains = buckets.checked_add(nbuckets * 4)?;
    let mut index = u32_of(read, buckets + (hash as u64 % nbuckets) * 4)? as u64;
    if index < symoffset {
        return None;
    }
    for _ in 0..CHAIN_MAX {
        let chain = u32_of(read, chains.checked_add((index - symoffset) * 4)?)?;
        if chain | 1 == hash | 1 {
            if let Some(sym) = symbol_named(tables, index, name, read) {
                return Some(sym);
            }
        }
        if chain & 1 != 0 {
            return None;
        }
        index += 1;
    }
    None
}

fn lookup_sysv(
    tables: &Tables,
    at: u64,
    name: &[u8],
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<Symbol> {
    let nbucket = u32_of(read, at)? as u64;
    let nchain = u32_of(read, at + 4)? as u64;
    if nbucket == 0 {
        return None;
    }
    let bucket = at + 8 + (sysv_hash(name) as u64 % nbucket) * 4;
    let chains = at + 8 + nbucket * 4;
    let mut index = u32_of(read, bucket)? as u64;
    for _ in 0..nchain.min(CHAIN_MAX) {
        if index == 0 || index >= nchain {
            return None;
        }
        if let Some(sym) = symbol_named(tables, index, name, read) {
            return Some(sym);
        }
        index = u32_of(read, chains + index * 4)? as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little image: symbols, strings and both hash tables laid out at
    /// link-time address 0 of a byte vector.
    struct Built {
        bytes: Vec<u8>,
        tables: Tables,
    }

    fn build(names: &[(&str, u64, u8)], gnu: bool) -> Built {
        let mut strtab = vec![0u8];
        let mut syms = vec![0u8; 24]; // the null symbol
        let mut offsets = vec![];
        for (name, value, kind) in names {
            offsets.push(strtab.len() as u32);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            let mut s = [0u8; 24];
            s[0..4].copy_from_slice(&offsets.last().unwrap().to_le_bytes());
            s[4] = 0x10 | kind; // STB_GLOBAL
            s[6..8].copy_from_slice(&7u16.to_le_bytes());
            s[8..16].copy_from_slice(&value.to_le_bytes());
            s[16..24].copy_from_slice(&5u64.to_le_bytes());
            syms.extend_from_slice(&s);
        }
        let mut bytes = vec![];
        let symtab = 0u64;
        bytes.extend_from_slice(&syms);
        let strtab_at = bytes.len() as u64;
        bytes.extend_from_slice(&strtab);
        while bytes.len() % 8 != 0 {
            bytes.push(0);
        }
        let hash_at = bytes.len() as u64;
        let n = names.len() as u32 + 1;
        if gnu {
            // Every symbol (from index 1) in one bucket of two: the chain
            // must be sorted by bucket, so put each in bucket hash % 2 and
            // order them that way.
            let nb = 2u32;
            bytes.extend_from_slice(&nb.to_le_bytes());
            bytes.extend_from_slice(&1u32.to_le_bytes()); // symoffset
            bytes.extend_from_slice(&1u32.to_le_bytes()); // bloom words
            bytes.extend_from_slice(&0u32.to_le_bytes()); // bloom shift
            bytes.extend_from_slice(&u64::MAX.to_le_bytes());
            let hashes: Vec<u32> = names
                .iter()
                .map(|(s, _, _)| gnu_hash(s.as_bytes()))
                .collect();
            // The test passes names already ordered by bucket.
            for b in 0..nb {
                let first = hashes.iter().position(|h| h % nb == b);
                bytes.extend_from_slice(&first.map_or(0, |i| i as u32 + 1).to_le_bytes());
            }
            for (i, h) in hashes.iter().enumerate() {
                let last = hashes.get(i + 1).is_none_or(|n| n % nb != h % nb);
                let v = if last { h | 1 } else { h & !1 };
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        } else {
            let nb = 3u32;
            bytes.extend_from_slice(&nb.to_le_bytes());
            bytes.extend_from_slice(&n.to_le_bytes());
            let mut buckets = vec![0u32; nb as usize];
            let mut chains = vec![0u32; n as usize];
            for (i, (s, _, _)) in names.iter().enumerate() {
                let idx = i as u32 + 1;
                let b = (sysv_hash(s.as_bytes()) % nb) as usize;
                chains[idx as usize] = buckets[b];
                buckets[b] = idx;
            }
            for v in buckets.iter().chain(chains.iter()) {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        Built {
            tables: Tables {
                symtab,
                strtab: strtab_at,
                strsz: strtab.len() as u64,
                gnu_hash: gnu.then_some(hash_at),
                hash: (!gnu).then_some(hash_at),
            },
            bytes,
        }
    }

    fn find(b: &Built, name: &str) -> Option<Symbol> {
        let bytes = &b.bytes;
        lookup(&b.tables, name.as_bytes(), &mut |at, buf| {
            let Some(end) = (at as usize).checked_add(buf.len()) else {
                return false;
            };
            match bytes.get(at as usize..end) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        })
    }

    fn sorted_by_gnu_bucket(names: &[&'static str]) -> Vec<(&'static str, u64, u8)> {
        let mut v: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    *n,
                    0x1000 + i as u64 * 16,
                    if i % 2 == 0 { STT_FUNC } else { STT_OBJECT },
                )
            })
            .collect();
        v.sort_by_key(|(n, _, _)| gnu_hash(n.as_bytes()) % 2);
        v
    }

    #[test]
    fn finds_every_symbol_through_either_hash_table() {
        let names = [
            "_dl_debug_state",
            "_r_debug",
            "_dl_debug_addr",
            "malloc",
            "free",
            "x",
        ];
        for gnu in [true, false] {
            let symbols = sorted_by_gnu_bucket(&names);
            let b = build(&symbols, gnu);
            for (name, value, kind) in &symbols {
                let s = find(&b, name).unwrap_or_else(|| panic!("{name} (gnu {gnu})"));
                assert_eq!((s.value, s.kind, s.size), (*value, *kind, 5), "{name}");
            }
            assert_eq!(find(&b, "_dl_debug_stat"), None);
            assert_eq!(find(&b, "_dl_debug_statex"), None);
            assert_eq!(find(&b, ""), None);
        }
    }

    #[test]
    fn truncated_or_looping_tables_give_none() {
        let symbols = sorted_by_gnu_bucket(&["a", "b", "c"]);
        for gnu in [true, false] {
            let mut b = build(&symbols, gnu);
            let len = b.bytes.len();
            b.bytes.truncate(len - 4);
            // The last chain word is gone: lookups that reach it fail, and
            // nothing panics.
            for (name, _, _) in &symbols {
                let _ = find(&b, name);
            }
        }
        // A SysV chain that points at itself ends.
        let mut b = build(&symbols, false);
        let at = b.tables.hash.unwrap() as usize;
        let nb = u32_at(&b.bytes, at) as usize;
        for i in 0..4 {
            let c = at + 8 + nb * 4 + i * 4;
            b.bytes[c..c + 4].copy_from_slice(&(i as u32).to_le_bytes());
        }
        let _ = find(&b, "zzz");
    }

    #[test]
    fn tables_need_symbols_strings_and_a_hash() {
        let all = [
            (DT_SYMTAB, 1),
            (DT_STRTAB, 2),
            (DT_STRSZ, 3),
            (DT_GNU_HASH, 4),
        ];
        let t = Tables::from_dynamic(all.into_iter()).unwrap();
        assert_eq!(
            (t.symtab, t.strtab, t.strsz, t.gnu_hash, t.hash),
            (1, 2, 3, Some(4), None)
        );
        assert_eq!(Tables::from_dynamic(all[..3].iter().copied()), None);
        assert_eq!(Tables::from_dynamic(all[1..].iter().copied()), None);
        let odd = all.into_iter().chain([(DT_SYMENT, 16)]);
        assert_eq!(Tables::from_dynamic(odd), None);
    }

    #[test]
    fn hash_functions_match_the_abi() {
        // Values from the ELF gABI and the GNU hash's definition.
        assert_eq!(gnu_hash(b""), 5381);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(sysv_hash(b"printf"), 0x0779_05a6);
    }
}
