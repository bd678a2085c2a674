//! Integration tests of the page-cache backend: code mapped straight from
//! the file's 2 MiB page-cache folios (`FilePmdMapped` in smaps), no copy;
//! priming; `--prime`; `--lock`; and the fallbacks to the copies.
//!
//! Every test works on fresh copies of the programs it runs (a copy's
//! cache starts dirty and small, so hugeload has to prime it), never on the
//! system's own files: priming drops page-cache pages. Fixtures
//! (tests/fixtures/, the table in tests/common/fixtures.rs) are built once
//! into target/fixtures/. `HUGELOAD_STRICT=1` turns skips into failures.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A fresh copy of `src` at `dir/name`: its page cache is what writing it
/// left (dirty, small folios).
fn fresh_copy(src: &Path, dir: &Path, name: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let dst = dir.join(name);
    let _ = fs::remove_file(&dst);
    fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    dst
}

/// A copy of the real `node` (resolved), or a skip.
fn node_copy(dir: &Path) -> Result<PathBuf, Skip> {
    let node = canonical(&need_tool("node")?);
    Ok(fresh_copy(&node, dir, "node"))
}

/// hugeload copied to a path no longer than glibc's ld.so path, so that
/// `patchelf --set-interpreter` rewrites PT_INTERP in place and keeps the
/// program's layout (congruent text stays congruent).
fn short_hugeload() -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/hl.{}", std::process::id()));
    let path = dir.join("hugeload");
    if !path.exists() {
        fs::create_dir_all(&dir).unwrap();
        fs::copy(hugeload(), &path).unwrap();
        set_mode(&path, 0o755);
    }
    assert!(path.as_os_str().len() <= GLIBC_INTERP.len());
    path
}

/// The fields of one smaps mapping the memory checks need.
#[derive(Debug, Default, Clone)]
struct Mem {
    perms: String,
    name: String,
    rss: u64,
    pss: u64,
    private_clean: u64,
    private_dirty: u64,
    anonymous: u64,
    anon_huge: u64,
    file_pmd: u64,
    hugetlb: u64,
}

/// The mappings of `/proc/PID/smaps`, sizes in bytes.
fn smaps_mem(pid: u32) -> Vec<Mem> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<Mem> = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let first = w.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = w.next().unwrap_or("").to_string();
                let name = line.split_whitespace().nth(5).unwrap_or("").to_string();
                let _ = (a, b);
                maps.push(Mem {
                    perms,
                    name,
                    ..Mem::default()
                });
                continue;
            }
        }
        let Some(m) = maps.last_mut() else { continue };
        let kb = w.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 1024;
        match first {
            "Rss:" => m.rss = kb,
            "Pss:" => m.pss = kb,
            "Private_Clean:" => m.private_clean = kb,
            "Private_Dirty:" => m.private_dirty = kb,
            "Anonymous:" => m.anonymous = kb,
            "AnonHugePages:" => m.anon_huge = kb,
            "FilePmdMapped:" => m.file_pmd = kb,
            "Private_Hugetlb:" | "Shared_Hugetlb:" => m.hugetlb += kb,
            _ => {}
        }
    }
    maps
}

/// The executable mappings of `file` (and copies of it that follow them).
fn code_of<'m>(maps: &'m [Mem], file: &Path) -> Vec<&'m Mem> {
    let name = file.to_string_lossy().into_owned();
    maps.iter()
        .filter(|m| m.perms.as_bytes().get(2) == Some(&b'x') && m.name == name)
        .collect()
}

fn sum(ms: &[&Mem], f: impl Fn(&Mem) -> u64) -> u64 {
    ms.iter().map(|m| f(m)).sum()
}

// ---------------------------------------------------------------------------
// Real programs

/// node (ET_EXEC, 27 MiB of text) through the launcher and as a
/// PT_INTERP-patched copy: at least 12 text blocks `FilePmdMapped`, no
/// copy under its text.
#[test]
fn node_text_comes_from_the_page_cache() {
    let dir = scratch_dir("pc-node");
    let node = or_skip!(node_copy(&dir));
    let wait = ["-e", "require('fs').readFileSync(0)"];

    let i = inspect(hl(&["-v"], &node, &wait), &node, Ready::StdinRead);
    assert_eq!(i.run.code(&i.what), 0, "{}", i.dump());
    let used = check_huge(&i, "conservative");
    assert_from_page_cache(&i, used, 12);

    let patched = dir.join("node-pt");
    let _ = fs::remove_file(&patched);
    or_skip!(copy_with_interp(&node, &patched, &short_hugeload()));
    let mut cmd = command(&patched);
    cmd.args(wait).env("HUGELOAD_VERBOSE", "1");
    let i = inspect(cmd, &patched, Ready::StdinRead);
    assert_eq!(i.run.code(&i.what), 0, "{}", i.dump());
    assert!(
        i.stderr().contains("(hugeload as PT_INTERP)"),
        "{}",
        i.dump()
    );
    let used = check_huge_placed(&i, "conservative", Placed::ByKernel);
    assert_from_page_cache(&i, used, 12);
}

/// gdb (a PIE): the launcher places it so its text is congruent with its
/// file offsets, and PT_INTERP mode moves the kernel's placement to such a
/// base before it runs: 2 blocks from the page cache either way.
#[test]
fn gdb_pie_is_placed_for_the_page_cache_in_both_modes() {
    let gdb = canonical(&or_skip!(need_tool("gdb")));
    let dir = scratch_dir("pc-gdb");
    let copy = fresh_copy(&gdb, &dir, "gdb");
    let args = ["-q", "-nx", "-batch"];

    let mut cmd = hl(&["-v"], &copy, &args);
    or_skip!(hold_at_start(&mut cmd));
    let i = inspect(cmd, &copy, Ready::StdinRead);
    assert_eq!(i.run.code(&i.what), 0, "{}", i.dump());
    let used = check_huge(&i, "conservative");
    assert_from_page_cache(&i, used, 2);

    let patched = dir.join("gdb-pt");
    let _ = fs::remove_file(&patched);
    or_skip!(copy_with_interp(&copy, &patched, &short_hugeload()));
    let mut cmd = command(&patched);
    cmd.args(args).env("HUGELOAD_VERBOSE", "1");
    or_skip!(hold_at_start(&mut cmd));
    let i = inspect(cmd, &patched, Ready::StdinRead);
    assert_eq!(i.run.code(&i.what), 0, "{}", i.dump());
    assert_eq!(
        i.bias % HUGE,
        i.elf.congruent_phase().unwrap(),
        "PT_INTERP did not move the PIE to a congruent base\n{}",
        i.dump()
    );
    let used = check_huge_placed(&i, "conservative", Placed::ByKernel);
    assert_from_page_cache(&i, used, 2);
}

/// Ten nodes started through hugeload at once share one copy of the text:
/// in each, the text's huge blocks hold no private memory (no anonymous,
/// dirty or private page), and their Pss over the ten adds up to one copy.
#[test]
fn ten_nodes_share_one_copy_of_their_text() {
    let dir = scratch_dir("pc-ten");
    let node = or_skip!(node_copy(&dir));
    let mut children: Vec<Running> = (0..10)
        .map(|_| {
            Running::start(hl(
                &[] as &[&str],
                &node,
                &["-e", "require('fs').readFileSync(0)"],
            ))
        })
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    for c in children.iter_mut() {
        while !c.is_blocked_reading_stdin() {
            if Instant::now() > deadline {
                c.fail("not blocked reading stdin in time");
            }
            if c.try_wait().is_some() {
                c.fail("exited before it was ready");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut pss_huge = 0;
    let mut one_copy = 0;
    for c in children.iter_mut() {
        let maps = smaps_mem(c.pid());
        let code = code_of(&maps, &node);
        let huge: Vec<&Mem> = code.iter().copied().filter(|m| m.file_pmd > 0).collect();
        let what = format!("node {}: {:#?}", c.pid(), code);
        assert!(
            sum(&huge, |m| m.file_pmd) >= 12 * HUGE,
            "fewer than 12 blocks: {what}"
        );
        assert_eq!(
            sum(&code, |m| m.anonymous + m.anon_huge + m.hugetlb),
            0,
            "{what}"
        );
        assert_eq!(
            sum(&huge, |m| m.private_clean + m.private_dirty),
            0,
            "{what}"
        );
        pss_huge += sum(&huge, |m| m.pss);
        one_copy = one_copy.max(sum(&huge, |m| m.file_pmd));
    }
    for mut c in children {
        c.close_stdin();
        let r = c.finish();
        assert_eq!(r.code("node"), 0);
    }
    assert!(
        pss_huge.abs_diff(one_copy) <= one_copy / 10,
        "Pss of the huge text over ten processes {pss_huge} is not one copy ({one_copy})"
    );
}

/// rustc's librustc_driver, whose second code segment is 2 MiB-aligned
/// (congruent): once ld.so has mapped it, hugeload maps that segment's
/// blocks from the page cache (a copy of the toolchain: priming drops
/// cache pages).
#[test]
fn rustc_library_comes_from_the_page_cache() {
    let Some((rustc, driver)) = rustc_copy("pc-rustc") else {
        return;
    };
    // cargo puts the toolchain's lib/ in LD_LIBRARY_PATH, which ld.so (and
    // so hugeload) searches before rustc's RUNPATH: not here.
    let mut cmd = hl(&["-v"], &rustc, &["-", "-o", "/dev/null"]);
    cmd.env_remove("LD_LIBRARY_PATH");
    let i = inspect(cmd, &rustc, Ready::StdinRead);
    let got = driver_line(&i, " x 2M pagecache");
    assert!(!got.contains("on 4 KiB pages"), "{got}");
    assert_driver_pmd_mapped(&i, &driver);
}

/// Under MDWE hugeload cannot hook ld.so, so it primes the libraries
/// before ld.so maps them (found as ld.so finds them, $ORIGIN/../lib):
/// librustc_driver's congruent blocks still come from the page cache, by
/// ld.so's own mapping.
#[test]
fn rustc_library_is_primed_before_ld_so_without_the_hook() {
    let Some((rustc, driver)) = rustc_copy("pc-rustc-mdwe") else {
        return;
    };
    let wrap = match fixture("hostile_wrap") {
        Ok(w) => w,
        Err(Skip(why)) => return skip(&why),
    };
    let mut cmd = command(&wrap);
    cmd.args(["mdwe", "--", &hugeload().to_string_lossy(), "-vv"])
        .arg(&rustc)
        .args(["-", "-o", "/dev/null"])
        .env_remove("LD_LIBRARY_PATH");
    let i = inspect(cmd, &rustc, Ready::StdinRead);
    let primed = driver_line(&i, " before ld.so: ");
    assert!(primed.contains(" 0 small"), "{primed}");
    assert!(
        i.stderr().contains("libraries: left as ld.so maps them"),
        "{}",
        i.dump()
    );
    assert_driver_pmd_mapped(&i, &driver);
}

/// A copy of the toolchain's rustc and its two big libraries in a scratch
/// directory; `None` (skipped) without a toolchain.
fn rustc_copy(tag: &str) -> Option<(PathBuf, PathBuf)> {
    let mut c = Command::new("rustc");
    c.args(["--print", "sysroot"]);
    let r = run(c);
    if !r.success() {
        skip("rustc --print sysroot failed");
        return None;
    }
    let sysroot = PathBuf::from(r.stdout_str().trim());
    let dir = scratch_dir(tag);
    let rustc = fresh_copy(&sysroot.join("bin/rustc"), &dir.join("bin"), "rustc");
    set_mode(&rustc, 0o755);
    let mut driver = None;
    for e in fs::read_dir(sysroot.join("lib")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let real = e.file_type().is_ok_and(|t| t.is_file());
        if real && (name.starts_with("librustc_driver") || name.starts_with("libLLVM.so")) {
            let copy = fresh_copy(&e.path(), &dir.join("lib"), &name);
            if name.starts_with("librustc_driver") {
                driver = Some(copy);
            }
        }
    }
    Some((rustc, driver.expect("no librustc_driver in the toolchain")))
}

/// The `-v` line about librustc_driver that contains `what`.
fn driver_line(i: &Inspection, what: &str) -> String {
    i.stderr()
        .lines()
        .find(|l| {
            l.starts_with("hugeload: library ") && l.contains("librustc_driver") && l.contains(what)
        })
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no report of librustc_driver {what}\n{}", i.dump()))
}

/// At least two of librustc_driver's blocks are PMD-mapped from the file.
fn assert_driver_pmd_mapped(i: &Inspection, driver: &Path) {
    let code = code_of(
        &i.maps.iter().map(map_mem).collect::<Vec<_>>(),
        &canonical(driver),
    )
    .into_iter()
    .map(|m| m.file_pmd)
    .sum::<u64>();
    assert!(
        code >= 2 * HUGE,
        "librustc_driver: {code} bytes FilePmdMapped\n{}",
        i.dump()
    );
}

fn map_mem(m: &Map) -> Mem {
    Mem {
        perms: m.perms.clone(),
        name: m.name.clone(),
        file_pmd: m.file_pmd_bytes,
        anon_huge: m.anon_huge_bytes,
        hugetlb: m.hugetlb_bytes,
        ..Mem::default()
    }
}

/// A JDK whose java launcher, libjli and libjvm are copies and the rest
/// links to the system's: the launcher finds libjvm next to its own real
/// path.
fn jdk_mirror(dir: &Path) -> Result<PathBuf, Skip> {
    let java = canonical(&need_tool("java")?);
    let home = java
        .parent()
        .and_then(|b| b.parent())
        .unwrap()
        .to_path_buf();
    let libjvm = home.join("lib/server/libjvm.so");
    if !libjvm.exists() {
        return Err(Skip(format!("no {}", libjvm.display())));
    }
    let mirror = dir.join("jdk");
    let _ = fs::remove_dir_all(&mirror);
    fn walk(from: &Path, to: &Path, copied: &[&str], home: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap().flatten() {
            let (src, dst) = (e.path(), to.join(e.file_name()));
            let rel = src
                .strip_prefix(home)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(&src, &dst, copied, home);
            } else if copied.contains(&rel.as_str()) {
                fs::copy(&src, &dst).unwrap();
            } else {
                std::os::unix::fs::symlink(&src, &dst).unwrap();
            }
        }
    }
    walk(
        &home,
        &mirror,
        &["bin/java", "lib/libjli.so", "lib/server/libjvm.so"],
        &home,
    );
    Ok(mirror)
}

/// `hugeload --prime` of a copy of libjvm.so, then a plain `java` run (no
/// hugeload): libjvm's code is PMD-mapped from the primed page cache, as
/// ld.so maps it (dlopen, 2 MiB-aligned).
#[test]
fn primed_libjvm_serves_a_plain_java_run() {
    let dir = scratch_dir("pc-java");
    let jdk = or_skip!(jdk_mirror(&dir));
    let libjvm = jdk.join("lib/server/libjvm.so");
    let r = run(hl(&["--prime"], &libjvm, &[] as &[&str]));
    assert_eq!(r.code("--prime libjvm"), 0, "{}", r.stderr_str());
    let out = r.stdout_str();
    assert!(out.contains(" 0 small") && out.contains(" primed"), "{out}");
    let src = dir.join("Wait.java");
    fs::write(
        &src,
        "public class Wait { public static void main(String[] a) throws Exception {\n\
         System.out.println(\"ready\"); System.in.read(); } }\n",
    )
    .unwrap();
    let mut cmd = command(jdk.join("bin/java"));
    cmd.arg("-Xshare:off").arg(&src);
    let mut child = Running::start(cmd);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if Instant::now() > deadline {
            child.fail("no `ready`");
        }
        if let Ok(l) = child.next_line(Duration::from_millis(50)) {
            if l == "ready" {
                break;
            }
        }
        if child.try_wait().is_some() {
            child.fail("java exited before `ready`");
        }
    }
    let maps = smaps_mem(child.pid());
    let code = code_of(&maps, &libjvm);
    child.close_stdin();
    let r = child.finish();
    assert_eq!(r.code("java Wait"), 0, "{}", r.stderr_str());
    assert!(
        sum(&code, |m| m.file_pmd) >= 2 * HUGE,
        "libjvm.so not PMD-mapped in a plain java run: {code:#?}"
    );
}

/// A program primed with `--prime` gets its congruent text on 2 MiB pages
/// when run directly, without hugeload (node: fixed addresses, congruent).
#[test]
fn primed_program_runs_directly_on_2m_pages() {
    let dir = scratch_dir("pc-direct");
    let node = or_skip!(node_copy(&dir));
    let r = run(hl(&["--prime", "--json"], &node, &[] as &[&str]));
    assert_eq!(r.code("--prime"), 0, "{}", r.stderr_str());
    assert!(r.stdout_str().contains("\"small\":0"), "{}", r.stdout_str());
    let mut cmd = command(&node);
    cmd.args(["-e", "require('fs').readFileSync(0)"]);
    let mut child = Running::start(cmd);
    let deadline = Instant::now() + TIMEOUT;
    while !child.is_blocked_reading_stdin() {
        if Instant::now() > deadline {
            child.fail("not ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = code_of(&smaps_mem(child.pid()), &node)
        .into_iter()
        .map(|m| m.file_pmd)
        .sum::<u64>();
    child.close_stdin();
    child.finish();
    assert!(
        code >= 8 * HUGE,
        "a direct run of a primed node: {code} bytes FilePmdMapped"
    );
}

// ---------------------------------------------------------------------------
// Fallbacks

/// `-v` for `prog` run through hugeload with `opts`: the report.
fn verbose_run(opts: &[&str], prog: &Path, args: &[&str]) -> (Run, Report) {
    let mut all = vec!["-v"];
    all.extend_from_slice(opts);
    let r = run(hl(&all, prog, args));
    let report = parse_report(&r.stderr_str());
    (r, report)
}

/// A binary whose cached pages another process keeps mapped in small
/// folios cannot be primed: it gets copies, and `-v` says why.
#[test]
fn cached_small_and_mapped_by_another_process_gets_a_copy() {
    let prog = or_skip!(fixture("view-16"));
    let python = or_skip!(need_tool("python3"));
    let dir = scratch_dir("pc-mapped");
    let copy = fresh_copy(&prog, &dir, "view");
    let mut holder = Command::new(python);
    holder.arg("-c").arg(
        "import mmap,sys\n\
         f=open(sys.argv[1],'rb'); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\n\
         s=sum(m[i] for i in range(0,len(m),4096)); print('ready',flush=True)\n\
         sys.stdin.read()\n",
    );
    holder.arg(&copy);
    let mut holder = Running::start(holder);
    let line = holder.next_line(TIMEOUT).unwrap_or_default();
    assert_eq!(line, "ready");
    let (r, report) = verbose_run(&["-b", "auto"], &copy, &["sum"]);
    holder.close_stdin();
    holder.finish();
    let stderr = r.stderr_str();
    assert_eq!(r.code("view sum"), 0, "{stderr}");
    assert!(!report.huge.is_empty(), "{stderr}");
    for h in &report.huge {
        assert_ne!(h.backend, "pagecache", "{stderr}");
    }
    assert!(
        stderr.contains("not from the page cache: the page cache holds it in small folios"),
        "{stderr}"
    );
}

/// A loop-mounted image of `fs` holding a fresh copy of a fixture; unmounted
/// and removed when dropped.
struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    fn new(fs_type: &str, size_mb: u64) -> Result<Mounted, Skip> {
        need_root("loop-mount a filesystem image")?;
        let mkfs = need_tool(&format!("mkfs.{fs_type}"))?;
        let dir = scratch_dir(&format!("pc-{fs_type}"));
        let image = dir.join("image");
        let mnt = dir.join("mnt");
        let _ = Command::new("umount").arg(&mnt).status();
        fs::create_dir_all(&mnt).unwrap();
        let f = fs::File::create(&image).unwrap();
        f.set_len(size_mb << 20).unwrap();
        let mut c = Command::new(mkfs);
        c.arg("-q").arg(&image);
        if fs_type == "btrfs" {
            c.arg("-f");
        }
        let r = run(c);
        if !r.success() {
            return Err(Skip(format!("mkfs.{fs_type}: {}", r.stderr_str())));
        }
        let mut m = Command::new("mount");
        m.args(["-o", "loop"]).arg(&image).arg(&mnt);
        let r = run(m);
        if !r.success() {
            return Err(Skip(format!("mount {fs_type} image: {}", r.stderr_str())));
        }
        Ok(Mounted { dir: mnt })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// XFS has large folios: the page cache serves.
#[test]
fn xfs_image_is_served_by_the_page_cache() {
    let prog = or_skip!(fixture("view-16"));
    let mnt = or_skip!(Mounted::new("xfs", 320));
    let copy = fresh_copy(&prog, &mnt.dir, "view");
    let (r, report) = verbose_run(&[], &copy, &["sum"]);
    let stderr = r.stderr_str();
    assert_eq!(r.code("view sum on XFS"), 0, "{stderr}");
    assert!(!report.huge.is_empty(), "{stderr}");
    assert!(
        report.huge.iter().all(|h| h.backend == "pagecache"),
        "{stderr}"
    );
}

/// btrfs gives no 2 MiB folios here: copies, with the reason.
#[test]
fn btrfs_image_gets_copies() {
    let prog = or_skip!(fixture("view-16"));
    let mnt = or_skip!(Mounted::new("btrfs", 200));
    let copy = fresh_copy(&prog, &mnt.dir, "view");
    let (r, report) = verbose_run(&[], &copy, &["sum"]);
    let stderr = r.stderr_str();
    assert_eq!(r.code("view sum on btrfs"), 0, "{stderr}");
    assert!(!report.huge.is_empty(), "{stderr}");
    assert!(
        report.huge.iter().all(|h| h.backend != "pagecache"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not from the page cache: the page cache holds it in small folios"),
        "{stderr}"
    );
    // Only the page cache asked for: 4 KiB pages, the reason, same result.
    let (r, report) = verbose_run(&["-b", "pagecache"], &copy, &["sum"]);
    assert_eq!(r.code("view sum -b pagecache on btrfs"), 0);
    assert!(report.huge.is_empty(), "{}", r.stderr_str());
    assert!(
        r.stderr_str()
            .contains("pagecache: the page cache holds it in small folios")
    );
}

/// A process with THP disabled (PR_SET_THP_DISABLE) gets no page-cache
/// mapping: the reason under `-v`, 4 KiB pages, same output.
#[test]
fn thp_disabled_process_gets_no_page_cache() {
    let wrapper = or_skip!(fixture("thp_off"));
    let prog = or_skip!(fixture("view-16"));
    let mut cmd = command(&wrapper);
    cmd.arg(hugeload())
        .args(["-v", "-b", "pagecache"])
        .arg(&prog)
        .arg("sum");
    let r = run(cmd);
    let stderr = r.stderr_str();
    assert_eq!(
        r.code("thp_off hugeload -b pagecache view sum"),
        0,
        "{stderr}"
    );
    assert!(parse_report(&stderr).huge.is_empty(), "{stderr}");
    assert!(
        stderr.contains("pagecache: disabled for this process (PR_SET_THP_DISABLE)"),
        "{stderr}"
    );
    let mut direct = command(&prog);
    direct.arg("sum");
    assert_eq!(run(direct).stdout_str(), r.stdout_str());
}

/// A seccomp filter that refuses madvise and fadvise: no page cache (it
/// needs MADV_HUGEPAGE), no THP; hugetlb copies still serve, `-v` says
/// why, the output is the direct run's.
#[test]
fn seccomp_refusing_advice_leaves_the_copies() {
    let wrap = or_skip!(fixture("hostile_wrap"));
    let prog = or_skip!(fixture("view-16"));
    let _pool = pool_shared();
    or_skip!(ensure_hugetlb_pool(16));
    let mut cmd = command(&wrap);
    cmd.args(["seccomp-advice", "--"])
        .arg(hugeload())
        .arg("-v")
        .arg(&prog)
        .arg("sum");
    let r = run(cmd);
    let stderr = r.stderr_str();
    assert_eq!(r.code("seccomp-advice hugeload view sum"), 0, "{stderr}");
    let mut direct = command(&prog);
    direct.arg("sum");
    assert_eq!(run(direct).stdout_str(), r.stdout_str());
    let report = parse_report(&stderr);
    for h in &report.huge {
        assert_eq!(h.backend, "hugetlb", "{stderr}");
    }
    assert!(
        stderr.contains("not from the page cache: madvise(MADV_HUGEPAGE, MADV_POPULATE_READ): Operation not permitted")
            || report.huge.is_empty(),
        "{stderr}"
    );
    assert!(
        !report.huge.is_empty() || !report.fallback.is_empty(),
        "{stderr}"
    );
}

/// What reclaim takes from under a running program comes back in 2 MiB
/// folios: the program pages its text out (MADV_PAGEOUT) and touches it
/// again; `FilePmdMapped` before, after the pageout, after the touch.
#[test]
fn reclaimed_text_comes_back_on_2m_pages() {
    let prog = or_skip!(fixture("reclaim"));
    let dir = scratch_dir("pc-reclaim");
    let copy = fresh_copy(&prog, &dir, "reclaim");
    let r = run(hl(&[] as &[&str], &copy, &[] as &[&str]));
    assert_eq!(r.code("reclaim"), 0, "{}", r.stderr_str());
    let out = r.stdout_str();
    let n: Vec<u64> = out
        .trim()
        .strip_prefix("PMD ")
        .unwrap_or_else(|| panic!("{out}"))
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(n[0] >= 4096, "before: {out}");
    assert!(n[1] < n[0], "MADV_PAGEOUT took nothing: {out}");
    assert_eq!(
        n[2], n[0],
        "the text did not come back on 2 MiB pages: {out}"
    );
}

// ---------------------------------------------------------------------------
// --prime, --lock

/// `--prime` over a directory: ELF files primed, other files skipped; a
/// missing path, a non-ELF file named, a file open for writing: one line
/// each, the rest still primed, exit status 1. `--check` drops nothing.
#[test]
fn prime_reports_each_failure_and_primes_the_rest() {
    let prog = or_skip!(fixture("view-16"));
    let dir = scratch_dir("pc-prime");
    let _ = fs::remove_dir_all(&dir);
    let tree = dir.join("tree");
    let elf = fresh_copy(&prog, &tree.join("sub"), "view");
    fs::write(tree.join("notes.txt"), "not an ELF file\n").unwrap();
    let text = dir.join("text");
    fs::write(&text, "hello\n").unwrap();

    // --check reads no code: on a copy whose cache was dropped, its blocks
    // are "not cached" and stay so (fincore counts resident bytes).
    let python = or_skip!(need_tool("python3"));
    let mut drop = Command::new(&python);
    drop.arg("-c")
        .arg("import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)")
        .arg(&elf);
    assert!(run(drop).success());
    let resident = || {
        let mut c = Command::new("fincore");
        c.args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(&elf);
        run(c)
            .stdout_str()
            .trim()
            .parse::<u64>()
            .unwrap_or(u64::MAX)
    };
    let before = resident();
    let r = run(hl(&["--prime", "--check", "--json"], &elf, &[] as &[&str]));
    assert_eq!(r.code("--prime --check"), 0, "{}", r.stderr_str());
    assert!(
        !r.stdout_str().contains("\"not_cached\":0"),
        "{}",
        r.stdout_str()
    );
    // It reads the ELF headers, nothing of the code.
    let after = resident();
    assert!(
        after < before + 256 * 1024,
        "--check read the file: {before} -> {after} bytes cached"
    );

    // --check on a fresh copy: cached small, nothing dropped.
    let elf = fresh_copy(&prog, &tree.join("sub"), "view");
    for _ in 0..2 {
        let r = run(hl(&["--prime", "--check", "--json"], &elf, &[] as &[&str]));
        assert_eq!(r.code("--prime --check"), 0, "{}", r.stderr_str());
        assert!(
            !r.stdout_str().contains("\"small\":0"),
            "{}",
            r.stdout_str()
        );
    }

    let held = dir.join("held");
    fs::copy(&prog, &held).unwrap();
    let mut writer = Command::new(python);
    writer
        .arg("-c")
        .arg("import sys; f=open(sys.argv[1],'r+b'); print('ready',flush=True); sys.stdin.read()")
        .arg(&held);
    let mut writer = Running::start(writer);
    assert_eq!(writer.next_line(TIMEOUT).unwrap_or_default(), "ready");
    let mut cmd = hl_command(&["--prime"]);
    cmd.arg(&tree)
        .arg("/nonexistent/hugeload-test")
        .arg(&text)
        .arg(&held);
    let r = run(cmd);
    writer.close_stdin();
    writer.finish();
    let (out, err) = (r.stdout_str(), r.stderr_str());
    assert_eq!(r.code("--prime"), 1, "{out}\n{err}");
    assert!(
        out.contains(&format!("{}: ", elf.display())) && out.contains(" 0 small"),
        "{out}"
    );
    assert!(
        !out.contains("notes.txt") && !err.contains("notes.txt"),
        "{out}\n{err}"
    );
    let line = |path: &str, reason: &str| {
        assert!(
            err.lines()
                .any(|l| l == format!("hugeload: {path}: {reason}")),
            "no `{path}: {reason}` line in:\n{err}"
        )
    };
    line("/nonexistent/hugeload-test", "No such file or directory");
    line(&text.to_string_lossy(), "not an ELF file");
    line(&held.to_string_lossy(), "Text file busy");
    assert_eq!(err.lines().count(), 3, "{err}");

    // An unreadable directory, for an ordinary user.
    if is_root() {
        let locked = tree.join("locked");
        fs::create_dir_all(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        for p in [&dir, &tree, &tree.join("sub")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        set_mode(&elf, 0o644);
        let mut cmd = Command::new(or_skip!(need_tool("setpriv")));
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(hugeload())
            .arg("--prime")
            .arg(&tree);
        let r = run(cmd);
        assert_eq!(r.code("setpriv --prime"), 1, "{}", r.stderr_str());
        assert!(
            r.stderr_str().contains(&format!(
                "hugeload: {}: Permission denied",
                locked.display()
            )),
            "{}",
            r.stderr_str()
        );
        assert!(
            r.stdout_str().contains(&format!("{}: ", elf.display())),
            "{}",
            r.stdout_str()
        );
    }
}

/// `--lock`: the program's code locked (VmLck at least its text); with a
/// small RLIMIT_MEMLOCK as an ordinary user, one line and the program
/// still runs.
#[test]
fn lock_keeps_the_code_resident() {
    let prog = or_skip!(fixture("view-16"));
    let dir = scratch_dir("pc-lock");
    let copy = fresh_copy(&prog, &dir, "view");
    set_mode(&copy, 0o755);
    let mut cmd = hl(&["--lock"], &copy, &["hold"]);
    cmd.env_remove("HUGELOAD_LOCK");
    let mut child = Running::start(cmd);
    let deadline = Instant::now() + TIMEOUT;
    let locked = loop {
        let status =
            fs::read_to_string(format!("/proc/{}/status", child.pid())).unwrap_or_default();
        let lck = status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or(0);
        if lck > 0 && child.is_blocked_reading_stdin() {
            break lck * 1024;
        }
        if Instant::now() > deadline {
            child.fail("no VmLck");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.close_stdin();
    child.finish();
    assert!(
        locked >= 16 << 20,
        "VmLck {locked} below the 16 MiB of text"
    );

    if is_root() {
        let mut cmd = Command::new(or_skip!(need_tool("setpriv")));
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg("ulimit -l 64 && exec \"$0\" --lock \"$1\" sum")
        .arg(hugeload())
        .arg(&copy);
        clear_hugeload_env(&mut cmd);
        let r = run(cmd);
        assert_eq!(r.code("--lock as nobody"), 0, "{}", r.stderr_str());
        let err = r.stderr_str();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("hugeload: --lock: ") && err.contains("RLIMIT_MEMLOCK"),
            "{err}"
        );
    }
}
