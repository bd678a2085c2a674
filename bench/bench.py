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

E = os.environ
HL = E["HL"]
WORK = E["WORK"]
ROOT = E["ROOT"]
REPORT = E["REPORT"]
CARGO = E.get("CARGO_BIN", "")
POOL_ORIG = int(E["POOL_ORIG"])
POOL_WRITABLE = E.get("POOL_WRITABLE") == "1"
POOL = int(E.get("BENCH_POOL", "64"))
SCALE = float(E.get("BENCH_SCALE", "1"))
ITLB_CALLS = int(E.get("BENCH_ITLB_CALLS", "20000000"))
POOL_FILE = "/proc/sys/vm/nr_hugepages"
LDSO = "/lib64/ld-linux-x86-64.so.2"
MIB = 1 << 20

NODE = shutil.which("node") or "node"
GDB = shutil.which("gdb") or "gdb"

problems = []  # (what, command, output)
notes = []  # free-form lines for the report


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def wk(name):
    return os.path.join(WORK, name)


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


def pool_prepare(kind):
    """hyperfine --prepare command that puts the pool in the state a variant needs."""
    if not POOL_WRITABLE or kind is None:
        return "true"
    n = 0 if kind == "empty" else POOL
    return f"sh -c 'echo {n} > {POOL_FILE}'"


def apply_pool(kind):
    if kind == "empty":
        set_pool(0)
    elif kind == "pool":
        set_pool(POOL)


def pool_ok(kind):
    """Can a variant needing this pool state run here?"""
    if kind is None:
        return True
    if POOL_WRITABLE:
        return True
    free = meminfo()["HugePages_Free"]
    return free == 0 if kind == "empty" else free > 0


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
    r"hugeload: total text (\d+) bytes, on huge pages (\d+) bytes \((\d+)%\), huge pages (\d+) of least possible (\d+), strategy (\S+), backend (\S+)")
EXTRA_X_RE = re.compile(r"also makes (\d+) bytes of read-only data executable")


def parse_verbose(stderr):
    m = TOTAL_RE.search(stderr)
    if not m:
        return None
    return dict(text=int(m[1]), huge_bytes=int(m[2]), pct=int(m[3]), used=int(m[4]), least=int(m[5]),
                strategy=m[6], backend=m[7],
                extra_exec=sum(int(x) for x in EXTRA_X_RE.findall(stderr)),
                huge_lines=[l for l in stderr.splitlines() if l.startswith("hugeload: huge ")])


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
    pool: str | None = None  # None: don't care, "empty": pool 0, "pool": POOL pages
    env: dict = field(default_factory=dict)  # for the sanity run only (hyperfine runs without)


def sane(variants, ref_key="direct", check_stdout=True):
    """Run every variant once; drop (and report) the ones that fail or print something else."""
    ok, ref = [], None
    for v in variants:
        if not pool_ok(v.pool):
            notes.append(f"`{v.label}` skipped: the hugetlb pool is not writable and not in the state it needs.")
            continue
        apply_pool(v.pool)
        res = run(v.argv, v.env)
        if v.key == ref_key:
            ref = res.stdout
        if res.returncode != 0:
            record_problem(f"{v.label} failed", v.argv, res, v.env)
            continue
        if check_stdout and ref is not None and v.key != ref_key and res.stdout != ref:
            res.stderr += f"\n(stdout differs from the direct run: {ref!r:.200} vs {res.stdout!r:.200})"
            record_problem(f"{v.label}: output differs from the direct run", v.argv, res, v.env)
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
        out = wk(f"hf-{tag}-{r}.json")
        cmd = ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup if r == 0 else 0), "--runs", str(block),
               "--export-json", out]
        for v in order:
            cmd += ["--prepare", pool_prepare(v.pool)]
        cmd += [shlex.join(v.argv) for v in order]
        if r == 0 or (r + 1) % 10 == 0 or r + 1 == rounds:
            log(f"{tag}: round {r + 1}/{rounds}, {len(order)} commands x {block} runs")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            problems.append((f"hyperfine failed ({tag}, round {r + 1})", shlex.join(cmd), res.stderr[-2000:]))
            continue
        with open(out) as f:
            data = json.load(f)
        for v, result in zip(order, data["results"]):
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
            rows.append([v.label] + ["–"] * 6 + [0])
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
        ["hugetlb pool", f"{POOL_ORIG} pages before the run (restored after); runs use 0 (\"empty\") or {POOL} (\"pool\")"
                         + ("" if POOL_WRITABLE else " — **not writable here, pool left as is**")],
        ["hugeload", f"`{commit}`{' (uncommitted changes in src)' if dirty else ''}, {os.path.getsize(HL)} bytes, `{HL}`"],
        ["tools", f"{sh('hyperfine --version')}, node {sh('node --version')}, {sh('gcc --version | head -1')}, "
                  f"{sh('go version 2>/dev/null') or 'no go'}, {sh('gdb --version | head -1')}"],
        ["settings", f"BENCH_SCALE={SCALE:g} BENCH_POOL={POOL} BENCH_ITLB_CALLS={ITLB_CALLS}"],
    ], left=2)
    return lines


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
             "pages, \"empty\" = none, set before every run; hugeload's default backend `auto` takes hugetlb when "
             "the pool has room, else THP. `hugeload -b off` loads without huge pages (the loader's own cost). "
             "IQR = interquartile range.", ""]
    results = {}
    for title, argv, tag, n, block in progs:
        if argv is None:
            notes.append(f"start-up: `{title}` skipped (program not found)")
            continue
        hlcopy = wk(f"{tag}.hl")
        vs = [Variant("direct", "direct", argv, "pool"),
              Variant("ldso", f"`{LDSO} PROGRAM`", [LDSO] + argv, "pool"),
              Variant("off", "hugeload `-b off`", [HL, "-b", "off"] + argv, "pool"),
              Variant("thp", "hugeload, auto, pool empty → THP", [HL] + argv, "empty"),
              Variant("hugetlb", "hugeload, auto, pool → hugetlb", [HL] + argv, "pool")]
        if exists(hlcopy):
            vs += [Variant("pti-thp", "PT_INTERP copy, pool empty → THP", [hlcopy] + argv[1:], "empty"),
                   Variant("pti-hugetlb", "PT_INTERP copy, pool → hugetlb", [hlcopy] + argv[1:], "pool")]
        if tag == "node":
            vs.append(Variant("largepages", "`node --use-largepages=on`", [NODE, "--use-largepages=on"] + argv[1:], "pool"))
        vs = sane(vs)
        times = hyperfine(f"startup-{tag}", vs, runs(n), block)
        rows, stats = timing_rows(vs, times)
        results[tag] = stats
        lines += [f"### {title}", ""]
        lines += table(TIMING_HEAD, rows)
        lines.append("")
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
    rows, cov = [], {}
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
    lines = ["## 2. Coverage", "",
             "Huge pages used (U) for the text, from hugeload's `-v` total line with `-b thp` (launcher; hugeload "
             "places a PIE itself). L = least possible number of 2 MiB pages covering the text at its load address. "
             "PT_INTERP: U over 10 runs of the patched copy (conservative; the kernel places a PIE there, so U can vary). "
             "node's own: AnonHugePages of node's executable mappings with `--use-largepages=on`, in 2 MiB pages.", ""]
    lines += table(["program", "ELF", "text span MiB", "L", "U conservative", "U aggressive", "U PT_INTERP", "node's own"], rows)
    lines.append("")
    return lines, cov


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
             "for the same size and backend (the page-cache state of a file matters: the PT_INTERP copies are "
             "freshly written, the installed binaries were read by page faults). \"big − /bin/true\" subtracts the "
             "fixed cost of going through hugeload (/bin/true gets no huge page). The floor is the best of 21 "
             "repetitions, so × floor compares it with the best run (min ms per MiB); the medians show how much the "
             "host's noise adds.", ""]
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
                rows.append([f"{title}, {mode}, auto → {be}", f"`{os.path.basename(src)}`", fmt(mib, 0),
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
            rows.append([f"big − /bin/true, launcher, auto → {be}", "`big`", mib, pair(em, en, 2), pair(pm, pn, 3),
                         f"{rate(pm)} / {rate(pn)}", fmt(fl, 3), fmt(pn / fl, 2) if fl else "–"])
    labels = {"thp": "fill: anonymous + MADV_HUGEPAGE", "hugetlb": "fill: MFD_HUGETLB memfd",
              "prefault": "fill: copy only (destination already faulted)"}
    for mode in ("thp", "hugetlb", "prefault"):
        if fill.get(mode):
            rows.append([labels[mode], "`big`", 64, "", fmt(fill[mode], 3), rate(fill[mode]), "", ""])
    lines += table(["what", "source file", "MiB placed", "extra ms (median / min)", "ms per MiB", "MB/s",
                    "floor ms per MiB", "× floor (min)"], rows)
    lines.append("")
    return lines


def smaps_sample(pid):
    rss = anon_huge = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for l in f:
            if l.startswith("Rss:"):
                rss = int(l.split()[1])
            elif l.startswith("AnonHugePages:"):
                anon_huge = int(l.split()[1])
    hugetlb = text_huge = 0
    x = False
    with open(f"/proc/{pid}/smaps") as f:
        for l in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", l):
                x = "x" in l.split()[1]
            elif l.startswith(("Private_Hugetlb:", "Shared_Hugetlb:")):
                kb = int(l.split()[1])
                hugetlb += kb
                if x:
                    text_huge += kb
            elif x and l.startswith("AnonHugePages:"):
                text_huge += int(l.split()[1])
    return dict(rss=rss, hugetlb=hugetlb, total=rss + hugetlb, anon_huge=anon_huge, text_huge=text_huge)


NODE_WAIT_JS = ('process.stdout.write("ready\\n"); process.stdin.resume(); '
                'process.stdin.on("end", () => process.exit(0));')


def memory_section():
    log("section 4: memory")
    argv = [NODE, "-e", NODE_WAIT_JS]
    hlcopy = wk("node.hl")
    vs = [Variant("direct", "direct", argv, "pool"),
          Variant("thp", "hugeload, auto, pool empty → THP", [HL] + argv, "empty"),
          Variant("hugetlb", "hugeload, auto, pool → hugetlb", [HL] + argv, "pool")]
    if exists(hlcopy):
        vs += [Variant("pti-thp", "PT_INTERP copy, pool empty → THP", [hlcopy] + argv[1:], "empty"),
               Variant("pti-hugetlb", "PT_INTERP copy, pool → hugetlb", [hlcopy] + argv[1:], "pool")]
    vs.append(Variant("largepages", "`node --use-largepages=on`", [NODE, "--use-largepages=on"] + argv[1:], "pool"))
    vs = [v for v in vs if pool_ok(v.pool)]
    samples = {v.key: [] for v in vs}
    reps = runs(7)
    for i in range(reps):
        for v in (vs if i % 2 == 0 else vs[::-1]):
            apply_pool(v.pool)
            p = subprocess.Popen(v.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                line = p.stdout.readline()
                if line.strip() != "ready":
                    p.kill()
                    _, err = p.communicate(timeout=10)
                    problems.append((f"memory: {v.label} did not start", shlex.join(v.argv), (line + err)[-2000:]))
                    continue
                time.sleep(0.1)  # let V8's start-up threads settle
                samples[v.key].append(smaps_sample(p.pid))
                p.stdin.close()
                p.wait(timeout=10)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    direct = med([s["total"] for s in samples.get("direct", [])])
    rows = []
    for v in vs:
        ss = samples[v.key]
        if not ss:
            rows.append([v.label] + ["–"] * 6)
            continue
        m = {k: med([s[k] for s in ss]) / 1024 for k in ("rss", "hugetlb", "total", "text_huge")}
        rows.append([v.label, fmt(m["rss"]), fmt(m["hugetlb"]), fmt(m["total"]),
                     "" if v.key == "direct" else f"{m['total'] - direct / 1024:+.1f}", fmt(m["text_huge"]), len(ss)])
    lines = ["## 4. Memory", "",
             "node (`node -e` script that prints `ready` and waits for stdin), sampled 0.1 s after `ready`: "
             "Rss from /proc/PID/smaps_rollup plus hugetlb pages (Private_Hugetlb + Shared_Hugetlb summed over "
             "/proc/PID/smaps, which Rss does not count). \"text on huge pages\" = AnonHugePages + hugetlb of "
             f"executable mappings, the kernel's view of what `-v` claims. Medians of {reps} samples each, interleaved.", ""]
    lines += table(["variant", "Rss MiB", "hugetlb MiB", "total MiB", "MiB over direct", "text on huge pages MiB", "samples"], rows)
    lines.append("")
    return lines


def itlb_section():
    log("section 5: iTLB-bound run time")
    argv = [wk("itlb"), str(ITLB_CALLS)]
    info = elf_info(argv[0])
    vs = [Variant("direct", "direct", argv, "pool"),
          Variant("off", "hugeload `-b off`", [HL, "-b", "off"] + argv, "pool"),
          Variant("thp", "hugeload `-b thp`", [HL, "-b", "thp"] + argv, "pool"),
          Variant("hugetlb", "hugeload `-b hugetlb`", [HL, "-b", "hugetlb"] + argv, "pool")]
    vs = sane(vs)  # also checks that every variant prints the same checksum
    used = {}
    for v in vs:
        if v.key in ("thp", "hugetlb", "off"):
            apply_pool(v.pool)
            r = run([HL, "-v"] + v.argv[1:-1] + ["1000"])
            pv = parse_verbose(r.stderr)
            used[v.key] = f"{pv['used']} of {pv['least']}" if pv else "?"
    times = hyperfine("itlb", vs, runs(20), 1, warmup=1)
    rows, stats = timing_rows(vs, times)
    for row, v in zip(rows, vs):
        row.insert(1, used.get(v.key, "0 (4 KiB pages)"))
    lines = ["## 5. Run time: iTLB-bound synthetic program", "",
             f"`bench/gen_itlb.py` generates {E.get('BENCH_ITLB_FUNCS', '8192')} functions, each aligned to 4096 bytes "
             f"({info['span'] / MIB:.1f} MiB of text), called through a table in a pseudo-random order, "
             f"{ITLB_CALLS:,} calls per run; every variant must print the same checksum. "
             "hyperfine, one run per command per round, order rotated and reversed from round to round. "
             "`-b off` is the control: loaded by hugeload, on 4 KiB pages.", ""]
    lines += table(TIMING_HEAD[:1] + ["huge pages"] + TIMING_HEAD[1:], rows)
    lines.append("")
    if "direct" in stats:
        d = stats["direct"][0]
        parts = [f"`{k}` {stats[k][0] / d:.2f}×" for k in ("off", "thp", "hugetlb") if k in stats]
        best = min((stats[k][0] for k in ("thp", "hugetlb") if k in stats), default=None)
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
              "# AMD Zen: also -e bp_l1_tlb_miss_l2_tlb_hit,bp_l1_tlb_miss_l2_tlb_miss",
              "```", ""]
    return lines


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
    s1, startup = startup_section()
    s2, cov = coverage_section()
    fill = fill_section()
    s3 = loadcost_section(startup, cov, fill)
    s4 = memory_section()
    s5 = itlb_section()

    lines = head + [""] + s1 + s2 + s3 + s4 + s5
    lines += ["## Problems seen", ""]
    if problems:
        for what, cmd, out in problems:
            lines += [f"- **{what}**", "", "  ```", f"  $ {cmd}"] + [f"  {l}" for l in out.splitlines()] + ["  ```", ""]
    else:
        lines += ["None: every program ran through every hugeload variant with the same output as directly.", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += [f"Generated by `bench/run` in {time.time() - t0:.0f} s (plus fixture builds).", ""]
    text = "\n".join(lines)
    with open(REPORT, "w") as f:
        f.write(text)
    print(text)
    log(f"report written to {REPORT}")


if __name__ == "__main__":
    main()
