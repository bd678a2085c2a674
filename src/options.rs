//! Command line and `HUGELOAD_*` environment settings.

use crate::plan::Strategy;

/// Where huge pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The page cache where it can serve (no copy), then hugetlb when the
    /// pool has pages, else transparent huge pages, else normal pages.
    Auto,
    /// The file's own page cache, in 2 MiB folios mapped with PMD entries:
    /// no copy, shared by every process that maps the file.
    PageCache,
    /// Transparent huge pages only (anonymous memory, `MADV_HUGEPAGE`).
    Thp,
    /// The hugetlb pool only (reserved when mapped, so no SIGBUS later).
    Hugetlb,
    /// No huge pages: load exactly as the kernel would.
    Off,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::PageCache => "pagecache",
            Backend::Thp => "thp",
            Backend::Hugetlb => "hugetlb",
            Backend::Off => "off",
        }
    }
    /// Whether this backend may map code straight from the page cache.
    pub fn uses_page_cache(self) -> bool {
        matches!(self, Backend::Auto | Backend::PageCache)
    }
    fn parse(value: &[u8]) -> Option<Backend> {
        match value {
            b"auto" => Some(Backend::Auto),
            b"pagecache" => Some(Backend::PageCache),
            b"thp" => Some(Backend::Thp),
            b"hugetlb" => Some(Backend::Hugetlb),
            b"off" => Some(Backend::Off),
            _ => None,
        }
    }
}

fn parse_strategy(value: &[u8]) -> Option<Strategy> {
    match value {
        b"conservative" => Some(Strategy::Conservative),
        b"aggressive" => Some(Strategy::Aggressive),
        _ => None,
    }
}

/// How a program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub strategy: Strategy,
    pub backend: Backend,
    /// 0: quiet; 1 (`-v`): the report; 2 (`-vv`): also what had nothing
    /// to report (libraries without 2 MiB of code).
    pub verbose: u8,
    /// Write `/tmp/perf-PID.map` for the code moved to huge pages.
    pub perf_map: bool,
    /// Lock the program's code in memory (`mlock`), so it never waits for
    /// a major fault.
    pub lock: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            strategy: Strategy::Conservative,
            backend: Backend::Auto,
            verbose: 0,
            perf_map: false,
            lock: false,
        }
    }
}

/// Every environment variable hugeload reads, in launcher, PT_INTERP and
/// binfmt_misc modes. The tests clear exactly these.
pub const ENV_VARS: [&str; 7] = [
    ENV_STRATEGY,
    ENV_BACKEND,
    ENV_VERBOSE,
    ENV_OFF,
    ENV_PERFMAP,
    ENV_INTERP,
    ENV_LOCK,
];
pub const ENV_STRATEGY: &str = "HUGELOAD_STRATEGY";
pub const ENV_BACKEND: &str = "HUGELOAD_BACKEND";
pub const ENV_VERBOSE: &str = "HUGELOAD_VERBOSE";
pub const ENV_OFF: &str = "HUGELOAD_OFF";
pub const ENV_PERFMAP: &str = "HUGELOAD_PERFMAP";
pub const ENV_LOCK: &str = "HUGELOAD_LOCK";
/// PT_INTERP mode: the real program interpreter.
pub const ENV_INTERP: &str = "HUGELOAD_INTERP";

/// A yes/no value: `1`, `yes`, `true`, `on` or `0`, `no`, `false`, `off`,
/// empty (any case); `None` for anything else.
fn parse_bool(value: &[u8]) -> Option<bool> {
    let is = |w: &[u8]| value.eq_ignore_ascii_case(w);
    if ["1", "yes", "true", "on"].iter().any(|w| is(w.as_bytes())) {
        Some(true)
    } else if value.is_empty() || ["0", "no", "false", "off"].iter().any(|w| is(w.as_bytes())) {
        Some(false)
    } else {
        None
    }
}

/// A `HUGELOAD_*` value that means nothing: the variable, its value, and
/// what it takes. The setting keeps its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvWarning<'a> {
    pub var: &'static str,
    pub value: &'a [u8],
    pub valid: &'static str,
}

impl EnvWarning<'_> {
    /// The line, without `hugeload: `.
    pub fn write(&self, l: &mut crate::fmt::Line) {
        l.str(self.var)
            .str("=")
            .bytes(self.value)
            .str(": not one of ")
            .str(self.valid)
            .str("; ignored");
    }
}

impl Settings {
    /// The defaults, changed by the `HUGELOAD_*` variables. Values are
    /// read without regard to case (`HUGELOAD_STRATEGY=Aggressive`); one that
    /// means nothing is reported to `warn` and ignored: a setting in the
    /// environment never stops a program. `HUGELOAD_VERBOSE` also takes a
    /// level (`2`).
    pub fn from_env<'a>(
        get: impl Fn(&[u8]) -> Option<&'a [u8]>,
        mut warn: impl FnMut(EnvWarning<'a>),
    ) -> Settings {
        let mut s = Settings::default();
        let lower = |v: &[u8]| {
            let mut b = [0u8; 16];
            let n = v.len().min(16);
            b[..n].copy_from_slice(&v[..n]);
            b.make_ascii_lowercase();
            (b, if v.len() <= 16 { n } else { 0 })
        };
        let mut warn = |var, value, valid| warn(EnvWarning { var, value, valid });
        if let Some(v) = get(ENV_STRATEGY.as_bytes()) {
            let (b, n) = lower(v);
            match parse_strategy(&b[..n]) {
                Some(x) => s.strategy = x,
                None => warn(ENV_STRATEGY, v, STRATEGIES),
            }
        }
        if let Some(v) = get(ENV_BACKEND.as_bytes()) {
            let (b, n) = lower(v);
            match Backend::parse(&b[..n]) {
                Some(x) => s.backend = x,
                None => warn(ENV_BACKEND, v, BACKENDS),
            }
        }
        const YES_NO: &str = "1, yes, true, on, 0, no, false, off";
        if let Some(v) = get(ENV_VERBOSE.as_bytes()) {
            match (parse_bool(v), v) {
                (Some(b), _) => s.verbose = b as u8,
                (None, b"2") => s.verbose = 2,
                (None, _) => warn(ENV_VERBOSE, v, "0, 1, 2, yes, no"),
            }
        }
        for (var, slot) in [(ENV_PERFMAP, &mut s.perf_map), (ENV_LOCK, &mut s.lock)] {
            if let Some(v) = get(var.as_bytes()) {
                match parse_bool(v) {
                    Some(b) => *slot = b,
                    None => warn(var, v, YES_NO),
                }
            }
        }
        if let Some(v) = get(ENV_OFF.as_bytes()) {
            match parse_bool(v) {
                Some(true) => s.backend = Backend::Off,
                Some(false) => {}
                None => warn(ENV_OFF, v, YES_NO),
            }
        }
        s
    }
}

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Load and run the program at argument `program` (an index into the
    /// arguments after hugeload's own name).
    Run {
        program: usize,
        argv0: Option<&'a [u8]>,
    },
    Help,
    Version,
    /// `--mark FILE...`: the files are the arguments from this index on.
    Mark {
        files: usize,
    },
    /// `--unmark FILE...`.
    Unmark {
        files: usize,
    },
    /// `--binfmt-rule`: print the binfmt_misc registration line.
    BinfmtRule,
    /// `--stat [--json] PID...`: the arguments from this index on; `json`
    /// when `--json` came before `--stat`.
    Stat {
        args: usize,
        json: bool,
    },
    /// `--prime [--check] [--json] PATH...`: likewise.
    Prime {
        args: usize,
        json: bool,
    },
}

/// A command line that makes no sense: hugeload prints one line and
/// `Try 'hugeload --help' for more information.`, and exits with
/// [`USAGE_STATUS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageError<'a> {
    /// Neither a long option nor a prefix of one (`--frob`), or an unknown
    /// short option letter.
    UnknownOption(&'a [u8]),
    /// A prefix of several long options (`--st`).
    Ambiguous(&'a [u8]),
    /// The option needs a value and none followed.
    MissingValue(&'static str),
    /// `--name=value` for an option that takes none.
    UnexpectedValue(&'static str),
    /// A value that is not one of the option's choices.
    BadValue {
        option: &'static str,
        value: &'a [u8],
        choices: &'static str,
    },
    NoProgram,
}

/// The exit status of a usage error, as `env` and `nice` use for their
/// own errors (125), so it cannot be mistaken for the program's.
pub const USAGE_STATUS: i32 = 125;

impl UsageError<'_> {
    /// The line, without `hugeload: `.
    pub fn write(&self, l: &mut crate::fmt::Line) {
        match *self {
            UsageError::UnknownOption(o) if o.starts_with(b"--") => {
                l.str("unrecognized option '").bytes(o).str("'")
            }
            UsageError::UnknownOption(o) => l.str("invalid option -- '").bytes(o).str("'"),
            UsageError::Ambiguous(o) => {
                l.str("option '")
                    .bytes(o)
                    .str("' is ambiguous; possibilities:");
                let name = o.strip_prefix(b"--").unwrap_or(o);
                let name = &name[..name.iter().position(|&b| b == b'=').unwrap_or(name.len())];
                for (long, _) in LONG.iter().filter(|(n, _)| n.as_bytes().starts_with(name)) {
                    l.str(" '--").str(long).str("'");
                }
                l
            }
            UsageError::MissingValue(o) => l.str("option '").str(o).str("' requires an argument"),
            UsageError::UnexpectedValue(o) => {
                l.str("option '").str(o).str("' doesn't allow an argument")
            }
            UsageError::BadValue {
                option,
                value,
                choices,
            } => l
                .str("invalid argument '")
                .bytes(value)
                .str("' for '")
                .str(option)
                .str("' (valid: ")
                .str(choices)
                .str(")"),
            UsageError::NoProgram => l.str("no program given"),
        };
    }
}

/// hugeload's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Strategy,
    Backend,
    Verbose,
    Argv0,
    PerfMap,
    Lock,
    Json,
    Help,
    Version,
    Mark,
    Unmark,
    BinfmtRule,
    Stat,
    Prime,
}

/// The long options; any unambiguous prefix names one (as getopt_long).
const LONG: &[(&str, Opt)] = &[
    ("strategy", Opt::Strategy),
    ("backend", Opt::Backend),
    ("verbose", Opt::Verbose),
    ("argv0", Opt::Argv0),
    ("perf-map", Opt::PerfMap),
    ("lock", Opt::Lock),
    ("json", Opt::Json),
    ("help", Opt::Help),
    ("version", Opt::Version),
    ("mark", Opt::Mark),
    ("unmark", Opt::Unmark),
    ("binfmt-rule", Opt::BinfmtRule),
    ("stat", Opt::Stat),
    ("prime", Opt::Prime),
];

const STRATEGIES: &str = "conservative, aggressive";
const BACKENDS: &str = "auto, pagecache, thp, hugetlb, off";

impl Opt {
    fn short(c: u8) -> Option<Opt> {
        Some(match c {
            b's' => Opt::Strategy,
            b'b' => Opt::Backend,
            b'v' => Opt::Verbose,
            b'h' => Opt::Help,
            b'V' => Opt::Version,
            _ => return None,
        })
    }
    fn takes_value(self) -> bool {
        matches!(self, Opt::Strategy | Opt::Backend | Opt::Argv0)
    }
    fn long_name(self) -> &'static str {
        match self {
            Opt::Strategy => "--strategy",
            Opt::Backend => "--backend",
            Opt::Argv0 => "--argv0",
            Opt::Verbose => "--verbose",
            Opt::PerfMap => "--perf-map",
            Opt::Lock => "--lock",
            Opt::Json => "--json",
            Opt::Help => "--help",
            Opt::Version => "--version",
            Opt::Mark => "--mark",
            Opt::Unmark => "--unmark",
            Opt::BinfmtRule => "--binfmt-rule",
            Opt::Stat => "--stat",
            Opt::Prime => "--prime",
        }
    }
    /// The long option `name` names, exactly or as an unambiguous prefix.
    fn long(name: &[u8]) -> Result<Opt, bool> {
        if let Some(&(_, o)) = LONG.iter().find(|(n, _)| n.as_bytes() == name) {
            return Ok(o);
        }
        let mut hits = LONG
            .iter()
            .filter(|(n, _)| !name.is_empty() && n.as_bytes().starts_with(name));
        match (hits.next(), hits.next()) {
            (Some(&(_, o)), None) => Ok(o),
            (Some(_), Some(_)) => Err(true),
            _ => Err(false),
        }
    }
}

/// Parses hugeload's own options from `args` (argv without argv[0]), on
/// top of `settings`, as GNU getopt_long does: short options bundle
/// (`-vs aggressive`, `-saggressive`), `-v` repeats (levels), a long option
/// may be any unambiguous prefix (`--verb`), and takes its value as
/// `--opt=value` or `--opt value`. Options stop at `--` or at the first
/// argument that is not an option: that is PROGRAM, and the rest are its
/// arguments.
pub fn parse<'a>(
    args: impl Iterator<Item = &'a [u8]>,
    settings: &mut Settings,
) -> Result<Command<'a>, UsageError<'a>> {
    let mut argv0 = None;
    let mut json = false;
    let mut args = args.enumerate();
    while let Some((index, arg)) = args.next() {
        if arg == b"--" {
            return match args.next() {
                Some((program, _)) => Ok(Command::Run { program, argv0 }),
                None => Err(UsageError::NoProgram),
            };
        }
        if arg.len() < 2 || arg[0] != b'-' {
            return Ok(Command::Run {
                program: index,
                argv0,
            });
        }
        // The options in this word, each with its value if it takes one.
        let mut found: heapless::Vec<(Opt, Option<&'a [u8]>), 16> = heapless::Vec::new();
        if let Some(long) = arg.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(eq) => (&long[..eq], Some(&long[eq + 1..])),
                None => (long, None),
            };
            let opt = Opt::long(name).map_err(|ambiguous| {
                if ambiguous {
                    UsageError::Ambiguous(arg)
                } else {
                    UsageError::UnknownOption(arg)
                }
            })?;
            if inline.is_some() && !opt.takes_value() {
                return Err(UsageError::UnexpectedValue(opt.long_name()));
            }
            let _ = found.push((opt, inline));
        } else {
            let mut at = 1;
            while at < arg.len() {
                let opt = Opt::short(arg[at]).ok_or(UsageError::UnknownOption(&arg[at..at + 1]))?;
                at += 1;
                if opt.takes_value() && at < arg.len() {
                    let _ = found.push((opt, Some(&arg[at..])));
                    break;
                }
                if found.push((opt, None)).is_err() {
                    return Err(UsageError::UnknownOption(arg));
                }
            }
        }
        for (opt, inline) in found {
            let value = match (opt.takes_value(), inline) {
                (true, Some(v)) => v,
                (true, None) => match args.next() {
                    Some((_, v)) => v,
                    None => return Err(UsageError::MissingValue(opt.long_name())),
                },
                (false, _) => b"",
            };
            let bad = |choices| UsageError::BadValue {
                option: opt.long_name(),
                value,
                choices,
            };
            match opt {
                Opt::Strategy => {
                    settings.strategy = parse_strategy(value).ok_or(bad(STRATEGIES))?
                }
                Opt::Backend => settings.backend = Backend::parse(value).ok_or(bad(BACKENDS))?,
                Opt::Argv0 => argv0 = Some(value),
                Opt::Verbose => settings.verbose = settings.verbose.saturating_add(1),
                Opt::PerfMap => settings.perf_map = true,
                Opt::Lock => settings.lock = true,
                Opt::Json => json = true,
                Opt::Help => return Ok(Command::Help),
                Opt::Version => return Ok(Command::Version),
                Opt::Mark => return Ok(Command::Mark { files: index + 1 }),
                Opt::Unmark => return Ok(Command::Unmark { files: index + 1 }),
                Opt::BinfmtRule => return Ok(Command::BinfmtRule),
                Opt::Stat => {
                    return Ok(Command::Stat {
                        args: index + 1,
                        json,
                    });
                }
                Opt::Prime => {
                    return Ok(Command::Prime {
                        args: index + 1,
                        json,
                    });
                }
            }
        }
    }
    Err(UsageError::NoProgram)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&'static str]) -> (Result<Command<'static>, UsageError<'static>>, Settings) {
        let mut s = Settings::default();
        let r = parse(args.iter().map(|a| a.as_bytes()), &mut s);
        (r, s)
    }

    #[test]
    fn options_then_program() {
        let (r, s) = run(&[
            "-v",
            "--strategy=aggressive",
            "-b",
            "thp",
            "--perf-map",
            "./prog",
            "-v",
        ]);
        assert_eq!(
            r,
            Ok(Command::Run {
                program: 5,
                argv0: None
            })
        );
        assert_eq!(s.verbose, 1);
        assert!(s.perf_map);
        assert_eq!(s.strategy, Strategy::Aggressive);
        assert_eq!(s.backend, Backend::Thp);
        let (r, s) = run(&["-shugetlb", "x"]);
        assert_eq!(
            r,
            Err(UsageError::BadValue {
                option: "--strategy",
                value: b"hugetlb",
                choices: STRATEGIES
            })
        );
        assert_eq!(s.strategy, Strategy::Conservative);
        let (r, s) = run(&["-bhugetlb", "--argv0", "name", "--", "-prog", "a"]);
        assert_eq!(
            r,
            Ok(Command::Run {
                program: 4,
                argv0: Some(b"name")
            })
        );
        assert_eq!(s.backend, Backend::Hugetlb);
    }

    #[test]
    fn help_version_and_mistakes() {
        assert_eq!(run(&["--help", "x"]).0, Ok(Command::Help));
        assert_eq!(run(&["-V"]).0, Ok(Command::Version));
        assert_eq!(
            run(&["-v", "--mark", "a", "b"]).0,
            Ok(Command::Mark { files: 2 })
        );
        assert_eq!(run(&["--unmark", "a"]).0, Ok(Command::Unmark { files: 1 }));
        assert_eq!(run(&["--binfmt-rule"]).0, Ok(Command::BinfmtRule));
        assert_eq!(
            run(&["--stat", "--json", "1"]).0,
            Ok(Command::Stat {
                args: 1,
                json: false
            })
        );
        assert_eq!(run(&[]).0, Err(UsageError::NoProgram));
        assert_eq!(run(&["-v"]).0, Err(UsageError::NoProgram));
        assert_eq!(run(&["--"]).0, Err(UsageError::NoProgram));
        assert_eq!(
            run(&["--frobnicate", "x"]).0,
            Err(UsageError::UnknownOption(b"--frobnicate"))
        );
        assert_eq!(run(&["-s"]).0, Err(UsageError::MissingValue("--strategy")));
        assert_eq!(
            run(&["--verbose=1", "x"]).0,
            Err(UsageError::UnexpectedValue("--verbose"))
        );
        assert_eq!(run(&["--st", "x"]).0, Err(UsageError::Ambiguous(b"--st")));
        assert_eq!(run(&["-x", "y"]).0, Err(UsageError::UnknownOption(b"x")));
    }

    #[test]
    fn getopt_conventions() {
        // Bundled short options, attached values, repeated -v.
        let (r, s) = run(&["-vs", "aggressive", "prog"]);
        assert_eq!(
            r,
            Ok(Command::Run {
                program: 2,
                argv0: None
            })
        );
        assert_eq!((s.verbose, s.strategy), (1, Strategy::Aggressive));
        let (_, s) = run(&["-vvb", "thp", "prog"]);
        assert_eq!((s.verbose, s.backend), (2, Backend::Thp));
        let (_, s) = run(&["-saggressive", "-vbthp", "prog"]);
        assert_eq!(
            (s.strategy, s.backend, s.verbose),
            (Strategy::Aggressive, Backend::Thp, 1)
        );
        // Unambiguous prefixes, both value forms.
        let (r, s) = run(&[
            "--verb",
            "--back",
            "hugetlb",
            "--str=aggressive",
            "--argv",
            "n",
            "p",
        ]);
        assert_eq!(
            r,
            Ok(Command::Run {
                program: 6,
                argv0: Some(b"n")
            })
        );
        assert_eq!(
            (s.verbose, s.backend, s.strategy),
            (1, Backend::Hugetlb, Strategy::Aggressive)
        );
        // --json before --stat.
        assert_eq!(
            run(&["--json", "--stat", "1"]).0,
            Ok(Command::Stat {
                args: 2,
                json: true
            })
        );
        // The line a user reads.
        let mut l = crate::fmt::Line::new();
        run(&["-s", "bogus"]).0.unwrap_err().write(&mut l);
        assert_eq!(
            l.as_bytes(),
            b"invalid argument 'bogus' for '--strategy' (valid: conservative, aggressive)"
        );
    }

    #[test]
    fn environment_sets_defaults_and_ignores_nonsense() {
        let env = |k: &[u8]| -> Option<&'static [u8]> {
            match k {
                b"HUGELOAD_STRATEGY" => Some(b"aggressive"),
                b"HUGELOAD_BACKEND" => Some(b"nonsense"),
                b"HUGELOAD_VERBOSE" => Some(b"1"),
                _ => None,
            }
        };
        let mut warned = std::vec::Vec::new();
        let s = Settings::from_env(env, |w| warned.push(w));
        assert_eq!(s.strategy, Strategy::Aggressive);
        assert_eq!(s.backend, Backend::Auto);
        assert_eq!(s.verbose, 1);
        assert_eq!(warned.len(), 1);
        assert_eq!(
            (warned[0].var, warned[0].value),
            ("HUGELOAD_BACKEND", &b"nonsense"[..])
        );
        let mut l = crate::fmt::Line::new();
        warned[0].write(&mut l);
        assert_eq!(
            l.as_bytes(),
            b"HUGELOAD_BACKEND=nonsense: not one of auto, pagecache, thp, hugetlb, off; ignored"
        );
        let s = Settings::from_env(|k| (k == b"HUGELOAD_OFF").then_some(&b"1"[..]), |_| {});
        assert_eq!(s.backend, Backend::Off);
        let s = Settings::from_env(|k| (k == b"HUGELOAD_OFF").then_some(&b"0"[..]), |_| {});
        assert_eq!(s.backend, Backend::Auto);
        // Any case; a verbosity level.
        let s = Settings::from_env(
            |k| match k {
                b"HUGELOAD_STRATEGY" => Some(&b"Aggressive"[..]),
                b"HUGELOAD_BACKEND" => Some(&b"HugeTLB"[..]),
                b"HUGELOAD_VERBOSE" => Some(&b"2"[..]),
                _ => None,
            },
            |w| panic!("{w:?}"),
        );
        assert_eq!(
            (s.strategy, s.backend, s.verbose),
            (Strategy::Aggressive, Backend::Hugetlb, 2)
        );
    }
}
