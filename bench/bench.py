#!/usr/bin/env python3
"""Measurements and report for bench/run (which builds the fixtures and sets
the environment this reads). Not meant to be run on its own."""

import json
import os
import re
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

import rustc_bench  # bench/rustc_bench.py: section 6

E = os.environ
HL = E["HL"]
HL_PTI = E.get("HL_PTI", HL)  # hugeload at a short path: the PT_INTERP copies' interpreter
WORK = E["WORK"]
ROOT = E["ROOT"]
REPORT = E["REPORT"]
CARGO = E.get("CARGO_BIN", "")
POOL_ORIG = int(E["POOL_ORIG"])
POOL_WRITABLE = E.get("POOL_WRITABLE") == "1"
POOL = int(E.get("BENCH_POOL", "64"))
NPROC = int(E.get("BENCH_NPROC", "10"))
SCALE = float(E.get("BENCH_SCALE", "1"))
ITLB_CALLS = int(E.get("BENCH_ITLB_CALLS", "20000000"))
POOL_FILE = "/proc/sys/vm/nr_hugepages"
LDSO = "/lib64/ld-linux-x86-64.so.2"
MIB = 1 << 20
HUGE = 2 * MIB
PRELOAD = os.path.join(WORK, "smapsdump.so")

NODE = shutil.which("node") or "node"
GDB = shutil.which("gdb") or "gdb"

problems = []  # (what, command, output)
notes = []  # free-form lines for the report


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def wk(name):
    return os.path.join(WORK, name)


def pc(name):
    """The copy of a program whose page cache the bench primes (never the installed file)."""
    return os.path.join(WORK, "pc", name)


def cold(name):
    """The copy of a program whose page cache the bench drops before every run."""
    return os.path.join(WORK, "cold", name)


def exists(path):
    return bool(path) and os.path.exists(path)


def runs(n):
    return max(3, int(round(n * SCALE)))


# ---------------------------------------------------------------- pool ----

def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out


def set_pool(n):
    if not POOL_WRITABLE:
        return
    with open(POOL_FILE, "w") as f:
        f.write(str(n))


def pool_size(kind):
    """Pages for a pool state: "empty" 0, "pool" BENCH_POOL, "many" enough for NPROC copies of node."""
    return {"empty": 0, "pool": POOL, "many": max(POOL, 16 * NPROC)}.get(kind)


def pool_prepare(kind):
    """Shell command that puts the pool in the state a variant needs (None: nothing to do)."""
    if not POOL_WRITABLE or kind is None:
        return None
    return f"echo {pool_size(kind)} > {POOL_FILE}"


def apply_pool(kind):
    if kind is not None:
        set_pool(pool_size(kind))


def evict_cmd(path):
    """Shell command that drops a file's page cache: written back first (fdatasync),
    then POSIX_FADV_DONTNEED over the whole file (GNU dd's idiom for it)."""
    return f"dd if=/dev/null of={shlex.quote(path)} oflag=nocache conv=notrunc,fdatasync count=0 status=none"


def small_folios_cmd(path):
    """Shell command that leaves a file's cache in small folios: dropped, then read with cat."""
    return f"{evict_cmd(path)}; cat {shlex.quote(path)} > /dev/null"


def cached_bytes(path):
    r = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path], capture_output=True, text=True)
    try:
        return int(r.stdout.split()[0])
    except (ValueError, IndexError):
        return None


def pool_ok(kind):
    """Can a variant needing this pool state run here?"""
    if kind is None:
        return True
    if POOL_WRITABLE:
        return True
    free = meminfo()["HugePages_Free"]
    return free == 0 if kind == "empty" else free > 0


def set_pool_checked(kind):
    """apply_pool, and a note when the kernel gave fewer pages than asked."""
    apply_pool(kind)
    want = pool_size(kind)
    if POOL_WRITABLE and want:
        got = meminfo()["HugePages_Total"]
        if got < want:
            notes.append(f"asked for a pool of {want} hugetlb pages, the kernel gave {got}")


# ---------------------------------------------------------------- processes ----

def run(argv, env=None, timeout=300, input=None):
    full_env = dict(os.environ)
    for k in [k for k in full_env if k.startswith("HUGELOAD_")]:
        del full_env[k]
    if env:
        full_env.update(env)
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=full_env,
                              timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(argv, -999, e.stdout or "", (e.stderr or "") + f"\n(timed out after {timeout} s)")


def cmdline(argv, env=None):
    pre = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return (pre + " " if pre else "") + shlex.join(argv)


def record_problem(what, argv, res, env=None):
    out = (res.stdout[-1500:] + ("\n" if res.stdout and not res.stdout.endswith("\n") else "") + res.stderr[-2500:]).strip()
    rc = res.returncode
    status = f"exit status {rc}" if rc >= 0 else ("timed out" if rc == -999 else f"killed by signal {-rc}")
    problems.append((what, cmdline(argv, env), f"{status}\n{out}" if out else status))
    log(f"PROBLEM: {what}: {cmdline(argv, env)}: {status}")


TOTAL_RE = re.compile(
    r"hugeload: total text (?:\S+ \S+ \()?(\d+) bytes\)?, on huge pages (?:\S+ \S+ \()?(\d+) bytes(?:, | \()(\d+)%\), "
    r"huge pages (\d+) of (?:least possible|at most) (\d+)(?: possible)?"
    r"(?: \((\d+) from the page cache, (\d+) copies\))?, strategy (\S+), backend (\S+)")
EXTRA_X_RE = re.compile(r"also makes (\d+) bytes of read-only data executable")


def parse_verbose(stderr):
    m = TOTAL_RE.search(stderr)
    if not m:
        return None
    used = int(m[4])
    return dict(text=int(m[1]), huge_bytes=int(m[2]), pct=int(m[3]), used=used, least=int(m[5]),
                cache=int(m[6]) if m[6] is not None else 0, copies=int(m[7]) if m[7] is not None else used,
                strategy=m[8], backend=m[9],
                extra_exec=sum(int(x) for x in EXTRA_X_RE.findall(stderr)),
                huge_lines=[l for l in stderr.splitlines() if l.startswith("hugeload: huge ")])


def pages_cell(v):
    """'13 of 15 (13 page cache, 0 copies)' from parse_verbose."""
    return f"{v['used']} of {v['least']} ({v['cache']} page cache, {v['copies']} copies)"


# ---------------------------------------------------------------- ELF ----

def elf_info(path):
    with open(path, "rb") as f:
        hdr = f.read(64)
        if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
            return None
        e_type, = struct.unpack_from("<H", hdr, 16)
        e_phoff, = struct.unpack_from("<Q", hdr, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", hdr, 54)
        f.seek(e_phoff)
        ph = f.read(e_phentsize * e_phnum)
    execs, interp, dynamic, text_off = [], False, False, None
    for i in range(e_phnum):
        p_type, p_flags, _off, vaddr, _pa, _fsz, memsz, _al = struct.unpack_from("<IIQQQQQQ", ph, i * e_phentsize)
        if p_type == 1 and p_flags & 1:
            execs.append((vaddr, vaddr + memsz))
            if text_off is None:
                text_off = _off
        interp |= p_type == 3
        dynamic |= p_type == 2
    kind = {2: "ET_EXEC", 3: "PIE" if interp else ("static-pie" if dynamic else "ET_DYN")}.get(e_type, f"type {e_type}")
    if e_type == 2:
        kind += ", dynamic" if interp else ", static"
    span = (max(e for _, e in execs) - min(s for s, _ in execs)) if execs else 0
    return dict(kind=kind, span=span, start=min(s for s, _ in execs) if execs else 0, text_off=text_off or 0)


# ---------------------------------------------------------------- smaps ----

SMAPS_HEAD_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+ ?\s*(.*)$")
TEXT_KEYS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "AnonHugePages", "FilePmdMapped",
             "Private_Hugetlb", "Shared_Hugetlb")


def parse_smaps(text):
    """[{start, end, perms, path, kb: {field: kB}}] from /proc/PID/smaps text."""
    maps, cur = [], None
    for l in text.splitlines():
        m = SMAPS_HEAD_RE.match(l)
        if m:
            cur = dict(start=int(m[1], 16), end=int(m[2], 16), perms=m[3], path=m[4].strip(), kb={})
            maps.append(cur)
        elif cur is not None and l.endswith(" kB"):
            k, v = l.split(":", 1)
            cur["kb"][k] = int(v.split()[0])
    return maps


def text_sums(maps, path=None, span=None):
    """kB summed over the executable mappings of file PATH, or over those overlapping
    the address range SPAN (start, end) (a copy moved over the text has no file)."""
    out = dict.fromkeys(TEXT_KEYS, 0)
    for mp in maps:
        if "x" not in mp["perms"]:
            continue
        if path is not None and mp["path"] != path:
            continue
        if span is not None and not (mp["start"] < span[1] and mp["end"] > span[0]):
            continue
        for k in TEXT_KEYS:
            out[k] += mp["kb"].get(k, 0)
    out["hugetlb"] = out["Private_Hugetlb"] + out["Shared_Hugetlb"]
    return out


def preload_smaps(argv, env=None, at_exit=False):
    """Runs ARGV once with smapsdump.so preloaded: (result, parsed smaps of the process
    just before main, or at exit, or None)."""
    out = wk("smaps-dump.txt")
    if os.path.exists(out):
        os.unlink(out)
    res = run(argv, {**(env or {}), "LD_PRELOAD": PRELOAD, ("HLB_SMAPS_EXIT" if at_exit else "HLB_SMAPS_OUT"): out})
    if not os.path.exists(out):
        return res, None
    with open(out) as f:
        return res, parse_smaps(f.read())


def exit_pages(v, argv=None):
    """'11 / 0 / 0': 2 MiB pages under the code (executable mappings: FilePmdMapped / AnonHugePages /
    hugetlb) when a run of the variant exits, after its prepare (smapsdump.so at exit)."""
    if not exists(PRELOAD):
        return "–"
    prepare(v)
    _, maps = preload_smaps(argv or v.argv, v.env, at_exit=True)
    if maps is None:
        return "–"
    t = text_sums(maps)
    return f"{t['FilePmdMapped'] // 2048} / {t['AnonHugePages'] // 2048} / {t['hugetlb'] // 2048}"


def prime(path):
    """hugeload --prime --json PATH: the parsed report line, or None (problem recorded)."""
    a = [HL, "--prime", "--json", path]
    r = run(a)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        record_problem(f"hugeload --prime {os.path.basename(path)}", a, r)
        return None


def prime_check(path):
    """hugeload --prime --check --json PATH (drops nothing; reads what is not cached)."""
    r = run([HL, "--prime", "--check", "--json", path])
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


# ---------------------------------------------------------------- statistics ----

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def iqr(xs):
    if len(xs) < 4:
        return float("nan")
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]


def fmt(x, nd=1):
    if x is None or x != x:
        return "–"
    return f"{x:.{nd}f}"


def table(head, rows, left=1):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < left else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


# ---------------------------------------------------------------- hyperfine ----

@dataclass
class Variant:
    key: str
    label: str
    argv: list
    pool: str | None = None  # None: don't care, "empty": pool 0, "pool": POOL pages, "many": NPROC nodes' worth
    env: dict = field(default_factory=dict)  # for the sanity run and the timed runs
    prep: str | None = None  # shell command run before every run (hyperfine --prepare), after the pool's
    pagecache: int | None = None  # a page-cache variant: at least this many 2 MiB pages from the page cache
    file: str | None = None  # the program file whose text it maps (page-cache variants)
    cache_state: str | None = None  # "dropped" / "small": what prep leaves in the file's cache (checked)
    checked: dict | None = None  # parse_verbose of the check run
    failed: bool = False  # dropped by sane(): not timed


def prepare(v):
    """Puts the machine in the state the variant needs before a run (pool, page cache)."""
    apply_pool(v.pool)
    if v.prep:
        subprocess.run(["sh", "-c", v.prep], capture_output=True)


def prepare_cmd(v):
    """The same as one hyperfine --prepare command."""
    parts = [p for p in (pool_prepare(v.pool), v.prep) if p]
    return "sh -c " + shlex.quote("; ".join(parts)) if parts else "true"


def verbose_form(v):
    """argv, env of the variant with hugeload's -v report on."""
    if v.argv and v.argv[0] in (HL, HL_PTI):
        return [v.argv[0], "-v"] + v.argv[1:], dict(v.env)
    return list(v.argv), {**v.env, "HUGELOAD_VERBOSE": "1"}


def check_pagecache(v):
    """A page-cache variant must really map its text from the page cache. After the variant's
    prepare, hugeload's -v must count every huge page as from the page cache (none copied, no range
    left on 4 KiB pages, at least v.pagecache pages); after it again, smaps (dumped before main by
    smapsdump.so) must show that much of the file's executable mappings FilePmdMapped, no
    AnonHugePages, no hugetlb. Otherwise records a problem and returns False."""
    why = []
    prepare(v)
    if v.cache_state:
        left = cached_bytes(v.file)
        if v.cache_state == "dropped" and (left is None or left > MIB):
            why.append(f"the prepare command left {left} bytes of {v.file} in the page cache")
        if v.cache_state == "small":
            st = prime_check(v.file)  # all of it is cached here, so --check reads nothing
            if st is None or st.get("small", 0) == 0:
                notes.append(f"`{v.label}`: after its prepare (drop, then `cat`) the cache held no small-folio block "
                             f"of code ({st}): the file system read it in large folios, so this ran like a primed cache")
    argv, env = verbose_form(v)
    r = run(argv, env)
    pv = parse_verbose(r.stderr)
    if r.returncode != 0:
        why.append("it failed")
    elif pv is None:
        why.append("no 'hugeload: total text' line")
    else:
        if pv["copies"]:
            why.append(f"{pv['copies']} huge pages were copies")
        if pv["cache"] < (v.pagecache or 0) or pv["cache"] != pv["used"]:
            why.append(f"{pv['cache']} of {pv['used']} huge pages from the page cache, expected at least {v.pagecache}")
        small = [l for l in pv["huge_lines"] if "4 KiB pages" in l]
        if small:
            why.append("ranges left on 4 KiB pages: " + " | ".join(small)[:600])
    if not why and pv and pv["cache"] and exists(PRELOAD):
        prepare(v)
        rs, maps = preload_smaps(v.argv, v.env)
        if maps is None:
            why.append("the smaps dump (LD_PRELOAD smapsdump.so) did not come")
        else:
            t = text_sums(maps, path=os.path.realpath(v.file))
            if t["FilePmdMapped"] < pv["cache"] * 2048:
                why.append(f"smaps: {t['FilePmdMapped']} kB of {v.file}'s code FilePmdMapped, "
                           f"-v said {pv['cache']} x 2 MiB")
            if t["AnonHugePages"] or t["hugetlb"]:
                why.append(f"smaps: AnonHugePages {t['AnonHugePages']} kB, hugetlb {t['hugetlb']} kB in its code")
    if why:
        r.stderr += "\n(" + "; ".join(why) + ")"
        record_problem(f"{v.label}: text not from the page cache", argv, r, env)
        return False
    v.checked = pv
    return True


def sane(variants, ref_key="direct", check_stdout=True):
    """Run every variant once; drop (and report) the ones that fail or print something else,
    and the page-cache variants whose text does not come from the page cache (check_pagecache)."""
    ok, ref = [], None
    for v in variants:
        if not pool_ok(v.pool):
            notes.append(f"`{v.label}` skipped: the hugetlb pool is not writable and not in the state it needs.")
            v.failed = True
            continue
        prepare(v)
        res = run(v.argv, v.env)
        if v.key == ref_key:
            ref = res.stdout
        if res.returncode != 0:
            record_problem(f"{v.label} failed", v.argv, res, v.env)
            v.failed = True
            continue
        if check_stdout and ref is not None and v.key != ref_key and res.stdout != ref:
            res.stderr += f"\n(stdout differs from the direct run: {ref!r:.200} vs {res.stdout!r:.200})"
            record_problem(f"{v.label}: output differs from the direct run", v.argv, res, v.env)
            v.failed = True
            continue
        if v.pagecache is not None and not check_pagecache(v):
            v.failed = True
            continue
        ok.append(v)
    return ok


def hyperfine(tag, variants, total, block, warmup=3):
    """Interleaved hyperfine: ceil(total / block) invocations ("rounds"), each
    running every command `block` times in a row; the command order is rotated
    by one and reversed every other round, so a slow spell of the host hits all
    commands alike. Returns {key: [seconds...]} pooled over the rounds."""
    times = {v.key: [] for v in variants}
    if not variants:
        return times
    block = max(1, min(block, total))
    rounds = -(-total // block)
    for r in range(rounds):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        if r % 2:
            order = order[::-1]
        if r == 0 or (r + 1) % 10 == 0 or r + 1 == rounds:
            log(f"{tag}: round {r + 1}/{rounds}, {len(order)} commands x {block} runs")
        # Variants with their own environment (PT_INTERP: HUGELOAD_BACKEND) run in a hyperfine of
        # their own, in the same order: consecutive commands with the same environment share one.
        chunks = []
        for v in order:
            if chunks and chunks[-1][0] == v.env:
                chunks[-1][1].append(v)
            else:
                chunks.append((v.env, [v]))
        for c, (env, group) in enumerate(chunks):
            out = wk(f"hf-{tag}-{r}-{c}.json")
            cmd = ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup if r == 0 else 0), "--runs", str(block),
                   "--export-json", out]
            for v in group:
                cmd += ["--prepare", prepare_cmd(v)]
            cmd += [shlex.join(v.argv) for v in group]
            full_env = {k: x for k, x in os.environ.items() if not k.startswith("HUGELOAD_")}
            full_env.update(env)
            res = subprocess.run(cmd, capture_output=True, text=True, env=full_env)
            if res.returncode != 0:
                problems.append((f"hyperfine failed ({tag}, round {r + 1})", cmdline(cmd, env), res.stderr[-2000:]))
                continue
            with open(out) as f:
                data = json.load(f)
            for v, result in zip(group, data["results"]):
                times[v.key] += result["times"]
    return times


TIMING_HEAD = ["variant", "median ms", "IQR ms", "min ms", "× direct", "ms over direct", "min over direct", "runs"]


def timing_rows(variants, times):
    """Rows for TIMING_HEAD; stats {key: (median ms, min ms)}."""
    t0 = times.get("direct", [])
    d, dmin = med(t0) * 1e3, (min(t0) * 1e3 if t0 else float("nan"))
    rows, stats = [], {}
    for v in variants:
        t = times.get(v.key, [])
        if not t:
            why = " (not timed: see Problems)" if v.failed else ""
            rows.append([v.label + why] + ["–"] * 6 + [0])
            continue
        m, mn = med(t) * 1e3, min(t) * 1e3
        stats[v.key] = (m, mn)
        direct = v.key == "direct"
        rows.append([v.label, fmt(m, 2), fmt(iqr(t) * 1e3, 2), fmt(mn, 2),
                     "1.00" if direct else fmt(m / d, 2),
                     "" if direct else f"{m - d:+.2f}",
                     "" if direct else f"{mn - dmin:+.2f}", len(t)])
    return rows, stats


# ---------------------------------------------------------------- sections ----

def header():
    def sh(c):
        return subprocess.run(["sh", "-c", c], capture_output=True, text=True).stdout.strip()

    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip()
    virt = ", ".join(x for x in (sh("systemd-detect-virt --vm 2>/dev/null"), sh("systemd-detect-virt --container 2>/dev/null"))
                     if x and x != "none") or ("hypervisor flag set" if sh("grep -m1 -w hypervisor /proc/cpuinfo") else "none seen")
    commit = sh(f"git -C {shlex.quote(ROOT)} rev-parse --short HEAD")
    dirty = sh(f"git -C {shlex.quote(ROOT)} status --porcelain --untracked-files=no -- src build.rs linker.ld Cargo.toml Cargo.lock")
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
    defrag = open("/sys/kernel/mm/transparent_hugepage/defrag").read().strip()
    lines = [f"# hugeload benchmarks: {sh('hostname -s') or 'vm'}, {time.strftime('%Y-%m-%d %H:%M %Z')}", ""]
    lines += table(["", ""], [
        ["date", time.strftime("%Y-%m-%d %H:%M:%S %Z")],
        ["kernel", sh("uname -r")],
        ["CPU", f"{cpu}, {os.cpu_count()} cores, virtualization: {virt}"],
        ["memory", f"{meminfo()['MemTotal'] // 1024} MiB"],
        ["THP", f"enabled `{thp}`, defrag `{defrag}`"],
        ["hugetlb pool", f"{POOL_ORIG} pages before the run (restored after); runs use 0 (\"empty\") or {POOL} (\"pool\"), "
                         f"{pool_size('many')} for the {NPROC}-process memory test"
                         + ("" if POOL_WRITABLE else " — **not writable here, pool left as is**")],
        ["hugeload", f"`{commit}`{' (uncommitted changes in src)' if dirty else ''}, {os.path.getsize(HL)} bytes, `{HL}`; "
                     f"PT_INTERP copies' interpreter: a copy at `{HL_PTI}`"],
        ["tools", f"{sh('hyperfine --version')}, node {sh('node --version')}, {sh('gcc --version | head -1')}, "
                  f"{sh('go version 2>/dev/null') or 'no go'}, {sh('gdb --version | head -1')}, {sh('patchelf --version')}"],
        ["settings", f"BENCH_SCALE={SCALE:g} BENCH_POOL={POOL} BENCH_NPROC={NPROC} BENCH_ITLB_CALLS={ITLB_CALLS}"],
    ], left=2)
    return lines


PAGES = {}  # (tag, variant key) -> parse_verbose of its page-cache check run


def startup_variants(tag, argv):
    """The start-up variants of one program (see section 1's text)."""
    hlcopy, pcf, cdf, rest = wk(f"{tag}.hl"), pc(tag), cold(tag), argv[1:]
    want = 0 if tag == "true" else 1  # /bin/true has no whole 2 MiB block of code
    vs = [Variant("direct", "direct", argv, "pool")]
    if exists(pcf):
        vs.append(Variant("direct-pc", "direct, the primed copy", [pcf] + rest, "pool"))
    if exists(cdf):
        vs.append(Variant("direct-cold", "direct, the copy, its cache dropped before each run", [cdf] + rest, "pool",
                          prep=evict_cmd(cdf)))
    vs += [Variant("ldso", f"`{LDSO} PROGRAM`", [LDSO] + argv, "pool"),
           Variant("off", "hugeload `-b off`", [HL, "-b", "off"] + argv, "pool"),
           Variant("thp", "hugeload `-b thp` (copy), pool empty", [HL, "-b", "thp"] + argv, "empty"),
           Variant("hugetlb", "hugeload `-b hugetlb` (copy), pool", [HL, "-b", "hugetlb"] + argv, "pool")]
    if exists(pcf):
        vs.append(Variant("pc", "hugeload, auto → page cache, primed copy", [HL, pcf] + rest, "pool",
                          pagecache=want, file=pcf))
    if exists(cdf):
        vs.append(Variant("cold", "hugeload, auto, first run after eviction (cache dropped)", [HL, cdf] + rest, "pool",
                          prep=evict_cmd(cdf), pagecache=want, file=cdf, cache_state="dropped"))
        if want:
            vs.append(Variant("small", "hugeload, auto, first run on small folios (dropped, then `cat`)",
                              [HL, cdf] + rest, "pool", prep=small_folios_cmd(cdf), pagecache=want, file=cdf,
                              cache_state="small"))
    if exists(hlcopy):
        vs += [Variant("pti-thp", "PT_INTERP copy, `HUGELOAD_BACKEND=thp`, pool empty", [hlcopy] + rest, "empty",
                       env={"HUGELOAD_BACKEND": "thp"}),
               Variant("pti-hugetlb", "PT_INTERP copy, `HUGELOAD_BACKEND=hugetlb`, pool", [hlcopy] + rest, "pool",
                       env={"HUGELOAD_BACKEND": "hugetlb"}),
               Variant("pti-pc", "PT_INTERP copy, auto → page cache, primed", [hlcopy] + rest, "pool",
                       pagecache=want, file=hlcopy)]
    if tag == "node":
        vs.append(Variant("largepages", "`node --use-largepages=on`", [NODE, "--use-largepages=on"] + rest, "pool"))
    return vs


GOAL_RATIO, GOAL_MS = 1.05, 1.0
EXIT_PAGES_HEAD = "2 MiB code pages at exit: cache / THP / hugetlb"


def goal_lines(stats, times):
    """The issue's goal for node: page-cache start-up within 1.05x of direct and at most 1 ms over it."""
    d = stats.get("direct")
    if not d:
        return []
    parts, verdicts = [], []
    for key, what in (("pc", "launcher"), ("pti-pc", "PT_INTERP")):
        if key not in stats:
            parts.append(f"{what}: not measured (see Problems)")
            verdicts.append(False)
            continue
        m, mn = stats[key]
        ok = m / d[0] <= GOAL_RATIO and m - d[0] <= GOAL_MS
        verdicts.append(ok)
        s = (f"{what} {m / d[0]:.3f}×, {m - d[0]:+.2f} ms (minima {mn - d[1]:+.2f} ms): "
             f"**{'met' if ok else 'not met'}**")
        if "direct-pc" in stats:
            c = stats["direct-pc"]
            s += f"; against the direct run of the same primed copy {m / c[0]:.3f}×, {m - c[0]:+.2f} ms"
        parts.append(s)
    head = "met" if all(verdicts) else "not met"
    spread = iqr(times.get("direct", [])) * 1e3
    return [f"**Goal: page-cache start-up within {GOAL_RATIO:.2f}× of direct and at most {GOAL_MS:g} ms over it "
            f"(medians): {head}.** " + "; ".join(parts) + f". The direct runs' IQR here is {fmt(spread, 2)} ms: "
            f"a {GOAL_MS:g} ms threshold is well inside this VM's run-to-run spread, so the medians' verdict can "
            "differ from one run of the suite to the next; the minima are the steadier comparison.", ""]


def startup_section():
    log("section 1: start-up")
    progs = [
        ("/bin/true", ["/bin/true"], "true", 300, 20),
        ("node -e 0", [NODE, "-e", "0"], "node", 60, 2),
        ("cargo --version", [CARGO, "--version"] if exists(CARGO) else None, "cargo", 150, 10),
        ("big fixture (66 MiB of text)", [wk("big")], "big", 150, 10),
    ]
    lines = ["## 1. Start-up", "",
             "Wall time of one complete run (hyperfine, `-N`, no shell). Runs are interleaved: many short "
             "hyperfine rounds (node: 2 runs per command per round, the others 10-20), the command order rotated "
             "and reversed from round to round; median and minimum over all runs. Ratio and \"ms over direct\" "
             "compare medians, \"min over direct\" minima (this VM has slow spells of a few seconds that make "
             f"single runs bimodal; the minima are the steadier estimate). \"pool\" = {POOL} free 2 MiB hugetlb "
             "pages, \"empty\" = none, set before every run. hugeload's default backend `auto` maps a block of "
             "text straight from the file's page cache when the cache holds it in a 2 MiB folio (priming it first "
             "when it holds small folios: written back, dropped, read again in 2 MiB folios), and only otherwise "
             "copies it: onto hugetlb when the pool has room, else THP. The copy backends are forced here "
             "(`-b thp`, `-b hugetlb`; PT_INTERP: `HUGELOAD_BACKEND`, the same hyperfine round run with that "
             "variable set). `hugeload -b off` loads without huge pages (the loader's own cost). IQR = "
             "interquartile range.", "",
             "The page-cache variants run copies of the program in the bench's work directory, never the "
             "installed file, whose cache the bench leaves alone: \"primed copy\" was primed once "
             "(`hugeload --prime`) before the runs and stays in 2 MiB folios; \"first run after eviction\" drops "
             "the copy's cache before every run (hyperfine `--prepare`: `dd of=COPY oflag=nocache "
             "conv=notrunc,fdatasync count=0`), so the run reads it from disk into 2 MiB folios itself; \"small "
             "folios\" drops it and reads the file with `cat` (small folios) before every run, so hugeload primes "
             "it in the run. \"direct, the primed copy\" and \"direct, … cache dropped\" run the same copies "
             "directly, as controls. The PT_INTERP copies name a copy of hugeload at a short path "
             f"(`{HL_PTI}`) as interpreter, which patchelf writes in place, so the text stays congruent with its "
             "file offsets (checked, see Notes); they are primed too. Before timing, every page-cache variant is "
             "run once with `-v` after its prepare: all its 2 MiB pages must come from the page cache (none "
             "copied, none left on 4 KiB pages), and once more with an LD_PRELOAD that dumps /proc/self/smaps "
             "before main: that much of its code must be `FilePmdMapped`; a variant that fails is not timed and "
             "is listed under Problems.", "",
             f"\"{EXIT_PAGES_HEAD}\": one run of each variant (after its prepare) with an LD_PRELOAD that dumps "
             "/proc/self/smaps at exit; 2 MiB pages under its executable mappings: FilePmdMapped (the page cache's "
             "2 MiB folios mapped with PMD entries), AnonHugePages (THP copies, node's own), hugetlb. The kernel "
             "itself maps a 2 MiB folio of the page cache with a PMD entry on a fault when the mapping covers the "
             "aligned 2 MiB block at a congruent address: a direct run of an ET_EXEC whose cache holds 2 MiB "
             "folios (the installed node here, however its cache came to hold them; the primed copy) gets the "
             "blocks it touches on 2 MiB pages with no loader; a PIE, which the kernel places at a random 4 KiB "
             "offset, does not.", ""]
    results = {}
    for title, argv, tag, n, block in progs:
        if argv is None:
            notes.append(f"start-up: `{title}` skipped (program not found)")
            continue
        allv = startup_variants(tag, argv)
        vs = sane(allv)
        for v in vs:
            if v.checked:
                PAGES[(tag, v.key)] = v.checked
        pages = {v.key: exit_pages(v) for v in vs}
        times = hyperfine(f"startup-{tag}", vs, runs(n), block)
        rows, stats = timing_rows(allv, times)
        for row, v in zip(rows, allv):
            row.insert(1, pages.get(v.key, "–"))
        results[tag] = stats
        lines += [f"### {title}", ""]
        lines += table(TIMING_HEAD[:1] + [EXIT_PAGES_HEAD] + TIMING_HEAD[1:], rows)
        lines.append("")
        if tag == "node":
            lines += goal_lines(stats, times)
    return lines, results


def coverage_section():
    log("section 2: coverage")
    progs = [
        ("/bin/true", ["/bin/true"], "true"),
        ("node", [NODE, "-e", "0"], "node"),
        ("cargo", [CARGO, "--version"] if exists(CARGO) else None, "cargo"),
        ("gdb", [GDB, "-nx", "--batch", "-ex", "print 1+1"], "gdb"),
        ("Go net/http+json (cgo)", [wk("gohttp")] if exists(wk("gohttp")) else None, "gohttp"),
        ("Go net/http+json (CGO_ENABLED=0)", [wk("gohttp-static")] if exists(wk("gohttp-static")) else None, "gohttp-static"),
        ("big fixture", [wk("big")], "big"),
        ("iTLB fixture", [wk("itlb"), "1000"], "itlb"),
    ]
    rows, pc_rows, cov = [], [], {}
    for title, argv, tag in progs:
        if argv is None:
            notes.append(f"coverage: `{title}` skipped (not built / not found)")
            continue
        info = elf_info(argv[0])
        direct = run(argv)
        if direct.returncode != 0:
            record_problem(f"{title} fails even when run directly", argv, direct)
            continue
        res = {}
        for s in ("conservative", "aggressive"):
            a = [HL, "-v", "-s", s, "-b", "thp"] + argv
            r = run(a)
            v = parse_verbose(r.stderr)
            if r.returncode != 0 or r.stdout != direct.stdout or v is None:
                if r.returncode == 0 and r.stdout != direct.stdout:
                    r.stderr += f"\n(stdout differs from the direct run: {direct.stdout!r:.200} vs {r.stdout!r:.200})"
                if v is None:
                    r.stderr += "\n(no 'hugeload: total text' line)"
                record_problem(f"coverage: {title} ({s})", a, r)
            res[s] = v
        # PT_INTERP: the kernel places a PIE itself, so U may vary from run to run.
        pti = "n/a (static: no PT_INTERP to patch)" if "static" in info["kind"] else "–"
        hlcopy = wk(f"{tag}.hl")
        used = []
        if exists(hlcopy):
            env = {"HUGELOAD_VERBOSE": "1", "HUGELOAD_BACKEND": "thp"}
            for _ in range(10):
                r = run([hlcopy] + argv[1:], env)
                v = parse_verbose(r.stderr)
                if r.returncode != 0 or v is None or r.stdout != direct.stdout:
                    record_problem(f"coverage: {title} (PT_INTERP)", [hlcopy] + argv[1:], r, env)
                    break
                used.append(v["used"])
            if used:
                pti = f"{min(used)}" if min(used) == max(used) else f"{min(used)}–{max(used)}"
        own = "–"
        if tag == "node":
            own = node_largepages_pages()
        c, a = res.get("conservative"), res.get("aggressive")
        cov[tag] = dict(info=info, conservative=c, aggressive=a, pti_used=used if exists(hlcopy) else [])

        def cell(v):
            if v is None:
                return "**failed**"
            s = f"{v['used']} ({v['pct']}% of text)"
            if v["extra_exec"]:
                s += f", +{v['extra_exec'] / 1024:.0f} KiB r/o made exec"
            return s

        rows.append([title, info["kind"], fmt(info["span"] / MIB, 2),
                     str((c or a or {}).get("least", "–")), cell(c), cell(a), pti, own])
        if exists(pc(tag)):
            pc_rows.append(pagecache_coverage(title, tag, argv, info, direct.stdout, cov[tag]))
    lines = ["## 2. Coverage", "",
             "Huge pages used (U) for the text, from hugeload's `-v` total line with `-b thp` (launcher; hugeload "
             "places a PIE itself). L = least possible number of 2 MiB pages covering the text at its load address. "
             "PT_INTERP: U over 10 runs of the patched copy (conservative; the kernel places a PIE there, so U can vary). "
             "node's own: AnonHugePages of node's executable mappings with `--use-largepages=on`, in 2 MiB pages.", ""]
    lines += table(["program", "ELF", "text span MiB", "L", "U conservative", "U aggressive", "U PT_INTERP", "node's own"], rows)
    lines.append("")
    lines += ["### Page-cache backend", "",
              "The same programs through the default backend (`auto`, conservative) on their primed copies "
              "(`hugeload --prime COPY` before the run; \"prime\" is what that found: blocks of 2 MiB code "
              "already in 2 MiB folios / primed / left small), launcher and PT_INTERP: U with how many pages came "
              "from the page cache and how many were copies, from the `-v` total line (L here is the least "
              "possible at the placement the page cache needs: a block's address congruent with its file offset; "
              "PT_INTERP over 5 runs, the kernel places a PIE). \"smaps\": the program's executable mappings of "
              "its file in /proc/self/smaps just before main (an LD_PRELOAD dump), `FilePmdMapped` in 2 MiB pages "
              "(what the kernel maps with PMD entries from the page cache), and AnonHugePages + hugetlb of them "
              "(copies: must be 0). A page-cache run with copies, or with less `FilePmdMapped` than `-v` claims, "
              "is listed under Problems.", ""]
    lines += table(["program", "prime (huge / primed / small)", "launcher: U of L (page cache, copies)",
                    "launcher smaps: FilePmdMapped / copies", "PT_INTERP: U (page cache, copies)",
                    "PT_INTERP smaps: FilePmdMapped / copies"], pc_rows)
    lines.append("")
    return lines, cov


PRIMED = {}  # path -> hugeload --prime --json report (setup)


def smaps_cell(argv, env, path, cache_pages, what):
    """'13 / 0' (FilePmdMapped pages / copied pages of the file's code) from an LD_PRELOAD smaps dump;
    records a problem when FilePmdMapped falls short of what -v claimed."""
    if "static" in elf_info(path)["kind"]:
        return "n/a (static: no LD_PRELOAD)"
    r, maps = preload_smaps(argv, env)
    if maps is None:
        record_problem(f"coverage: {what}: no smaps dump", argv, r, env)
        return "failed"
    code = text_sums(maps, path=os.path.realpath(path))
    # a copy moved over the text is anonymous (THP) or a memfd (hugetlb): count 2 MiB pages of any
    # executable mapping that is not a file's
    copies = sum(mp["kb"].get("AnonHugePages", 0) + mp["kb"].get("Private_Hugetlb", 0) + mp["kb"].get("Shared_Hugetlb", 0)
                 for mp in maps if "x" in mp["perms"])
    pmd = code["FilePmdMapped"] // 2048
    if pmd < cache_pages or copies:
        r.stderr += f"\n(smaps: {pmd} x 2 MiB FilePmdMapped, -v said {cache_pages} from the page cache; {copies} kB of copies)"
        record_problem(f"coverage: {what}: code not FilePmdMapped as -v says", argv, r, env)
    return f"{pmd} / {copies // 2048}"


def pagecache_coverage(title, tag, argv, info, want_stdout, cv):
    """One row of the page-cache coverage table; also stores cv['pc'], cv['pti_pc']."""
    f, hlcopy, rest = pc(tag), wk(f"{tag}.hl"), argv[1:]
    pr = PRIMED.get(f)
    prime_cell = f"{pr['blocks']}: {pr['huge_before']} / {pr['primed']} / {pr['small']}" if pr else "–"
    a = [HL, "-v", f] + rest
    r = run(a)
    v = parse_verbose(r.stderr)
    if r.returncode != 0 or v is None or r.stdout != want_stdout or v["copies"] or v["cache"] != v["used"]:
        record_problem(f"coverage: {title} (page cache, launcher)", a, r)
    cv["pc"] = v
    launcher = pages_cell(v) if v else "**failed**"
    lsmaps = smaps_cell([HL, f] + rest, {}, f, v["cache"] if v else 0, f"{title} (page cache, launcher)") if v else "–"
    pti, psmaps = "n/a (static: no PT_INTERP to patch)" if "static" in info["kind"] else "–", "–"
    if exists(hlcopy):
        env = {"HUGELOAD_VERBOSE": "1"}
        got = []
        for _ in range(5):
            r = run([hlcopy] + rest, env)
            pv = parse_verbose(r.stderr)
            if r.returncode != 0 or pv is None or r.stdout != want_stdout:
                record_problem(f"coverage: {title} (page cache, PT_INTERP)", [hlcopy] + rest, r, env)
                break
            if pv["copies"] or pv["cache"] != pv["used"]:
                record_problem(f"coverage: {title} (page cache, PT_INTERP): copies", [hlcopy] + rest, r, env)
            got.append(pv)
        if got:
            cv["pti_pc"] = got
            span = lambda k: (f"{min(g[k] for g in got)}" if min(g[k] for g in got) == max(g[k] for g in got)
                              else f"{min(g[k] for g in got)}–{max(g[k] for g in got)}")
            pti = f"{span('used')} of {span('least')} ({span('cache')} page cache, {span('copies')} copies)"
            psmaps = smaps_cell([hlcopy] + rest, {}, hlcopy, min(g["cache"] for g in got), f"{title} (page cache, PT_INTERP)")
    return [title, prime_cell, launcher, lsmaps, pti, psmaps]


NODE_SMAPS_JS = r"""
const s = require("fs").readFileSync("/proc/self/smaps", "utf8");
let x = false, kb = 0;
for (const l of s.split("\n")) {
  if (/^[0-9a-f]+-[0-9a-f]+ /.test(l)) x = l.split(/\s+/)[1].includes("x");
  else if (x && /^(AnonHugePages|Private_Hugetlb|Shared_Hugetlb):/.test(l)) kb += +l.split(/\s+/)[1];
}
console.log(kb);
"""


def node_largepages_pages():
    a = [NODE, "--use-largepages=on", "-e", NODE_SMAPS_JS]
    r = run(a)
    if r.returncode != 0 or not r.stdout.strip().isdigit():
        record_problem("node --use-largepages=on smaps check", a, r)
        return "failed"
    kb = int(r.stdout.strip())
    return f"{kb // 2048} ({kb / 1024:.0f} MiB)"


_fill_cache = {}


def fill_rate(mode, path, mib, offset=0):
    """ms per MiB of `fill MODE PATH MIB` from OFFSET, the best of its repetitions
    (a floor: host noise only ever adds); None if it cannot run."""
    key = (mode, path, mib, offset)
    if key in _fill_cache:
        return _fill_cache[key]
    val = None
    if mode == "hugetlb":
        if pool_ok("pool"):
            set_pool(POOL)
        if meminfo()["HugePages_Free"] < (mib + 1) // 2:
            notes.append(f"fill hugetlb {mib} MiB skipped: fewer than {(mib + 1) // 2} free hugetlb pages")
            _fill_cache[key] = None
            return None
    a = [wk("fill"), mode, path, str(mib), str(runs(21)), str(offset)]
    r = run(a)
    if r.returncode != 0:
        record_problem(f"fill {mode}", a, r)
    else:
        val = min(float(x) for x in r.stdout.split()) / mib
    _fill_cache[key] = val
    return val


def fill_section():
    log("section 3: fill rate")
    return {mode: fill_rate(mode, wk("big"), 64) for mode in ("thp", "hugetlb", "prefault")}


def loadcost_section(startup, cov, fill):
    lines = ["## 3. Load cost", "",
             "Extra start-up over the direct run (section 1; median / min), per MiB that hugeload put on huge "
             "pages (U × 2 MiB; section 2, for PT_INTERP the mean U of its runs), against this machine's fill rate: "
             "`bench/fill.c` preads a page-cached file into a fresh 2 MiB-aligned region (anonymous with "
             "MADV_HUGEPAGE, or a MFD_HUGETLB memfd), which faults, zeroes and copies: the physical floor of any "
             "loader that copies code onto huge pages. The floor is measured per source file, from its text offset, "
             "for the same size and backend (the page-cache state of a file matters: the PT_INTERP copies were "
             "primed into 2 MiB folios, the installed binaries were read by page faults). \"big − /bin/true\" "
             "subtracts the fixed cost of going through hugeload (/bin/true gets no huge page). The floor is the "
             "best of 21 repetitions, so × floor compares it with the best run (min ms per MiB); the medians show "
             "how much the host's noise adds. The page-cache rows copy nothing: their MiB are mapped from the "
             "file's 2 MiB folios (after eviction: read from disk into them first; small folios: dropped and read "
             "again), so their extra time is not a copy rate and has no floor here.", ""]
    rows = []

    def rate(per):
        return fmt(MIB / 1e6 / (per / 1e3), 0) if per is not None and per == per and per > 0 else "–"

    def pair(a, b, nd):
        return f"{fmt(a, nd)} / {fmt(b, nd)}"

    def extra(tag, key):
        st = startup.get(tag, {})
        if "direct" not in st or key not in st:
            return None
        return st[key][0] - st["direct"][0], st[key][1] - st["direct"][1]

    srcs = {"node": NODE, "cargo": CARGO, "big": wk("big")}
    for tag, title in (("node", "node -e 0"), ("cargo", "cargo --version"), ("big", "big fixture")):
        cv = cov.get(tag)
        if not cv or not cv.get("conservative"):
            continue
        for mode in ("launcher", "PT_INTERP"):
            if mode == "launcher":
                src, mib, pre = srcs[tag], cv["conservative"]["used"] * 2, ""
            else:
                src = wk(f"{tag}.hl")
                if not cv["pti_used"] or not exists(src):
                    continue
                mib, pre = 2 * sum(cv["pti_used"]) / len(cv["pti_used"]), "pti-"
            if not mib:
                continue
            info = elf_info(src)
            for be in ("thp", "hugetlb"):
                e = extra(tag, pre + be)
                if e is None:
                    continue
                pm, pn = e[0] / mib, e[1] / mib
                fl = fill_rate(be, src, int(round(mib)), info["text_off"])
                rows.append([f"{title}, {mode}, {be} (copy)", f"`{os.path.basename(src)}`", fmt(mib, 0),
                             pair(*e, 2), pair(pm, pn, 3), f"{rate(pm)} / {rate(pn)}",
                             fmt(fl, 3), fmt(pn / fl, 2) if fl else "–"])
    big = cov.get("big", {}).get("conservative")
    if big:
        mib = big["used"] * 2
        for be in ("thp", "hugetlb"):
            eb, et = extra("big", be), extra("true", be)
            if eb is None or et is None:
                continue
            em, en = eb[0] - et[0], eb[1] - et[1]
            pm, pn = em / mib, en / mib
            fl = fill_rate(be, wk("big"), mib, elf_info(wk("big"))["text_off"])
            rows.append([f"big − /bin/true, launcher, {be} (copy)", "`big`", mib, pair(em, en, 2), pair(pm, pn, 3),
                         f"{rate(pm)} / {rate(pn)}", fmt(fl, 3), fmt(pn / fl, 2) if fl else "–"])
    for tag, title in (("node", "node -e 0"), ("cargo", "cargo --version"), ("big", "big fixture")):
        for key, what in (("pc", "launcher, auto → page cache, primed"), ("pti-pc", "PT_INTERP, auto → page cache, primed"),
                          ("cold", "launcher, auto, after eviction"), ("small", "launcher, auto, small folios")):
            pv, e = PAGES.get((tag, key)), extra(tag, key)
            if pv is None or e is None or not pv["cache"]:
                continue
            mib = 2 * pv["cache"]
            src = wk(f"{tag}.hl") if key == "pti-pc" else (cold(tag) if key in ("cold", "small") else pc(tag))
            rows.append([f"{title}, {what}", f"`{os.path.relpath(src, WORK)}`", mib, pair(*e, 2),
                         pair(e[0] / mib, e[1] / mib, 3), "", "no copy", ""])
    labels = {"thp": "fill: anonymous + MADV_HUGEPAGE", "hugetlb": "fill: MFD_HUGETLB memfd",
              "prefault": "fill: copy only (destination already faulted)"}
    for mode in ("thp", "hugetlb", "prefault"):
        if fill.get(mode):
            rows.append([labels[mode], "`big`", 64, "", fmt(fill[mode], 3), rate(fill[mode]), "", ""])
    lines += table(["what", "source file", "MiB placed", "extra ms (median / min)", "ms per MiB", "MB/s",
                    "floor ms per MiB", "× floor (min)"], rows)
    lines.append("")
    return lines


def smaps_sample(pid, span):
    """kB figures of a process: its smaps_rollup, and its text (executable mappings overlapping SPAN)."""
    roll = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for l in f:
            if l.endswith(" kB\n"):
                k, v = l.split(":", 1)
                roll[k] = int(v.split()[0])
    with open(f"/proc/{pid}/smaps") as f:
        text = text_sums(parse_smaps(f.read()), span=span)
    g = roll.get
    hugetlb = g("Private_Hugetlb", 0) + g("Shared_Hugetlb", 0)
    private = g("Private_Clean", 0) + g("Private_Dirty", 0)
    return dict(rss=g("Rss", 0), pss=g("Pss", 0), private=private, anon=g("Anonymous", 0),
                anon_huge=g("AnonHugePages", 0), file_pmd=g("FilePmdMapped", 0), hugetlb=hugetlb,
                total=g("Rss", 0) + hugetlb, private_total=private + hugetlb, pss_total=g("Pss", 0) + hugetlb,
                t_pss=text["Pss"], t_clean=text["Private_Clean"], t_dirty=text["Private_Dirty"],
                t_anon_huge=text["AnonHugePages"], t_file_pmd=text["FilePmdMapped"], t_hugetlb=text["hugetlb"])


NODE_WAIT_JS = ('process.stdout.write("ready\\n"); process.stdin.resume(); '
                'process.stdin.on("end", () => process.exit(0));')


def node_memory_variants(many=False):
    argv = [NODE, "-e", NODE_WAIT_JS]
    hlcopy, rest = wk("node.hl"), argv[1:]
    pool = "many" if many else "pool"
    vs = [Variant("direct", "direct", argv, pool)]
    if exists(pc("node")):
        vs.append(Variant("pc", "hugeload, auto → page cache, primed copy", [HL, pc("node")] + rest, pool, pagecache=1))
    if exists(hlcopy):
        vs.append(Variant("pti-pc", "PT_INTERP copy, auto → page cache, primed", [hlcopy] + rest, pool, pagecache=1))
    vs += [Variant("thp", "hugeload `-b thp` (copy), pool empty", [HL, "-b", "thp"] + argv, "empty"),
           Variant("hugetlb", "hugeload `-b hugetlb` (copy), pool", [HL, "-b", "hugetlb"] + argv, pool)]
    if exists(hlcopy) and not many:
        vs += [Variant("pti-thp", "PT_INTERP copy, `HUGELOAD_BACKEND=thp`, pool empty", [hlcopy] + rest, "empty",
                       env={"HUGELOAD_BACKEND": "thp"}),
               Variant("pti-hugetlb", "PT_INTERP copy, `HUGELOAD_BACKEND=hugetlb`, pool", [hlcopy] + rest, pool,
                       env={"HUGELOAD_BACKEND": "hugetlb"})]
    vs.append(Variant("largepages", "`node --use-largepages=on`", [NODE, "--use-largepages=on"] + rest, pool))
    return [v for v in vs if pool_ok(v.pool)]


def sample_nodes(v, n, span):
    """Starts N node processes of variant V at once, waits until every one printed `ready`, samples
    each 0.2 s later; returns the samples (None if one did not start: problem recorded)."""
    set_pool_checked(v.pool)
    env = {k: x for k, x in os.environ.items() if not k.startswith("HUGELOAD_")}
    env.update(v.env)
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(v.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=env))
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "ready":
                p.kill()
                _, err = p.communicate(timeout=10)
                problems.append((f"memory: {v.label} did not start ({n} processes)", cmdline(v.argv, v.env),
                                 (line + err)[-2000:]))
                return None
        time.sleep(0.2 if n > 1 else 0.1)  # let V8's start-up threads settle
        return [smaps_sample(p.pid, span) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    p.stdin.close()
                    p.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if p.poll() is None:
                p.kill()
                p.wait()


def check_text_memory(v, ss, n):
    """Page-cache variants: every process's text must be FilePmdMapped, with no private dirty
    pages, no AnonHugePages and no hugetlb in it. Records a problem otherwise."""
    if not v.pagecache:
        return
    bad = [s for s in ss if s["t_file_pmd"] < 2048 or s["t_dirty"] or s["t_anon_huge"] or s["t_hugetlb"]]
    if bad:
        b = bad[0]
        problems.append((f"memory: {v.label} ({n} processes): text not (only) from the page cache", cmdline(v.argv, v.env),
                         f"{len(bad)} of {len(ss)} processes; e.g. text FilePmdMapped {b['t_file_pmd']} kB, "
                         f"Private_Dirty {b['t_dirty']} kB, AnonHugePages {b['t_anon_huge']} kB, hugetlb {b['t_hugetlb']} kB"))
        log(f"PROBLEM: memory: {v.label}: text not from the page cache")


def memory_section():
    log("section 4: memory")
    info = elf_info(NODE)
    span = (info["start"], info["start"] + info["span"])
    mib = lambda kb: kb / 1024

    # One process.
    vs = node_memory_variants()
    samples = {v.key: [] for v in vs}
    reps = runs(7)
    for i in range(reps):
        for v in (vs if i % 2 == 0 else vs[::-1]):
            got = sample_nodes(v, 1, span)
            if got:
                check_text_memory(v, got, 1)
                samples[v.key] += got
    direct = med([s["private_total"] for s in samples.get("direct", [])])
    rows = []
    for v in vs:
        ss = samples[v.key]
        if not ss:
            rows.append([v.label] + ["–"] * 11 + [0])
            continue
        m = {k: mib(med([s[k] for s in ss])) for k in ss[0]}
        rows.append([v.label, fmt(m["rss"]), fmt(m["pss"]), fmt(m["private"]), fmt(m["anon"]), fmt(m["anon_huge"]),
                     fmt(m["hugetlb"]), fmt(m["private_total"]),
                     "" if v.key == "direct" else f"{m['private_total'] - mib(direct):+.1f}", fmt(m["total"]),
                     fmt(m["file_pmd"]), f"{fmt(m['t_file_pmd'])} / {fmt(m['t_anon_huge'])} / {fmt(m['t_hugetlb'])}",
                     len(ss)])
    lines = ["## 4. Memory", "",
             "node (`node -e` script that prints `ready` and waits for stdin), sampled 0.1 s after `ready`, from "
             "/proc/PID/smaps_rollup: Rss, Pss, private = Private_Clean + Private_Dirty, Anonymous, AnonHugePages, "
             "and hugetlb = Private_Hugetlb + Shared_Hugetlb (which Rss, Pss and the private fields do not count). "
             "\"private + hugetlb\" is the memory that is the process's own; \"over direct\" compares it. A "
             "page-cache page mapped by one process only counts as Private_Clean although it is the file's page "
             "cache, shared with every later run: with one process the page-cache backend's 2 MiB folios (all of "
             "the text, where a direct run maps only the 4 KiB pages it touches) show up as private clean memory; "
             "the 10-process test below splits them. \"text on 2 MiB pages\" = FilePmdMapped / AnonHugePages / "
             "hugetlb of the executable mappings over node's text (/proc/PID/smaps): the kernel's view of what `-v` "
             "claims. \"FilePmdMapped\" (smaps_rollup) counts all of the process's PMD-mapped page cache: where "
             "node's file is cached in 2 MiB folios (the installed node, the primed copies) the kernel also maps "
             "its read-only data in whole 2 MiB folios on faults, which raises Rss and private clean memory "
             "without any copy; a direct run gets part of its text that way too (section 1). Page-cache variants "
             f"run the primed copies (section 1). Medians of {reps} samples each, interleaved.", ""]
    lines += table(["variant", "Rss MiB", "Pss MiB", "private MiB", "Anonymous MiB", "AnonHugePages MiB", "hugetlb MiB",
                    "private + hugetlb MiB", "MiB over direct", "Rss + hugetlb MiB", "FilePmdMapped MiB",
                    "text on 2 MiB pages: page cache / THP / hugetlb MiB",
                    "samples"], rows)
    lines.append("")

    # NPROC processes at once.
    log(f"section 4: memory, {NPROC} processes")
    vs = node_memory_variants(many=True)
    totals = {v.key: [] for v in vs}
    per = {v.key: [] for v in vs}
    reps = runs(3)
    for i in range(reps):
        for v in (vs if i % 2 == 0 else vs[::-1]):
            got = sample_nodes(v, NPROC, span)
            if got:
                check_text_memory(v, got, NPROC)
                totals[v.key].append(sum(s["pss_total"] for s in got))
                per[v.key] += got
    direct = med(totals.get("direct", []))
    rows = []
    for v in vs:
        if not totals[v.key]:
            rows.append([v.label] + ["–"] * 9 + [0])
            continue
        t = med(totals[v.key])
        m = {k: mib(med([s[k] for s in per[v.key]])) for k in per[v.key][0]}
        rows.append([v.label, fmt(mib(t)), "" if v.key == "direct" else f"{mib(t - direct):+.1f}",
                     "1.00" if v.key == "direct" else fmt(t / direct, 2),
                     fmt(m["t_pss"], 2), fmt(m["t_clean"], 2), fmt(m["t_dirty"], 2), fmt(m["t_anon_huge"], 2),
                     fmt(m["t_hugetlb"], 2), fmt(m["t_file_pmd"], 1), len(totals[v.key])])
    lines += [f"### {NPROC} node processes at once", "",
              f"{NPROC} of the same node processes started together through each backend, sampled 0.2 s after the "
              f"last printed `ready`. Total = Σ (Pss + hugetlb) over the {NPROC}: Pss divides each shared page "
              "among the processes that map it, so the page-cache text is counted once in all, the copies once per "
              "process (hugetlb is never shared here: each process has its own memfd). Per process, the text's "
              "figures (executable mappings over node's text): Pss, Private_Clean, Private_Dirty, AnonHugePages, "
              "hugetlb, FilePmdMapped. For the page-cache backend Private_Dirty, AnonHugePages and hugetlb of the "
              "text must be 0 and FilePmdMapped not (checked; a failure is listed under Problems); the direct "
              "runs' FilePmdMapped is the kernel's own PMD mapping of the installed node's 2 MiB folios (section 1). "
              "The hugetlb "
              f"pool holds {pool_size('many')} pages for these runs. Medians over {reps} rounds (totals) and over "
              "all processes (per process), variants interleaved.", ""]
    lines += table(["variant", f"total MiB ({NPROC})", "MiB over direct", "× direct", "text Pss MiB",
                    "text Private_Clean MiB", "text Private_Dirty MiB", "text AnonHugePages MiB", "text hugetlb MiB",
                    "text FilePmdMapped MiB", "rounds"], rows)
    lines.append("")
    return lines


def itlb_section():
    log("section 5: iTLB-bound run time")
    argv = [wk("itlb"), str(ITLB_CALLS)]
    info = elf_info(argv[0])
    allv = [Variant("direct", "direct", argv, "pool"),
            Variant("off", "hugeload `-b off`", [HL, "-b", "off"] + argv, "pool"),
            Variant("thp", "hugeload `-b thp`", [HL, "-b", "thp"] + argv, "pool"),
            Variant("hugetlb", "hugeload `-b hugetlb`", [HL, "-b", "hugetlb"] + argv, "pool")]
    if exists(pc("itlb")):
        allv.append(Variant("pagecache", "hugeload `-b pagecache` (primed copy)",
                            [HL, "-b", "pagecache", pc("itlb"), str(ITLB_CALLS)], "pool", pagecache=1, file=pc("itlb")))
    vs = sane(allv)  # also checks that every variant prints the same checksum, and the page cache
    used = {}
    for v in vs:
        if v.key in ("thp", "hugetlb", "off", "pagecache"):
            apply_pool(v.pool)
            r = run([HL, "-v"] + v.argv[1:-1] + ["1000"])
            pv = parse_verbose(r.stderr)
            used[v.key] = pages_cell(pv) if pv else "?"
    pages = {v.key: exit_pages(v, v.argv[:-1] + ["1000"]) for v in vs}
    times = hyperfine("itlb", vs, runs(20), 1, warmup=1)
    rows, stats = timing_rows(allv, times)
    for row, v in zip(rows, allv):
        row.insert(1, pages.get(v.key, "–"))
        row.insert(1, used.get(v.key, "0 (no hugeload)"))
    lines = ["## 5. Run time: iTLB-bound synthetic program", "",
             f"`bench/gen_itlb.py` generates {E.get('BENCH_ITLB_FUNCS', '8192')} functions, each aligned to 4096 bytes "
             f"({info['span'] / MIB:.1f} MiB of text), called through a table in a pseudo-random order, "
             f"{ITLB_CALLS:,} calls per run; every variant must print the same checksum. "
             "hyperfine, one run per command per round, order rotated and reversed from round to round. "
             "`-b off` is the control: loaded by hugeload, on 4 KiB pages. `-b pagecache` runs a fresh copy of "
             "the fixture primed before the runs (`hugeload --prime COPY`): the same 2 MiB pages, mapped from the "
             "file's page cache instead of copied (checked with `-v` and smaps before timing). "
             f"\"{EXIT_PAGES_HEAD}\" as in section 1 (a run of 1000 calls).", ""]
    lines += table(TIMING_HEAD[:1] + ["huge pages (-v)", EXIT_PAGES_HEAD] + TIMING_HEAD[1:], rows)
    lines.append("")
    if "direct" in stats:
        d = stats["direct"][0]
        parts = [f"`{k}` {stats[k][0] / d:.2f}×" for k in ("off", "thp", "hugetlb", "pagecache") if k in stats]
        best = min((stats[k][0] for k in ("thp", "hugetlb", "pagecache") if k in stats), default=None)
        if best is not None:
            change = (best / d - 1) * 100
            verdict = (f"the faster huge-page backend ran this loop {-change:.0f}% faster than the direct run"
                       if change <= -3 else
                       f"the huge-page backends ran this loop {change:.0f}% slower than the direct run" if change >= 3 else
                       "huge pages made no clear difference (within ±3%)")
            lines += [f"Medians against the direct run: {', '.join(parts)}: {verdict} "
                      "(the `-b off` control shows the noise level). On a VM a guest's huge page saves the "
                      "nested (host) part of a page walk only when the host backs guest memory with huge pages "
                      "too, so the gain depends on the host; read this ratio as what this machine gives, not as "
                      "what bare metal would.", ""]
    lines += ["No hardware counters here; on real hardware, count the misses directly:", "",
              "```sh",
              "python3 bench/gen_itlb.py 8192 > /tmp/itlb.c && gcc -O2 -o /tmp/itlb /tmp/itlb.c",
              "perf stat -e iTLB-load-misses,iTLB-loads,cycles,instructions /tmp/itlb",
              "perf stat -e iTLB-load-misses,iTLB-loads,cycles,instructions hugeload -b thp /tmp/itlb",
              "hugeload --prime /tmp/itlb && perf stat -e iTLB-load-misses,iTLB-loads,cycles,instructions hugeload -b pagecache /tmp/itlb",
              "# AMD Zen: also -e bp_l1_tlb_miss_l2_tlb_hit,bp_l1_tlb_miss_l2_tlb_miss",
              "```", ""]
    return lines


def pagecache_setup():
    """Checks the PT_INTERP copies' layout and primes every copy the page-cache variants use
    (the copies only: never an installed file)."""
    log("priming the page-cache copies")
    sources = {"true": "/bin/true", "node": NODE, "cargo": CARGO, "gdb": GDB, "big": wk("big"), "itlb": wk("itlb"),
               "gohttp": wk("gohttp")}
    cong = []
    for tag, src in sources.items():
        hl = wk(f"{tag}.hl")
        if not exists(hl) or not exists(src):
            continue
        a, b = elf_info(src), elf_info(hl)
        da, db = (a["text_off"] - a["start"]) % HUGE, (b["text_off"] - b["start"]) % HUGE
        cong.append(f"{tag} {db:#x}")
        if da != db:
            problems.append((f"PT_INTERP copy of {tag}: patchelf moved its text against its file offsets",
                             f"readelf -lW {hl}",
                             f"(first executable PT_LOAD offset - vaddr) mod 2 MiB: {da:#x} in {src}, {db:#x} in the copy"))
    if cong:
        notes.append(f"PT_INTERP copies: interpreter `{HL_PTI}` ({len(HL_PTI)} bytes, no longer than "
                     f"`{LDSO}`); (text offset − vaddr) mod 2 MiB unchanged by patchelf: " + ", ".join(cong) +
                     " (ET_EXEC needs 0 for the page cache; hugeload or the kernel places a PIE)")
    files = sorted(os.path.join(WORK, "pc", f) for f in os.listdir(os.path.join(WORK, "pc")))
    files += sorted(wk(f) for f in os.listdir(WORK) if f.endswith(".hl"))
    for f in files:
        r = prime(f)
        if r is None:
            continue
        PRIMED[f] = r
        st = prime_check(f)
        if st and st.get("small"):
            problems.append((f"{os.path.relpath(f, WORK)}: {st['small']} blocks still in small folios after --prime",
                             f"{HL} --prime --check --json {f}", json.dumps(st)))
    notes.append("primed (`hugeload --prime`; blocks of 2 MiB code: already huge / primed / small): " +
                 ", ".join(f"`{os.path.relpath(f, WORK)}` {r['blocks']}: {r['huge_before']}/{r['primed']}/{r['small']}"
                           for f, r in PRIMED.items()))


def main():
    t0 = time.time()
    for line in open(E["NOTES"]).read().splitlines():
        if line.strip():
            notes.append(line.strip())
    if POOL_WRITABLE:
        set_pool(POOL)
        got = meminfo()["HugePages_Total"]
        if got < POOL:
            notes.append(f"asked for a pool of {POOL} hugetlb pages, the kernel gave {got}")
    else:
        notes.append(f"{POOL_FILE} is not writable (not root?): the pool stays at {POOL_ORIG}; "
                     "variants needing another pool state are skipped")

    head = header()
    pagecache_setup()
    s1, startup = startup_section()
    s2, cov = coverage_section()
    fill = fill_section()
    s3 = loadcost_section(startup, cov, fill)
    s4 = memory_section()
    s5 = itlb_section()
    set_pool(POOL)
    s6 = rustc_bench.section(HL, WORK, SCALE, problems)

    lines = head + [""] + s1 + s2 + s3 + s4 + s5 + s6
    lines += ["## Problems seen", ""]
    if problems:
        for what, cmd, out in problems:
            lines += [f"- **{what}**", "", "  ```", f"  $ {cmd}"] + [f"  {l}" for l in out.splitlines()] + ["  ```", ""]
    else:
        lines += ["None: every program ran through every hugeload variant with the same output as directly.", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in dict.fromkeys(notes)] + [""]
    lines += [f"Generated by `bench/run` in {time.time() - t0:.0f} s (plus fixture builds).", ""]
    text = "\n".join(lines)
    with open(REPORT, "w") as f:
        f.write(text)
    print(text)
    log(f"report written to {REPORT}")
    if problems:
        log(f"{len(problems)} PROBLEM(S) recorded, listed under 'Problems seen' in the report:")
        for what, _, _ in problems:
            log(f"  - {what}")


if __name__ == "__main__":
    main()
