#!/usr/bin/env python3
"""The rustc section of the bench: rustc compiling a generated Rust program
of about 20,000 lines (bench/gen_rust.py), directly and through hugeload
(default strategy and `-s aggressive`), interleaved.

Measures, per variant: wall time (median, IQR, minimum, ratio to the direct
run), peak RSS (wait4's ru_maxrss), and, from one more run sampled at a
fixed point (a share of the direct run's time), the share of the process's
code on 2 MiB pages as `hugeload --stat --json` counts it (program and
every library), its 2 MiB pages from the page cache and copied, and the
process's Pss, hugetlb, AnonHugePages and FilePmdMapped (smaps_rollup).

rustc and its libraries (librustc_driver, libLLVM: about 200 MiB of code,
much of it linked by LLD, so not congruent with its file offsets) are
copies under $WORK: `direct/` is run directly only and keeps its page cache
as ordinary reads leave it; `hl/` is run through hugeload, which primes it.
The installed toolchain's page cache is never primed or dropped. The
standard library's crates are read through a link to the toolchain's
`lib/rustlib`.

Run by bench.py (section 6 of the full report), or on its own by
`bench/run --only rustc`, which sets HL and WORK. Environment:
  BENCH_RUSTC_RUNS=5       timed runs per variant (times BENCH_SCALE)
  BENCH_RUSTC_FUNCS=750    functions in the generated program (~20,000 lines)
  BENCH_RUSTC_FLAGS="-C opt-level=0"   rustc's flags (-O takes minutes here)
  BENCH_RUSTC_SAMPLE=0.5   when the sample is taken, as a share of the
                           direct run's median time
"""

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

E = os.environ
HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20


def log(msg):
    print(f"bench: rustc: {msg}", file=sys.stderr, flush=True)


def clean_env():
    """The caller's environment without HUGELOAD_* (they would skew the runs)
    and LD_LIBRARY_PATH (cargo's would find the installed toolchain's
    libraries before the copies' RUNPATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUGELOAD_")}
    env.pop("LD_LIBRARY_PATH", None)
    return env


def sysroot():
    r = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, env=clean_env())
    if r.returncode != 0:
        raise RuntimeError(f"rustc --print sysroot: {r.stderr.strip()}")
    return r.stdout.strip()


def copy_toolchain(root, dest):
    """dest/bin/rustc, dest/lib/{librustc_driver,libLLVM}* (copies) and
    dest/lib/rustlib (a link). Returns the rustc copy."""
    os.makedirs(os.path.join(dest, "bin"), exist_ok=True)
    os.makedirs(os.path.join(dest, "lib"), exist_ok=True)
    rustc = os.path.join(dest, "bin", "rustc")
    shutil.copy2(os.path.join(root, "bin", "rustc"), rustc)
    for name in sorted(os.listdir(os.path.join(root, "lib"))):
        src = os.path.join(root, "lib", name)
        if os.path.isfile(src) and not os.path.islink(src) and name.startswith(("librustc_driver", "libLLVM")):
            shutil.copy2(src, os.path.join(dest, "lib", name))
    link = os.path.join(dest, "lib", "rustlib")
    if not os.path.lexists(link):
        os.symlink(os.path.join(root, "lib", "rustlib"), link)
    return rustc


def smaps_rollup(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
                    out[parts[0][:-1]] = int(parts[1]) * 1024
    except OSError:
        return None
    return out


def stat_json(hl, pid):
    r = subprocess.run([hl, "--stat", "--json", str(pid)], capture_output=True, text=True, env=clean_env())
    if r.returncode != 0 or not r.stdout.strip():
        return None
    try:
        return json.loads(r.stdout.splitlines()[0])
    except json.JSONDecodeError:
        return None


class Variant:
    def __init__(self, key, label, argv):
        self.key, self.label, self.argv = key, label, argv
        self.times, self.maxrss = [], []
        self.sample = None  # (stat, rollup)
        self.output = None


def timed_run(v, env, cwd):
    """One run: wall seconds and peak RSS in bytes (wait4), or raises."""
    t0 = time.perf_counter()
    p = subprocess.Popen(v.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(v.argv)}: exit {p.returncode}: {err.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def sampled_run(hl, v, env, cwd, at):
    """One run sampled `at` seconds after its start: (--stat JSON, smaps_rollup)."""
    p = subprocess.Popen(v.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(at)
    stat = stat_json(hl, p.pid) if p.poll() is None else None
    rollup = smaps_rollup(p.pid) if p.poll() is None else None
    p.wait()
    return stat, rollup


def section(hl, work, scale=1.0, problems=None):
    """Runs the section; returns the report's lines (Markdown)."""
    problems = problems if problems is not None else []
    runs = max(3, int(round(int(E.get("BENCH_RUSTC_RUNS", "5")) * scale)))
    funcs = int(E.get("BENCH_RUSTC_FUNCS", "750"))
    flags = shlex.split(E.get("BENCH_RUSTC_FLAGS", "-C opt-level=0"))
    share = float(E.get("BENCH_RUSTC_SAMPLE", "0.5"))
    lines = ["## 6. rustc compiling a generated program", ""]
    try:
        root = sysroot()
    except (OSError, RuntimeError) as e:
        lines += [f"Skipped: {e}", ""]
        return lines
    base = os.path.join(work, "rustc")
    os.makedirs(base, exist_ok=True)
    log(f"copying the toolchain from {root}")
    direct_rustc = copy_toolchain(root, os.path.join(base, "direct"))
    hl_rustc = copy_toolchain(root, os.path.join(base, "hl"))
    src = os.path.join(base, "gen.rs")
    with open(src, "w") as f:
        subprocess.run([sys.executable, os.path.join(HERE, "gen_rust.py"), str(funcs)], stdout=f, check=True)
    with open(src) as f:
        nlines = sum(1 for _ in f)
    out_dir = os.path.join(base, "out")
    os.makedirs(out_dir, exist_ok=True)

    def compile_argv(rustc, key):
        return [rustc, "--edition", "2021", *flags, src, "-o", os.path.join(out_dir, f"gen-{key}")]

    variants = [
        Variant("direct", "direct", compile_argv(direct_rustc, "direct")),
        Variant("default", "hugeload (default: auto, conservative)", [hl] + compile_argv(hl_rustc, "default")),
        Variant("aggressive", "hugeload `-s aggressive`", [hl, "-s", "aggressive"] + compile_argv(hl_rustc, "aggressive")),
    ]
    env = clean_env()

    # Warm-up (and hugeload's priming of the hl/ copy), then the compiled
    # programs must print the same checksum.
    for v in variants:
        try:
            timed_run(v, env, base)
        except RuntimeError as e:
            problems.append((f"rustc: {v.label} failed", shlex.join(v.argv), str(e)))
            log(f"PROBLEM: {e}")
            lines += [f"Skipped: {v.label} failed: `{e}`", ""]
            return lines
        r = subprocess.run([os.path.join(out_dir, f"gen-{v.key}")], capture_output=True, text=True)
        v.output = r.stdout
    if len({v.output for v in variants}) != 1:
        problems.append(("rustc: the programs compiled through hugeload print another checksum",
                         "; ".join(shlex.join(v.argv) for v in variants),
                         "\n".join(f"{v.key}: {v.output.strip()}" for v in variants)))

    log(f"{runs} interleaved runs of {len(variants)} variants ({nlines} lines, rustc {' '.join(flags)})")
    for k in range(runs):
        order = variants[k % len(variants):] + variants[:k % len(variants)]
        for v in order:
            wall, rss = timed_run(v, env, base)
            v.times.append(wall)
            v.maxrss.append(rss)
    direct = variants[0]
    at = statistics.median(direct.times) * share
    for v in variants:
        v.sample = sampled_run(hl, v, env, base, at)

    def ms(x):
        return f"{x:.2f} s"

    def mib(x):
        return f"{x / MIB:.0f} MiB"

    lines += [
        f"`rustc --edition 2021 {' '.join(flags)} gen.rs` on a program of {nlines} lines "
        f"(`bench/gen_rust.py {funcs}`: {funcs} functions and a `main` that calls them), "
        f"{runs} runs per variant, interleaved with rotating order. rustc and its libraries are copies "
        f"(`direct/` never run through hugeload, `hl/` primed by it); hugetlb pool: "
        f"{open('/proc/sys/vm/nr_hugepages').read().strip()} pages. Code on 2 MiB pages: "
        f"`hugeload --stat --json` of one more run, {at:.1f} s after its start "
        f"({share:g} of the direct median); memory at the same point from smaps_rollup.",
        "",
        "| variant | median | IQR | min | ratio | peak RSS (median) | code on 2 MiB pages | 2 MiB pages: page cache / copies | Pss | hugetlb | AnonHugePages | FilePmdMapped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    dmed = statistics.median(direct.times)
    for v in variants:
        med = statistics.median(v.times)
        q = statistics.quantiles(v.times, n=4) if len(v.times) >= 2 else [med, med, med]
        stat, roll = v.sample
        if stat:
            text, huge = stat.get("text_bytes", 0), stat.get("huge_bytes", 0)
            cover = f"{huge / MIB:.0f} of {text / MIB:.0f} MiB ({100 * huge / max(text, 1):.0f}%)"
            pages = f"{stat.get('pagecache_pages', 0)} / {stat.get('copied_pages', 0)}"
        else:
            cover = pages = "(ended before the sample)"
        if roll:
            hugetlb = roll.get("Shared_Hugetlb", 0) + roll.get("Private_Hugetlb", 0)
            mem = [mib(roll.get("Pss", 0)), mib(hugetlb), mib(roll.get("AnonHugePages", 0)), mib(roll.get("FilePmdMapped", 0))]
        else:
            mem = ["-"] * 4
        lines.append(f"| {v.label} | {ms(med)} | {ms(q[2] - q[0])} | {ms(min(v.times))} | {med / dmed:.3f}× | "
                     f"{mib(statistics.median(v.maxrss))} | {cover} | {pages} | " + " | ".join(mem) + " |")
    lines += ["", "Peak RSS does not count hugetlb pages (the hugetlb column, at the sample, does).", ""]
    lines += startup_lines(hl, direct_rustc, hl_rustc, env, base, max(10, runs * 6))
    return lines


def startup_lines(hl, direct_rustc, hl_rustc, env, cwd, rounds):
    """`rustc --version`: what putting the libraries' code on 2 MiB pages
    costs at each start (the copies of the LLD-linked code above all),
    interleaved rounds, wall time of subprocess.run."""
    log(f"start-up: {rounds} interleaved rounds of rustc --version")
    starts = [
        ("direct", [direct_rustc, "--version"]),
        ("hugeload (default: auto)", [hl, hl_rustc, "--version"]),
        ("hugeload `-b pagecache` (no copies)", [hl, "-b", "pagecache", hl_rustc, "--version"]),
        ("hugeload `-b thp` (copies only)", [hl, "-b", "thp", hl_rustc, "--version"]),
        ("hugeload `-b off`", [hl, "-b", "off", hl_rustc, "--version"]),
    ]
    times = {label: [] for label, _ in starts}
    for k in range(rounds + 2):
        order = starts[k % len(starts):] + starts[:k % len(starts)]
        for label, argv in order:
            t = time.perf_counter()
            r = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - t
            if r.returncode != 0:
                return [f"`rustc --version` start-up: `{shlex.join(argv)}` failed (status {r.returncode})", ""]
            if k >= 2:  # the first two rounds warm up
                times[label].append(wall)
    dmed = statistics.median(times["direct"])
    dmin = min(times["direct"])
    lines = ["### `rustc --version` start-up", "",
             f"{rounds} interleaved rounds (order rotated), wall time of one run including Python's fork and "
             "exec (the same for every variant); the libraries' code is placed before rustc's `main`, so this is "
             "what each start costs.", "",
             "| variant | median | min | ratio | over direct (medians) | over direct (minima) |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, _ in starts:
        med, mn = statistics.median(times[label]), min(times[label])
        lines.append(f"| {label} | {med * 1e3:.1f} ms | {mn * 1e3:.1f} ms | {med / dmed:.2f}× | "
                     f"{(med - dmed) * 1e3:+.1f} ms | {(mn - dmin) * 1e3:+.1f} ms |")
    lines.append("")
    return lines


def main():
    """On its own (bench/run --only rustc): HL, WORK, REPORT from the environment."""
    hl, work = E["HL"], E["WORK"]
    problems = []
    t0 = time.time()
    lines = [f"# hugeload bench, rustc section: {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
             f"kernel {os.uname().release}, {os.cpu_count()} cores, hugeload `{hl}`", ""]
    lines += section(hl, work, float(E.get("BENCH_SCALE", "1")), problems)
    for what, cmd, out in problems:
        lines += [f"- **{what}**", "", "  ```", f"  $ {cmd}"] + [f"  {l}" for l in out.splitlines()] + ["  ```", ""]
    lines += [f"Generated by `bench/run --only rustc` in {time.time() - t0:.0f} s.", ""]
    text = "\n".join(lines)
    report = E.get("REPORT")
    if report:
        with open(report, "w") as f:
            f.write(text)
        log(f"report written to {report}")
    print(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
