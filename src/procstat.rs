//! What hugeload reads of `/proc/PID/stat`: the memory-layout fields that
//! `PR_SET_MM_MAP` must be given back unchanged when only the saved auxv is
//! to change, and for `--stat`, whether a process with nothing mapped is a
//! kernel thread or a zombie; and what a process ID on a command line is.

/// `start_code` … `env_end` as `/proc/PID/stat` lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmFields {
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse(text: &[u8]) -> Option<MmFields> {
    let close = text.iter().rposition(|&b| b == b')')?;
    // Field 3 is the first after the name.
    let mut fields = text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let mut values = [0u64; 52];
    for slot in values.iter_mut().skip(3) {
        let Some(field) = fields.next() else { break };
        let field = field.strip_suffix(b"\n").unwrap_or(field);
        let field = core::str::from_utf8(field).ok()?;
        // The state letter and any other non-number count as 0.
        *slot = field
            .parse::<u64>()
            .or_else(|_| field.parse::<i64>().map(|v| v as u64))
            .unwrap_or(0);
    }
    Some(MmFields {
        start_code: values[26],
        end_code: values[27],
        start_stack: values[28],
        start_data: values[45],
        end_data: values[46],
        start_brk: values[47],
        arg_start: values[48],
        arg_end: values[49],
        env_start: values[50],
        env_end: values[51],
    })
}

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`: a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// What `/proc/PID/stat` says of a process whose smaps shows no mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Empty {
    /// A kernel thread: it has no user address space at all.
    KernelThread,
    /// A zombie: it has exited and not been reaped.
    Zombie,
    /// Neither (it is exiting, say).
    Other,
}

/// The state letter (field 3) and flags (field 9) of `/proc/PID/stat`.
pub fn state_and_flags(text: &[u8]) -> Option<(u8, u64)> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut fields = text[close + 1..]
        .split(|&b| b == b' ' || b == b'\n')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // Fields 4 to 8, then the flags.
    let flags = fields.nth(5)?;
    let flags = core::str::from_utf8(flags).ok()?.parse::<u64>().ok()?;
    Some((state, flags))
}

/// Why a process maps nothing, from its `/proc/PID/stat`.
pub fn why_empty(text: &[u8]) -> Empty {
    match state_and_flags(text) {
        Some((_, flags)) if flags & PF_KTHREAD != 0 => Empty::KernelThread,
        Some((b'Z' | b'X', _)) => Empty::Zombie,
        _ => Empty::Other,
    }
}

/// A process ID as a command line gives it: decimal digits only (no
/// sign), at most `i32::MAX`. Leading zeros are allowed (`007` is 7).
pub fn parse_pid(arg: &[u8]) -> Option<u32> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = arg.iter().try_fold(0u64, |acc, &c| {
        let v = acc * 10 + (c - b'0') as u64;
        (v <= i32::MAX as u64).then_some(v)
    })?;
    Some(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_layout_fields_after_an_awkward_name() {
        let text = b"7 (a) b (c) S 1 7 7 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 18446744073709551615 4194304 4198400 140737488347136 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 6295552 6296000 6300000 140737488347500 140737488347520 140737488347520 140737488347600 0\n";
        let f = parse(text).unwrap();
        assert_eq!(f.start_code, 4194304);
        assert_eq!(f.end_code, 4198400);
        assert_eq!(f.start_stack, 140737488347136);
        assert_eq!(f.start_data, 6295552);
        assert_eq!(f.end_data, 6296000);
        assert_eq!(f.start_brk, 6300000);
        assert_eq!(f.arg_start, 140737488347500);
        assert_eq!(f.env_end, 140737488347600);
        assert_eq!(parse(b"garbage"), None);
    }

    #[test]
    fn tells_kernel_threads_and_zombies() {
        let kthreadd = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 4 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(state_and_flags(kthreadd), Some((b'S', 2129984)));
        assert_eq!(why_empty(kthreadd), Empty::KernelThread);
        let zombie = b"77 (a) b) Z 1 77 77 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n";
        assert_eq!(state_and_flags(zombie), Some((b'Z', 4227084)));
        assert_eq!(why_empty(zombie), Empty::Zombie);
        let running = b"9 (sleep) S 1 9 9 0 -1 4194304 1 0\n";
        assert_eq!(why_empty(running), Empty::Other);
        assert_eq!(why_empty(b""), Empty::Other);
        assert_eq!(state_and_flags(b"1 (x) S 1 2"), None);
    }

    #[test]
    fn process_ids_are_unsigned_decimals() {
        assert_eq!(parse_pid(b"7559"), Some(7559));
        assert_eq!(parse_pid(b"007"), Some(7));
        assert_eq!(parse_pid(b"0"), Some(0));
        assert_eq!(parse_pid(b"2147483647"), Some(i32::MAX as u32));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"x",
            b"1x",
            b" 1",
            b"2147483648",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_pid(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }
}
