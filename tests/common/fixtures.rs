//! The fixture programs: one table ([`FIXTURES`]) of how each is built from
//! `tests/fixtures/`, and one builder ([`fixture`]) that builds a fixture
//! into `target/fixtures/NAME` at most once per test process (tests that
//! need it wait for that build), rebuilding it only when its compiler,
//! arguments or sources change. Other test binaries may build the same
//! fixture at the same time: each builds under a private name and renames.

use super::*;
use std::collections::HashMap;
use std::process::Command;

pub const GLIBC_INTERP: &str = "/lib64/ld-linux-x86-64.so.2";
pub const MUSL_INTERP: &str = "/lib/ld-musl-x86_64.so.1";

/// How to build one fixture.
pub struct Fixture {
    /// The name tests ask for, and the file `target/fixtures/NAME`.
    pub name: &'static str,
    /// The compiler, found in PATH (else the fixture is skipped).
    tool: &'static str,
    /// Sources under `tests/fixtures/`, hashed to know when to rebuild.
    sources: &'static [&'static str],
    /// Arguments after the tool: `{src}` is `tests/fixtures`, `{dir}`
    /// `target/fixtures` (where other fixtures are), `{out}` the output.
    args: &'static [&'static str],
    /// A Go build: a private, offline Go environment.
    go: bool,
    /// A file that must exist for the result to run (musl's ld.so).
    needs_file: Option<&'static str>,
    /// Fixtures built first (a library the fixture links with).
    after: &'static [&'static str],
    /// Writes the fixture by other means when the tool is missing or the
    /// build fails (never a skip then).
    fallback: Option<fn(&Path)>,
}

/// A fixture built by `tool args...`.
const fn recipe(
    name: &'static str,
    tool: &'static str,
    sources: &'static [&'static str],
    args: &'static [&'static str],
) -> Fixture {
    Fixture {
        name,
        tool,
        sources,
        args,
        go: false,
        needs_file: None,
        after: &[],
        fallback: None,
    }
}

const PROBE: &[&str] = &["probe.c"];
const BIG: &[&str] = &["big.c", "probe.c"];
const VIEW: &[&str] = &["view.c"];
const MODES: &[&str] = &["modes_probe.c"];
const BIGLIB: &[&str] = &["biglib.c"];
const LIBUSER: &[&str] = &["libuser.c"];

/// Every fixture of every test binary.
#[rustfmt::skip]
pub const FIXTURES: &[Fixture] = &[
    // probe.c: prints argv, environment and auxv facts (launcher, modes).
    recipe(
        "probe-glibc-pie",
        "gcc",
        PROBE,
        &["-O1", "-pie", "-fPIE", "-pthread", "{src}/probe.c", "-o", "{out}"],
    ),
    recipe(
        "probe-glibc-nopie",
        "gcc",
        PROBE,
        &["-O1", "-no-pie", "-fno-pie", "-pthread", "{src}/probe.c", "-o", "{out}"],
    ),
    recipe(
        "probe-glibc-static",
        "gcc",
        PROBE,
        &["-O1", "-static", "-pthread", "{src}/probe.c", "-o", "{out}"],
    ),
    recipe(
        "probe-glibc-static-pie",
        "gcc",
        PROBE,
        &["-O1", "-static-pie", "-fPIE", "-pthread", "{src}/probe.c", "-o", "{out}"],
    ),
    Fixture {
        needs_file: Some(MUSL_INTERP),
        ..recipe(
            "probe-musl",
            "musl-gcc",
            PROBE,
            &["-O1", "-pie", "-fPIE", "-pthread", "{src}/probe.c", "-o", "{out}"],
        )
    },
    recipe(
        "probe-musl-static",
        "musl-gcc",
        PROBE,
        &["-O1", "-static", "-pthread", "{src}/probe.c", "-o", "{out}"],
    ),
    // big.c: probe.c with over 64 MiB of text.
    recipe(
        "big-pie",
        "gcc",
        BIG,
        &["-O1", "-pie", "-fPIE", "-pthread", "{src}/big.c", "-o", "{out}"],
    ),
    recipe(
        "big-nopie",
        "gcc",
        BIG,
        &["-O1", "-no-pie", "-fno-pie", "-pthread", "{src}/big.c", "-o", "{out}"],
    ),
    recipe(
        "cxx",
        "g++",
        &["cxx.cpp"],
        &["-O1", "-pie", "-fPIE", "-pthread", "{src}/cxx.cpp", "-o", "{out}"],
    ),
    recipe(
        "rustprog",
        "rustc",
        &["rustprog.rs"],
        &["-O", "--edition", "2024", "{src}/rustprog.rs", "-o", "{out}"],
    ),
    Fixture {
        go: true,
        ..recipe(
            "goprog",
            "go",
            &["goprog/main.go"],
            &["build", "-trimpath", "-o", "{out}", "{src}/goprog/main.go"],
        )
    },
    // thp_off.c: runs a program with PR_SET_THP_DISABLE.
    recipe(
        "thp_off",
        "gcc",
        &["thp_off.c"],
        &["-O1", "{src}/thp_off.c", "-o", "{out}"],
    ),
    // A 32-bit x86 program: gcc -m32 with multilib, else written by hand.
    Fixture {
        fallback: Some(write_elf32),
        ..recipe(
            "elf32",
            "gcc",
            &["elf32.c"],
            &["-m32", "{src}/elf32.c", "-o", "{out}"],
        )
    },
    // hostile_wrap.c: runs a program in a hostile environment (hostile).
    recipe(
        "hostile_wrap",
        "gcc",
        &["hostile_wrap.c"],
        &["-O1", "{src}/hostile_wrap.c", "-o", "{out}"],
    ),
    // view.c: what a program sees of its own start (hostile).
    recipe(
        "view-pie",
        "gcc",
        VIEW,
        &["-O1", "-pie", "-fPIE", "{src}/view.c", "-o", "{out}"],
    ),
    recipe(
        "view-static",
        "gcc",
        VIEW,
        &["-O1", "-static", "{src}/view.c", "-o", "{out}"],
    ),
    recipe(
        "view-musl-static",
        "musl-gcc",
        VIEW,
        &["-O1", "-static", "{src}/view.c", "-o", "{out}"],
    ),
    recipe(
        "view-16",
        "gcc",
        VIEW,
        &["-O1", "-pie", "-fPIE", "-DPAD_MB=16", "{src}/view.c", "-o", "{out}"],
    ),
    recipe(
        "view-64",
        "gcc",
        VIEW,
        &["-O1", "-pie", "-fPIE", "-DPAD_MB=64", "{src}/view.c", "-o", "{out}"],
    ),
    // modes_probe.c: identity, waiting, spinning, crashing (modes).
    recipe(
        "modes-pie",
        "gcc",
        MODES,
        &["-pie", "-fPIE", "-O1", "-fno-omit-frame-pointer", "{src}/modes_probe.c", "-o", "{out}"],
    ),
    recipe(
        "modes-nopie",
        "gcc",
        MODES,
        &["-no-pie", "-fno-pie", "-O1", "-fno-omit-frame-pointer", "{src}/modes_probe.c", "-o", "{out}"],
    ),
    Fixture {
        needs_file: Some(MUSL_INTERP),
        ..recipe(
            "modes-musl",
            "musl-gcc",
            MODES,
            &["-pie", "-fPIE", "-O1", "-fno-omit-frame-pointer", "{src}/modes_probe.c", "-o", "{out}"],
        )
    },
    recipe(
        "modes-static",
        "gcc",
        MODES,
        &["-static", "-O1", "-fno-omit-frame-pointer", "{src}/modes_probe.c", "-o", "{out}"],
    ),
    recipe(
        "modes-static-pie",
        "gcc",
        MODES,
        &["-static-pie", "-fPIE", "-O1", "-fno-omit-frame-pointer", "{src}/modes_probe.c", "-o", "{out}"],
    ),
    // A program that finds its library through RUNPATH $ORIGIN/../lib
    // (modes: the test lays them out as DIR/bin/prog and DIR/lib/).
    recipe(
        "libmodesorigin.so",
        "gcc",
        &["modes_origin_lib.c"],
        &[
            "-O1",
            "-shared",
            "-fPIC",
            "-Wl,-soname,libmodesorigin.so",
            "{src}/modes_origin_lib.c",
            "-o",
            "{out}",
        ],
    ),
    // reclaim.c: 8 MiB of text it pages out and touches again (pagecache).
    recipe(
        "reclaim",
        "gcc",
        &["reclaim.c"],
        &["-O1", "-pie", "-fPIE", "{src}/reclaim.c", "-o", "{out}"],
    ),
    Fixture {
        after: &["libmodesorigin.so"],
        ..recipe(
            "modes-origin",
            "gcc",
            &["modes_origin_main.c"],
            &[
                "-O1",
                "-pie",
                "-fPIE",
                "{src}/modes_origin_main.c",
                "{dir}/libmodesorigin.so",
                "-Wl,-rpath,$ORIGIN/../lib",
                "-o",
                "{out}",
            ],
        )
    },
    // biglib.c: a shared library with about 9 MiB of code, all of it run by
    // big_checksum; libuser.c: a program that calls it (through dlopen, or
    // linked with RUNPATH $ORIGIN), prints the result, `ready`, and waits
    // (libraries). The same library linked by GNU ld (text congruent with
    // its file offsets), by LLD (text a page above them) and by musl-gcc.
    recipe(
        "libbig-bfd.so",
        "gcc",
        BIGLIB,
        &["-O1", "-shared", "-fPIC", "-fuse-ld=bfd", "-Wl,-soname,libbig-bfd.so", "{src}/biglib.c", "-o", "{out}"],
    ),
    recipe(
        "libbig-lld.so",
        "gcc",
        BIGLIB,
        &["-O1", "-shared", "-fPIC", "-fuse-ld=lld", "-Wl,-soname,libbig-lld.so", "{src}/biglib.c", "-o", "{out}"],
    ),
    // The GNU ld library with text relocations too (textrel.c).
    recipe(
        "libbig-textrel.so",
        "gcc",
        &["biglib.c", "textrel.c"],
        &["-O1", "-shared", "-fPIC", "-fuse-ld=bfd", "-Wl,-z,notext", "-Wl,-soname,libbig-textrel.so", "{src}/biglib.c", "{src}/textrel.c", "-o", "{out}"],
    ),
    recipe(
        "libuser-dlopen",
        "gcc",
        LIBUSER,
        &["-O1", "-pie", "-fPIE", "-DUSE_DLOPEN", "{src}/libuser.c", "-o", "{out}", "-ldl"],
    ),
    Fixture {
        after: &["libbig-lld.so"],
        ..recipe(
            "libuser-linked-lld",
            "gcc",
            LIBUSER,
            &["-O1", "-pie", "-fPIE", "{src}/libuser.c", "{dir}/libbig-lld.so", "-Wl,-rpath,$ORIGIN", "-o", "{out}"],
        )
    },
    Fixture {
        needs_file: Some(MUSL_INTERP),
        ..recipe(
            "libbig-musl.so",
            "musl-gcc",
            BIGLIB,
            &["-O1", "-shared", "-fPIC", "-Wl,-soname,libbig-musl.so", "{src}/biglib.c", "-o", "{out}"],
        )
    },
    Fixture {
        needs_file: Some(MUSL_INTERP),
        ..recipe(
            "libuser-dlopen-musl",
            "musl-gcc",
            LIBUSER,
            &["-O1", "-pie", "-fPIE", "-DUSE_DLOPEN", "{src}/libuser.c", "-o", "{out}"],
        )
    },
    Fixture {
        needs_file: Some(MUSL_INTERP),
        after: &["libbig-musl.so"],
        ..recipe(
            "libuser-linked-musl",
            "musl-gcc",
            LIBUSER,
            &["-O1", "-pie", "-fPIE", "{src}/libuser.c", "{dir}/libbig-musl.so", "-Wl,-rpath,$ORIGIN", "-o", "{out}"],
        )
    },
    // pyext.c: biglib.c as the Python extension module `bigext` (stable
    // ABI), built by build_pyext.py with the Python.h of the python3 in
    // PATH (python3-dev).
    recipe(
        "bigext.so",
        "python3",
        &["pyext.c", "biglib.c", "build_pyext.py"],
        &["{src}/build_pyext.py", "{src}", "{out}"],
    ),
    // hold.c: an LD_PRELOAD library that holds a program at its start until
    // stdin ends, so that a test can read the smaps of a short-lived real
    // program (see `hold_at_start`).
    recipe(
        "hold.so",
        "gcc",
        &["hold.c"],
        &["-O1", "-shared", "-fPIC", "{src}/hold.c", "-o", "{out}"],
    ),
];

fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

type Built = Result<PathBuf, Skip>;

/// One `OnceLock` per fixture name: a fixture is built at most once per test
/// process, and tests that need it wait for that build.
fn fixture_cell(name: &str) -> &'static OnceLock<Built> {
    static CELLS: OnceLock<Mutex<HashMap<String, &'static OnceLock<Built>>>> = OnceLock::new();
    let mut cells = lock(CELLS.get_or_init(Default::default));
    cells
        .entry(name.to_string())
        .or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
}

/// The built fixture `name` (an entry of [`FIXTURES`]), built into
/// `target/fixtures/` if missing or stale; a skip if its compiler (or a
/// file it needs) is not installed.
pub fn fixture(name: &str) -> Result<PathBuf, Skip> {
    let f = FIXTURES
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name:?} in the table (tests/common/fixtures.rs)"));
    fixture_cell(name).get_or_init(|| build_fixture(f)).clone()
}

fn build_fixture(f: &Fixture) -> Built {
    let name = f.name;
    for dep in f.after {
        fixture(dep)?;
    }
    let dir = fixtures_dir();
    let out = dir.join(name);
    // Build under a private name, then rename: other test threads and other
    // test binaries may build the same fixture at the same time.
    let unique = format!(
        "{}.{}.{:?}.tmp",
        name,
        std::process::id(),
        thread::current().id()
    )
    .replace(['(', ')'], "");
    let tmp = dir.join(&unique);
    let fall_back = |why: String| -> Built {
        let Some(write) = f.fallback else {
            return Err(Skip(why));
        };
        write(&tmp);
        set_mode(&tmp, 0o755);
        fs::rename(&tmp, &out)
            .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), out.display()));
        Ok(out.clone())
    };
    let Some(tool) = which(f.tool) else {
        return fall_back(format!(
            "`{}` is not installed (needed for fixture {name})",
            f.tool
        ));
    };
    if let Some(file) = f.needs_file
        && !Path::new(file).exists()
    {
        return Err(Skip(format!(
            "{file} is missing (needed for fixture {name})"
        )));
    }
    let src = fixture_sources();
    let stamp = dir.join(format!("{name}.stamp"));

    let mut h = fnv1a(0xcbf2_9ce4_8422_2325, tool.as_os_str().as_encoded_bytes());
    for a in f.args {
        h = fnv1a(h, a.as_bytes());
        h = fnv1a(h, b"\0");
    }
    for s in f.sources {
        let p = src.join(s);
        let bytes = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        h = fnv1a(h, &bytes);
    }
    let key = format!("{h:016x}\n");
    if out.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == key) {
        return Ok(out);
    }

    let mut cmd = Command::new(&tool);
    for a in f.args {
        let a = a
            .replace("{src}", &src.to_string_lossy())
            .replace("{dir}", &dir.to_string_lossy())
            .replace("{out}", &tmp.to_string_lossy());
        cmd.arg(a);
    }
    if f.go {
        let go = dir.join("go");
        cmd.env("GOCACHE", go.join("cache"))
            .env("GOPATH", go.join("path"))
            .env("GOMODCACHE", go.join("path/pkg/mod"))
            .env("GOENV", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("GO111MODULE", "off")
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0")
            .env("HOME", &go);
    }
    cmd.current_dir(&dir);
    let what = describe(&cmd);
    let result = run(cmd);
    if !result.success() {
        let _ = fs::remove_file(&tmp);
        if f.fallback.is_some() {
            // Not stamped: the next test process tries the tool again.
            return fall_back(String::new());
        }
        panic!(
            "building fixture {name} failed: `{what}`\n{}{}",
            result.stdout_str(),
            result.stderr_str()
        );
    }
    fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), out.display()));
    let stamp_tmp = dir.join(format!("{unique}.stamp"));
    fs::write(&stamp_tmp, &key).unwrap();
    fs::rename(&stamp_tmp, &stamp).unwrap();
    Ok(out)
}

/// A 32-bit x86 ELF executable written by hand: ELFCLASS32, EM_386,
/// ET_EXEC, one PT_LOAD whose code calls exit(0).
fn write_elf32(out: &Path) {
    let mut b = vec![0u8; 52 + 32 + 16];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 1; // ELFCLASS32
    b[5] = 1; // little-endian
    b[6] = 1; // EV_CURRENT
    b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..28].copy_from_slice(&0x0804_8054u32.to_le_bytes()); // e_entry
    b[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
    b[40..42].copy_from_slice(&52u16.to_le_bytes()); // e_ehsize
    b[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
    b[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = &mut b[52..84];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[8..12].copy_from_slice(&0x0804_8000u32.to_le_bytes()); // p_vaddr
    ph[12..16].copy_from_slice(&0x0804_8000u32.to_le_bytes());
    ph[16..20].copy_from_slice(&100u32.to_le_bytes()); // p_filesz
    ph[20..24].copy_from_slice(&100u32.to_le_bytes()); // p_memsz
    ph[24..28].copy_from_slice(&5u32.to_le_bytes()); // R+X
    ph[28..32].copy_from_slice(&0x1000u32.to_le_bytes());
    // _start: mov $1,%eax; xor %ebx,%ebx; int $0x80
    b[84..93].copy_from_slice(&[0xb8, 1, 0, 0, 0, 0x31, 0xdb, 0xcd, 0x80]);
    fs::write(out, &b).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}
