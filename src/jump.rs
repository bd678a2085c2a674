//! The bytes that turn the start of a function into a jump elsewhere, and
//! whether a function has room for them. hugeload writes such a jump over
//! ld.so's `_dl_debug_state` (an empty function: `ret`) to run its own code
//! each time ld.so's link map changes. The architecture file picks the
//! encoder of its machine: x86-64 (`jmp rel32`, ±2 GiB) or aarch64 (`b`,
//! ±128 MiB).

/// Why the jump cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The function and the padding after it are shorter than the jump.
    NoRoom,
    /// The target is out of the jump's reach.
    TooFar,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NoRoom => "too small for a jump",
            Refusal::TooFar => "too far from hugeload for a jump",
        }
    }
}

/// Length of the x86-64 jump (`jmp rel32`).
pub const X86_64_JUMP_LEN: usize = 5;

/// Bytes compilers and assemblers put between x86-64 functions: `int3`,
/// `nop`, and the bytes of the multi-byte `nop` forms (`0f 1f /0` with
/// prefixes `66`, `2e` and their ModRM, SIB and zero displacements).
fn is_x86_64_padding(b: u8) -> bool {
    matches!(
        b,
        0xcc | 0x90 | 0x66 | 0x2e | 0x0f | 0x1f | 0x00 | 0x40 | 0x44 | 0x80 | 0x84
    )
}

/// A `jmp rel32` at address `from` to address `to`, written over a
/// function of `size` bytes whose bytes (and what follows them) are
/// `site`. The jump may run past the function's end only into padding
/// that ends at the function's 16-byte alignment boundary (where the next
/// function may start).
pub fn x86_64_jump(
    site: &[u8],
    size: u64,
    from: u64,
    to: u64,
) -> Result<[u8; X86_64_JUMP_LEN], Refusal> {
    let len = X86_64_JUMP_LEN as u64;
    if size < len {
        let boundary = from
            .checked_add(size.max(1))
            .and_then(|e| e.checked_next_multiple_of(16))
            .ok_or(Refusal::NoRoom)?;
        let padding = site
            .get(size as usize..X86_64_JUMP_LEN)
            .ok_or(Refusal::NoRoom)?;
        if from + len > boundary || !padding.iter().all(|&b| is_x86_64_padding(b)) {
            return Err(Refusal::NoRoom);
        }
    }
    let next = from.checked_add(len).ok_or(Refusal::TooFar)?;
    let rel = to.wrapping_sub(next) as i64;
    let rel = i32::try_from(rel).map_err(|_| Refusal::TooFar)?;
    let mut jump = [0xe9, 0, 0, 0, 0];
    jump[1..].copy_from_slice(&rel.to_le_bytes());
    Ok(jump)
}

/// Length of the aarch64 jump (`b imm26`).
pub const AARCH64_JUMP_LEN: usize = 4;

/// A `b` at address `from` to address `to`, written over the first
/// instruction of a function of `size` bytes (an empty function is one
/// `ret`, or `bti c; ret`). Reaches ±128 MiB.
pub fn aarch64_jump(size: u64, from: u64, to: u64) -> Result<[u8; AARCH64_JUMP_LEN], Refusal> {
    if size < AARCH64_JUMP_LEN as u64 || from % 4 != 0 {
        return Err(Refusal::NoRoom);
    }
    if to % 4 != 0 {
        return Err(Refusal::TooFar);
    }
    let offset = to.wrapping_sub(from) as i64;
    if !(-(1 << 27)..(1 << 27)).contains(&offset) {
        return Err(Refusal::TooFar);
    }
    let imm26 = ((offset >> 2) as u32) & 0x03ff_ffff;
    Ok((0x1400_0000 | imm26).to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc 2.36's `_dl_debug_state`: `ret` and a 15-byte `nop`.
    const GLIBC: [u8; 16] = [
        0xc3, 0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x1f, 0x40,
        0x00,
    ];

    #[test]
    fn jumps_over_a_ret_and_its_padding() {
        let j = x86_64_jump(&GLIBC, 1, 0x2060, 0x2060 + 5 + 0x1234).unwrap();
        assert_eq!(j, [0xe9, 0x34, 0x12, 0, 0]);
        let back = x86_64_jump(&GLIBC, 1, 0x10_0000, 0x1000).unwrap();
        let rel = i32::from_le_bytes(back[1..].try_into().unwrap());
        assert_eq!(0x10_0000i64 + 5 + rel as i64, 0x1000);
    }

    #[test]
    fn aarch64_branches_within_128_mib() {
        // b +8 is 0x14000002; b -4 is 0x17ffffff.
        assert_eq!(
            aarch64_jump(4, 0x1000, 0x1008),
            Ok(0x1400_0002u32.to_le_bytes())
        );
        assert_eq!(
            aarch64_jump(8, 0x1004, 0x1000),
            Ok(0x17ff_ffffu32.to_le_bytes())
        );
        let far = 0x1000 + (1 << 27);
        assert_eq!(aarch64_jump(4, 0x1000, far), Err(Refusal::TooFar));
        assert!(aarch64_jump(4, 0x1000, far - 4).is_ok());
        assert!(aarch64_jump(4, far, 0x1000).is_ok());
        assert_eq!(aarch64_jump(4, far + 4, 0x1000), Err(Refusal::TooFar));
        assert_eq!(aarch64_jump(0, 0x1000, 0x2000), Err(Refusal::NoRoom));
        assert_eq!(aarch64_jump(4, 0x1002, 0x2000), Err(Refusal::NoRoom));
        assert_eq!(aarch64_jump(4, 0x1000, 0x2002), Err(Refusal::TooFar));
    }

    #[test]
    fn refuses_what_would_overwrite_code_or_cannot_reach() {
        // The next function starts 4 bytes in: no room past the `ret`.
        assert_eq!(x86_64_jump(&GLIBC, 1, 0x206c, 0x3000), Err(Refusal::NoRoom));
        // Code, not padding, follows the function.
        let mut code = GLIBC;
        code[2] = 0x48;
        assert_eq!(x86_64_jump(&code, 1, 0x2060, 0x3000), Err(Refusal::NoRoom));
        // A function of 5 bytes or more holds the jump whatever follows.
        assert!(x86_64_jump(&code, 5, 0x2060, 0x3000).is_ok());
        assert_eq!(
            x86_64_jump(&GLIBC[..3], 1, 0x2060, 0x3000),
            Err(Refusal::NoRoom)
        );
        assert_eq!(
            x86_64_jump(&GLIBC, 1, 0x2060, 0x2060 + (1 << 31) + 5),
            Err(Refusal::TooFar)
        );
        assert!(x86_64_jump(&GLIBC, 1, 0x2060, 0x2060 + (1 << 31) + 4).is_ok());
        assert_eq!(
            x86_64_jump(&GLIBC, 1, u64::MAX - 2, 0),
            Err(Refusal::NoRoom)
        );
    }
}
