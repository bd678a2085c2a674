//! Building diagnostic lines without `core::fmt`: a fixed buffer that
//! takes bytes, decimal and hexadecimal numbers, and truncates on overflow.

/// Longest line hugeload prints.
pub const LINE_MAX: usize = 1024;

pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line::new()
    }
}

impl Line {
    pub const fn new() -> Line {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Line {
        let n = b.len().min(LINE_MAX - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Line {
        self.bytes(s.as_bytes())
    }

    pub fn dec(&mut self, mut v: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.bytes(&digits[i..])
    }

    /// Signed decimal.
    pub fn int(&mut self, v: i64) -> &mut Line {
        if v < 0 {
            self.str("-");
        }
        self.dec(v.unsigned_abs())
    }

    /// Hexadecimal, zero-padded to `width` digits, without a prefix.
    pub fn hex(&mut self, v: u64, width: usize) -> &mut Line {
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut x = v;
        while x != 0 || n < width.min(16) {
            digits[15 - n] = b"0123456789abcdef"[(x & 15) as usize];
            x >>= 4;
            n += 1;
            if n == 16 {
                break;
            }
        }
        if n == 0 {
            return self.str("0");
        }
        let start = 16 - n;
        let copy = digits;
        self.bytes(&copy[start..])
    }

    /// `value * 100 / total`, as an integer percentage.
    /// A size for a person: `497 B`, `568.0 KiB`, `26.6 MiB`, `1.2 GiB`
    /// (one decimal, rounded down).
    pub fn size(&mut self, bytes: u64) -> &mut Line {
        const UNITS: [(u64, &str); 3] = [(1 << 30, " GiB"), (1 << 20, " MiB"), (1 << 10, " KiB")];
        for (unit, name) in UNITS {
            if bytes >= unit {
                let tenths = (bytes as u128 * 10 / unit as u128) as u64;
                return self.dec(tenths / 10).str(".").dec(tenths % 10).str(name);
            }
        }
        self.dec(bytes).str(" B")
    }

    pub fn percent(&mut self, value: u64, total: u64) -> &mut Line {
        let p = if total == 0 {
            0
        } else {
            (value as u128 * 100 / total as u128) as u64
        };
        self.dec(p).str("%")
    }
}

/// Writes `s` as the inside of a JSON string through `put`: quotes,
/// backslashes and control bytes escaped, bytes above ASCII as `\u00XX`
/// (file names need not be UTF-8).
pub fn json_escape(s: &[u8], mut put: impl FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in s {
        match b {
            b'"' => put(b"\\\""),
            b'\\' => put(b"\\\\"),
            0..=0x1f | 0x7f.. => put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
            _ => put(&[b]),
        }
    }
}

impl Line {
    /// `s` escaped for the inside of a JSON string.
    pub fn json(&mut self, s: &[u8]) -> &mut Line {
        json_escape(s, |b| {
            self.bytes(b);
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_a_person() {
        let size = |b| {
            let mut l = Line::new();
            l.size(b);
            std::string::String::from_utf8(l.as_bytes().to_vec()).unwrap()
        };
        assert_eq!(size(497), "497 B");
        assert_eq!(size(581632), "568.0 KiB");
        assert_eq!(size(27843873), "26.5 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn json_escapes_quotes_controls_and_high_bytes() {
        let mut l = Line::new();
        l.json(b"a\"b\\c\n\xff");
        assert_eq!(l.as_bytes(), b"a\\\"b\\\\c\\u000a\\u00ff");
    }

    #[test]
    fn formats_numbers() {
        let mut l = Line::new();
        l.dec(0)
            .str(" ")
            .dec(1234567890)
            .str(" ")
            .hex(0xb6f000, 16)
            .str(" ")
            .hex(0, 0);
        l.str(" ").int(-12).str(" ").percent(1, 3);
        assert_eq!(l.as_bytes(), b"0 1234567890 0000000000b6f000 0 -12 33%");
        let mut l = Line::new();
        l.hex(u64::MAX, 4);
        assert_eq!(l.as_bytes(), b"ffffffffffffffff");
    }

    #[test]
    fn truncates_instead_of_overflowing() {
        let mut l = Line::new();
        for _ in 0..LINE_MAX {
            l.str("ab");
        }
        assert_eq!(l.as_bytes().len(), LINE_MAX);
    }
}
