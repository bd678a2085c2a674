//! Which shared libraries a program loads at start-up, found the way its
//! ld.so finds them, so that hugeload can prime their text before entering
//! ld.so. Pure: the shell opens the candidates this module names, in order,
//! and hands back the dynamic section of the one it found.
//!
//! Three layers: [`DynInfo`] (the facts of one dynamic section), [`search`]
//! (the candidate paths for one DT_NEEDED name, glibc's or musl's order) and
//! [`Closure`] (the breadth-first walk over the DT_NEEDED graph that both
//! ld.so's do).
//!
//! Left out, and why: glibc-hwcaps and legacy hwcap subdirectories (the
//! baseline directory is tried, see [`crate::ldcache`]); LD_PRELOAD, audit
//! modules and `--inhibit-rpath` (not start-up DT_NEEDED); glibc's memory of
//! directories that do not exist and of directories already in a list (it
//! only saves open calls); the file identity check (the shell can compare
//! inodes; here a path already loaded counts as the same object).

use crate::ldcache::LdCache;
use goblin::elf::dynamic::{
    DF_1_NODEFLIB, DT_FLAGS_1, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB,
};
use heapless::Vec;

/// Size of the candidate buffer: Linux's PATH_MAX, the NUL included, so a
/// candidate is at most `PATH_MAX - 1` bytes. Longer ones are skipped.
pub const PATH_MAX: usize = 4096;
/// Most DT_NEEDED entries of one object kept by [`DynInfo::parse`].
pub const MAX_NEEDED: usize = 128;
/// musl's `load_library` formats candidates into `char buf[2*NAME_MAX+2]`
/// and skips what does not fit, and never searches for longer names.
const MUSL_MAX: usize = 2 * NAME_MAX + 1;
const NAME_MAX: usize = 255;

/// Debian x86-64 glibc's `SYSTEM_DIRS` (what `ld.so --help` lists as the
/// system search path), each ending in `/` as glibc stores them.
pub const DEBIAN_X86_64_DIRS: &[&[u8]] = &[
    b"/lib/x86_64-linux-gnu/",
    b"/usr/lib/x86_64-linux-gnu/",
    b"/lib/",
    b"/usr/lib/",
];
/// Debian aarch64 glibc's `SYSTEM_DIRS`, by analogy with x86-64 (unverified).
pub const DEBIAN_AARCH64_DIRS: &[&[u8]] = &[
    b"/lib/aarch64-linux-gnu/",
    b"/usr/lib/aarch64-linux-gnu/",
    b"/lib/",
    b"/usr/lib/",
];
/// What `$LIB` expands to in Debian x86-64 glibc (`DL_DST_LIB`; checked with
/// `LD_DEBUG=libs`).
pub const DEBIAN_X86_64_LIB: &[u8] = b"lib/x86_64-linux-gnu";
/// musl's system path when `/etc/ld-musl-ARCH.path` does not exist.
pub const MUSL_DEFAULT_PATH: &[u8] = b"/lib:/usr/local/lib:/usr/lib";

/// The facts of one dynamic section that decide where its needs are found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynInfo<'a> {
    /// DT_NEEDED names, in order.
    pub needed: Vec<&'a [u8], MAX_NEEDED>,
    pub soname: Option<&'a [u8]>,
    pub rpath: Option<&'a [u8]>,
    pub runpath: Option<&'a [u8]>,
    /// DT_FLAGS_1 has DF_1_NODEFLIB: no ld.so.cache, no default directories.
    pub nodeflib: bool,
    /// A string was outside the table, or there were over MAX_NEEDED needs.
    pub incomplete: bool,
}

/// `(DT_STRTAB address, DT_STRSZ)` of a dynamic section's `(tag, value)`
/// pairs (see [`crate::elf::dynamic_entries`]): where to read the string
/// table that [`DynInfo::parse`] takes.
pub fn strtab_location(entries: impl IntoIterator<Item = (u64, u64)>) -> Option<(u64, u64)> {
    let (mut addr, mut size) = (None, None);
    for (tag, value) in entries {
        match tag {
            DT_STRTAB => addr = Some(value),
            DT_STRSZ => size = Some(value),
            _ => {}
        }
    }
    Some((addr?, size?))
}

/// The NUL-terminated string at `off` of the string table `strtab`.
fn string(strtab: &[u8], off: u64) -> Option<&[u8]> {
    let s = strtab.get(usize::try_from(off).ok()?..)?;
    s.get(..s.iter().position(|&c| c == 0)?)
}

impl<'a> DynInfo<'a> {
    /// The facts of the `(tag, value)` pairs `entries`, whose strings are in
    /// `strtab` (DT_STRSZ bytes from DT_STRTAB). A later DT_SONAME, DT_RPATH,
    /// DT_RUNPATH or DT_FLAGS_1 replaces an earlier one, as in glibc's
    /// `get_dynamic_info` and musl's `decode_vec`.
    pub fn parse(entries: impl IntoIterator<Item = (u64, u64)>, strtab: &'a [u8]) -> DynInfo<'a> {
        let mut info = DynInfo::default();
        for (tag, value) in entries {
            let s = || string(strtab, value);
            let slot = match tag {
                DT_NEEDED => {
                    let pushed = s().and_then(|s| info.needed.push(s).ok());
                    info.incomplete |= pushed.is_none();
                    continue;
                }
                DT_FLAGS_1 => {
                    info.nodeflib = value & DF_1_NODEFLIB != 0;
                    continue;
                }
                DT_SONAME => &mut info.soname,
                DT_RPATH => &mut info.rpath,
                DT_RUNPATH => &mut info.runpath,
                _ => continue,
            };
            *slot = s();
            info.incomplete |= slot.is_none();
        }
        info
    }

    /// The object these facts describe, opened at `path`.
    pub fn object(&self, path: &'a [u8], main: bool) -> Object<'a> {
        Object {
            path,
            rpath: self.rpath,
            runpath: self.runpath,
            nodeflib: self.nodeflib,
            main,
        }
    }
}

/// A loaded object, as the search sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Object<'a> {
    /// Where it was opened; its directory is `$ORIGIN`. For the main program
    /// both ld.so's read `/proc/self/exe`, so give the canonical path.
    pub path: &'a [u8],
    pub rpath: Option<&'a [u8]>,
    pub runpath: Option<&'a [u8]>,
    pub nodeflib: bool,
    /// The main program (its `$ORIGIN` is less trusted in secure mode).
    pub main: bool,
}

/// Everything besides the objects that decides the search.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    pub libc: Libc<'a>,
    /// LD_LIBRARY_PATH, if set.
    pub library_path: Option<&'a [u8]>,
    /// AT_SECURE: set-user-ID and the like.
    pub secure: bool,
}

/// Which ld.so, with its own data.
#[derive(Clone, Copy, Debug)]
pub enum Libc<'a> {
    Glibc(Glibc<'a>),
    Musl {
        /// The contents of `/etc/ld-musl-ARCH.path`, `None` if it does not
        /// exist (then [`MUSL_DEFAULT_PATH`]).
        system_path: Option<&'a [u8]>,
    },
}

/// glibc's data for the search.
#[derive(Clone, Copy, Debug)]
pub struct Glibc<'a> {
    /// `/etc/ld.so.cache`, if it exists and is valid.
    pub cache: Option<LdCache<'a>>,
    /// `SYSTEM_DIRS`, each ending in `/`, e.g. [`DEBIAN_X86_64_DIRS`].
    pub system_dirs: &'a [&'a [u8]],
    /// What `$LIB` expands to, e.g. [`DEBIAN_X86_64_LIB`].
    pub lib: &'a [u8],
    /// What `$PLATFORM` expands to (AT_PLATFORM, or e.g. `haswell` as glibc
    /// picks on x86); empty if unknown: entries using it are dropped.
    pub platform: &'a [u8],
}

/// Where candidate paths are written. `Vec<u8>` is one too, for the names
/// [`Closure`] stores.
trait Put {
    fn put(&mut self, s: &[u8]) -> Option<()>;
}

impl<const B: usize> Put for Vec<u8, B> {
    fn put(&mut self, s: &[u8]) -> Option<()> {
        self.extend_from_slice(s).ok()
    }
}

/// The candidate being built in the caller's buffer, and whom to offer it.
struct Cands<'b, F> {
    buf: &'b mut [u8; PATH_MAX],
    len: usize,
    limit: usize,
    try_path: F,
}

impl<F> Put for Cands<'_, F> {
    fn put(&mut self, s: &[u8]) -> Option<()> {
        let end = self.len.checked_add(s.len()).filter(|&e| e <= self.limit)?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(s);
        self.len = end;
        Some(())
    }
}

impl<F: FnMut(&[u8]) -> bool> Cands<'_, F> {
    fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
    /// Offers `dir` joined to `name` (already written when `dir` is None).
    fn offer(&mut self, dir: Option<&[u8]>, name: &[u8]) -> bool {
        if let Some(dir) = dir {
            self.len = 0;
            if self.put(dir).is_none() {
                return false;
            }
        }
        self.put(name).is_some() && (self.try_path)(self.buf.get(..self.len).unwrap_or_default())
    }
}

/// The candidate paths for the DT_NEEDED `name` of `chain`'s first object
/// (the loader), then its loader, and so on up to the main program, in the
/// order `env`'s ld.so tries them. Each is written into `buf` and offered to
/// `try_path`, which returns true to stop the search there: glibc goes on
/// past a file whose ELF header does not suit the machine (`open_verify`),
/// musl takes the first file that opens. Returns the path found.
///
/// `name` must already have its DSTs expanded, as [`Closure`] does (glibc's
/// `expand_dst` in elf/dl-deps.c); a name with a `/` is tried as it is.
pub fn search<'a, 'b>(
    name: &[u8],
    chain: impl Iterator<Item = Object<'a>> + Clone,
    env: &Env,
    buf: &'b mut [u8; PATH_MAX],
    try_path: impl FnMut(&[u8]) -> bool,
) -> Option<&'b [u8]> {
    let mut c = Cands {
        buf,
        len: 0,
        limit: PATH_MAX - 1,
        try_path,
    };
    let found = if name.is_empty() {
        false
    } else if name.contains(&b'/') {
        c.offer(None, name)
    } else {
        match env.libc {
            Libc::Glibc(g) => glibc_search(&mut c, name, chain, env, &g),
            Libc::Musl { system_path } => {
                c.limit = MUSL_MAX;
                musl_search(&mut c, name, chain, env, system_path)
            }
        }
    };
    let Cands { buf, len, .. } = c;
    let buf: &'b [u8; PATH_MAX] = buf;
    buf.get(..len).filter(|_| found)
}

/// `_dl_map_new_object` (elf/dl-load.c) for a name without `/`.
fn glibc_search<'a, F: FnMut(&[u8]) -> bool>(
    c: &mut Cands<F>,
    name: &[u8],
    chain: impl Iterator<Item = Object<'a>> + Clone,
    env: &Env,
    g: &Glibc,
) -> bool {
    let loader = chain.clone().next();
    let list = |c: &mut Cands<F>, paths: &[u8], seps: &[u8], o: &Object| {
        glibc_list(c, paths, seps, name, o, g, env.secure)
    };
    // DT_RPATH of the loader and of its loaders, unless the loader has a
    // DT_RUNPATH; an object with both has no DT_RPATH (`get_dynamic_info`).
    if loader.is_none_or(|l| l.runpath.is_none())
        && chain
            .clone()
            .any(|o| o.runpath.is_none() && o.rpath.is_some_and(|p| list(c, p, b":", &o)))
    {
        return true;
    }
    // LD_LIBRARY_PATH, whose `$ORIGIN` is the main program's; ld.so unsets
    // it for secure programs (UNSECURE_ENVVARS).
    if let (false, Some(paths)) = (env.secure, env.library_path) {
        let main = chain.clone().find(|o| o.main).unwrap_or_default();
        if list(c, paths, b":;", &main) {
            return true;
        }
    }
    if let Some(l) = loader {
        if l.runpath.is_some_and(|p| list(c, p, b":", &l)) {
            return true;
        }
    }
    let nodeflib = loader.is_some_and(|l| l.nodeflib);
    if let Some(p) = g.cache.and_then(|cache| cache.lookup(name)) {
        // With DF_1_NODEFLIB a cache entry in a system directory is not used.
        if !(nodeflib && g.system_dirs.iter().any(|d| p.starts_with(d))) && c.offer(Some(p), b"") {
            return true;
        }
    }
    !nodeflib && g.system_dirs.iter().any(|d| c.offer(Some(d), name))
}

/// `fillin_rpath`: the entries of `paths` (split at any of `seps`) with
/// their DSTs expanded for `o`, each with one trailing `/`, joined to `name`.
/// An empty entry is the current directory; one that expands to nothing is
/// dropped. An empty `paths` is no list at all (`decompose_rpath`).
fn glibc_list<F: FnMut(&[u8]) -> bool>(
    c: &mut Cands<F>,
    paths: &[u8],
    seps: &[u8],
    name: &[u8],
    o: &Object,
    g: &Glibc,
    secure: bool,
) -> bool {
    !paths.is_empty()
        && paths.split(|b| seps.contains(b)).any(|entry| {
            c.len = 0;
            if !entry.is_empty() {
                let Some(check) = glibc_expand(entry, o, g, secure, c) else {
                    return false;
                };
                if c.len == 0 || (check && !trusted(c.written(), g.system_dirs)) {
                    return false;
                }
                while c.len > 1 && c.written().ends_with(b"/") {
                    c.len -= 1;
                }
                if !c.written().ends_with(b"/") && c.put(b"/").is_none() {
                    return false;
                }
            }
            c.offer(None, name)
        })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dst {
    Origin,
    Platform,
    Lib,
}

/// The DST at the start of `s` (just after a `$`) and its length, braces
/// included, under the gABI rules of `is_dst`: `NAME` not followed by an
/// identifier character, or `{NAME}`.
fn dst_at(s: &[u8]) -> Option<(Dst, usize)> {
    let (curly, s) = match s.strip_prefix(b"{") {
        Some(s) => (true, s),
        None => (false, s),
    };
    [
        (Dst::Origin, &b"ORIGIN"[..]),
        (Dst::Platform, b"PLATFORM"),
        (Dst::Lib, b"LIB"),
    ]
    .into_iter()
    .find_map(|(dst, ref_)| {
        let next = s.strip_prefix(ref_)?.first().copied();
        let ok = if curly {
            next == Some(b'}')
        } else {
            !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        };
        ok.then_some((dst, ref_.len() + 2 * curly as usize))
    })
}

fn has_dst(s: &[u8]) -> bool {
    s.iter()
        .enumerate()
        .any(|(i, &c)| c == b'$' && s.get(i + 1..).and_then(dst_at).is_some())
}

/// `$ORIGIN` of the object at `path`, as `_dl_new_object` computes it
/// (without the current directory before a relative path, which names the
/// same directory as long as the process does not chdir).
fn glibc_origin(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&c| c == b'/') {
        Some(0) => b"/",
        Some(i) => path.get(..i).unwrap_or_default(),
        None => b".",
    }
}

/// `_dl_dst_substitute`: writes `input` with its DSTs expanded for object
/// `o`. `None` if it must be dropped: a DST without a value, or, in secure
/// mode, `$ORIGIN` anywhere but at the start of the entry and followed by
/// `/` or its end. `Some(true)` if the result must then lie in a trusted
/// directory: the main program's `$ORIGIN` in secure mode.
fn glibc_expand(
    input: &[u8],
    o: &Object,
    g: &Glibc,
    secure: bool,
    out: &mut impl Put,
) -> Option<bool> {
    let mut check = false;
    let mut rest = input;
    while let Some(i) = rest.iter().position(|&c| c == b'$') {
        let leading = i == 0 && rest.len() == input.len();
        out.put(rest.get(..i)?)?;
        let after = rest.get(i + 1..)?;
        let Some((dst, len)) = dst_at(after) else {
            out.put(b"$")?;
            rest = after;
            continue;
        };
        let value = match dst {
            Dst::Origin if secure && !(leading && matches!(after.get(len), None | Some(b'/'))) => {
                return None;
            }
            Dst::Origin => {
                check = secure && o.main;
                glibc_origin(o.path)
            }
            Dst::Platform if g.platform.is_empty() => return None,
            Dst::Platform => g.platform,
            Dst::Lib => g.lib,
        };
        out.put(value)?;
        rest = after.get(len..)?;
    }
    out.put(rest)?;
    Some(check)
}

/// `is_trusted_path_normalize`: `path`, with `.`, `..` and repeated `/`
/// resolved, lies in one of `dirs`. A relative path never does.
fn trusted(path: &[u8], dirs: &[&[u8]]) -> bool {
    let mut n = Vec::<u8, PATH_MAX>::new();
    for part in path.split(|&c| c == b'/') {
        match part {
            b"" | b"." => {}
            b".." => n.truncate(n.iter().rposition(|&c| c == b'/').unwrap_or(0)),
            _ if n.put(b"/").and_then(|_| n.put(part)).is_none() => return false,
            _ => {}
        }
    }
    path.starts_with(b"/") && n.put(b"/").is_some() && dirs.iter().any(|d| n.starts_with(d))
}

/// musl's `load_library` (ldso/dynlink.c) for a name without `/`:
/// LD_LIBRARY_PATH, then the DT_RUNPATH (or else DT_RPATH) of the loader and
/// of its loaders, then the system path.
fn musl_search<'a, F: FnMut(&[u8]) -> bool>(
    c: &mut Cands<F>,
    name: &[u8],
    mut chain: impl Iterator<Item = Object<'a>>,
    env: &Env,
    system_path: Option<&[u8]>,
) -> bool {
    let library_path = env.library_path.filter(|_| !env.secure);
    name.len() <= NAME_MAX
        && (library_path.is_some_and(|p| musl_list(c, p, name, None))
            || chain.any(|o| {
                musl_rpath(&o, env.secure)
                    .is_some_and(|(p, origin)| musl_list(c, p, name, Some(origin)))
            })
            || musl_list(c, system_path.unwrap_or(MUSL_DEFAULT_PATH), name, None))
}

/// `fixup_rpath`: the object's path list and its `$ORIGIN`, or `None` when
/// musl ignores the list for its `$`: one that does not start `$ORIGIN` or
/// `${ORIGIN}`; in secure mode the main program's (the caller of execve
/// chose its path) or a relative one.
fn musl_rpath<'a>(o: &Object<'a>, secure: bool) -> Option<(&'a [u8], &'a [u8])> {
    let paths = o.runpath.or(o.rpath)?;
    let origin = match o.path.iter().rposition(|&c| c == b'/') {
        Some(i) => o.path.get(..i)?,
        None => b".",
    };
    if !paths.contains(&b'$') {
        return Some((paths, origin));
    }
    let tokens_ok = paths.iter().enumerate().all(|(i, &c)| {
        c != b'$'
            || paths
                .get(i..)
                .is_some_and(|t| t.starts_with(b"$ORIGIN") || t.starts_with(b"${ORIGIN}"))
    });
    (tokens_ok && !(secure && (o.main || !origin.starts_with(b"/")))).then_some((paths, origin))
}

/// musl's `path_open`: each non-empty entry of `paths` (split at `:` or a
/// newline, up to a NUL) with `$ORIGIN` replaced by `origin` when given,
/// then `/` and `name`. musl replaces before it splits, which differs only
/// for an origin holding `:` or a newline.
fn musl_list<F: FnMut(&[u8]) -> bool>(
    c: &mut Cands<F>,
    paths: &[u8],
    name: &[u8],
    origin: Option<&[u8]>,
) -> bool {
    let paths = paths.split(|&b| b == 0).next().unwrap_or_default();
    paths
        .split(|&b| b == b':' || b == b'\n')
        .filter(|e| !e.is_empty())
        .any(|entry| {
            c.len = 0;
            let mut rest = entry;
            if let Some(origin) = origin {
                while let Some(i) = rest.iter().position(|&b| b == b'$') {
                    let skip = if rest.get(i + 1) == Some(&b'{') { 9 } else { 7 };
                    if c.put(rest.get(..i).unwrap_or_default())
                        .and_then(|_| c.put(origin))
                        .is_none()
                    {
                        return false;
                    }
                    rest = rest.get(i + skip..).unwrap_or_default();
                }
            }
            c.put(rest).is_some() && c.len > 0 && c.put(b"/").is_some() && c.offer(None, name)
        })
}

/// musl's ld.so is also libc, libpthread, librt, libm, libdl, libutil and
/// libxnet: `load_library` never searches for those.
fn musl_builtin(name: &[u8]) -> bool {
    let rest = name.strip_prefix(b"lib").unwrap_or_default();
    [
        &b"c."[..],
        b"pthread.",
        b"rt.",
        b"m.",
        b"dl.",
        b"util.",
        b"xnet.",
    ]
    .iter()
    .any(|r| rest.starts_with(r))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    at: usize,
    len: usize,
}

#[derive(Clone, Copy, Debug, Default)]
struct Obj {
    path: Span,
    /// The name it was asked for by (empty for the main program).
    name: Span,
    soname: Option<Span>,
    rpath: Option<Span>,
    runpath: Option<Span>,
    /// Its DT_NEEDED names, DSTs expanded, each ending in NUL.
    needed: Span,
    nodeflib: bool,
    /// The object whose need loaded it (`l_loader`, musl's `needed_by`).
    loader: Option<usize>,
}

/// One DT_NEEDED name to resolve, and the object that needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    needer: usize,
    name: Span,
}

/// The closure cannot hold another object or its strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// The objects a program loads at start-up, found breadth-first as both
/// ld.so's do (glibc's `_dl_map_object_deps`, musl's `load_deps`): the main
/// program's needs in order, then those of each object in the order they
/// were loaded. Holds at most `N` objects and `B` bytes of strings.
///
/// The shell drives it:
/// `while let Some(job) = c.next_job() { match c.search(job, ..) { Some(path) =>
/// c.found(job, path, &its DynInfo, env), None => report c.name(job) } }`.
/// A need that is not found is reported and the walk goes on; ld.so would
/// stop, unless tracing (`ldd`).
pub struct Closure<const N: usize = 256, const B: usize = 65536> {
    bytes: Vec<u8, B>,
    objs: Vec<Obj, N>,
    musl: bool,
    /// The next need: an object and an offset in its `needed`.
    cursor: (usize, usize),
}

impl<const N: usize, const B: usize> Closure<N, B> {
    /// A closure of the main program at `path` (canonical, as
    /// `/proc/self/exe` gives it), whose dynamic section says `info`.
    pub fn new(path: &[u8], info: &DynInfo, env: &Env) -> Result<Self, Full> {
        let musl = matches!(env.libc, Libc::Musl { .. });
        let mut c = Closure {
            bytes: Vec::new(),
            objs: Vec::new(),
            musl,
            cursor: (0, 0),
        };
        c.add(path, Span::default(), info, env, None)?;
        Ok(c)
    }

    /// Records ld.so itself, at its PT_INTERP `path`: a need for that path,
    /// or for its `soname`, is ld.so (glibc's `_dl_rtld_map`, musl's
    /// `ldso`). Also fits the vDSO, whose soname glibc matches too.
    pub fn add_interp(&mut self, path: &[u8], soname: Option<&[u8]>) -> Result<(), Full> {
        let info = DynInfo {
            soname,
            ..DynInfo::default()
        };
        // No needs, so the rules do not matter.
        let env = Env {
            libc: Libc::Musl { system_path: None },
            library_path: None,
            secure: false,
        };
        self.add(path, Span::default(), &info, &env, None)
    }

    /// The next need to search for, skipping those already loaded: a name
    /// equal to a loaded object's path, the name it was asked for by, or (in
    /// glibc) its DT_SONAME, as `_dl_lookup_map`; in musl the names that are
    /// ld.so itself. `None` when all are done.
    pub fn next_job(&mut self) -> Option<Job> {
        loop {
            let (i, off) = self.cursor;
            let needed = self.objs.get(i)?.needed;
            let at = needed.at.checked_add(off)?;
            let rest = self.str(Span {
                at,
                len: needed.len.saturating_sub(off),
            });
            if rest.is_empty() {
                self.cursor = (i.checked_add(1)?, 0);
                continue;
            }
            let len = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            self.cursor = (i, off.checked_add(len)?.checked_add(1)?);
            let job = Job {
                needer: i,
                name: Span { at, len },
            };
            if !self.is_loaded(self.name(job)) {
                return Some(job);
            }
        }
    }

    fn is_loaded(&self, name: &[u8]) -> bool {
        (self.musl && musl_builtin(name))
            || self.objs.iter().any(|o| {
                name == self.str(o.path)
                    || (!name.is_empty() && name == self.str(o.name))
                    || (!self.musl && o.soname.is_some_and(|s| name == self.str(s)))
            })
    }

    /// The name `job` looks for.
    pub fn name(&self, job: Job) -> &[u8] {
        self.str(job.name)
    }

    /// The path of the object that needs it.
    pub fn needer(&self, job: Job) -> &[u8] {
        self.objs.get(job.needer).map_or(&[], |o| self.str(o.path))
    }

    /// [`search`] for `job`, from its needer up the chain of loaders.
    pub fn search<'b>(
        &self,
        job: Job,
        env: &Env,
        buf: &'b mut [u8; PATH_MAX],
        try_path: impl FnMut(&[u8]) -> bool,
    ) -> Option<&'b [u8]> {
        let chain = core::iter::successors(Some(job.needer), |&i| {
            self.objs.get(i)?.loader.filter(|&l| l < i)
        })
        .map_while(|i| self.object(i));
        search(self.name(job), chain, env, buf, try_path)
    }

    /// Records that `job` was found at `path`, whose dynamic section says
    /// `info`, and queues its needs. `Ok(false)` if an object was already
    /// loaded from `path` (then nothing is queued).
    pub fn found(
        &mut self,
        job: Job,
        path: &[u8],
        info: &DynInfo,
        env: &Env,
    ) -> Result<bool, Full> {
        if self.objs.iter().any(|o| self.str(o.path) == path) {
            return Ok(false);
        }
        self.add(path, job.name, info, env, Some(job.needer))
            .map(|()| true)
    }

    /// The paths of the objects, main program first, in load order.
    pub fn paths(&self) -> impl Iterator<Item = &[u8]> {
        self.objs.iter().map(|o| self.str(o.path))
    }

    fn str(&self, s: Span) -> &[u8] {
        s.at.checked_add(s.len)
            .and_then(|end| self.bytes.get(s.at..end))
            .unwrap_or_default()
    }

    fn object(&self, i: usize) -> Option<Object<'_>> {
        let o = self.objs.get(i)?;
        Some(Object {
            path: self.str(o.path),
            rpath: o.rpath.map(|s| self.str(s)),
            runpath: o.runpath.map(|s| self.str(s)),
            nodeflib: o.nodeflib,
            main: i == 0,
        })
    }

    /// Adds an object; on [`Full`], nothing.
    fn add(
        &mut self,
        path: &[u8],
        name: Span,
        info: &DynInfo,
        env: &Env,
        loader: Option<usize>,
    ) -> Result<(), Full> {
        let mark = self.bytes.len();
        let obj = self.store(path, name, info, env, loader);
        if obj.and_then(|o| self.objs.push(o).ok()).is_none() {
            self.bytes.truncate(mark);
            return Err(Full);
        }
        Ok(())
    }

    /// Stores the strings of an object, and its needs with their DSTs
    /// expanded (glibc's `expand_dst` in elf/dl-deps.c).
    fn store(
        &mut self,
        path: &[u8],
        name: Span,
        info: &DynInfo,
        env: &Env,
        loader: Option<usize>,
    ) -> Option<Obj> {
        let mut store = |s: &[u8]| {
            let at = self.bytes.len();
            self.bytes.put(s).map(|_| Span { at, len: s.len() })
        };
        let path_span = store(path)?;
        let mut opt = |s: Option<&[u8]>| match s {
            None => Some(None),
            Some(s) => store(s).map(Some),
        };
        let (soname, rpath, runpath) = (opt(info.soname)?, opt(info.rpath)?, opt(info.runpath)?);
        let at = self.bytes.len();
        let me = Object {
            path,
            main: self.objs.is_empty(),
            ..Object::default()
        };
        for &n in &info.needed {
            match env.libc {
                // glibc refuses a secure program whose need has a DST, and
                // skips a need whose DST has no value.
                Libc::Glibc(g) if has_dst(n) => {
                    let mut expanded = Vec::<u8, PATH_MAX>::new();
                    if !env.secure
                        && glibc_expand(n, &me, &g, false, &mut expanded).is_some()
                        && !expanded.is_empty()
                    {
                        self.bytes.put(&expanded)?;
                        self.bytes.put(b"\0")?;
                    }
                }
                _ => {
                    self.bytes.put(n)?;
                    self.bytes.put(b"\0")?;
                }
            }
        }
        let needed = Span {
            at,
            len: self.bytes.len() - at,
        };
        Some(Obj {
            path: path_span,
            name,
            soname,
            rpath,
            runpath,
            needed,
            nodeflib: info.nodeflib,
            loader,
        })
    }
}

/// The main program's DT_RPATH or DT_RUNPATH `list` with every `$ORIGIN`
/// and `${ORIGIN}` replaced by `dir` (the program's directory), written
/// into `out`; `None` if the list names no `$ORIGIN` or `out` is too small.
/// What ld.so would expand itself if `/proc/self/exe` named the program.
pub fn expand_origin(list: &[u8], dir: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut len = 0;
    let mut found = false;
    let mut rest = list;
    let mut put = |s: &[u8], len: &mut usize| -> Option<()> {
        out.get_mut(*len..*len + s.len())?.copy_from_slice(s);
        *len += s.len();
        Some(())
    };
    while let Some(at) = rest.iter().position(|&c| c == b'$') {
        put(&rest[..at], &mut len)?;
        rest = &rest[at + 1..];
        match dst_at(rest) {
            Some((Dst::Origin, n)) => {
                put(dir, &mut len)?;
                rest = &rest[n..];
                found = true;
            }
            _ => put(b"$", &mut len)?,
        }
    }
    put(rest, &mut len)?;
    found.then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_expands_to_the_programs_directory() {
        let mut out = [0u8; 128];
        let n = expand_origin(b"$ORIGIN/../lib:/opt/x:${ORIGIN}", b"/usr/bin", &mut out).unwrap();
        assert_eq!(&out[..n], b"/usr/bin/../lib:/opt/x:/usr/bin");
        let n = expand_origin(b"$LIB/$ORIGINAL:$ORIGIN", b"/d", &mut out).unwrap();
        assert_eq!(&out[..n], b"$LIB/$ORIGINAL:/d");
        assert_eq!(expand_origin(b"/usr/lib:$LIB", b"/d", &mut out), None);
        assert_eq!(expand_origin(b"$ORIGIN", &[b'x'; 200], &mut out), None);
    }
    use crate::ldcache::{FLAGS_X86_64, testing::new_cache};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::string::String;
    use std::vec::Vec as StdVec;

    fn glibc<'a>(cache: Option<LdCache<'a>>, llp: Option<&'a str>, secure: bool) -> Env<'a> {
        let (system_dirs, lib) = (DEBIAN_X86_64_DIRS, DEBIAN_X86_64_LIB);
        let g = Glibc {
            cache,
            system_dirs,
            lib,
            platform: b"haswell",
        };
        Env {
            libc: Libc::Glibc(g),
            library_path: llp.map(str::as_bytes),
            secure,
        }
    }

    fn musl<'a>(system: Option<&'a str>, llp: Option<&'a str>, secure: bool) -> Env<'a> {
        let libc = Libc::Musl {
            system_path: system.map(str::as_bytes),
        };
        Env {
            libc,
            library_path: llp.map(str::as_bytes),
            secure,
        }
    }

    fn obj<'a>(path: &'a str, rpath: Option<&'a str>, runpath: Option<&'a str>) -> Object<'a> {
        let (rpath, runpath) = (rpath.map(str::as_bytes), runpath.map(str::as_bytes));
        Object {
            path: path.as_bytes(),
            rpath,
            runpath,
            ..Object::default()
        }
    }

    fn main_obj<'a>(path: &'a str, rpath: Option<&'a str>, runpath: Option<&'a str>) -> Object<'a> {
        Object {
            main: true,
            ..obj(path, rpath, runpath)
        }
    }

    /// Every candidate `search` offers (none found), space-separated.
    fn tries(name: &str, chain: &[Object], env: &Env) -> String {
        let mut seen = StdVec::new();
        let mut buf = [0; PATH_MAX];
        let found = search(name.as_bytes(), chain.iter().copied(), env, &mut buf, |p| {
            seen.push(String::from_utf8(p.to_vec()).unwrap());
            false
        });
        assert_eq!(found, None);
        seen.join(" ")
    }

    const DEFAULTS: &str =
        "/lib/x86_64-linux-gnu/l.so /usr/lib/x86_64-linux-gnu/l.so /lib/l.so /usr/lib/l.so";

    #[test]
    fn glibc_order_rpath_chain_then_library_path_then_runpath_cache_defaults() {
        let bytes = new_cache(&[(FLAGS_X86_64, "l.so", "/cache/l.so", 0)]);
        let env = glibc(
            LdCache::parse(&bytes, FLAGS_X86_64),
            Some("/llp::rel;/semi/"),
            false,
        );
        let main = main_obj("/app/bin/prog", Some("$ORIGIN/../lib:/rp"), None);
        let llp = "/llp/l.so l.so rel/l.so /semi/l.so";
        let got = tries(
            "l.so",
            &[obj("/app/lib/a.so", Some("/arp"), None), main],
            &env,
        );
        let rpaths = "/arp/l.so /app/bin/../lib/l.so /rp/l.so";
        assert_eq!(got, format!("{rpaths} {llp} /cache/l.so {DEFAULTS}"));
        // The loader's DT_RUNPATH: no DT_RPATH in the chain; after LLP.
        let got = tries(
            "l.so",
            &[obj("/app/lib/a.so", Some("/arp"), Some("/arun")), main],
            &env,
        );
        assert_eq!(got, format!("{llp} /arun/l.so /cache/l.so {DEFAULTS}"));
        // An ancestor with a DT_RUNPATH has no DT_RPATH, and its DT_RUNPATH
        // is not its children's.
        let main = main_obj("/app/bin/prog", Some("/rp"), Some("/mrun"));
        let env = glibc(None, None, false);
        assert_eq!(
            tries("l.so", &[obj("/app/lib/a.so", None, None), main], &env),
            DEFAULTS
        );
        assert_eq!(
            tries("l.so", &[main], &env),
            format!("/mrun/l.so {DEFAULTS}")
        );
    }

    #[test]
    fn glibc_expands_dsts_like_dl_dst_substitute() {
        let env = glibc(None, None, false);
        let paths = "$LIB:${PLATFORM}/x:$ORIGINX:$FOO:/a/${ORIGIN}//:/:$ORIGIN/$";
        let got = tries(
            "l.so",
            &[main_obj("/usr/bin/prog", Some(paths), None)],
            &env,
        );
        let want = "lib/x86_64-linux-gnu/l.so haswell/x/l.so $ORIGINX/l.so $FOO/l.so \
                    /a//usr/bin/l.so /l.so /usr/bin/$/l.so";
        assert_eq!(got, format!("{want} {DEFAULTS}"));
        // An unknown $PLATFORM drops the entry; an empty list is no list.
        let mut env = glibc(None, Some(""), false);
        if let Libc::Glibc(g) = &mut env.libc {
            g.platform = b"";
        }
        let got = tries(
            "l.so",
            &[main_obj("/p", Some("$PLATFORM:${ORIGIN}"), None)],
            &env,
        );
        assert_eq!(got, format!("/l.so {DEFAULTS}"));
    }

    #[test]
    fn glibc_secure_drops_library_path_and_untrusted_origins() {
        let env = glibc(None, Some("/llp"), true);
        // A library's $ORIGIN must lead its entry; relative entries stay.
        let lib = obj(
            "/opt/x/lib.so",
            Some("$ORIGIN/sub:/a/$ORIGIN:${ORIGIN}:rel"),
            None,
        );
        let got = tries("l.so", &[lib, main_obj("/usr/bin/p", None, None)], &env);
        assert_eq!(
            got,
            format!("/opt/x/sub/l.so /opt/x/l.so rel/l.so {DEFAULTS}")
        );
        // The main program's must resolve into a system directory.
        let paths = Some("$ORIGIN/../lib:$ORIGIN/../x86_64-linux-gnu/./..//lib/");
        let got = tries("l.so", &[main_obj("/usr/bin/p", paths, None)], &env);
        let want = "/usr/bin/../lib/l.so /usr/bin/../x86_64-linux-gnu/./..//lib/l.so";
        assert_eq!(got, format!("{want} {DEFAULTS}"));
        assert_eq!(
            tries("l.so", &[main_obj("/home/u/p", paths, None)], &env),
            DEFAULTS
        );
        assert!(trusted(b"/lib/x86_64-linux-gnu", DEBIAN_X86_64_DIRS));
        assert!(!trusted(b"/lib/../etc", DEBIAN_X86_64_DIRS));
        assert!(!trusted(b"lib", DEBIAN_X86_64_DIRS));
    }

    #[test]
    fn nodeflib_skips_system_cache_entries_and_defaults() {
        let bytes = new_cache(&[
            (FLAGS_X86_64, "l.so", "/opt/cache/l.so", 0),
            (
                FLAGS_X86_64,
                "libc.so.6",
                "/lib/x86_64-linux-gnu/libc.so.6",
                0,
            ),
        ]);
        let env = glibc(LdCache::parse(&bytes, FLAGS_X86_64), None, false);
        let prog = Object {
            nodeflib: true,
            ..main_obj("/p", None, None)
        };
        assert_eq!(tries("libc.so.6", &[prog], &env), "");
        assert_eq!(tries("l.so", &[prog], &env), "/opt/cache/l.so");
        let lib = obj("/l.so", None, None);
        assert_eq!(
            tries("l.so", &[lib, prog], &env),
            format!("/opt/cache/l.so {DEFAULTS}")
        );
    }

    #[test]
    fn names_with_a_slash_and_over_long_paths() {
        let env = glibc(None, Some("/llp"), false);
        let main = main_obj("/p", Some("/r"), None);
        assert_eq!(tries("./x/l.so", &[main], &env), "./x/l.so");
        assert_eq!(tries("", &[main], &env), "");
        let rpath = "/d".repeat(PATH_MAX / 2 - 2) + ":/short";
        let got = tries("l.so", &[main_obj("/p", Some(&rpath), None)], &env);
        assert!(got.starts_with("/short/l.so /llp/l.so"));
        assert_eq!(tries(&"/".repeat(PATH_MAX), &[main], &env), "");
        let mut buf = [0; PATH_MAX];
        let longest = "/".repeat(PATH_MAX - 1);
        let found = search(longest.as_bytes(), [].into_iter(), &env, &mut buf, |_| true);
        assert_eq!(found, Some(longest.as_bytes()));
    }

    #[test]
    fn musl_order_and_rules() {
        let env = musl(Some("/s1\n/s2:/s3\0/ignored"), Some(":/llp\n/b/:"), false);
        let main = main_obj("/app/bin/prog", Some("/mr"), None);
        let lib = obj(
            "/app/lib/liba.so",
            Some("/ignored"),
            Some("$ORIGIN/x:${ORIGIN}"),
        );
        let want =
            "/llp/l.so /b//l.so /app/lib/x/l.so /app/lib/l.so /mr/l.so /s1/l.so /s2/l.so /s3/l.so";
        assert_eq!(tries("l.so", &[lib, main], &env), want);
        // Any other `$` voids the whole list; no file means the default path.
        let lib = obj("/app/lib/liba.so", None, Some("/a:$LIB/x"));
        let want = "/lib/l.so /usr/local/lib/l.so /usr/lib/l.so";
        assert_eq!(tries("l.so", &[lib], &musl(None, None, false)), want);
        // Secure: no LD_LIBRARY_PATH, no $ORIGIN for the main program nor a
        // relative one; a library's absolute one stays.
        let env = musl(Some(""), Some("/llp"), true);
        let lib = obj("/app/lib/liba.so", None, Some("$ORIGIN/x"));
        let rel = obj("rel/lib.so", None, Some("$ORIGIN/x"));
        let main = main_obj("/app/bin/prog", Some("$ORIGIN:/plain"), None);
        assert_eq!(tries("l.so", &[lib, rel, main], &env), "/app/lib/x/l.so");
        assert_eq!(
            tries("l.so", &[main_obj("/p", Some("/plain"), None)], &env),
            "/plain/l.so"
        );
        // musl's 512-byte buffer, and names longer than NAME_MAX.
        let long = "/d".repeat(254) + ":/e";
        assert_eq!(
            tries("l.so", &[main_obj("/p", Some(&long), None)], &env),
            "/e/l.so"
        );
        assert_eq!(
            tries(&"l".repeat(256), &[main_obj("/p", Some("/e"), None)], &env),
            ""
        );
        assert!(musl_builtin(b"libc.so") && musl_builtin(b"libm.so.6"));
        assert!(!musl_builtin(b"libcrypt.so.1"));
    }

    #[test]
    fn parses_dynamic_facts() {
        let strtab = b"\0libc.so.6\0libm.so.6\0/r\0/u\0me.so\0unterminated";
        let entries = [
            (DT_NEEDED, 1),
            (DT_RPATH, 100),
            (DT_RPATH, 21),
            (DT_NEEDED, 11),
            (DT_RUNPATH, 24),
            (DT_SONAME, 27),
            (DT_FLAGS_1, DF_1_NODEFLIB | 1),
            (DT_STRTAB, 0x1000),
            (DT_STRSZ, 99),
        ];
        let info = DynInfo::parse(entries, strtab);
        assert_eq!(info.needed, [&b"libc.so.6"[..], b"libm.so.6"]);
        let strings = (info.rpath, info.runpath, info.soname);
        assert_eq!(
            strings,
            (Some(&b"/r"[..]), Some(&b"/u"[..]), Some(&b"me.so"[..]))
        );
        assert!(info.nodeflib && info.incomplete);
        assert!(!DynInfo::parse(entries.into_iter().skip(2), strtab).incomplete);
        assert!(DynInfo::parse([(DT_NEEDED, 33)], strtab).incomplete);
        assert!(DynInfo::parse([(DT_NEEDED, u64::MAX)], strtab).incomplete);
        assert!(DynInfo::parse((0..200).map(|_| (DT_NEEDED, 1)), strtab).incomplete);
        assert_eq!(strtab_location(entries), Some((0x1000, 99)));
        assert_eq!(strtab_location([(DT_STRTAB, 1)]), None);
        let o = info.object(b"/x/me.so", false);
        assert_eq!(
            (o.path, o.rpath, o.nodeflib),
            (&b"/x/me.so"[..], Some(&b"/r"[..]), true)
        );
    }

    /// A fake library: its path, needs, and then "soname=", "rpath=",
    /// "runpath=" or "nodeflib" words.
    fn fake(spec: &'static str) -> (&'static str, DynInfo<'static>) {
        let mut words = spec.split(' ');
        let path = words.next().unwrap();
        let mut info = DynInfo::default();
        for w in words {
            match w.split_once('=') {
                Some(("soname", v)) => info.soname = Some(v.as_bytes()),
                Some(("rpath", v)) => info.rpath = Some(v.as_bytes()),
                Some(("runpath", v)) => info.runpath = Some(v.as_bytes()),
                _ if w == "nodeflib" => info.nodeflib = true,
                _ => info.needed.push(w.as_bytes()).unwrap(),
            }
        }
        (path, info)
    }

    /// Drives a closure of `main` over the fake filesystem `fs`: the paths
    /// loaded after main and ld.so, and the needs not found as "name<needer".
    fn walk(main: &'static str, fs: &[&'static str], env: &Env) -> (String, String) {
        let fs: HashMap<&[u8], DynInfo> = fs
            .iter()
            .map(|s| fake(s))
            .map(|(p, i)| (p.as_bytes(), i))
            .collect();
        let (path, info) = fake(main);
        let mut c = Closure::<16, 2048>::new(path.as_bytes(), &info, env).unwrap();
        c.add_interp(
            b"/lib64/ld-linux-x86-64.so.2",
            Some(b"ld-linux-x86-64.so.2"),
        )
        .unwrap();
        let mut missing = StdVec::new();
        while let Some(job) = c.next_job() {
            let mut buf = [0; PATH_MAX];
            match c.search(job, env, &mut buf, |p| fs.contains_key(p)) {
                Some(p) => assert!(c.found(job, p, &fs[p], env).unwrap()),
                None => missing.push([c.name(job), c.needer(job)].join(&b'<')),
            }
        }
        let paths: StdVec<_> = c.paths().skip(2).collect();
        let text = |v: &[&[u8]]| String::from_utf8(v.join(&b' ')).unwrap();
        (
            text(&paths),
            text(&missing.iter().map(|m| &m[..]).collect::<StdVec<_>>()),
        )
    }

    #[test]
    fn closure_is_breadth_first_deduped_and_survives_cycles_and_misses() {
        let fs = [
            "/lib/x86_64-linux-gnu/libc.so.6 soname=libc.so.6 ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/liba.so soname=liba.so.1 libb.so libc.so.6",
            "/lib/x86_64-linux-gnu/libb.so liba.so libgone.so libc.so.6",
            "/lib/x86_64-linux-gnu/libd.so liba.so.1 /lib/x86_64-linux-gnu/libb.so",
        ];
        let env = glibc(None, None, false);
        let (paths, missing) = walk("/app/prog liba.so libd.so libc.so.6 liba.so", &fs, &env);
        let d = "/lib/x86_64-linux-gnu";
        assert_eq!(
            paths,
            format!("{d}/liba.so {d}/libd.so {d}/libc.so.6 {d}/libb.so")
        );
        assert_eq!(missing, format!("libgone.so<{d}/libb.so"));
    }

    #[test]
    fn closure_follows_rpath_runpath_origin_secure_and_nodeflib() {
        let fs = [
            // liba's RUNPATH names a sibling of its own directory.
            "/app/lib/liba.so runpath=$ORIGIN/../private libp.so libr.so",
            "/app/lib/../private/libp.so libr.so libq.so",
            // Only in main's RPATH: libp has no RUNPATH, so its needs search
            // the RPATHs of libp, liba (none: it has a RUNPATH) and main;
            // liba has a RUNPATH, so its own needs do not.
            "/app/bin/../rpath/libq.so",
            "/app/bin/../rpath/libr.so",
            "/llp/libl.so",
            "/lib/libn.so",
        ];
        let main = "/app/bin/prog rpath=$ORIGIN/../rpath:/app/lib liba.so libl.so";
        let env = glibc(None, Some("/llp"), false);
        let (paths, missing) = walk(main, &fs, &env);
        let (libp, r) = ("/app/lib/../private/libp.so", "/app/bin/../rpath");
        assert_eq!(
            paths,
            format!("/app/lib/liba.so /llp/libl.so {libp} {r}/libr.so {r}/libq.so")
        );
        assert_eq!(missing, "libr.so</app/lib/liba.so");
        // Secure: no LLP, and main's $ORIGIN (/app/rpath) is no system dir.
        let (_, missing) = walk(main, &fs, &glibc(None, Some("/llp"), true));
        let want =
            format!("libl.so</app/bin/prog libr.so</app/lib/liba.so libr.so<{libp} libq.so<{libp}");
        assert_eq!(missing, want);
        assert_eq!(walk("/p nodeflib libn.so", &fs, &env).1, "libn.so</p");
        assert_eq!(walk("/p libn.so", &fs, &env).1, "");
        // A need's DSTs expand with its needer's origin; never when secure
        // (glibc refuses the program).
        let fs = ["/app/bin/x86_64-linux-gnu/libo.so"];
        let main = "/app/bin/prog $ORIGIN/$PLATFORM/libo.so ${ORIGIN}/x86_64-linux-gnu/libo.so";
        let mut env = glibc(None, None, false);
        if let Libc::Glibc(g) = &mut env.libc {
            g.platform = b"x86_64-linux-gnu";
        }
        assert_eq!(walk(main, &fs, &env), (fs[0].into(), "".into()));
        env.secure = true;
        assert_eq!(walk(main, &fs, &env), ("".into(), "".into()));
    }

    #[test]
    fn musl_closure_ignores_sonames_and_builtins() {
        let fs = ["/lib/liba.so soname=liba.so.1 libc.so liba.so.1"];
        let env = musl(Some("/lib"), None, false);
        let (paths, missing) = walk("/p liba.so libc.so /lib/ld-musl-x86_64.so.1", &fs, &env);
        assert_eq!(paths, "/lib/liba.so");
        assert_eq!(
            missing,
            "/lib/ld-musl-x86_64.so.1</p liba.so.1</lib/liba.so"
        );
    }

    #[test]
    fn closure_reports_full_and_stays_consistent() {
        let env = glibc(None, None, false);
        let mut c = Closure::<2, 64>::new(b"/p", &fake("/p a.so b.so").1, &env).unwrap();
        let job = c.next_job().unwrap();
        let big = fake("/lib/a.so rpath=/a/very/long/rpath/that/does/not/fit/in/the/closure").1;
        assert_eq!(c.found(job, b"/lib/a.so", &big, &env), Err(Full));
        assert_eq!(
            c.found(job, b"/lib/a.so", &DynInfo::default(), &env),
            Ok(true)
        );
        assert_eq!(
            c.found(job, b"/lib/a.so", &DynInfo::default(), &env),
            Ok(false)
        );
        let job = c.next_job().unwrap();
        assert_eq!(c.name(job), b"b.so");
        assert_eq!(
            c.found(job, b"/lib/b.so", &DynInfo::default(), &env),
            Err(Full)
        );
        assert_eq!(c.paths().count(), 2);
        assert_eq!(c.next_job(), None);
    }

    proptest! {
        #[test]
        fn never_panics(name in proptest::collection::vec(any::<u8>(), 0..20),
                        path in proptest::collection::vec(prop::sample::select(b"/$.{}:ORIGINLIB\n".to_vec()), 0..40),
                        secure in any::<bool>(), entries in proptest::collection::vec((0u64..40, 0u64..64), 0..20)) {
            let strtab = [&path[..], b"\0"].concat();
            let tags = entries.iter().map(|&(t, v)| (if t == 39 { DT_FLAGS_1 } else { t }, v));
            let info = DynInfo::parse(tags, &strtab);
            let o = info.object(&path, true);
            let p = core::str::from_utf8(&path).unwrap();
            for env in [glibc(None, Some(p), secure), musl(Some(p), Some(p), secure)] {
                let mut buf = [0; PATH_MAX];
                let _ = search(&name, [o, Object { main: false, ..o }].into_iter(), &env, &mut buf, |_| false);
                let Ok(mut c) = Closure::<4, 256>::new(&path, &info, &env) else { continue };
                while let Some(job) = c.next_job() {
                    let _ = c.search(job, &env, &mut buf, |_| false);
                    let _ = c.found(job, &name, &info, &env);
                }
            }
        }
    }
}
