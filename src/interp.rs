//! Which program interpreter (ld.so) runs a program, from its dynamic
//! section. Used when PT_INTERP names hugeload itself (a program patched for
//! PT_INTERP mode): the real interpreter then comes from hugeload's own
//! knowledge.

use goblin::elf::dynamic::{DT_FLAGS_1, DT_NEEDED, DT_SONAME, DT_STRTAB};

/// `DF_1_PIE` in `DT_FLAGS_1`.
const DF_1_PIE: u64 = 0x0800_0000;
/// How many bytes of a DT_NEEDED name [`Linking::scan`] needs to see.
pub const NAME_PREFIX: usize = 11;

/// How a program links, from its dynamic section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Linking {
    /// It names shared libraries (DT_NEEDED).
    pub has_needed: bool,
    /// One of them is musl's libc: `libc.musl-*.so.1` (Alpine and musl's
    /// own install) or plain `libc.so` (Debian's musl-gcc); glibc programs
    /// need `libc.so.6`.
    pub needs_musl: bool,
    /// DT_FLAGS_1 has DF_1_PIE.
    pub pie_flag: bool,
    /// It has a DT_SONAME: it is a shared library.
    pub has_soname: bool,
}

/// Whether a DT_NEEDED name (its first bytes, NUL included when it is
/// short) names musl's libc.
pub fn is_musl_libc(name: &[u8]) -> bool {
    name.starts_with(b"libc.musl-") || name.starts_with(b"libc.so\0")
}

impl Linking {
    /// Reads the dynamic entries (`for_each(f)` calls `f(d_tag, d_val)` for
    /// each up to DT_NULL, and is called twice). `read_name(strtab, offset, buf)`
    /// fills `buf` with the first bytes of the string at `offset` in the
    /// string table whose address is DT_STRTAB's `strtab`, and returns how
    /// many it read.
    pub fn scan(
        for_each: impl Fn(&mut dyn FnMut(u64, u64)),
        mut read_name: impl FnMut(u64, u64, &mut [u8; NAME_PREFIX]) -> usize,
    ) -> Linking {
        let mut strtab = None;
        for_each(&mut |tag, value| {
            if tag == DT_STRTAB && strtab.is_none() {
                strtab = Some(value);
            }
        });
        let mut linking = Linking::default();
        for_each(&mut |tag, value| match tag {
            DT_NEEDED => {
                linking.has_needed = true;
                if let Some(strtab) = strtab {
                    let mut name = [0u8; NAME_PREFIX];
                    let n = read_name(strtab, value, &mut name).min(NAME_PREFIX);
                    linking.needs_musl |= is_musl_libc(&name[..n]);
                }
            }
            DT_FLAGS_1 => linking.pie_flag = value & DF_1_PIE != 0,
            DT_SONAME => linking.has_soname = true,
            _ => {}
        });
        linking
    }
}

/// The standard interpreters of the machine hugeload runs on.
#[derive(Clone, Copy, Debug)]
pub struct Standard<'a> {
    pub glibc: &'a [u8],
    pub musl: &'a [u8],
}

/// The interpreter that really runs a program: `from_env` (HUGELOAD_INTERP,
/// which the caller gives only when the program is not a secure-execution
/// one), else the standard loader for its libc; none for a program without
/// DT_NEEDED. `linking` is `None` when the program could not be read: the
/// glibc loader then.
pub fn choose<'a>(
    from_env: Option<&'a [u8]>,
    linking: Option<Linking>,
    standard: Standard<'a>,
) -> Option<&'a [u8]> {
    if let Some(path) = from_env.filter(|p| !p.is_empty()) {
        return Some(path);
    }
    match linking {
        None => Some(standard.glibc),
        Some(l) if !l.has_needed => None,
        Some(l) if l.needs_musl => Some(standard.musl),
        Some(_) => Some(standard.glibc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STD: Standard = Standard {
        glibc: b"/lib64/ld-linux-x86-64.so.2",
        musl: b"/lib/ld-musl-x86_64.so.1",
    };

    fn scan(entries: &[(u64, u64)], names: &[(u64, &[u8])]) -> Linking {
        Linking::scan(
            |f| entries.iter().for_each(|&(t, v)| f(t, v)),
            |strtab, off, buf| {
                assert_eq!(strtab, 0x400);
                let name = names
                    .iter()
                    .find(|(o, _)| *o == off)
                    .map_or(&b""[..], |n| n.1);
                let n = name.len().min(buf.len());
                buf[..n].copy_from_slice(&name[..n]);
                n
            },
        )
    }

    #[test]
    fn musl_glibc_and_static_programs() {
        let glibc = scan(
            &[(DT_NEEDED, 1), (DT_STRTAB, 0x400)],
            &[(1, b"libc.so.6\0")],
        );
        assert!(glibc.has_needed && !glibc.needs_musl);
        let musl = scan(&[(DT_NEEDED, 1), (DT_STRTAB, 0x400)], &[(1, b"libc.so\0")]);
        assert!(musl.needs_musl);
        let alpine = scan(
            &[(DT_STRTAB, 0x400), (DT_NEEDED, 5), (DT_NEEDED, 9)],
            &[(5, b"libz.so.1\0"), (9, b"libc.musl-x86_64.so.1\0")],
        );
        assert!(alpine.needs_musl);
        let pie = scan(&[(DT_FLAGS_1, DF_1_PIE), (DT_SONAME, 3)], &[]);
        assert!(!pie.has_needed && pie.pie_flag && pie.has_soname);

        assert_eq!(choose(None, Some(glibc), STD), Some(STD.glibc));
        assert_eq!(choose(None, Some(musl), STD), Some(STD.musl));
        assert_eq!(choose(None, Some(pie), STD), None);
        assert_eq!(choose(None, None, STD), Some(STD.glibc));
        assert_eq!(
            choose(Some(b"/x/ld.so"), Some(pie), STD),
            Some(&b"/x/ld.so"[..])
        );
        assert_eq!(choose(Some(b""), Some(musl), STD), Some(STD.musl));
    }
}
