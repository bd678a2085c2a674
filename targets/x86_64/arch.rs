//! x86-64 pieces of hugeload: the entry stub and self-relocation, the jump
//! to the program, and the memory primitives the compiler calls.
//!
//! Every architecture provides the same contract:
//! - `_start`: entered by the kernel with the initial stack; relocates the
//!   image (R_*_RELATIVE only) and calls `hugeload_start(sp)` with the
//!   kernel's stack pointer, before any Rust code runs;
//! - `enter(entry, sp, unmap)`: unmaps hugeload's work stack `unmap`, then
//!   hands the process to a program entry point with the registers the
//!   psABI and glibc's `_start` expect;
//! - `switch_stack(sp, f, arg)`: runs `f(arg)` on a new stack pointer;
//! - `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`, `strlen`;
//! - the constants below: the ELF machine, the standard interpreters, the
//!   user address limit, the PIE and brk placement of the kernel, and the
//!   binfmt_misc magic and mask.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The ELF machine this build loads (`EM_X86_64`).
pub const ELF_MACHINE: u16 = 62;
/// The standard glibc program interpreter of this architecture, with its
/// NUL (the string must stay mapped: the program's link map may name it).
pub static GLIBC_INTERP: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";
/// musl's program interpreter of this architecture, with its NUL.
pub static MUSL_INTERP: &[u8] = b"/lib/ld-musl-x86_64.so.1\0";
/// One past the highest user address with 4-level paging, less the guard
/// page (TASK_SIZE_MAX).
pub const USER_TOP: u64 = 0x7fff_ffff_f000;
/// The binfmt_misc magic of a marked program: a 64-bit little-endian ELF
/// (class, data, version) with `e_ident[15] = 'H'` and `e_machine` =
/// EM_X86_64; and the mask that ignores the OS ABI and the rest of the
/// padding, and `e_type`. Escaped as binfmt_misc's register file reads
/// them.
pub const BINFMT_MAGIC: &str =
    "\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x48\\x00\\x00\\x3e\\x00";
pub const BINFMT_MASK: &str = "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\xff\\x00\\x00\\xff\\xff";
/// What glibc's ld.so of this architecture searches besides the paths the
/// program names (Debian's multiarch layout): the ld.so.cache entries it
/// takes, its built-in directories, what `$LIB` is; and musl's path file.
pub const LDCACHE_FLAGS: u32 = hugeload::ldcache::FLAGS_X86_64;
pub const SYSTEM_DIRS: &[&[u8]] = hugeload::libsearch::DEBIAN_X86_64_DIRS;
pub const LIB: &[u8] = hugeload::libsearch::DEBIAN_X86_64_LIB;
pub const MUSL_PATH_FILE: &[u8] = b"/etc/ld-musl-x86_64.path";
/// `R_X86_64_RELATIVE`.
pub const REL_RELATIVE: u32 = 8;

// _start: the kernel enters with rsp -> argc and every other register zero,
// except rdx (which may hold an rtld_fini pointer from a loader; we ignore it).
// Nothing here may touch memory through an unrelocated pointer: it computes
// the load base from `__ehdr_start` (vaddr 0 in linker.ld), walks _DYNAMIC for
// DT_RELA/DT_RELASZ and applies R_X86_64_RELATIVE, then calls Rust.
global_asm!(
    ".section .text.hugeload_start,\"ax\",@progbits",
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "    xor ebp, ebp",
    "    mov r12, rsp",
    "    lea rdi, [rip + __ehdr_start]",
    "    lea rsi, [rip + _DYNAMIC]",
    "    xor ecx, ecx", // DT_RELA address
    "    xor edx, edx", // DT_RELASZ
    ".Ldyn_loop:",
    "    mov rax, [rsi]",
    "    test rax, rax",
    "    jz .Ldyn_done",
    "    cmp rax, 7", // DT_RELA
    "    jne .Ldyn_not_rela",
    "    mov rcx, [rsi + 8]",
    ".Ldyn_not_rela:",
    "    cmp rax, 8", // DT_RELASZ
    "    jne .Ldyn_next",
    "    mov rdx, [rsi + 8]",
    ".Ldyn_next:",
    "    add rsi, 16",
    "    jmp .Ldyn_loop",
    ".Ldyn_done:",
    "    test rcx, rcx",
    "    jz .Lreloc_done",
    "    add rcx, rdi", // rela table address
    "    add rdx, rcx", // end of table
    ".Lreloc_loop:",
    "    cmp rcx, rdx",
    "    jae .Lreloc_done",
    "    cmp dword ptr [rcx + 8], {relative}", // (u32)r_info
    "    jne .Lreloc_next",
    "    mov rax, [rcx + 16]", // r_addend
    "    add rax, rdi",
    "    mov r8, [rcx]", // r_offset
    "    mov [rdi + r8], rax",
    ".Lreloc_next:",
    "    add rcx, 24",
    "    jmp .Lreloc_loop",
    ".Lreloc_done:",
    "    mov rdi, r12",
    "    and rsp, -16",
    "    call hugeload_start",
    "    ud2",
    ".size _start, . - _start",
    "",
    ".text",
    // enter(entry: rdi, sp: rsi, unmap_addr: rdx, unmap_len: rcx) -> !
    // Switches to the program's stack, unmaps hugeload's work stack (no
    // stack is used after that), clears the registers and jumps.
    ".globl hugeload_enter",
    ".type hugeload_enter,@function",
    "hugeload_enter:",
    "    mov rsp, rsi",
    "    mov r12, rdi",
    "    mov rdi, rdx",
    "    mov rsi, rcx",
    "    mov eax, 11", // SYS_munmap; a zero length just fails
    "    syscall",
    // The entry address waits just below the stack pointer, so that every
    // register can be cleared before the jump.
    "    mov [rsp - 8], r12",
    "    xor eax, eax",
    "    xor ebx, ebx",
    "    xor ecx, ecx",
    "    xor edx, edx", // glibc's _start takes rdx as rtld_fini: none
    "    xor esi, esi",
    "    xor edi, edi",
    "    xor ebp, ebp",
    "    xor r8d, r8d",
    "    xor r9d, r9d",
    "    xor r10d, r10d",
    "    xor r11d, r11d",
    "    xor r12d, r12d",
    "    xor r13d, r13d",
    "    xor r14d, r14d",
    "    xor r15d, r15d",
    "    jmp qword ptr [rsp - 8]",
    ".size hugeload_enter, . - hugeload_enter",
    "",
    // switch_stack(sp: rdi, f: rsi, arg: rdx) -> !
    ".globl hugeload_switch_stack",
    ".type hugeload_switch_stack,@function",
    "hugeload_switch_stack:",
    "    mov rsp, rdi",
    "    and rsp, -16",
    "    mov rdi, rdx",
    "    xor ebp, ebp",
    "    call rsi",
    "    ud2",
    ".size hugeload_switch_stack, . - hugeload_switch_stack",
    "",
    // The memory primitives, in instructions the compiler cannot turn back
    // into calls to themselves.
    ".globl memcpy",
    ".type memcpy,@function",
    "memcpy:",
    "    mov rax, rdi",
    "    mov rcx, rdx",
    "    rep movsb",
    "    ret",
    ".size memcpy, . - memcpy",
    ".globl memmove",
    ".type memmove,@function",
    "memmove:",
    "    mov rax, rdi",
    "    mov rcx, rdx",
    "    cmp rdi, rsi",
    "    jbe .Lmemmove_fwd",
    "    lea r8, [rsi + rdx]",
    "    cmp rdi, r8",
    "    jae .Lmemmove_fwd",
    "    lea rsi, [rsi + rdx - 1]",
    "    lea rdi, [rdi + rdx - 1]",
    "    std",
    "    rep movsb",
    "    cld",
    "    ret",
    ".Lmemmove_fwd:",
    "    rep movsb",
    "    ret",
    ".size memmove, . - memmove",
    ".globl memset",
    ".type memset,@function",
    "memset:",
    "    mov r8, rdi",
    "    mov eax, esi",
    "    mov rcx, rdx",
    "    rep stosb",
    "    mov rax, r8",
    "    ret",
    ".size memset, . - memset",
    ".globl memcmp",
    ".type memcmp,@function",
    ".globl bcmp",
    ".type bcmp,@function",
    "memcmp:",
    "bcmp:",
    "    xor eax, eax",
    "    mov rcx, rdx",
    "    test rcx, rcx",
    "    jz .Lmemcmp_done",
    "    repe cmpsb",
    "    je .Lmemcmp_done",
    "    movzx eax, byte ptr [rdi - 1]",
    "    movzx ecx, byte ptr [rsi - 1]",
    "    sub eax, ecx",
    ".Lmemcmp_done:",
    "    ret",
    ".size memcmp, . - memcmp",
    ".globl strlen",
    ".type strlen,@function",
    "strlen:",
    "    mov rdx, rdi",
    "    xor eax, eax",
    "    mov rcx, -1",
    "    repne scasb",
    "    sub rdi, rdx",
    "    lea rax, [rdi - 1]",
    "    ret",
    ".size strlen, . - strlen",
    relative = const REL_RELATIVE,
);

// hugeload_hook_entry: where ld.so's `_dl_debug_state` now jumps (see
// `JUMP_LEN`). ld.so calls that empty function after each change of its
// link map, from whichever thread loaded a library; a compiler that sees
// the empty body may keep values in any register across the call, so
// every general register, the flags and xmm0-15 are kept. One caller at a
// time takes the hook (a second one, which ld.so's own lock should make
// impossible, returns at once), on hugeload's own stack when one was set
// up: the caller's may be a small thread stack.
global_asm!(
    ".text",
    ".globl hugeload_hook_entry",
    ".type hugeload_hook_entry,@function",
    ".p2align 4",
    "hugeload_hook_entry:",
    "    push rbp",
    "    mov rbp, rsp",
    "    pushfq",
    "    push rax",
    "    push rbx",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    sub rsp, 256",
    "    movdqu [rsp + 0], xmm0",
    "    movdqu [rsp + 16], xmm1",
    "    movdqu [rsp + 32], xmm2",
    "    movdqu [rsp + 48], xmm3",
    "    movdqu [rsp + 64], xmm4",
    "    movdqu [rsp + 80], xmm5",
    "    movdqu [rsp + 96], xmm6",
    "    movdqu [rsp + 112], xmm7",
    "    movdqu [rsp + 128], xmm8",
    "    movdqu [rsp + 144], xmm9",
    "    movdqu [rsp + 160], xmm10",
    "    movdqu [rsp + 176], xmm11",
    "    movdqu [rsp + 192], xmm12",
    "    movdqu [rsp + 208], xmm13",
    "    movdqu [rsp + 224], xmm14",
    "    movdqu [rsp + 240], xmm15",
    "    xor eax, eax",
    "    mov ecx, 1",
    "    lock cmpxchg dword ptr [rip + {busy}], ecx",
    "    jne 2f",
    "    mov rbx, rsp",
    "    mov rax, qword ptr [rip + {stack}]",
    "    test rax, rax",
    "    cmovz rax, rsp",
    "    mov rsp, rax",
    "    and rsp, -16",
    "    cld",
    "    call {on_change}",
    "    mov rsp, rbx",
    "    mov dword ptr [rip + {busy}], 0",
    "2:",
    "    movdqu xmm0, [rsp + 0]",
    "    movdqu xmm1, [rsp + 16]",
    "    movdqu xmm2, [rsp + 32]",
    "    movdqu xmm3, [rsp + 48]",
    "    movdqu xmm4, [rsp + 64]",
    "    movdqu xmm5, [rsp + 80]",
    "    movdqu xmm6, [rsp + 96]",
    "    movdqu xmm7, [rsp + 112]",
    "    movdqu xmm8, [rsp + 128]",
    "    movdqu xmm9, [rsp + 144]",
    "    movdqu xmm10, [rsp + 160]",
    "    movdqu xmm11, [rsp + 176]",
    "    movdqu xmm12, [rsp + 192]",
    "    movdqu xmm13, [rsp + 208]",
    "    movdqu xmm14, [rsp + 224]",
    "    movdqu xmm15, [rsp + 240]",
    "    add rsp, 256",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    popfq",
    "    pop rbp",
    "    ret",
    ".size hugeload_hook_entry, . - hugeload_hook_entry",
    busy = sym HOOK_BUSY,
    stack = sym HOOK_STACK,
    on_change = sym hugeload_link_map_changed,
);

/// Set while a caller is in the hook.
static HOOK_BUSY: AtomicU32 = AtomicU32::new(0);
/// The top of the hook's own stack (0: the caller's).
static HOOK_STACK: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    fn hugeload_hook_entry();
    /// What the hook runs (the `hook` module).
    fn hugeload_link_map_changed();
}

/// Length of the jump written over `_dl_debug_state`.
pub const JUMP_LEN: usize = hugeload::jump::X86_64_JUMP_LEN;

/// The jump at `from` to the hook entry, over a function of `size` bytes
/// whose bytes, and what follows, are `site`.
pub fn jump_to_hook(
    site: &[u8],
    size: u64,
    from: u64,
) -> Result<[u8; JUMP_LEN], hugeload::jump::Refusal> {
    hugeload::jump::x86_64_jump(site, size, from, hugeload_hook_entry as *const () as u64)
}

/// Gives the hook a stack of its own, whose top is `top`.
pub fn set_hook_stack(top: usize) {
    HOOK_STACK.store(top, Ordering::Release);
}

/// Makes freshly written code at `[addr, addr + len)` visible to
/// instruction fetch (x86-64 keeps caches coherent: nothing to do).
pub fn sync_code(_addr: usize, _len: usize) {}

unsafe extern "C" {
    fn hugeload_enter(entry: usize, sp: usize, unmap_addr: usize, unmap_len: usize) -> !;
    fn hugeload_switch_stack(sp: usize, f: extern "C" fn(usize) -> !, arg: usize) -> !;
}

/// Hands the process to `entry` with the stack pointer at `sp` (which must
/// point at argc and be 16-byte aligned), all general registers zero, after
/// unmapping `[unmap.0, unmap.0 + unmap.1)` (hugeload's work stack, which
/// the caller may be running on; `(0, 0)` for none).
///
/// # Safety
/// `entry` must be a program entry point mapped executable and `sp` a
/// complete initial stack (argc, argv, envp, auxv) the program may own,
/// outside the range to unmap.
pub unsafe fn enter(entry: usize, sp: usize, unmap: (usize, usize)) -> ! {
    // SAFETY: the caller guarantees entry and stack; the stub never returns.
    unsafe { hugeload_enter(entry, sp, unmap.0, unmap.1) }
}

/// Runs `f(arg)` with the stack pointer at `sp` (rounded down to 16 bytes).
///
/// # Safety
/// `[sp - N, sp)` must be writable stack memory, for as deep as `f` goes, and
/// must not hold anything still in use.
pub unsafe fn switch_stack(sp: usize, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    // SAFETY: the caller guarantees the new stack region.
    unsafe { hugeload_switch_stack(sp, f, arg) }
}

/// Where the kernel puts a PIE that has an interpreter (`ELF_ET_DYN_BASE`,
/// arch/x86/include/asm/elf.h: two thirds of the 47-bit user space).
pub const PIE_BASE: u64 = 0x5555_5555_4000;
/// Bits of page-granular randomness the kernel adds to it
/// (`mmap_rnd_bits` on x86-64).
pub const PIE_RANDOM_BITS: u32 = 28;
/// How far the kernel may move `brk` past the end of the program
/// (`arch_randomize_brk`: 1 GiB on x86-64).
pub const BRK_RANDOM_RANGE: u64 = 1 << 30;
