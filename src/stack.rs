//! The program's initial stack, written into a byte slice that stands for
//! the memory just below the kernel's original stack pointer.
//!
//! From the top down: the AT_EXECFN string, the argv strings (contiguous, so
//! `/proc/PID/cmdline` can show them), padding, then argc, argv[], NULL,
//! envp[], NULL, auxv pairs and AT_NULL, with the stack pointer at argc and
//! 16-byte aligned. envp keeps pointing at the kernel's strings above.

use linux_raw_sys::auxvec::{AT_EXECFN, AT_NULL};

/// What goes on the program's stack.
pub struct StackSpec<'a, 'b, A, E>
where
    A: Iterator<Item = &'b [u8]> + Clone,
    E: Iterator<Item = u64> + Clone,
{
    /// The program's path, for AT_EXECFN.
    pub execfn: &'a [u8],
    /// The program's argv strings, without their NULs.
    pub args: A,
    /// Where `args` already lie, NUL-terminated and one after the other
    /// (the kernel's copy, for a program run with the arguments hugeload
    /// was given): then they are not copied, and take no stack room twice.
    pub args_at: Option<u64>,
    /// The environment, as pointers to the existing strings.
    pub envp: E,
    /// The auxv without AT_NULL; its AT_EXECFN is pointed at `execfn`.
    pub auxv: &'a [(u64, u64)],
}

/// Where the written stack's parts are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// The stack pointer to enter with: it points at argc.
    pub sp: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub auxv: u64,
    /// Bytes of the auxv, AT_NULL included.
    pub auxv_len: u64,
}

impl<'a, 'b, A, E> StackSpec<'a, 'b, A, E>
where
    A: Iterator<Item = &'b [u8]> + Clone,
    E: Iterator<Item = u64> + Clone,
{
    fn args_len(&self) -> u64 {
        self.args.clone().map(|a| a.len() as u64 + 1).sum()
    }

    fn strings_len(&self) -> u64 {
        let args = if self.args_at.is_some() {
            0
        } else {
            self.args_len()
        };
        args + self.execfn.len() as u64 + 1
    }

    fn vector_words(&self) -> u64 {
        let argc = self.args.clone().count() as u64;
        let envc = self.envp.clone().count() as u64;
        1 + argc + 1 + envc + 1 + 2 * (self.auxv.len() as u64 + 1)
    }

    /// Bytes this stack needs below its top, padding included.
    pub fn size(&self) -> u64 {
        self.strings_len() + 16 + self.vector_words() * 8 + 16
    }

    /// Writes the stack into `mem`, whose last byte is at address
    /// `top - 1`. Returns `None` when `mem` is too small.
    pub fn write(&self, mem: &mut [u8], top: u64) -> Option<Written> {
        if (mem.len() as u64) < self.size() {
            return None;
        }
        let base = top - mem.len() as u64;
        let mut put_bytes = |addr: u64, bytes: &[u8]| {
            let at = (addr - base) as usize;
            mem[at..at + bytes.len()].copy_from_slice(bytes);
        };
        // Strings, from the top down.
        let execfn_addr = top - (self.execfn.len() as u64 + 1);
        put_bytes(execfn_addr, self.execfn);
        put_bytes(execfn_addr + self.execfn.len() as u64, &[0]);
        let copied_start = execfn_addr - (self.strings_len() - self.execfn.len() as u64 - 1);
        let arg_start = self.args_at.unwrap_or(copied_start);
        if self.args_at.is_none() {
            let mut cursor = arg_start;
            for arg in self.args.clone() {
                put_bytes(cursor, arg);
                put_bytes(cursor + arg.len() as u64, &[0]);
                cursor += arg.len() as u64 + 1;
            }
        }
        let arg_end = arg_start + self.args_len();
        // Vectors below, with sp 16-byte aligned.
        let sp = (copied_start - self.vector_words() * 8) & !15;
        let mut word = sp;
        let mut put_word = |value: u64| {
            put_bytes(word, &value.to_le_bytes());
            word += 8;
        };
        put_word(self.args.clone().count() as u64);
        let mut arg_addr = arg_start;
        for arg in self.args.clone() {
            put_word(arg_addr);
            arg_addr += arg.len() as u64 + 1;
        }
        put_word(0);
        for env in self.envp.clone() {
            put_word(env);
        }
        put_word(0);
        let auxv = sp + 8 * (3 + self.args.clone().count() + self.envp.clone().count()) as u64;
        for &(key, value) in self.auxv {
            put_word(key);
            put_word(if key == AT_EXECFN as u64 {
                execfn_addr
            } else {
                value
            });
        }
        put_word(AT_NULL as u64);
        put_word(0);
        Some(Written {
            sp,
            arg_start,
            arg_end,
            auxv,
            auxv_len: 16 * (self.auxv.len() as u64 + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_in_place_are_pointed_at_not_copied() {
        let args: [&[u8]; 2] = [b"prog", b"arg"];
        let kernel_strings = 0x7fff_0000_1000u64;
        let env = [0x7fff_0000_2000u64];
        let spec = StackSpec {
            execfn: b"/bin/prog",
            args: args.iter().copied(),
            args_at: Some(kernel_strings),
            envp: env.iter().copied(),
            auxv: &[],
        };
        let copied = StackSpec {
            args_at: None,
            args: args.iter().copied(),
            execfn: b"/bin/prog",
            envp: env.iter().copied(),
            auxv: &[],
        };
        // The argument strings take no room of their own.
        assert_eq!(copied.size() - spec.size(), 9);
        let top = 0x7fff_0000_0000u64;
        let mut mem = std::vec![0u8; spec.size() as usize];
        let w = spec.write(&mut mem, top).unwrap();
        let base = top - mem.len() as u64;
        assert_eq!(w.arg_start, kernel_strings);
        assert_eq!(w.arg_end, kernel_strings + 5 + 4);
        assert_eq!(word(&mem, base, w.sp), 2);
        assert_eq!(word(&mem, base, w.sp + 8), kernel_strings);
        assert_eq!(word(&mem, base, w.sp + 16), kernel_strings + 5);
        assert_eq!(word(&mem, base, w.sp + 24), 0);
        assert_eq!(word(&mem, base, w.sp + 32), env[0]);
    }
    use linux_raw_sys::auxvec::AT_PAGESZ;

    fn word(mem: &[u8], base: u64, addr: u64) -> u64 {
        let at = (addr - base) as usize;
        u64::from_le_bytes(mem[at..at + 8].try_into().unwrap())
    }

    fn cstr(mem: &[u8], base: u64, addr: u64) -> std::vec::Vec<u8> {
        let at = (addr - base) as usize;
        let len = mem[at..].iter().position(|&b| b == 0).unwrap();
        mem[at..at + len].to_vec()
    }

    #[test]
    fn lays_out_argc_argv_envp_auxv_and_strings() {
        let args: [&[u8]; 3] = [b"prog", b"a", b"hello world"];
        let envp = [0x7ffd_1000u64, 0x7ffd_1010];
        let auxv = [(AT_PAGESZ as u64, 4096), (AT_EXECFN as u64, 0)];
        let spec = StackSpec {
            execfn: b"/usr/bin/prog",
            args: args.iter().copied(),
            args_at: None,
            envp: envp.iter().copied(),
            auxv: &auxv,
        };
        let top = 0x7ffc_0000_0000u64;
        let mut mem = std::vec![0xaau8; 512];
        let base = top - 512;
        let w = spec.write(&mut mem, top).unwrap();
        assert_eq!(w.sp % 16, 0);
        assert!(w.sp >= base);
        assert_eq!(word(&mem, base, w.sp), 3);
        for (i, arg) in args.iter().enumerate() {
            let p = word(&mem, base, w.sp + 8 + 8 * i as u64);
            assert_eq!(cstr(&mem, base, p), arg.to_vec());
        }
        assert_eq!(word(&mem, base, w.sp + 32), 0);
        assert_eq!(word(&mem, base, w.sp + 40), 0x7ffd_1000);
        assert_eq!(word(&mem, base, w.sp + 48), 0x7ffd_1010);
        assert_eq!(word(&mem, base, w.sp + 56), 0);
        assert_eq!(w.auxv, w.sp + 64);
        assert_eq!(word(&mem, base, w.auxv), AT_PAGESZ as u64);
        assert_eq!(word(&mem, base, w.auxv + 16), AT_EXECFN as u64);
        let execfn = word(&mem, base, w.auxv + 24);
        assert_eq!(cstr(&mem, base, execfn), b"/usr/bin/prog".to_vec());
        assert_eq!(word(&mem, base, w.auxv + 32), AT_NULL as u64);
        assert_eq!(w.auxv_len, 48);
        // The argv strings are contiguous, as /proc/PID/cmdline shows them.
        assert_eq!(
            &mem[(w.arg_start - base) as usize..(w.arg_end - base) as usize],
            b"prog\0a\0hello world\0"
        );
        assert!(w.arg_end <= execfn);
    }

    #[test]
    fn refuses_a_buffer_too_small() {
        let args: [&[u8]; 1] = [b"p"];
        let spec = StackSpec {
            execfn: b"p",
            args: args.iter().copied(),
            args_at: None,
            envp: [].iter().copied(),
            auxv: &[],
        };
        let mut mem = std::vec![0u8; 16];
        assert_eq!(spec.write(&mut mem, 0x1000), None);
    }
}
