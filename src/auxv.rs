//! The auxiliary vector a program is entered with: the kernel's, with the
//! entries that describe the loaded program replaced.

use linux_raw_sys::auxvec::{
    AT_BASE, AT_ENTRY, AT_EXECFD, AT_EXECFN, AT_FLAGS, AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM,
};

/// Room for the auxv entries; the kernel passes fewer than 32 on x86-64.
pub const MAX_AUXV: usize = 48;

pub type Auxv = heapless::Vec<(u64, u64), MAX_AUXV>;

/// What the program's auxv must say about the program and its interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramFacts {
    pub phdr: u64,
    pub phent: u64,
    pub phnum: u64,
    pub entry: u64,
    /// The interpreter's base, or 0 for a static program.
    pub base: u64,
}

/// The value of `key` in `auxv`.
pub fn get(auxv: &[(u64, u64)], key: u32) -> Option<u64> {
    auxv.iter().find(|(k, _)| *k == key as u64).map(|(_, v)| *v)
}

/// Rewrites the kernel's `auxv` for the program, keeping the kernel's order
/// and every entry that describes the machine or the process (vDSO, hwcaps,
/// credentials, AT_SECURE, AT_RANDOM, AT_PLATFORM, rseq). AT_FLAGS becomes 0;
/// AT_EXECFD is dropped (its fd is closed by the caller). AT_EXECFN is kept
/// (added if missing) for the stack writer to point at the program's path.
/// The result ends without AT_NULL: the stack writer adds it.
pub fn for_program(kernel: &[(u64, u64)], facts: &ProgramFacts) -> Auxv {
    let mut out = Auxv::new();
    let mut seen_execfn = false;
    for &(key, value) in kernel {
        let value = match key as u32 {
            AT_NULL => break,
            AT_EXECFD => continue,
            AT_PHDR => facts.phdr,
            AT_PHENT => facts.phent,
            AT_PHNUM => facts.phnum,
            AT_ENTRY => facts.entry,
            AT_BASE => facts.base,
            AT_FLAGS => 0,
            AT_EXECFN => {
                seen_execfn = true;
                value
            }
            _ => value,
        };
        // The input came from a vector of at most MAX_AUXV entries.
        let _ = out.push((key, value));
    }
    if !seen_execfn {
        let _ = out.push((AT_EXECFN as u64, 0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_raw_sys::auxvec::{AT_PAGESZ, AT_RANDOM, AT_SECURE, AT_SYSINFO_EHDR};

    #[test]
    fn replaces_program_entries_and_keeps_the_rest_in_order() {
        let kernel = [
            (AT_SYSINFO_EHDR as u64, 0x7fff_0000_0000),
            (AT_PAGESZ as u64, 4096),
            (AT_PHDR as u64, 0x1040),
            (AT_PHENT as u64, 56),
            (AT_PHNUM as u64, 6),
            (AT_BASE as u64, 0),
            (AT_FLAGS as u64, 1),
            (AT_ENTRY as u64, 0x2000),
            (AT_SECURE as u64, 0),
            (AT_RANDOM as u64, 0x7ffd_0000_0010),
            (AT_EXECFN as u64, 0x7ffd_0000_0fe0),
            (AT_EXECFD as u64, 3),
            (AT_NULL as u64, 0),
            (AT_PAGESZ as u64, 9999),
        ];
        let facts = ProgramFacts {
            phdr: 0x400040,
            phent: 56,
            phnum: 13,
            entry: 0x401000,
            base: 0x7f00_0000_0000,
        };
        let out = for_program(&kernel, &facts);
        assert_eq!(out.len(), 11);
        assert_eq!(out[0], (AT_SYSINFO_EHDR as u64, 0x7fff_0000_0000));
        assert_eq!(get(&out, AT_PHDR), Some(0x400040));
        assert_eq!(get(&out, AT_PHNUM), Some(13));
        assert_eq!(get(&out, AT_ENTRY), Some(0x401000));
        assert_eq!(get(&out, AT_BASE), Some(0x7f00_0000_0000));
        assert_eq!(get(&out, AT_FLAGS), Some(0));
        assert_eq!(get(&out, AT_EXECFN), Some(0x7ffd_0000_0fe0));
        assert_eq!(get(&out, AT_RANDOM), Some(0x7ffd_0000_0010));
        assert_eq!(get(&out, AT_EXECFD), None);
        assert_eq!(get(&out, AT_PAGESZ), Some(4096));
    }
}
