//! Looking a soname up in glibc's `/etc/ld.so.cache`, as ld.so's
//! `_dl_load_cache_lookup` (elf/dl-cache.c) does. The layout is the one of
//! sysdeps/generic/dl-cache.h: the new format (`glibc-ld.so.cache1.1`, a
//! 48-byte header, 24-byte entries, string offsets from the header's start),
//! the old libc5 format (`ld.so-1.7.0`, 12-byte entries, offsets from the end
//! of the entries), or the old format with the new one hidden in its string
//! table (then ld.so uses the new part). Integers are little-endian: the
//! header's endian flag must say so, as hugeload only runs on little-endian
//! machines.
//!
//! glibc-hwcaps entries (a subdirectory per ISA level, chosen by CPU
//! features) are never picked: [`LdCache::lookup`] gives the baseline entry,
//! which is what ld.so picks on a CPU that no hwcaps subdirectory suits.
//! Entries with legacy hwcap bits are skipped, as glibc 2.37 and later do.

use core::cmp::Ordering;

/// `_DL_CACHE_DEFAULT_ID` of x86-64: FLAG_ELF_LIBC6 | FLAG_X8664_LIB64.
pub const FLAGS_X86_64: u32 = 0x0303;
/// `_DL_CACHE_DEFAULT_ID` of aarch64: FLAG_ELF_LIBC6 | FLAG_AARCH64_LIB64.
pub const FLAGS_AARCH64: u32 = 0x0a03;

const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";
const HEAD_NEW: usize = 48;
const ENTRY_NEW: usize = 24;
const HEAD_OLD: usize = 16;
const ENTRY_OLD: usize = 12;
/// `DL_CACHE_HWCAP_EXTENSION`: the entry lives in a glibc-hwcaps subdirectory.
const HWCAP_EXTENSION: u64 = 1 << 62;
/// `DL_CACHE_HWCAP_ISA_LEVEL_MASK`, in the upper half of `hwcap`.
const ISA_LEVEL_MASK: u64 = (1 << 10) - 1;

/// A validated view of an ld.so.cache file, for one architecture.
#[derive(Clone, Copy, Debug)]
pub struct LdCache<'a> {
    /// The entries, `entry_size` bytes each.
    entries: &'a [u8],
    entry_size: usize,
    /// The bytes string offsets count from.
    strings: &'a [u8],
    flags: u32,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_le_bytes(b.get(at..end)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    Some(u64::from_le_bytes(b.get(at..end)?.try_into().ok()?))
}

/// The NUL-terminated string at `off`; the end of `b` ends it too.
fn cstr(b: &[u8], off: u32) -> Option<&[u8]> {
    let s = b.get(usize::try_from(off).ok()?..)?;
    Some(&s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())])
}

/// The new-format entries at the start of `b`, as glibc validates them:
/// the file must be longer than the header and hold `nlibs` entries.
fn new_format(b: &[u8], flags: u32) -> Option<LdCache<'_>> {
    let nlibs = usize::try_from(u32_at(b, 20)?).ok()?;
    let endian = *b.get(28)?;
    // `cache_file_new_matches_endian`: unset (0) or little (2).
    if endian != 0 && endian & 3 != 2 {
        return None;
    }
    let end = nlibs.checked_mul(ENTRY_NEW)?.checked_add(HEAD_NEW)?;
    if b.len() <= HEAD_NEW || end > b.len() {
        return None;
    }
    Some(LdCache {
        entries: b.get(HEAD_NEW..end)?,
        entry_size: ENTRY_NEW,
        strings: b,
        flags,
    })
}

impl<'a> LdCache<'a> {
    /// Validates the cache file `bytes` for the architecture whose cache flags
    /// are `flags` (e.g. [`FLAGS_X86_64`]). `None` if it is neither format,
    /// is truncated, or has the wrong endianness: ld.so then skips the cache.
    pub fn parse(bytes: &'a [u8], flags: u32) -> Option<LdCache<'a>> {
        if bytes.starts_with(MAGIC_NEW) {
            return new_format(bytes, flags);
        }
        if !bytes.starts_with(MAGIC_OLD) || bytes.len() <= HEAD_OLD {
            return None;
        }
        let nlibs = usize::try_from(u32_at(bytes, 12)?).ok()?;
        let end = nlibs.checked_mul(ENTRY_OLD)?.checked_add(HEAD_OLD)?;
        if end > bytes.len() {
            return None;
        }
        // The new format follows, aligned to 8 (`ALIGN_CACHE`), if present.
        let new_at = end.checked_add(7)? & !7;
        match bytes.get(new_at..) {
            Some(new) if new.len() >= HEAD_NEW && new.starts_with(MAGIC_NEW) => {
                new_format(new, flags)
            }
            _ => Some(LdCache {
                entries: bytes.get(HEAD_OLD..end)?,
                entry_size: ENTRY_OLD,
                strings: bytes.get(end..)?,
                flags,
            }),
        }
    }

    fn entry(&self, i: usize) -> Option<&'a [u8]> {
        let at = i.checked_mul(self.entry_size)?;
        self.entries.get(at..at.checked_add(self.entry_size)?)
    }

    /// The key (soname) of entry `i`; `None` if the entry or the offset is
    /// out of bounds (`_dl_cache_verify_ptr`), which ends the search.
    fn key(&self, i: usize) -> Option<&'a [u8]> {
        let off = u32_at(self.entry(i)?, 4)?;
        if usize::try_from(off).ok()? >= self.strings.len() {
            return None;
        }
        cstr(self.strings, off)
    }

    fn len(&self) -> usize {
        self.entries.len() / self.entry_size
    }

    /// The path the cache gives for soname `name`, as `search_cache` finds
    /// it: a binary search (the entries are sorted by [`libcmp`], descending),
    /// back to the first entry of that name, then the first entry whose flags
    /// equal this architecture's and that is not a hwcaps variant.
    pub fn lookup(&self, name: &[u8]) -> Option<&'a [u8]> {
        // The same probes as glibc's, so that a corrupt (unsorted) table
        // gives the same answer.
        let (mut left, mut right) = (0i64, i64::try_from(self.len()).ok()? - 1);
        while left <= right {
            let middle = (left + right) / 2;
            let at = usize::try_from(middle).ok()?;
            match libcmp(name, self.key(at)?) {
                Ordering::Less => left = middle + 1,
                Ordering::Greater => right = middle - 1,
                Ordering::Equal => {
                    let mut first = at;
                    while first > 0 && self.key(first - 1).is_some_and(|k| libcmp(name, k).is_eq())
                    {
                        first -= 1;
                    }
                    return (first..=usize::try_from(right).ok()?)
                        .map_while(|i| Some((self.entry(i)?, self.key(i)?)))
                        .take_while(|&(_, key)| libcmp(name, key).is_eq())
                        .find_map(|(e, _)| self.usable(e));
                }
            }
        }
        None
    }

    /// The path of entry `e` if ld.so may use it for the baseline.
    fn usable(&self, e: &'a [u8]) -> Option<&'a [u8]> {
        if u32_at(e, 0)? != self.flags {
            return None;
        }
        if self.entry_size == ENTRY_NEW {
            let hwcap = u64_at(e, 16)?;
            let named = (hwcap >> 32) & !ISA_LEVEL_MASK == HWCAP_EXTENSION >> 32;
            if named || hwcap != 0 {
                return None;
            }
        }
        let value = u32_at(e, 8)?;
        if usize::try_from(value).ok()? >= self.strings.len() {
            return None;
        }
        cstr(self.strings, value)
    }
}

/// `_dl_cache_libcmp`: byte order, except that runs of digits compare as
/// numbers and sort after everything else, so `libfoo.so.10` follows
/// `libfoo.so.9`. The numbers are compared by length then digits, so any
/// length works without overflow.
pub fn libcmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    loop {
        let (Some((&x, ra)), Some((&y, rb))) = (a.split_first(), b.split_first()) else {
            return a.len().cmp(&b.len());
        };
        match (x.is_ascii_digit(), y.is_ascii_digit()) {
            (true, true) => {
                let ((n, ra), (m, rb)) = (number(a), number(b));
                let ord = n.len().cmp(&m.len()).then_with(|| n.cmp(m));
                if ord.is_ne() {
                    return ord;
                }
                (a, b) = (ra, rb);
            }
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ if x != y => return x.cmp(&y),
            _ => (a, b) = (ra, rb),
        }
    }
}

/// The leading digits of `s` without leading zeros, and the rest of `s`.
fn number(s: &[u8]) -> (&[u8], &[u8]) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (d, rest) = s.split_at(digits);
    (&d[d.iter().take_while(|&&c| c == b'0').count()..], rest)
}

#[cfg(test)]
pub mod testing {
    //! Builders of cache bytes, for this module's tests and libsearch's.
    use super::*;
    use std::vec::Vec;

    /// One entry: flags, soname, path, hwcap.
    pub type Entry<'a> = (u32, &'a str, &'a str, u64);

    /// The strings of `entries` after `base` bytes, and each one's offset.
    fn strings(entries: &[Entry], base: usize) -> (Vec<u8>, Vec<(u32, u32)>) {
        let mut s = Vec::new();
        let mut offs = Vec::new();
        for &(_, k, v, _) in entries {
            let ko = (base + s.len()) as u32;
            s.extend_from_slice(k.as_bytes());
            s.push(0);
            let vo = (base + s.len()) as u32;
            s.extend_from_slice(v.as_bytes());
            s.push(0);
            offs.push((ko, vo));
        }
        (s, offs)
    }

    /// A new-format cache holding `entries` in the given order.
    pub fn new_cache(entries: &[Entry]) -> Vec<u8> {
        let head = HEAD_NEW + ENTRY_NEW * entries.len();
        let (s, offs) = strings(entries, head);
        let mut b = Vec::from(MAGIC_NEW);
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(&[2, 0, 0, 0]);
        b.resize(HEAD_NEW, 0);
        for (&(flags, _, _, hwcap), (k, v)) in entries.iter().zip(offs) {
            for w in [flags, k, v, 0] {
                b.extend_from_slice(&w.to_le_bytes());
            }
            b.extend_from_slice(&hwcap.to_le_bytes());
        }
        b.extend_from_slice(&s);
        b
    }

    /// An old-format cache of `old` entries, with `new` (a new-format cache)
    /// hidden at the start of its string table, as ldconfig's "compat" format.
    pub fn old_cache(old: &[Entry], new: &[u8]) -> Vec<u8> {
        let mut b = Vec::from(MAGIC_OLD);
        b.push(0);
        b.extend_from_slice(&(old.len() as u32).to_le_bytes());
        let end = HEAD_OLD + ENTRY_OLD * old.len();
        let pad = (8 - end % 8) % 8;
        let (s, offs) = strings(old, pad + new.len());
        for (&(flags, ..), (k, v)) in old.iter().zip(offs) {
            for w in [flags, k, v] {
                b.extend_from_slice(&w.to_le_bytes());
            }
        }
        b.resize(end + pad, 0);
        b.extend_from_slice(new);
        b.extend_from_slice(&s);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use proptest::prelude::*;

    const X: u32 = FLAGS_X86_64;

    fn lookup<'a>(b: &'a [u8], name: &str) -> Option<&'a str> {
        let c = LdCache::parse(b, X)?;
        c.lookup(name.as_bytes())
            .map(|p| core::str::from_utf8(p).unwrap())
    }

    #[test]
    fn finds_libc_in_this_machines_cache() {
        let Ok(b) = std::fs::read("/etc/ld.so.cache") else {
            return;
        };
        let c = LdCache::parse(&b, X).expect("a valid cache");
        assert_eq!(
            c.lookup(b"libc.so.6"),
            Some(&b"/lib/x86_64-linux-gnu/libc.so.6"[..])
        );
        assert_eq!(
            c.lookup(b"libm.so.6"),
            Some(&b"/lib/x86_64-linux-gnu/libm.so.6"[..])
        );
        assert_eq!(c.lookup(b"libnot-there.so.1"), None);
        assert_eq!(
            LdCache::parse(&b, FLAGS_AARCH64)
                .unwrap()
                .lookup(b"libc.so.6"),
            None
        );
        // Every soname it holds is found: the binary search agrees with the
        // order ldconfig wrote.
        for i in 0..c.len() {
            if c.usable(c.entry(i).unwrap()).is_some() {
                assert!(c.lookup(c.key(i).unwrap()).is_some());
            }
        }
    }

    fn sample() -> Vec<u8> {
        // Sorted as ldconfig sorts: descending by libcmp.
        new_cache(&[
            (X, "libz.so.1", "/lib/libz.so.1", 0),
            (X, "libfoo.so.10", "/lib/libfoo.so.10", 0),
            (X, "libfoo.so.9", "/lib/libfoo.so.9", 0),
            (
                X,
                "libc.so.6",
                "/h/glibc-hwcaps/x86-64-v3/libc.so.6",
                HWCAP_EXTENSION | 3 << 32,
            ),
            (X, "libc.so.6", "/legacy/libc.so.6", 1 << 3),
            (0x0803, "libc.so.6", "/libx32/libc.so.6", 0),
            (X, "libc.so.6", "/lib/libc.so.6", 0),
            (X, "libc.so.6", "/second/libc.so.6", 0),
            (X, "liba.so", "/lib/liba.so", 0),
        ])
    }

    #[test]
    fn picks_the_first_baseline_entry_of_this_arch() {
        let b = sample();
        assert_eq!(lookup(&b, "libc.so.6"), Some("/lib/libc.so.6"));
        assert_eq!(lookup(&b, "libfoo.so.9"), Some("/lib/libfoo.so.9"));
        assert_eq!(lookup(&b, "libfoo.so.10"), Some("/lib/libfoo.so.10"));
        assert_eq!(lookup(&b, "libz.so.1"), Some("/lib/libz.so.1"));
        assert_eq!(lookup(&b, "liba.so"), Some("/lib/liba.so"));
        assert_eq!(lookup(&b, "libfoo.so.1"), None);
        assert_eq!(lookup(&b, "libc.so"), None);
        let c = LdCache::parse(&b, 0x0803).unwrap();
        assert_eq!(c.lookup(b"libc.so.6"), Some(&b"/libx32/libc.so.6"[..]));
    }

    #[test]
    fn compares_numbers_as_numbers() {
        assert_eq!(libcmp(b"libfoo.so.10", b"libfoo.so.9"), Ordering::Greater);
        assert_eq!(libcmp(b"libfoo.so.09", b"libfoo.so.9"), Ordering::Equal);
        assert_eq!(libcmp(b"lib1", b"liba"), Ordering::Greater);
        assert_eq!(libcmp(b"liba", b"lib1"), Ordering::Less);
        assert_eq!(libcmp(b"libc.so", b"libc.so.6"), Ordering::Less);
        assert_eq!(
            libcmp(b"x99999999999999999999999", b"x99999999999999999999998"),
            Ordering::Greater
        );
    }

    #[test]
    fn reads_the_old_format_and_the_new_one_inside_it() {
        let new = sample();
        let bogus = [(X, "libc.so.6", "/old/libc.so.6", 0)];
        assert_eq!(
            lookup(&old_cache(&bogus, &new), "libc.so.6"),
            Some("/lib/libc.so.6")
        );
        assert_eq!(
            lookup(&old_cache(&bogus, b"not a new cache"), "libc.so.6"),
            Some("/old/libc.so.6")
        );
        assert_eq!(
            lookup(&old_cache(&bogus, &[]), "libc.so.6"),
            Some("/old/libc.so.6")
        );
        let two = [
            (X, "libz.so.1", "/old/libz.so.1", 0),
            (X, "libc.so.6", "/old/libc.so.6", 0),
        ];
        assert_eq!(
            lookup(&old_cache(&two, &[]), "libz.so.1"),
            Some("/old/libz.so.1")
        );
    }

    #[test]
    fn refuses_corrupt_caches() {
        let mut b = sample();
        b[28] = 3; // big-endian
        assert!(LdCache::parse(&b, X).is_none());
        assert!(lookup(&old_cache(&[], &b), "libc.so.6").is_none());
        let mut b = sample();
        b[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // nlibs
        assert!(LdCache::parse(&b, X).is_none());
        let mut b = sample();
        b[HEAD_NEW + 4..HEAD_NEW + 8].copy_from_slice(&u32::MAX.to_le_bytes()); // a key
        assert_eq!(lookup(&b, "libz.so.1"), None);
        let mut b = sample();
        let last = HEAD_NEW + 8 * ENTRY_NEW;
        b[last + 8..last + 12].copy_from_slice(&u32::MAX.to_le_bytes()); // a value
        assert_eq!(lookup(&b, "liba.so"), None);
        assert!(LdCache::parse(MAGIC_NEW, X).is_none());
        assert!(LdCache::parse(b"", X).is_none());
    }

    #[test]
    fn every_truncation_is_refused_or_harmless() {
        for full in [
            sample(),
            old_cache(&[(X, "libc.so.6", "/old/libc.so.6", 0)], &sample()),
        ] {
            for n in 0..full.len() {
                if let Some(c) = LdCache::parse(&full[..n], X) {
                    for name in ["libc.so.6", "libz.so.1", "liba.so", ""] {
                        let _ = c.lookup(name.as_bytes());
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                        name in proptest::collection::vec(any::<u8>(), 0..12)) {
            for mut b in [bytes.clone(), [MAGIC_NEW, &bytes].concat(), [MAGIC_OLD, &bytes].concat()] {
                if b.len() > 28 && b.starts_with(MAGIC_NEW) {
                    b[20..24].copy_from_slice(&(bytes.len() as u32 / 32).to_le_bytes());
                    b[28] = 2;
                }
                if let Some(c) = LdCache::parse(&b, X) {
                    let _ = c.lookup(&name);
                }
            }
        }
    }
}
