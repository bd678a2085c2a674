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
/// file; the kernel reads [`BINPRM_BUF_SIZE`] and sees zeros past the end of
/// a shorter file) as fs/binfmt_script.c does: the line ends at the first
/// newline, or, without one, at the buffer's last byte provided the
/// interpreter name ends before it; trailing spaces and tabs are dropped;
/// the interpreter ends at a space, tab or NUL; after a space or tab, the
/// rest of the line is one argument, which ends at a NUL.
pub fn parse(head: &[u8]) -> Result<Shebang, LoadError> {
    let mut buf = [0u8; BINPRM_BUF_SIZE];
    let n = head.len().min(BINPRM_BUF_SIZE);
    buf[..n].copy_from_slice(&head[..n]);
    if !is_script(&buf) {
        return Err(LoadError::NotElfOrScript);
    }
    let buf_end = BINPRM_BUF_SIZE - 1;
    let is_terminator = |b: u8| is_blank(b) || b == 0;
    let next_non_blank = |from: usize, to: usize| (from..to).find(|&i| !is_blank(buf[i]));
    let next_terminator = |from: usize, to: usize| (from..to).find(|&i| is_terminator(buf[i]));
    let mut line_end = match buf.iter().position(|&b| b == b'\n') {
        Some(newline) => newline,
        None => {
            let name = next_non_blank(2, buf_end).ok_or(LoadError::ScriptNoInterpreter)?;
            next_terminator(name, buf_end).ok_or(LoadError::ScriptLineTooLong)?;
            buf_end
        }
    };
    while line_end > 2 && is_blank(buf[line_end - 1]) {
        line_end -= 1;
    }
    let name = match next_non_blank(2, line_end) {
        Some(i) if buf[i] != 0 => i,
        _ => return Err(LoadError::ScriptNoInterpreter),
    };
    let sep = next_terminator(name, line_end);
    let interp = (name, sep.unwrap_or(line_end));
    let arg = sep
        .filter(|&i| buf[i] != 0)
        .and_then(|i| next_non_blank(i, line_end))
        .map(|a| (a, (a..line_end).find(|&i| buf[i] == 0).unwrap_or(line_end)))
        .filter(|(a, b)| a < b);
    Ok(Shebang { interp, arg })
}

/// The command a `#!/usr/bin/env NAME` line runs: NAME, when the line is
/// exactly that (an absolute `env`, one argument that is a plain command
/// name, no option, no assignment, no space). env looks NAME up in PATH
/// and runs it with `[NAME, script, ARGS...]`: hugeload does the same, so
/// that the real interpreter, not env, is what it loads.
pub fn env_command<'a>(interp: &[u8], arg: Option<&'a [u8]>) -> Option<&'a [u8]> {
    let is_env = interp.starts_with(b"/") && interp.rsplit(|&b| b == b'/').next() == Some(b"env");
    let name = arg?;
    let plain = !name.is_empty()
        && !name.starts_with(b"-")
        && !name.iter().any(|&b| b == b'=' || b == b' ' || b == b'\t');
    (is_env && plain).then_some(name)
}

/// Most words a `#!` chain puts before the script's own arguments.
pub const MAX_PREFIX: usize = 2 * MAX_SCRIPT_DEPTH + 1;

/// The start of the argv a `#!` chain gives, as the kernel builds it: for
/// `lines` (interpreter and optional argument of each level, the script the
/// user ran first), `[interp_n, arg_n?, ..., interp_1, arg_1?, execfn]`;
/// with no script, `[argv0]`. The caller appends the remaining arguments.
pub fn argv_prefix<'a>(
    lines: &[(&'a [u8], Option<&'a [u8]>)],
    argv0: &'a [u8],
    execfn: &'a [u8],
) -> heapless::Vec<&'a [u8], MAX_PREFIX> {
    let mut prefix = heapless::Vec::new();
    for (interp, arg) in lines.iter().rev().take(MAX_SCRIPT_DEPTH) {
        let _ = prefix.push(*interp);
        if let Some(a) = arg {
            let _ = prefix.push(*a);
        }
    }
    let _ = prefix.push(if lines.is_empty() { argv0 } else { execfn });
    prefix
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
        // The kernel keeps a carriage return, and ends the line at a NUL.
        assert_eq!(
            words(b"#!/bin/sh -e\r\n"),
            ("/bin/sh".into(), Some("-e\r".into()))
        );
        assert_eq!(words(b"#!/bin/echo\0junk\n"), ("/bin/echo".into(), None));
        assert_eq!(
            words(b"#!/bin/echo a\0b\n"),
            ("/bin/echo".into(), Some("a".into()))
        );
        assert_eq!(words(b"#!/bin/sh\t\t\n"), ("/bin/sh".into(), None));
    }

    #[test]
    fn env_lines_name_their_command() {
        assert_eq!(
            env_command(b"/usr/bin/env", Some(b"python3")),
            Some(&b"python3"[..])
        );
        assert_eq!(env_command(b"/bin/env", Some(b"node")), Some(&b"node"[..]));
        assert_eq!(env_command(b"/usr/bin/env", Some(b"-S python3 -u")), None);
        assert_eq!(env_command(b"/usr/bin/env", Some(b"python3 -u")), None);
        assert_eq!(env_command(b"/usr/bin/env", Some(b"A=1")), None);
        assert_eq!(env_command(b"/usr/bin/env", None), None);
        assert_eq!(env_command(b"/usr/bin/python3", Some(b"x")), None);
        assert_eq!(env_command(b"env", Some(b"x")), None);
    }

    #[test]
    fn argv_prefix_is_the_kernels() {
        let none: &[(&[u8], Option<&[u8]>)] = &[];
        assert_eq!(
            argv_prefix(none, b"ls", b"/bin/ls").as_slice(),
            [b"ls" as &[u8]]
        );
        // ./a.sh is "#!/usr/bin/env python3 -u"; that runs as
        // [/usr/bin/env, "python3 -u", ./a.sh, ARGS].
        let one: &[(&[u8], Option<&[u8]>)] = &[(b"/usr/bin/env", Some(b"python3 -u"))];
        let want: [&[u8]; 3] = [b"/usr/bin/env", b"python3 -u", b"./a.sh"];
        assert_eq!(argv_prefix(one, b"a", b"./a.sh").as_slice(), want);
        // ./outer is "#!./inner", ./inner is "#!/bin/sh -e": the last
        // interpreter comes first.
        let two: &[(&[u8], Option<&[u8]>)] = &[(b"./inner", None), (b"/bin/sh", Some(b"-e"))];
        let want: [&[u8]; 4] = [b"/bin/sh", b"-e", b"./inner", b"./outer"];
        assert_eq!(argv_prefix(two, b"outer", b"./outer").as_slice(), want);
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
