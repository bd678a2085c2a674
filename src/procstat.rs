//! The memory-layout fields of `/proc/PID/stat` that `PR_SET_MM_MAP` must
//! be given back unchanged when only the saved auxv is to change.

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
}
