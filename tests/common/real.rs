//! Real programs (sh, git, python, node...): finding them, and checking that
//! their code really went on huge pages when hugeload loaded them (not only
//! that they printed the right thing: a silent fallback to 4 KiB pages
//! prints the same).

use super::*;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::process::Command;

/// A private copy of the real program `program` (a name, looked up in
/// `PATH` as [`need_tool`] does, or a path), resolved to its real ELF file
/// (symbolic links followed): `target/fixtures/scratch/real-PID/NAME/NAME`,
/// NAME being `program`'s file name, made at most once per test process
/// (tests that need it wait for that copy, as for [`fixture`]). A skip if
/// `program` is not installed.
///
/// The project's rule: a run that may drop or prime page-cache state
/// (`-b auto`, the default, and `-b pagecache`, in every mode; they prime
/// the program and its DT_NEEDED libraries) runs a copy, never the
/// system's own file, which other work on the machine uses. `-b thp`,
/// `-b hugetlb` and `-b off` only read the file and may run it. Each copy
/// is alone in its directory: a test that finds the program by name puts
/// that directory first in the child's `PATH` ([`path_with_first`]).
pub fn real_copy(program: impl AsRef<Path>) -> Result<PathBuf, Skip> {
    let program = program.as_ref();
    let found = match program.to_str() {
        Some(name) if !name.contains('/') => need_tool(name)?,
        _ => program.to_path_buf(),
    };
    let name = program
        .file_name()
        .unwrap_or_else(|| panic!("{}: no file name", program.display()))
        .to_string_lossy()
        .into_owned();
    let elf = canonical(&found);
    assert!(
        is_elf(&elf),
        "{} (from {}) is not an ELF file",
        elf.display(),
        found.display()
    );
    /// One copy per name: (the program copied, the copy).
    type Cell = OnceLock<(PathBuf, PathBuf)>;
    static CELLS: OnceLock<Mutex<HashMap<String, &'static Cell>>> = OnceLock::new();
    let cell: &'static Cell = lock(CELLS.get_or_init(Default::default))
        .entry(name.clone())
        .or_insert_with(|| Box::leak(Box::new(OnceLock::new())));
    let (source, copy) = cell.get_or_init(|| (elf.clone(), copy_real(&elf, &name)));
    assert_eq!(
        *source,
        elf,
        "real_copy({}): the copy named {name} ({}) is of another program",
        program.display(),
        copy.display()
    );
    Ok(copy.clone())
}

/// [`real_copy`]'s copy of `elf` as `real-PID/NAME/NAME`.
fn copy_real(elf: &Path, name: &str) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| scratch_dir("real"));
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    // cp, not fs::copy: a descriptor open for writing in this process could
    // leak into a child another test thread forks meanwhile, and then
    // executing the copy fails with ETXTBSY.
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut c = command("cp");
    c.arg("--").arg(elf).arg(&tmp);
    let r = run(c);
    assert!(
        r.success(),
        "cp {} {}: {}",
        elf.display(),
        tmp.display(),
        r.short()
    );
    set_mode(&tmp, 0o755);
    let copy = dir.join(name);
    fs::rename(&tmp, &copy)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), copy.display()));
    copy
}

/// This process's `PATH` with `dir` first: for a child that looks a program
/// up by name and must find [`real_copy`]'s copy in `dir`.
pub fn path_with_first(dir: &Path) -> OsString {
    let mut dirs = vec![dir.to_path_buf()];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).unwrap_or_else(|e| panic!("PATH with {}: {e}", dir.display()))
}

pub fn is_elf(p: &Path) -> bool {
    fs::read(p).is_ok_and(|b| b.starts_with(b"\x7fELF"))
}

/// Every executable named `name` in `PATH`, in order (`which -a`).
pub fn which_all(name: &str) -> Vec<PathBuf> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .filter(|p| which(&p.to_string_lossy()).is_some())
        .collect()
}

/// Text a python's ELF program must have to hold the interpreter itself.
const PYTHON_MIN_TEXT: u64 = 1 << 20;

/// The python3 found in PATH, as the ELF program that holds the
/// interpreter's code: the first `python3` in PATH that leads to an ELF
/// file (directly, or, for a script such as a pyenv shim, the program it
/// runs, as python names itself: `sys.executable`) with at least 1 MiB of
/// text. A python built with `--enable-shared` (pyenv's default) keeps its
/// code in libpython, a shared library that hugeload does not place: its
/// program is a stub of a few hundred bytes that shares its only 2 MiB
/// block with writable data, and it is passed over.
pub fn python_elf() -> Result<PathBuf, Skip> {
    let mut seen = Vec::new();
    for found in which_all("python3") {
        let mut elf = canonical(&found);
        if !is_elf(&elf) {
            let mut c = command(&found);
            c.args(["-c", "import sys; print(sys.executable)"]);
            let r = run(c);
            let named = PathBuf::from(r.stdout_str().trim());
            match fs::canonicalize(&named) {
                Ok(p) if r.success() && is_elf(&p) => elf = p,
                _ => {
                    seen.push(format!(
                        "{} (no ELF program: {})",
                        found.display(),
                        r.short()
                    ));
                    continue;
                }
            }
        }
        let text = ElfInfo::read(&elf).text_memsz();
        if text >= PYTHON_MIN_TEXT {
            return Ok(elf);
        }
        seen.push(format!(
            "{} -> {} ({text} bytes of text: the interpreter is in libpython)",
            found.display(),
            elf.display()
        ));
    }
    Err(Skip(format!(
        "no python3 in PATH whose program holds the interpreter's code: {seen:?}"
    )))
}

/// Makes a dynamically linked program wait at its start, after it is
/// loaded and before its own code runs, until its stdin ends (the `hold.so`
/// fixture in LD_PRELOAD): [`inspect`] with [`Ready::StdinRead`] can then
/// read the smaps of a program that would otherwise exit at once.
pub fn hold_at_start(cmd: &mut Command) -> Result<(), Skip> {
    cmd.env("LD_PRELOAD", fixture("hold.so")?);
    Ok(())
}

/// Whether `elf` has a PT_INTERP (is dynamically linked).
pub fn is_dynamic(elf: &Path) -> bool {
    ElfInfo::read(elf)
        .phdrs
        .iter()
        .any(|p| p.p_type == PT_INTERP)
}

/// `hugeload -v --backend=thp --strategy=S typed args` (`typed`: the
/// program as the user types it, a name found in PATH, a script...), held
/// at its start ([`hold_at_start`]), for both strategies: the checks of
/// [`check_huge`] against the smaps of the running program (the measured
/// text is `elf`'s, the ELF program that runs), exit status `status` once
/// released, and at least one 2 MiB page of its text on huge pages with
/// the aggressive strategy (conservative may have no whole block in a small
/// text). Returns U for (conservative, aggressive).
pub fn assert_real_code_on_huge_pages(
    elf: &Path,
    typed: impl AsRef<OsStr>,
    args: &[&str],
    status: i32,
) -> Result<(u64, u64), Skip> {
    assert!(
        is_dynamic(elf),
        "{}: statically linked, hold.so cannot hold it",
        elf.display()
    );
    let mut used = [0; 2];
    for (k, strategy) in ["conservative", "aggressive"].into_iter().enumerate() {
        let mut cmd = hl(
            &["-v", "--backend=thp", &format!("--strategy={strategy}")],
            typed.as_ref(),
            args,
        );
        hold_at_start(&mut cmd)?;
        let i = inspect(cmd, elf, Ready::StdinRead);
        assert_eq!(i.run.code(&i.what), status, "exit status\n{}", i.dump());
        used[k] = check_huge(&i, strategy);
        if strategy == "aggressive" {
            assert!(
                used[k] >= 1,
                "{}: aggressive: no 2 MiB page of its text on huge pages\n{}",
                elf.display(),
                i.dump()
            );
        }
    }
    Ok((used[0], used[1]))
}

/// The 2 MiB blocks the text touches at `bias` that the aggressive strategy
/// can put on huge pages where the kernel placed the program (PT_INTERP
/// mode): wholly inside the image (the pages of its PT_LOADs, lowest to
/// highest) and sharing no page with a writable segment.
pub fn aggressive_room(elf: &ElfInfo, bias: u64) -> Vec<u64> {
    let lo = elf
        .loads()
        .map(|p| bias + page_down(p.p_vaddr))
        .min()
        .unwrap_or(0);
    let hi = elf
        .loads()
        .map(|p| bias + page_up(p.p_vaddr + p.p_memsz))
        .max()
        .unwrap_or(0);
    let writable: Vec<Span> = elf
        .loads()
        .filter(|p| p.p_flags & PF_W != 0)
        .map(|p| Span {
            start: bias + page_down(p.p_vaddr),
            end: bias + page_up(p.p_vaddr + p.p_memsz),
        })
        .collect();
    elf.touched_blocks(bias)
        .into_iter()
        .filter(|&b| {
            let block = Span {
                start: b,
                end: b + HUGE,
            };
            lo <= b && b + HUGE <= hi && writable.iter().all(|w| w.overlap(&block) == 0)
        })
        .collect()
}

/// The same for a PT_INTERP copy (`copy`, whose PT_INTERP names hugeload)
/// run directly with `HUGELOAD_VERBOSE=1 HUGELOAD_BACKEND=thp
/// HUGELOAD_STRATEGY=S`: the checks of [`check_huge_pt_interp`] and exit
/// status `status` for both strategies, and at least one huge page with
/// the aggressive strategy wherever the kernel put the program with room
/// for one ([`aggressive_room`]). A PIE is placed by the kernel at random:
/// when a launch leaves no room, it is launched again (at most 10 times).
/// `hold`: hold it with [`hold_at_start`] (else `args` must make it block
/// reading stdin). Returns U for (conservative, aggressive).
pub fn assert_pt_interp_code_on_huge_pages(
    copy: &Path,
    args: &[&str],
    hold: bool,
    status: i32,
) -> Result<(u64, u64), Skip> {
    let launch = |strategy: &str| -> Result<(Inspection, u64), Skip> {
        let mut cmd = command(copy);
        cmd.args(args)
            .env_remove("LD_LIBRARY_PATH")
            .env("HUGELOAD_VERBOSE", "1")
            .env("HUGELOAD_BACKEND", "thp")
            .env("HUGELOAD_STRATEGY", strategy);
        if hold {
            hold_at_start(&mut cmd)?;
        }
        let i = inspect(cmd, copy, Ready::StdinRead);
        assert_eq!(i.run.code(&i.what), status, "exit status\n{}", i.dump());
        let used = check_huge_pt_interp(&i, strategy);
        Ok((i, used))
    };
    let (_, conservative) = launch("conservative")?;
    let mut tried = Vec::new();
    for _ in 0..10 {
        let (i, used) = launch("aggressive")?;
        let room = aggressive_room(&i.elf, i.bias);
        if !room.is_empty() {
            assert!(
                used >= 1,
                "{}: aggressive: no 2 MiB page of its text on huge pages, though the kernel \
                 put it where {} blocks ({:x?}) lie inside the image, free of writable data\n{}",
                copy.display(),
                room.len(),
                room,
                i.dump()
            );
            return Ok((conservative, used));
        }
        assert_eq!(used, 0, "aggressive: U beyond the room\n{}", i.dump());
        tried.push(format!("{:x}", i.bias));
    }
    panic!(
        "{}: ten launches, none where the kernel left a whole 2 MiB block of text free of \
         writable data (biases {tried:?})",
        copy.display()
    );
}
