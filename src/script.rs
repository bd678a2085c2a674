//! `#!` lines, read the way the kernel's binfmt_script reads them.

use crate::error::LoadError;

/// The kernel reads this many bytes of a file to recognise its format.
pub const BINPRM_BUF_SIZE: usize = 256;
/// How many `#!` interpreters may be chained (the kernel allows 4 levels
/// below its limit of 5 handlers).
pub const MAX_SCRIPT_DEPTH: usize = 4;

/// A parsed `#!` line: the interpreter and its one optional argument, as
/// ranges of the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shebang {
    pub interp: (usize, usize),
    pub arg: Option<(usize, usize)>,
}

pub fn is_script(head: &[u8]) -> bool {
    head.starts_with(b"#!")
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses the `#!` line at the start of `head` (the first bytes of the
/// file, at most [`BINPRM_BUF_SIZE`]): the interpreter ends at the first
/// blank, everything after it up to the end of the line, trimmed, is one
/// argument.
pub fn parse(head: &[u8]) -> Result<Shebang, LoadError> {
    let head = &head[..head.len().min(BINPRM_BUF_SIZE)];
    if !is_script(head) {
        return Err(LoadError::NotElfOrScript);
    }
    let newline = head.iter().position(|&b| b == b'\n');
    let line_end = newline.unwrap_or(head.len());
    let mut i = 2;
    while i < line_end && is_blank(head[i]) {
        i += 1;
    }
    let interp_start = i;
    while i < line_end && !is_blank(head[i]) && head[i] != 0 {
        i += 1;
    }
    let interp_end = i;
    if interp_start == interp_end {
        return Err(LoadError::ScriptNoInterpreter);
    }
    // A line cut by the buffer end is only usable if the interpreter name
    // ended before it (the kernel's rule, fs/binfmt_script.c).
    if newline.is_none() && interp_end == head.len() && head.len() == BINPRM_BUF_SIZE {
        return Err(LoadError::ScriptLineTooLong);
    }
    let mut arg_end = line_end;
    while arg_end > i && (is_blank(head[arg_end - 1]) || head[arg_end - 1] == b'\r') {
        arg_end -= 1;
    }
    while i < arg_end && is_blank(head[i]) {
        i += 1;
    }
    let arg = (i < arg_end).then_some((i, arg_end));
    Ok(Shebang {
        interp: (interp_start, interp_end),
        arg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(head: &[u8]) -> (std::string::String, Option<std::string::String>) {
        let s = parse(head).unwrap();
        let interp = std::string::String::from_utf8_lossy(&head[s.interp.0..s.interp.1]).into();
        let arg = s
            .arg
            .map(|(a, b)| std::string::String::from_utf8_lossy(&head[a..b]).into());
        (interp, arg)
    }

    #[test]
    fn reads_interpreter_and_one_argument() {
        assert_eq!(words(b"#!/bin/sh\necho"), ("/bin/sh".into(), None));
        assert_eq!(
            words(b"#! /usr/bin/env  python3 -u \n"),
            ("/usr/bin/env".into(), Some("python3 -u".into()))
        );
        assert_eq!(words(b"#!/bin/bash"), ("/bin/bash".into(), None));
        assert_eq!(
            words(b"#!/bin/sh -e\r\n"),
            ("/bin/sh".into(), Some("-e".into()))
        );
    }

    #[test]
    fn rejects_empty_and_overlong_lines() {
        assert_eq!(parse(b"#!\n"), Err(LoadError::ScriptNoInterpreter));
        assert_eq!(
            parse(b"#!   \n/bin/sh"),
            Err(LoadError::ScriptNoInterpreter)
        );
        let mut long = std::vec![b'#', b'!'];
        long.extend(std::iter::repeat_n(b'a', 300));
        assert_eq!(parse(&long), Err(LoadError::ScriptLineTooLong));
        assert_eq!(parse(b"\x7fELF"), Err(LoadError::NotElfOrScript));
    }
}
