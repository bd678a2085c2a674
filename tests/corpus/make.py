#!/usr/bin/env python3
"""Writes the corpus of hostile files that tests/hostile.rs feeds to hugeload.

Each file is a small x86-64 ELF (or #! script) broken in one way. The base
is a static program of two PT_LOADs whose code prints "ok\n" and exits 42,
so a file that still runs shows it. Run from this directory; the files are
committed so the corpus is the same everywhere. Each file has a line in
expected.tsv: hugeload's verdict (126, 127 or run), a fragment of its reason,
and the kernel's verdict; a new file needs one.
"""
import os
import stat
import struct

PAGE = 0x1000
BASE = 0x400000

# write(1, msg, 3); exit(42)
CODE = bytes.fromhex(
    "b801000000"      # mov eax, 1
    "bf01000000"      # mov edi, 1
    "48be" + struct.pack("<Q", BASE + 2 * PAGE).hex() +  # movabs rsi, msg
    "ba03000000"      # mov edx, 3
    "0f05"            # syscall
    "b83c000000"      # mov eax, 60
    "bf2a000000"      # mov edi, 42
    "0f05"            # syscall
)
MSG = b"ok\n"


def ehdr(e_type=2, machine=62, entry=BASE + PAGE, phoff=64, phnum=2, phentsize=56,
         ident_class=2, ident_data=1, version=1):
    ident = b"\x7fELF" + bytes([ident_class, ident_data, version]) + bytes(9)
    return ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, entry, phoff, 0, 0, 64,
                               phentsize, phnum, 64, 0, 0)


def phdr(p_type=1, flags=5, offset=0, vaddr=BASE, filesz=PAGE, memsz=PAGE, align=PAGE):
    return struct.pack("<IIQQQQQQ", p_type, flags, offset, vaddr, vaddr, filesz, memsz, align)


def image(header, phdrs, size=3 * PAGE):
    data = bytearray(size)
    blob = header + b"".join(phdrs)
    data[:len(blob)] = blob
    data[PAGE:PAGE + len(CODE)] = CODE
    data[2 * PAGE:2 * PAGE + len(MSG)] = MSG
    return bytes(data)


TEXT = dict(flags=5, offset=PAGE, vaddr=BASE + PAGE, filesz=PAGE, memsz=PAGE)
DATA = dict(flags=4, offset=2 * PAGE, vaddr=BASE + 2 * PAGE, filesz=PAGE, memsz=PAGE)


def base(**over):
    return image(ehdr(**over), [phdr(**TEXT), phdr(**DATA)])


def with_loads(text=None, data=None, extra=(), **hdr):
    loads = [phdr(**(text or TEXT)), phdr(**(data or DATA))] + list(extra)
    return image(ehdr(phnum=len(loads), **hdr), loads)


def interp_file(path_bytes, filesz=None):
    """A file with PT_INTERP whose string is path_bytes."""
    loads = [phdr(p_type=3, flags=4, offset=0x200, vaddr=BASE + 0x200,
                  filesz=len(path_bytes) if filesz is None else filesz,
                  memsz=len(path_bytes) if filesz is None else filesz),
             phdr(**TEXT), phdr(**DATA)]
    data = bytearray(image(ehdr(phnum=3), loads, size=3 * PAGE + 8192))
    data[0x200:0x200 + len(path_bytes)] = path_bytes
    return bytes(data)


def files():
    good = base()
    yield "good-static", good  # a control: runs, prints ok, exits 42
    # Truncated at every header boundary and a few places between.
    for cut in (0, 1, 4, 16, 52, 63, 64, 100, 120, 176, 500, PAGE, PAGE + 10, 2 * PAGE + 1):
        yield f"truncated-{cut}", good[:cut]
    yield "phnum-lie-large", base(phnum=0xffff)
    yield "phnum-zero", base(phnum=0)
    yield "phentsize-lie", base(phentsize=32)
    yield "phentsize-huge", base(phentsize=0xffff)
    yield "phoff-outside-file", base(phoff=1 << 40)
    yield "phoff-overflow", base(phoff=(1 << 64) - 16)
    yield "filesz-over-memsz", with_loads(text=dict(TEXT, filesz=2 * PAGE, memsz=PAGE))
    yield "offset-vaddr-not-congruent", with_loads(text=dict(TEXT, offset=PAGE + 8))
    yield "segment-outside-file", with_loads(data=dict(DATA, offset=1 << 30))
    yield "segment-offset-overflow", with_loads(data=dict(DATA, offset=(1 << 64) - PAGE))
    yield "loads-overlap", with_loads(data=dict(DATA, vaddr=BASE + PAGE + 0x800, offset=PAGE + 0x800))
    yield "loads-unsorted", image(ehdr(), [phdr(**DATA), phdr(**TEXT)])
    yield "bss-only-unaligned", with_loads(extra=[phdr(flags=6, offset=0x10, vaddr=BASE + 3 * PAGE + 0x10, filesz=0, memsz=3 * PAGE)])
    yield "segment-zero-sized", with_loads(extra=[phdr(flags=4, offset=0, vaddr=BASE + 8 * PAGE, filesz=0, memsz=0)])
    yield "segment-gigantic", with_loads(data=dict(DATA, memsz=1 << 46))
    yield "segment-beyond-address-space", with_loads(data=dict(DATA, vaddr=(1 << 64) - PAGE, memsz=2 * PAGE))
    yield "segment-at-kernel-half", with_loads(data=dict(DATA, vaddr=0xffff_8000_0000_0000, offset=0))
    yield "segment-at-zero", with_loads(text=dict(TEXT, vaddr=0, offset=0), entry=0x10)
    yield "writable-and-executable", with_loads(text=dict(TEXT, flags=7))
    yield "entry-outside", base(entry=BASE + 64 * PAGE)
    yield "no-loads", image(ehdr(phnum=1), [phdr(p_type=4)])
    yield "et-rel", base(e_type=1)
    yield "et-core", base(e_type=4)
    yield "et-none", base(e_type=0)
    yield "big-endian", base(ident_data=2)
    yield "elf32-class", base(ident_class=1)
    yield "bad-class", base(ident_class=9)
    yield "bad-version", base(version=0)
    yield "machine-aarch64", base(machine=183)
    yield "machine-i386", base(machine=3)
    yield "interp-no-nul", interp_file(b"/lib64/ld-linux-x86-64.so.2")
    yield "interp-empty", interp_file(b"\0")
    yield "interp-5000-bytes", interp_file(b"/" + b"a" * 4998 + b"\0")
    yield "interp-missing-file", interp_file(b"/nonexistent/ld.so\0")
    yield "interp-outside-file", interp_file(b"/x\0", filesz=1 << 40)
    yield "interp-is-a-directory", interp_file(b"/tmp\0")
    yield "interp-not-elf", interp_file(b"/etc/passwd\0")
    yield "interp-self", interp_file(b"@SELF@\0")  # the test puts the path in
    yield "interp-hugeload", interp_file(b"@HUGELOAD@\0")  # likewise
    yield "random-bytes", bytes((i * 7919 + 13) % 251 for i in range(4096))
    yield "empty", b""


def scripts():
    yield "script-no-interpreter", b"#!\n"
    yield "script-blank-interpreter", b"#!    \necho hi\n"
    yield "script-missing-interpreter", b"#!/nonexistent/interp\n"
    yield "script-self", b"#!@SELF@\n"  # points at itself
    yield "script-long-line", b"#!/" + b"x" * 400 + b"\n"
    yield "script-interp-is-directory", b"#!/tmp\n"
    yield "script-ok", b"#!/bin/sh\necho ok; exit 42\n"  # a control


def main():
    for name, data in list(files()) + list(scripts()):
        path = f"{name}.bad"
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755)


if __name__ == "__main__":
    main()
