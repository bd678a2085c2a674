//! Integration tests of `hugeload [OPTIONS] [--] PROGRAM [ARGS...]`.
//!
//! Every test compares with a direct run of the same program, or reads the
//! `/proc/PID/smaps` of the program while it runs under hugeload (every
//! real program does both). Fixtures (tests/fixtures/, the table in
//! tests/common/fixtures.rs) are built once into target/fixtures/. Set
//! `HUGELOAD_STRICT=1` to turn skips (no root, a tool missing) into failures.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments given to every fixture: an empty one, one with a space, and
/// ones that look like hugeload options (they belong to the program).
const ARGS: &[&str] = &["a", "b c", "", "--", "-v", "--backend=off"];
const PROBE_ENV: &str = "x y=z";

/// The option sets each fixture is run with.
const OPTION_SETS: &[&[&str]] = &[
    &[],
    &["--backend=thp"],
    &["--strategy=aggressive"],
    &["--backend=thp", "--strategy=aggressive"],
    &["-s", "aggressive", "-b", "thp"],
    &["--backend=off"],
    &["--"],
];

// ---------------------------------------------------------------------------
// Per-fixture tests

/// Same stdout, stderr and exit status as a direct run (absolute path, so
/// AT_EXECFN must match too), under every option set; PROBE_ENV passes.
fn same_output(name: &str, status: i32) {
    let prog = or_skip!(fixture(name));
    for opts in OPTION_SETS {
        let (d, _) = run_both_with(opts, &prog, ARGS, |c| {
            c.env("PROBE_ENV", PROBE_ENV);
        });
        assert_eq!(
            d.code("direct run"),
            status,
            "{name}: fixture's own exit status"
        );
        assert!(
            d.stdout_str().contains("argv[1]=a\n"),
            "{name}: fixture printed no argv:\n{}",
            d.stdout_str()
        );
    }
    // Without PROBE_ENV.
    let (d, _) = run_both_with(&[], &prog, &[], |c| {
        c.env_remove("PROBE_ENV");
    });
    assert_eq!(d.code("direct run"), status);
}

/// The lines that must not depend on how the program was named.
fn argv_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("argv[") || l.starts_with("argc="))
        .collect()
}

/// argv[0] is PROGRAM as typed (relative path, PATH lookup), and
/// `--argv0=NAME` replaces it.
fn argv0(name: &str) {
    let prog = or_skip!(fixture(name));
    let dir = prog.parent().unwrap().to_path_buf();
    let path_env = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![dir.clone()];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).unwrap()
        }
        None => dir.clone().into_os_string(),
    };
    let relative = format!("./{name}");
    let cases: [(&str, &str); 2] = [(&relative, "relative path"), (name, "PATH lookup")];
    for (typed, how) in cases {
        let mut direct = command(typed);
        direct
            .args(["x", "y"])
            .current_dir(&dir)
            .env("PATH", &path_env);
        let mut via = hl(&[] as &[&str], typed, &["x", "y"]);
        via.current_dir(&dir).env("PATH", &path_env);
        let what = describe(&via);
        let d = run(direct);
        let h = run(via);
        assert_eq!(
            h.code(&what),
            d.code("direct run"),
            "{how}: `{what}` exit status\nstderr:\n{}",
            h.stderr_str()
        );
        let (ds, hs) = (d.stdout_str(), h.stdout_str());
        assert!(
            ds.contains(&format!("argv[0]={typed}\n")),
            "direct run: argv[0] is not {typed:?}:\n{ds}"
        );
        assert_eq!(
            argv_lines(&hs),
            argv_lines(&ds),
            "{how}: `{what}` (cwd {}): argv differs from the direct run's\nstderr:\n{}",
            dir.display(),
            h.stderr_str()
        );
    }

    // --argv0=NAME
    let d = run({
        let mut c = command(&prog);
        c.args(["x", "y"]);
        c
    });
    for opts in [
        &["--argv0=renamed prog"][..],
        &["--argv0", "renamed prog"][..],
    ] {
        let via = hl(opts, &prog, &["x", "y"]);
        let what = describe(&via);
        let h = run(via);
        assert_eq!(h.code(&what), d.code("direct run"));
        let mut expected: Vec<String> = argv_lines(&d.stdout_str())
            .into_iter()
            .map(String::from)
            .collect();
        let i = expected
            .iter()
            .position(|l| l.starts_with("argv[0]="))
            .unwrap();
        expected[i] = "argv[0]=renamed prog".to_string();
        assert_eq!(
            argv_lines(&h.stdout_str()),
            expected,
            "`{what}`: argv[0] not replaced\nstderr:\n{}",
            h.stderr_str()
        );
    }
}

/// Runs the fixture in `--wait` mode under `hugeload -v --backend=BACKEND`
/// with both strategies and checks the report against smaps (see
/// [`check_huge`]). `every_block`: the aggressive strategy must put every
/// 2 MiB block the text touches on huge pages (U == L).
fn huge(name: &str, status: i32, backend: &str, every_block: bool) {
    let prog = or_skip!(fixture(name));
    let _guard = (backend == "hugetlb").then(pool_exclusive);
    if backend == "hugetlb" {
        or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    }
    for strategy in ["conservative", "aggressive"] {
        let free_before = hugetlb_free_pages();
        let cmd = hl(
            &[
                "-v",
                &format!("--backend={backend}"),
                &format!("--strategy={strategy}"),
            ],
            &prog,
            &["--wait", "x"],
        );
        let i = inspect(cmd, &prog, Ready::Line);
        let dump = i.dump();
        assert_eq!(i.run.code(&i.what), status, "exit status\n{dump}");
        assert!(
            i.run.stdout_str().ends_with("done\n"),
            "the program did not finish normally:\n{}\n{dump}",
            i.run.stdout_str()
        );
        assert!(
            i.report.other_lines.is_empty(),
            "every -v line starts with `hugeload: ` (the fixture writes nothing to stderr)\n{dump}"
        );
        let used = check_huge(&i, strategy);
        let total = i.report.total(&i.stderr()).clone();
        assert_eq!(total.backend, backend, "backend in the total line\n{dump}");
        for r in i.text_ranges() {
            assert_eq!(
                r.line.backend, backend,
                "backend of {}\n{dump}",
                r.line.range
            );
        }
        if backend == "hugetlb" {
            assert_eq!(
                i.text_hugetlb_bytes,
                used * HUGE,
                "hugetlb bytes in the text (free pages before the run: {free_before})\n{dump}"
            );
        }
        if i.elf.text_memsz() > FOUR_MIB {
            assert!(
                used >= 1,
                "text is {} bytes but no huge page was used (hugetlb free before: \
                 {free_before})\n{dump}",
                i.elf.text_memsz()
            );
        }
        if every_block && strategy == "aggressive" {
            assert_eq!(
                used, total.least,
                "aggressive: not every 2 MiB block the text touches is huge\n{dump}"
            );
        }
    }
}

macro_rules! fixture_tests {
    ($($module:ident: $name:literal, status $status:literal, every_block $every:literal;)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn same_output_as_direct_run() {
                same_output($name, $status);
            }

            #[test]
            fn argv0_as_typed_and_replaced() {
                argv0($name);
            }

            #[test]
            fn huge_pages_thp() {
                huge($name, $status, "thp", $every);
            }

            #[test]
            fn huge_pages_hugetlb() {
                huge($name, $status, "hugetlb", $every);
            }
        }
    )*};
}

fixture_tests! {
    probe_glibc_pie: "probe-glibc-pie", status 7, every_block false;
    probe_glibc_nopie: "probe-glibc-nopie", status 7, every_block false;
    probe_glibc_static: "probe-glibc-static", status 7, every_block false;
    probe_glibc_static_pie: "probe-glibc-static-pie", status 7, every_block false;
    probe_musl: "probe-musl", status 7, every_block false;
    probe_musl_static: "probe-musl-static", status 7, every_block false;
    big_pie: "big-pie", status 7, every_block true;
    big_nopie: "big-nopie", status 7, every_block true;
    cxx: "cxx", status 5, every_block false;
    rustprog: "rustprog", status 6, every_block false;
    goprog: "goprog", status 3, every_block false;
}

/// The big fixture's text really is over 64 MiB, and its conservative huge
/// bytes in smaps equal the whole 2 MiB-aligned interior of its text span
/// (computed here from the program headers at the bias it got).
#[test]
fn big_text_interior_is_all_huge() {
    for name in ["big-pie", "big-nopie"] {
        let prog = or_skip!(fixture(name));
        let elf = ElfInfo::read(&prog);
        assert!(elf.text_memsz() > 64 << 20, "{name}: text too small");
        let cmd = hl(&["-v", "--backend=thp"], &prog, &["--wait"]);
        let i = inspect(cmd, &prog, Ready::Line);
        let span = i.text[0];
        let interior = Span {
            start: huge_up(span.start),
            end: huge_down(span.end),
        };
        assert_eq!(i.text.len(), 1, "{name}: one text span expected");
        assert_eq!(
            i.text_huge_bytes,
            interior.len(),
            "{name}: smaps huge bytes in the text vs its 2 MiB-aligned interior {interior}\n{}",
            i.dump()
        );
        assert_eq!(
            huge_bytes_in(&i.maps, &interior).0,
            interior.len(),
            "{name}: the interior {interior} is not wholly on huge pages\n{}",
            i.dump()
        );
    }
}

// ---------------------------------------------------------------------------
// Real programs
//
// Each test also checks, in smaps of the running program, that the code of
// the real program it runs went on huge pages (see
// `assert_real_code_on_huge_pages`): a silent fallback to 4 KiB pages would
// print the same output. A run with the default backend, which may prime
// the page cache, runs a copy of a program that has 2 MiB blocks of code
// (`real_copy`); true, sh and env have none, nor has libc.

/// The ELF file a name in PATH leads to.
fn real_elf(name: &str) -> Result<PathBuf, Skip> {
    let p = canonical(&need_tool(name)?);
    assert!(is_elf(&p), "{} is not an ELF file", p.display());
    Ok(p)
}

#[test]
fn real_true_sh_env() {
    run_both(&[], "/bin/true", &[]);
    run_both(&["-v"], "/bin/true", &[]);
    let (d, _) = run_both(&[], "/bin/sh", &["-c", "exit 3"]);
    assert_eq!(d.code("sh"), 3);
    run_both(
        &[],
        "/bin/sh",
        &[
            "-c",
            "echo \"$0 $# $*\"; echo err >&2",
            "zero",
            "o ne",
            "two",
        ],
    );
    // The whole environment, exactly.
    run_both_with(&[], "/usr/bin/env", &[], |c| {
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("PROBE_ENV", PROBE_ENV)
            .env("EMPTY", "")
            .env("WITH_NEWLINE", "a\nb");
    });
    // PATH lookup of a program name.
    let (d, _) = run_both(&[], "env", &["sh", "-c", "echo ok"]);
    assert_eq!(d.stdout_str(), "ok\n");

    // Their code on huge pages.
    let true_elf = canonical(Path::new("/bin/true"));
    or_skip!(assert_real_code_on_huge_pages(
        &true_elf,
        "/bin/true",
        &[],
        0
    ));
    let sh = canonical(Path::new("/bin/sh"));
    or_skip!(assert_real_code_on_huge_pages(
        &sh,
        "/bin/sh",
        &["-c", "exit 3"],
        3
    ));
    let env = or_skip!(real_elf("env"));
    or_skip!(assert_real_code_on_huge_pages(&env, "env", &[], 0));
}

#[test]
fn killed_by_signal_like_direct_run() {
    let script = "kill -TERM $$; sleep 5";
    let mut direct = command("/bin/sh");
    direct.args(["-c", script]);
    let d = run(direct);
    let h = run(hl(&[] as &[&str], "/bin/sh", &["-c", script]));
    assert_eq!(d.signal(), Some(15), "direct run");
    assert_eq!(
        h.signal(),
        Some(15),
        "via hugeload: {}\nstderr:\n{}",
        h.end,
        h.stderr_str()
    );
    // The shell that killed itself ran from huge pages.
    let sh = canonical(Path::new("/bin/sh"));
    for strategy in ["conservative", "aggressive"] {
        let cmd = hl(
            &["-v", "--backend=thp", &format!("--strategy={strategy}")],
            "/bin/sh",
            &["-c", &format!("read x; {script}")],
        );
        let i = inspect(cmd, &sh, Ready::StdinRead);
        assert_eq!(i.run.signal(), Some(15), "{}", i.dump());
        let used = check_huge(&i, strategy);
        if strategy == "aggressive" {
            assert!(used >= 1, "sh: no huge page\n{}", i.dump());
        }
    }
}

#[test]
fn real_shebang_scripts() {
    let dir = scratch_dir("shebang");
    let script = dir.join("script.sh");
    fs::write(
        &script,
        "#!/bin/sh\necho \"script $0 [$*] $PROBE_ENV\"\necho to-stderr >&2\nexit 4\n",
    )
    .unwrap();
    set_mode(&script, 0o755);
    let (d, _) = run_both_with(&[], &script, &["a", "b c"], |c| {
        c.env("PROBE_ENV", PROBE_ENV);
    });
    assert_eq!(d.code("direct"), 4);
    run_both(&["--backend=thp", "--strategy=aggressive"], &script, &[]);

    // An interpreter with an argument, found through env.
    let env_script = dir.join("env-script");
    fs::write(
        &env_script,
        "#!/usr/bin/env sh\necho \"env-script $0 $#\"\nexit 0\n",
    )
    .unwrap();
    set_mode(&env_script, 0o755);
    run_both(&[], &env_script, &["x"]);

    // A script whose interpreter is itself a script (the kernel allows it).
    let nested = dir.join("nested");
    fs::write(&nested, format!("#!{}\n", script.display())).unwrap();
    set_mode(&nested, 0o755);
    let (d, _) = run_both(&[], &nested, &["n"]);
    assert_eq!(d.code("direct"), 4);

    // The script runs through its interpreter, loaded by hugeload: one total
    // line, for /bin/sh.
    let r = run(hl(&["-v"], &script, &[] as &[&str]));
    assert_eq!(r.code("script -v"), 4);
    parse_report(&r.stderr_str()).total(&r.stderr_str());

    // ... whose code is on huge pages (smaps of the running interpreter),
    // directly and through a nested script.
    let sh = canonical(Path::new("/bin/sh"));
    or_skip!(assert_real_code_on_huge_pages(&sh, &script, &[], 4));
    or_skip!(assert_real_code_on_huge_pages(&sh, &nested, &[], 4));
}

#[test]
fn real_git_and_gdb() {
    // The default backend primes what it runs: a copy (see `real_copy`),
    // found by name in a PATH whose first directory holds it.
    let git = or_skip!(real_copy("git"));
    let git_path = path_with_first(git.parent().unwrap());
    let (d, _) = run_both_with(&[], "git", &["--version"], |c| {
        c.env("PATH", &git_path);
    });
    assert!(
        d.stdout_str().starts_with("git version"),
        "{}",
        d.stdout_str()
    );
    run_both(&["--strategy=aggressive"], &git, &["--version"]);
    let git_elf = or_skip!(real_elf("git"));
    or_skip!(assert_real_code_on_huge_pages(
        &git_elf,
        "git",
        &["--version"],
        0
    ));

    let gdb = or_skip!(real_copy("gdb"));
    let gdb_path = path_with_first(gdb.parent().unwrap());
    let (d, _) = run_both_with(&[], "gdb", &["--batch", "-nx", "-ex", "print 1+2"], |c| {
        c.env("PATH", &gdb_path);
    });
    assert_eq!(d.stdout_str(), "$1 = 3\n");
    let gdb_elf = or_skip!(real_elf("gdb"));
    let (conservative, _) = or_skip!(assert_real_code_on_huge_pages(
        &gdb_elf,
        "gdb",
        &["--batch", "-nx", "-ex", "print 1+2"],
        0
    ));
    if ElfInfo::read(&gdb_elf).text_memsz() > FOUR_MIB {
        assert!(
            conservative >= 1,
            "gdb: text over 4 MiB, conservative U = 0"
        );
    }
}

#[test]
fn real_node() {
    let node = or_skip!(need_tool("node"));
    // The default backend primes what it runs: a copy (see `real_copy`),
    // found by name in a PATH whose first directory holds it.
    let copy = or_skip!(real_copy("node"));
    let copy_path = path_with_first(copy.parent().unwrap());
    let (d, _) = run_both_with(&[], "node", &["-e", "console.log(1+1)"], |c| {
        c.env("PATH", &copy_path);
    });
    assert_eq!(d.stdout_str(), "2\n");
    run_both(
        &["--backend=thp"],
        "node",
        &["-e", "console.log(process.argv.length)", "a"],
    );
    run_both(
        &["--strategy=aggressive"],
        &copy,
        &["-e", "console.log(1+1)"],
    );

    let node = canonical(&node);
    assert!(is_elf(&node), "{} is not an ELF file", node.display());
    let cmd = hl(
        &["-v", "--backend=thp"],
        "node",
        &["-e", "require('fs').readFileSync(0)"],
    );
    let i = inspect(cmd, &node, Ready::StdinRead);
    assert_eq!(i.run.code(&i.what), 0, "{}", i.dump());
    let used = check_huge(&i, "conservative");
    let interior = i.elf.interior_blocks(i.bias).len();
    if interior == 0 {
        skip(&format!(
            "{} has no whole 2 MiB block of text (V8 in a shared library?)",
            node.display()
        ));
        return;
    }
    assert!(used >= 1, "node: no huge page\n{}", i.dump());
    if i.elf.text_memsz() >= 26 << 20 {
        assert!(used >= 12, "node: U = {used} < 12\n{}", i.dump());
    }
}

/// python3 as PATH finds it (a pyenv shim is a script: through hugeload
/// it runs as one), and its ELF program (see `python_elf`).
#[test]
fn real_python() {
    let found = canonical(&or_skip!(need_tool("python3")));
    let code = "import json,sys; print(json.dumps({\"a\": sys.argv}))";
    // The default backend primes what it loads. A shim script's interpreter
    // (pyenv's: /usr/bin/env) has no whole 2 MiB block of code, nor has
    // libc; a python3 that is an ELF program is run as a copy (see
    // `real_copy`), found by name in a PATH whose first directory holds it.
    let path = if is_elf(&found) {
        path_with_first(or_skip!(real_copy("python3")).parent().unwrap())
    } else {
        std::env::var_os("PATH").unwrap_or_default()
    };
    let (d, _) = run_both_with(&[], "python3", &["-c", code, "x", "y"], |c| {
        c.env("PATH", &path);
    });
    assert_eq!(d.stdout_str(), "{\"a\": [\"-c\", \"x\", \"y\"]}\n");
    let python = or_skip!(python_elf());
    run_both(&["--backend=thp"], &python, &["-c", code, "x", "y"]);
    // The default backend primes what it runs (with the aggressive
    // strategy, python's text has 2 MiB blocks to prime): a copy (see
    // `real_copy`).
    let copy = or_skip!(real_copy(&python));
    run_both(&["--strategy=aggressive"], &copy, &["-c", code, "x", "y"]);

    // python's text is under 4 MiB: conservative may find no whole 2 MiB
    // block; aggressive must use at least one huge page.
    for strategy in ["conservative", "aggressive"] {
        let cmd = hl(
            &["-v", "--backend=thp", &format!("--strategy={strategy}")],
            &python,
            &["-c", "import sys; sys.stdin.read()"],
        );
        let i = inspect(cmd, &python, Ready::StdinRead);
        assert_eq!(i.run.code(&i.what), 0, "{}", i.dump());
        let used = check_huge(&i, strategy);
        if strategy == "aggressive" {
            assert!(
                used >= 1,
                "{} aggressive: no huge page\n{}",
                python.display(),
                i.dump()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Fallbacks

/// With THP disabled for the process (prctl survives exec), `--backend=thp`
/// puts nothing on huge pages, says why, and the program runs unchanged.
#[test]
fn thp_disabled_falls_back_to_small_pages() {
    let wrapper = or_skip!(fixture("thp_off"));
    let prog = or_skip!(fixture("probe-glibc-pie"));

    // The wrapper works.
    let mut c = command(&wrapper);
    c.args(["/bin/grep", "THP_enabled", "/proc/self/status"]);
    let r = run(c);
    assert_eq!(r.stdout_str().trim(), "THP_enabled:\t0", "thp_off wrapper");

    let mut direct = command(&prog);
    direct.args(ARGS);
    let d = run(direct);
    let mut via = command(&wrapper);
    via.arg(hugeload())
        .args(["--backend=thp", "-v"])
        .arg(&prog)
        .args(ARGS);
    let what = describe(&via);
    let h = run(via);
    let stderr = h.stderr_str();
    assert_eq!(
        h.code(&what),
        d.code("direct"),
        "`{what}`\nstderr:\n{stderr}"
    );
    assert_eq!(
        h.stdout_str(),
        d.stdout_str(),
        "`{what}` stdout\nstderr:\n{stderr}"
    );
    let report = parse_report(&stderr);
    let total = report.total(&stderr);
    assert_eq!(total.on_huge, 0, "`{what}`: on huge pages\n{stderr}");
    assert_eq!(total.used, 0, "`{what}`: huge pages used\n{stderr}");
    assert!(
        report.huge.is_empty(),
        "`{what}`: huge lines reported\n{stderr}"
    );
    assert!(
        !report.fallback.is_empty() && report.fallback.iter().all(|f| !f.reason.is_empty()),
        "`{what}`: no `on 4 KiB pages: <reason>` line\n{stderr}"
    );

    // And smaps agrees: nothing in the text is on huge pages.
    let mut cmd = command(&wrapper);
    cmd.arg(hugeload())
        .args(["--backend=thp", "-v"])
        .arg(&prog)
        .arg("--wait");
    let i = inspect(cmd, &prog, Ready::Line);
    assert_eq!(i.run.code(&i.what), 7);
    assert_eq!(i.text_huge_bytes, 0, "{}", i.dump());
}

/// `--backend=hugetlb` runs the program correctly whatever the pool holds
/// (the tests never shrink the pool; it may be empty or not), and every
/// 2 MiB block it planned is either reported huge (and is, in smaps) or
/// reported as left on 4 KiB pages with a reason: never a silent no-op.
#[test]
fn hugetlb_backend_runs_whatever_the_pool() {
    for name in ["probe-glibc-pie", "big-pie"] {
        let prog = or_skip!(fixture(name));
        run_both_with(&["--backend=hugetlb"], &prog, ARGS, |c| {
            c.env("PROBE_ENV", PROBE_ENV);
        });
        run_both(&["--backend=hugetlb", "-v"], &prog, &[]);

        let cmd = hl(&["-v", "--backend=hugetlb"], &prog, &["--wait"]);
        let i = inspect(cmd, &prog, Ready::Line);
        let dump = i.dump();
        assert_eq!(i.run.code(&i.what), 7, "{dump}");
        let total = i.report.total(&i.stderr()).clone();
        for r in &i.ranges {
            assert_eq!(
                r.huge_bytes,
                r.line.range.len(),
                "{} not huge\n{dump}",
                r.line.range
            );
        }
        assert_eq!(i.text_huge_bytes, total.used * HUGE, "U vs smaps\n{dump}");
        for b in i.elf.interior_blocks(i.bias) {
            let explained = i
                .report
                .huge
                .iter()
                .map(|h| h.range)
                .chain(i.report.fallback.iter().map(|f| f.range))
                .any(|r| r.start <= b && b < r.end);
            assert!(
                explained,
                "{name}: block {b:x} is neither reported huge nor reported as a fallback\n{dump}"
            );
        }
        assert!(
            i.report.fallback.iter().all(|f| !f.reason.is_empty()),
            "fallback without a reason\n{dump}"
        );
    }
}

/// `--backend=auto` (the default) takes hugetlb pages when the pool has
/// free pages.
#[test]
fn auto_backend_takes_the_page_cache_first_then_hugetlb() {
    let prog = or_skip!(fixture("probe-glibc-pie"));
    let wrapper = or_skip!(fixture("thp_off"));
    let _guard = pool_exclusive();
    or_skip!(ensure_hugetlb_pool(HUGETLB_POOL_PAGES));
    let free = hugetlb_free_pages();

    // The page cache first: the text is mapped from the file, no copy.
    let i = inspect(hl(&["-v"], &prog, &["--wait"]), &prog, Ready::Line);
    let dump = i.dump();
    assert_eq!(i.run.code(&i.what), 7, "{dump}");
    let used = check_huge(&i, "conservative");
    assert!(used >= 1, "no huge page\n{dump}");
    assert_eq!(i.text_hugetlb_bytes, 0, "auto copied to hugetlb\n{dump}");
    for r in i.text_ranges() {
        assert_eq!(r.line.backend, "pagecache", "{dump}");
        assert_eq!(r.file_pmd_bytes, r.line.range.len(), "{dump}");
    }

    // Where the page cache cannot serve (THP disabled for the process),
    // auto takes the pool's pages.
    let mut cmd = command(&wrapper);
    cmd.arg(hugeload()).arg("-v").arg(&prog).arg("--wait");
    let i = inspect(cmd, &prog, Ready::Line);
    let dump = i.dump();
    assert_eq!(i.run.code(&i.what), 7, "{dump}");
    let used = check_huge(&i, "conservative");
    assert!(
        used >= 1,
        "no huge page (free hugetlb pages before: {free})\n{dump}"
    );
    assert_eq!(
        i.text_hugetlb_bytes,
        used * HUGE,
        "auto with {free} free hugetlb pages did not use hugetlb\n{dump}"
    );
    for r in i.text_ranges() {
        assert_eq!(r.line.backend, "hugetlb", "{dump}");
    }
    assert!(
        i.stderr().contains(
            "hugetlb (not from the page cache: disabled for this process (PR_SET_THP_DISABLE))"
        ),
        "the copy does not say why the page cache did not serve\n{dump}"
    );
}

// ---------------------------------------------------------------------------
// Options and environment

fn total_of(opts: &[&str], envs: &[(&str, &str)]) -> TotalLine {
    let prog = fixture("probe-glibc-pie").unwrap_or_else(|s| panic!("{}", s.0));
    let mut cmd = hl(opts, &prog, &[] as &[&str]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let what = describe(&cmd);
    let r = run(cmd);
    assert_eq!(r.code(&what), 7, "`{what}`\n{}", r.stderr_str());
    let stderr = r.stderr_str();
    parse_report(&stderr).total(&stderr).clone()
}

#[test]
fn environment_settings_and_options_win() {
    or_skip!(fixture("probe-glibc-pie"));
    // HUGELOAD_VERBOSE=1 turns the report on.
    let t = total_of(
        &[],
        &[("HUGELOAD_VERBOSE", "1"), ("HUGELOAD_BACKEND", "thp")],
    );
    assert_eq!(t.backend, "thp");
    assert_eq!(t.strategy, "conservative");
    let t = total_of(&["-v"], &[("HUGELOAD_STRATEGY", "aggressive")]);
    assert_eq!(t.strategy, "aggressive");
    let t = total_of(
        &["-v", "--strategy=conservative"],
        &[("HUGELOAD_STRATEGY", "aggressive")],
    );
    assert_eq!(t.strategy, "conservative");
    let t = total_of(&["-v", "--backend=thp"], &[("HUGELOAD_BACKEND", "off")]);
    assert_eq!(t.backend, "thp");
    // HUGELOAD_OFF=1: nothing on huge pages; an option still wins.
    let t = total_of(&["-v"], &[("HUGELOAD_OFF", "1")]);
    assert_eq!((t.backend.as_str(), t.on_huge, t.used), ("off", 0, 0));
    let t = total_of(&["-v", "--backend=thp"], &[("HUGELOAD_OFF", "1")]);
    assert_eq!(t.backend, "thp");
    assert!(t.used >= 1, "--backend=thp with HUGELOAD_OFF=1: {t:?}");
    let t = total_of(&["-v", "--backend=off"], &[]);
    assert_eq!((t.backend.as_str(), t.on_huge, t.used), ("off", 0, 0));

    // No report without -v.
    let prog = fixture("probe-glibc-pie").unwrap();
    let r = run(hl(&[] as &[&str], &prog, &[] as &[&str]));
    assert_eq!(r.code("quiet"), 7);
    assert_eq!(r.stderr_str(), "", "stderr without -v");
}

#[test]
fn help_and_version() {
    for opt in ["-h", "--help"] {
        let r = run(hl_command(&[opt]));
        assert_eq!(r.code(opt), 0, "{opt}: {}", r.stderr_str());
        let all = format!("{}{}", r.stdout_str(), r.stderr_str());
        assert!(
            all.contains("--backend") && all.contains("--strategy"),
            "{opt} output:\n{all}"
        );
    }
    for opt in ["-V", "--version"] {
        let r = run(hl_command(&[opt]));
        assert_eq!(r.code(opt), 0);
        let all = format!("{}{}", r.stdout_str(), r.stderr_str());
        assert!(
            all.contains(env!("CARGO_PKG_VERSION")),
            "{opt} output lacks the version:\n{all}"
        );
    }
}

/// Usage errors: exit 2, usage on stderr, nothing run.
#[test]
fn usage_errors_are_one_line_and_125() {
    let dir = scratch_dir("usage");
    let marker = dir.join("ran");
    let script = format!("touch {}", marker.display());
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "hugeload: unrecognized option '--bogus'"),
        (
            &["--strategy=bogus"],
            "hugeload: invalid argument 'bogus' for '--strategy' (valid: conservative, aggressive)",
        ),
        (
            &["-s", "bogus"],
            "hugeload: invalid argument 'bogus' for '--strategy' (valid: conservative, aggressive)",
        ),
        (
            &["--backend=bogus"],
            "hugeload: invalid argument 'bogus' for '--backend' (valid: auto, pagecache, thp, hugetlb, off)",
        ),
        (&["-x"], "hugeload: invalid option -- 'x'"),
        (
            &["--verbose=yes"],
            "hugeload: option '--verbose' doesn't allow an argument",
        ),
        (
            &["--st"],
            "hugeload: option '--st' is ambiguous; possibilities: '--strategy' '--stat'",
        ),
        (
            &["--strategy"],
            "hugeload: option '--strategy' requires an argument",
        ),
        (&[], "hugeload: no program given"),
        (&["-v"], "hugeload: no program given"),
        (&["--"], "hugeload: no program given"),
    ];
    for (opts, line) in cases {
        let mut cmd = hl_command(opts);
        if !opts.is_empty() && !matches!(opts, ["-v"] | ["--"] | ["--strategy"] | ["-s", _]) {
            cmd.args(["/bin/sh", "-c", &script]);
        }
        let what = describe(&cmd);
        let r = run(cmd);
        let stderr = r.stderr_str();
        assert_eq!(r.code(&what), 125, "`{what}`\nstderr:\n{stderr}");
        assert_eq!(
            stderr,
            format!("{line}\nTry 'hugeload --help' for more information.\n"),
            "`{what}`"
        );
        assert!(r.stdout.is_empty(), "`{what}`: stdout {:?}", r.stdout_str());
        assert!(!marker.exists(), "`{what}`: the program ran");
    }
}

/// `#!/usr/bin/env NAME`: hugeload loads NAME, found in PATH as env finds
/// it, not env: the same argv and output as the direct run, and `-v`
/// names NAME's file.
#[test]
fn env_shebang_loads_the_named_program() {
    let prog = or_skip!(fixture("probe-glibc-pie"));
    let dir = scratch_dir("env-shebang");
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    copy_with_mode(&prog, &bin.join("myprobe"), 0o755);
    let script = dir.join("script");
    fs::write(&script, "#!/usr/bin/env myprobe\n").unwrap();
    set_mode(&script, 0o755);
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let (_, h) = run_both_with(&["-v"], &script, &["a"], |c| {
        c.env("PATH", &path);
    });
    let stderr = h.stderr_str();
    assert!(
        stderr.contains(&format!("hugeload: load {}/myprobe: ", bin.display())),
        "{stderr}"
    );
    // Not found: env's status.
    fs::write(&script, "#!/usr/bin/env no-such-program-here\n").unwrap();
    let mut c = hl(&[] as &[&str], &script, &[] as &[&str]);
    c.env("PATH", &path);
    let r = run(c);
    assert_eq!(r.code("env no-such"), 127, "{}", r.stderr_str());
}

/// An executable stack: the kernel runs it, so hugeload hands it over,
/// with `-b off` and `HUGELOAD_OFF=1` too.
#[test]
fn executable_stack_runs_as_the_kernel_runs_it() {
    let gcc = or_skip!(need_tool("gcc"));
    let dir = scratch_dir("execstack");
    let src = dir.join("es.c");
    fs::write(
        &src,
        "#include <stdio.h>\nint main(int c, char **v) { puts(v[1]); return 3; }\n",
    )
    .unwrap();
    let prog = dir.join("es");
    let mut c = Command::new(gcc);
    c.arg("-zexecstack").arg(&src).arg("-o").arg(&prog);
    assert!(run(c).success());
    assert_like_kernel(&prog);
}

/// `--help` and `--version` to a full device: one line, status 1.
#[test]
fn help_to_a_full_device_fails() {
    for opt in ["--help", "--version"] {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("exec \"$0\" \"$1\" > /dev/full")
            .arg(hugeload())
            .arg(opt);
        clear_hugeload_env(&mut c);
        let r = run(c);
        assert_eq!(r.code(opt), 1, "{}", r.stderr_str());
        assert_eq!(
            r.stderr_str(),
            "hugeload: write error: No space left on device\n"
        );
    }
}

/// `hugeload ""` names the empty argument.
#[test]
fn empty_program_name_is_named() {
    let r = run(hl(&[] as &[&str], "", &[] as &[&str]));
    assert_eq!(r.code("hugeload ''"), 127);
    assert_eq!(r.stderr_str(), "hugeload: '': No such file or directory\n");
}

/// getopt's conventions: bundled short options with attached values,
/// repeated -v, unambiguous prefixes of long options, both value forms.
#[test]
fn options_follow_getopt() {
    let prog = or_skip!(fixture("probe-glibc-pie"));
    for opts in [
        &["-vs", "aggressive", "-b", "thp"][..],
        &["-vb", "thp", "-saggressive"],
        &["--verb", "--strat", "aggressive", "--back=thp"],
        &["-vv", "--strategy", "aggressive", "--backend", "thp"],
    ] {
        let r = run(hl(opts, &prog, &[] as &[&str]));
        let stderr = r.stderr_str();
        assert_eq!(r.code(&format!("{opts:?}")), 7, "{stderr}");
        let total = parse_report(&stderr);
        let total = total.total(&stderr);
        assert_eq!(
            (total.strategy.as_str(), total.backend.as_str()),
            ("aggressive", "thp"),
            "{opts:?}"
        );
    }
    // -vv also reports libraries without 2 MiB of code; -v does not.
    let r = run(hl(&["-v"], &prog, &[] as &[&str]));
    assert!(
        !r.stderr_str().contains("no whole 2 MiB block"),
        "{}",
        r.stderr_str()
    );
    let r = run(hl(&["-vv"], &prog, &[] as &[&str]));
    assert!(
        r.stderr_str()
            .contains("libc.so.6: no whole 2 MiB block of code"),
        "{}",
        r.stderr_str()
    );
}

/// A `HUGELOAD_*` value that means nothing: one line, then the default; a
/// value in another case is taken.
#[test]
fn environment_values_are_checked() {
    let prog = or_skip!(fixture("probe-glibc-pie"));
    let mut cmd = hl(&["-v"], &prog, &[] as &[&str]);
    cmd.env("HUGELOAD_BACKEND", "hugtlb")
        .env("HUGELOAD_STRATEGY", "Aggressive");
    let r = run(cmd);
    let stderr = r.stderr_str();
    assert_eq!(
        r.code("hugeload with HUGELOAD_BACKEND=hugtlb"),
        7,
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().next(),
        Some(
            "hugeload: HUGELOAD_BACKEND=hugtlb: not one of auto, pagecache, thp, hugetlb, off; ignored"
        ),
        "{stderr}"
    );
    let report = parse_report(&stderr);
    let total = report.total(&stderr);
    assert_eq!(
        (total.strategy.as_str(), total.backend.as_str()),
        ("aggressive", "auto")
    );
}

// ---------------------------------------------------------------------------
// Bad input

/// Runs `hugeload PATH` and checks: exit status `code`, no signal, no
/// stdout, stderr exactly one line `hugeload: ...PATH...`.
fn assert_rejected(path: &str, code: i32) {
    let cmd = hl(&[] as &[&str], path, &["arg"]);
    let what = describe(&cmd);
    let r = run(cmd);
    let stderr = r.stderr_str();
    assert_eq!(r.code(&what), code, "`{what}`\nstderr:\n{stderr}");
    assert!(r.stdout.is_empty(), "`{what}`: stdout {:?}", r.stdout_str());
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && stderr.ends_with('\n'),
        "`{what}`: stderr should be one line:\n{stderr}"
    );
    assert!(
        lines[0].starts_with("hugeload: ") && lines[0].contains(path),
        "`{what}`: stderr line should be `hugeload: {path}: reason`, got {:?}",
        lines[0]
    );
}

/// A file hugeload will not load itself runs as the kernel runs it: the
/// same end (exit status or signal) and output as a direct execve, and
/// under `-v` one line saying it was handed to the kernel. If the kernel
/// refuses it too, hugeload's own one-line reason, 126.
fn assert_like_kernel(path: &Path) {
    let mut direct = command(path);
    direct.arg("arg");
    let d = run_limited(direct, Stdin::Null, TIMEOUT);
    if let End::ExecError(_) = d.end {
        assert_rejected(&path.to_string_lossy(), 126);
        return;
    }
    // Whatever the options: "off" too means "as the kernel runs it".
    for (opts, off) in [
        (&[][..], false),
        (&["-b", "off"][..], false),
        (&[][..], true),
    ] {
        let mut via = hl(opts, path, &["arg"]);
        if off {
            via.env("HUGELOAD_OFF", "1");
        }
        let what = describe(&via);
        let h = run(via);
        assert_eq!(h.end, d.end, "`{what}`\nstderr:\n{}", h.stderr_str());
        assert_eq!(h.stdout_str(), d.stdout_str(), "`{what}`");
        assert_eq!(h.stderr_str(), d.stderr_str(), "`{what}`");
    }
    let r = run(hl(&["-v"], path, &["arg"]));
    assert!(
        r.stderr_str().lines().any(|l| l.starts_with("hugeload: ")
            && l.ends_with(": handed to the kernel (execve), which loads it without huge pages")),
        "`hugeload -v {}`: no hand-over line\n{}",
        path.display(),
        r.stderr_str()
    );
}

fn copy_with_mode(from: &Path, to: &Path, mode: u32) {
    fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    set_mode(to, mode);
}

#[test]
fn missing_file_is_127() {
    let dir = scratch_dir("missing");
    assert_rejected(&dir.join("no-such-file").to_string_lossy(), 127);
    assert_rejected("/nonexistent-dir/prog", 127);
    assert_rejected("./no-such-file-here", 127);
}

#[test]
fn command_not_found_is_127() {
    assert_rejected("nosuchcommand_xyz", 127);
}

#[test]
fn directory_is_126() {
    let dir = scratch_dir("directory");
    assert_rejected(&dir.to_string_lossy(), 126);
}

#[test]
fn file_without_exec_permission_is_126() {
    let dir = scratch_dir("noexec");
    let p = dir.join("true-644");
    copy_with_mode(Path::new("/bin/true"), &p, 0o644);
    assert_rejected(&p.to_string_lossy(), 126);
}

#[test]
fn text_file_without_shebang_runs_through_sh_as_env_does() {
    let dir = scratch_dir("text");
    let p = dir.join("plain.txt");
    fs::write(&p, "echo \"sh ran $0 $1\"\nexit 3\n").unwrap();
    set_mode(&p, 0o755);
    let empty = dir.join("empty");
    fs::write(&empty, "").unwrap();
    set_mode(&empty, 0o755);
    for file in [&p, &empty] {
        let mut env = Command::new("env");
        env.arg(file).arg("x");
        let e = run(env);
        let r = run(hl(&[] as &[&str], file, &["x"]));
        assert_eq!(r.end, e.end, "{}: {}", file.display(), r.stderr_str());
        assert_eq!(r.stdout, e.stdout, "{}", file.display());
    }
}

#[test]
fn elf32_runs_as_the_kernel_runs_it() {
    let p = or_skip!(fixture("elf32"));
    assert_like_kernel(&p);
}

#[test]
fn foreign_architecture_is_126() {
    let dir = scratch_dir("aarch64");
    let mut bytes = fs::read("/bin/true").unwrap();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    let p = dir.join("true-aarch64");
    fs::write(&p, &bytes).unwrap();
    set_mode(&p, 0o755);
    assert_rejected(&p.to_string_lossy(), 126);
}

#[test]
fn truncated_elf_runs_as_the_kernel_runs_it() {
    let dir = scratch_dir("truncated");
    let bytes = fs::read("/bin/true").unwrap();
    for n in [100usize, 1000] {
        let p = dir.join(format!("true-{n}"));
        fs::write(&p, &bytes[..n]).unwrap();
        set_mode(&p, 0o755);
        assert_like_kernel(&p);
    }
}

#[test]
fn writable_and_executable_segment_runs_as_the_kernel_runs_it() {
    let prog = or_skip!(fixture("probe-glibc-pie"));
    let dir = scratch_dir("wx");
    let mut bytes = fs::read(&prog).unwrap();
    let elf = ElfInfo::read(&prog);
    let index = elf
        .phdrs
        .iter()
        .position(|p| p.p_type == PT_LOAD && p.p_flags & PF_X != 0)
        .unwrap();
    let at = elf.e_phoff as usize + index * 56 + 4;
    bytes[at..at + 4].copy_from_slice(&7u32.to_le_bytes()); // PF_R|PF_W|PF_X
    let p = dir.join("probe-wx");
    fs::write(&p, &bytes).unwrap();
    set_mode(&p, 0o755);
    assert_eq!(ElfInfo::read(&p).phdrs[index].p_flags, 7);
    assert_like_kernel(&p);
}

/// A `#!` script whose interpreter does not exist: the same status a shell
/// gives when execve fails that way.
#[test]
fn script_with_missing_interpreter() {
    let dir = scratch_dir("badinterp");
    let p = dir.join("script");
    fs::write(&p, "#!/nonexistent/interpreter\necho hi\n").unwrap();
    set_mode(&p, 0o755);
    let path = p.to_string_lossy().into_owned();

    let mut sh = command("/bin/sh");
    sh.args(["-c", &path]);
    let shell_code = run(sh).code("sh -c script");
    let direct = run_limited(command(&p), Stdin::Null, TIMEOUT);
    let End::ExecError(errno) = direct.end else {
        panic!(
            "a script with a missing interpreter ran: {}",
            direct.short()
        );
    };
    let errno_class = match errno {
        2 | 20 => 127,
        _ => 126,
    };
    assert_eq!(
        shell_code, errno_class,
        "sh and execve's errno {errno:?} disagree"
    );
    assert_rejected(&path, shell_code);
}
