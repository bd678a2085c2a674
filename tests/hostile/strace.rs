//! strace's output, parsed.

/// One traced system call: `name(args) = ret`.
#[derive(Clone, Debug)]
pub struct Call {
    pub name: String,
    pub args: Vec<String>,
    pub ret: String,
    pub line: String,
}

impl Call {
    pub fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }
    pub fn num(&self, i: usize) -> Option<u64> {
        parse_num(self.arg(i))
    }
    pub fn ok_addr(&self) -> Option<u64> {
        parse_num(self.ret.split_whitespace().next()?)
    }
    /// The `prot` argument of mmap, mprotect and pkey_mprotect.
    pub fn prot(&self) -> Option<(bool, bool)> {
        let p = match self.name.as_str() {
            "mmap" | "mprotect" | "pkey_mprotect" => self.arg(2),
            _ => return None,
        };
        Some(match parse_num(p) {
            Some(n) => (n & 2 != 0, n & 4 != 0),
            None => (p.contains("PROT_WRITE"), p.contains("PROT_EXEC")),
        })
    }
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if s == "NULL" {
        Some(0)
    } else {
        s.parse().ok()
    }
}

pub fn parse_trace(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for line in text.lines() {
        // `-f` into one file prefixes the pid.
        let body = match line.split_once(' ') {
            Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => rest.trim_start(),
            _ => line,
        };
        let Some((name, rest)) = body.split_once('(') else {
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        // strace pads short calls: `munmap(0x7f.., 528384)          = 0`.
        let Some(eq) = rest.rfind(" = ") else {
            continue;
        };
        let Some(close) = rest[..eq].rfind(')') else {
            continue;
        };
        if !rest[close + 1..eq].trim().is_empty() {
            continue;
        }
        let args = rest[..close]
            .split(", ")
            .map(|s| s.trim().to_string())
            .collect();
        calls.push(Call {
            name: name.to_string(),
            args,
            ret: rest[eq + 3..].trim().to_string(),
            line: line.to_string(),
        });
    }
    calls
}
