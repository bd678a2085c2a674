//! The initial stack the kernel handed to hugeload: argc, argv, envp and
//! auxv, read once, and the facts that follow from it (secure execution,
//! the `HUGELOAD_*` settings). The strings stay where the kernel put them,
//! above the stack pointer, for the whole life of the process.

use hugeload::auxv::{Auxv, MAX_AUXV};
use hugeload::options::Settings;
use hugeload::script::{BINPRM_BUF_SIZE, MAX_SCRIPT_DEPTH};
use linux_raw_sys::auxvec::{AT_NULL, AT_SECURE};

pub struct Boot {
    /// hugeload's work stack (address, length), which the final jump
    /// unmaps; `(0, 0)` when hugeload runs on the kernel's stack.
    pub work_stack: (usize, usize),
    /// The kernel's stack pointer: the address of argc.
    pub sp: usize,
    pub argc: usize,
    argv: usize,
    envp: usize,
    pub envc: usize,
    pub auxv: Auxv,
    /// Where the auxv is on the stack.
    auxv_addr: usize,
}

/// Reads the NUL-terminated string at `addr`.
///
/// # Safety
/// `addr` must point at a NUL-terminated string that lives for the rest of
/// the process (the kernel's argument and environment strings do).
pub unsafe fn cstr(addr: usize) -> &'static [u8] {
    let p = addr as *const u8;
    let mut len = 0;
    // SAFETY: the caller guarantees a terminated string.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes before the NUL are readable and never change.
    unsafe { core::slice::from_raw_parts(p, len) }
}

/// # Safety
/// `addr` must be a readable, aligned word.
unsafe fn word(addr: usize) -> usize {
    // SAFETY: the caller guarantees the word.
    unsafe { *(addr as *const usize) }
}

impl Boot {
    /// # Safety
    /// `sp` must be the stack pointer the kernel entered the process with.
    pub unsafe fn read(sp: usize) -> Boot {
        // SAFETY: the kernel's stack layout: argc, argv[argc], NULL, envp[],
        // NULL, auxv pairs up to AT_NULL.
        unsafe {
            let argc = word(sp);
            let argv = sp + 8;
            let envp = argv + 8 * (argc + 1);
            let mut envc = 0;
            while word(envp + 8 * envc) != 0 {
                envc += 1;
            }
            let mut auxv = Auxv::new();
            let auxv_addr = envp + 8 * (envc + 1);
            let mut at = auxv_addr;
            loop {
                let key = word(at);
                if key == AT_NULL as usize || auxv.len() == MAX_AUXV {
                    break;
                }
                let _ = auxv.push((key as u64, word(at + 8) as u64));
                at += 16;
            }
            Boot {
                work_stack: (0, 0),
                sp,
                argc,
                argv,
                envp,
                envc,
                auxv,
                auxv_addr,
            }
        }
    }

    /// argv[i], if `i < argc`.
    pub fn arg(&self, i: usize) -> Option<&'static [u8]> {
        // SAFETY: argv[i] for i < argc points at a kernel string.
        (i < self.argc).then(|| unsafe { cstr(word(self.argv + 8 * i)) })
    }

    /// argv[from..].
    pub fn args_from<'s>(&'s self, from: usize) -> impl Iterator<Item = &'s [u8]> + Clone + 's {
        (from..self.argc).filter_map(|i| -> Option<&'s [u8]> { self.arg(i) })
    }

    /// Whether this is a secure-execution program (setuid, setgid, file
    /// capabilities): its caller chose the environment, so nothing in it
    /// may choose a path or a setting.
    pub fn is_secure(&self) -> bool {
        self.aux(AT_SECURE).unwrap_or(0) != 0
    }

    /// The settings from the `HUGELOAD_*` environment, or the defaults for a
    /// secure-execution program. A value that means nothing gets one line
    /// on stderr and is ignored.
    pub fn settings(&self) -> Settings {
        if self.is_secure() {
            Settings::default()
        } else {
            Settings::from_env(
                |k| self.env(k),
                |w| {
                    let mut l = super::diag::line();
                    w.write(&mut l);
                    super::diag::emit(&mut l);
                },
            )
        }
    }

    /// The value of environment variable `key`, unless this is a
    /// secure-execution program.
    pub fn trusted_env(&self, key: &[u8]) -> Option<&'static [u8]> {
        if self.is_secure() {
            None
        } else {
            self.env(key)
        }
    }

    /// The envp pointers.
    pub fn env_ptrs(&self) -> impl Iterator<Item = u64> + Clone + '_ {
        // SAFETY: envp[i] for i < envc is a valid word.
        (0..self.envc).map(|i| unsafe { word(self.envp + 8 * i) } as u64)
    }

    /// The value of environment variable `key`.
    pub fn env(&self, key: &[u8]) -> Option<&'static [u8]> {
        self.env_ptrs().find_map(|p| {
            // SAFETY: every envp entry points at a kernel string.
            let entry = unsafe { cstr(p as usize) };
            let rest = entry.strip_prefix(key)?;
            rest.strip_prefix(b"=")
        })
    }

    /// `[start, end)` of the environment strings, as the kernel's
    /// `env_start`/`env_end`; `None` without an environment.
    pub fn env_strings(&self) -> Option<(u64, u64)> {
        let first = self.env_ptrs().next()?;
        let last = self.env_ptrs().last()?;
        // SAFETY: the last env entry points at a kernel string.
        let len = unsafe { cstr(last as usize) }.len() as u64;
        Some((first, last + len + 1))
    }

    /// Changes the value of auxv entry `key` in place on the kernel's stack
    /// (for modes that hand that stack on as it is).
    pub fn set_aux(&mut self, key: u32, value: u64) {
        for (i, entry) in self.auxv.iter_mut().enumerate() {
            if entry.0 == key as u64 {
                entry.1 = value;
                // SAFETY: entry i of the kernel's auxv, which lies above the
                // stack pointer and is ours to change before the hand-off.
                unsafe { *((self.auxv_addr + 16 * i + 8) as *mut u64) = value };
            }
        }
    }

    /// Address and size in bytes (AT_NULL included) of the kernel's auxv.
    pub fn auxv_on_stack(&self) -> (usize, usize) {
        (self.auxv_addr, 16 * (self.auxv.len() + 1))
    }

    pub fn aux(&self, key: u32) -> Option<u64> {
        hugeload::auxv::get(&self.auxv, key)
    }

    /// Whether `bytes` more below the kernel's stack pointer stay within
    /// RLIMIT_STACK. The kernel puts the executable's name at the top of
    /// the stack (`bprm->p`), so the stack spans from there down.
    pub fn stack_has_room(&self, bytes: u64) -> bool {
        const RLIMIT_STACK: u32 = 3;
        let limit = super::sys::soft_limit(RLIMIT_STACK);
        let Some(name) = self.aux(linux_raw_sys::auxvec::AT_EXECFN) else {
            return true;
        };
        // SAFETY: AT_EXECFN points at the kernel's NUL-terminated copy.
        let len = unsafe { cstr(name as usize) }.len() as u64;
        let top = hugeload::elf::page_up(name + len + 1 + 8);
        let used = top.saturating_sub(self.sp as u64).saturating_add(bytes);
        used <= limit
    }

    /// The most stack the program's new initial stack can need: every
    /// argument string, a path, the `#!` lines, and the vectors.
    pub fn stack_bound(&self) -> usize {
        let arg_bytes: usize = self.args_from(0).map(|a| a.len() + 1).sum();
        let paths = 4097 * (MAX_SCRIPT_DEPTH + 1) + 2 * BINPRM_BUF_SIZE * MAX_SCRIPT_DEPTH;
        let words = 8 * (self.argc + self.envc + 3 * MAX_SCRIPT_DEPTH + 8);
        let auxv = 16 * (MAX_AUXV + 2);
        arg_bytes + paths + words + auxv + 256
    }
}
