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
    pub verbose: bool,
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
            verbose: false,
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

fn is_true(value: &[u8]) -> bool {
    !matches!(value, b"" | b"0" | b"no" | b"false" | b"off")
}

impl Settings {
    /// The defaults, changed by `HUGELOAD_STRATEGY`, `HUGELOAD_BACKEND`,
    /// `HUGELOAD_VERBOSE` and `HUGELOAD_OFF`. Values that mean nothing are
    /// ignored: a setting in the environment never stops a program.
    pub fn from_env<'a>(get: impl Fn(&[u8]) -> Option<&'a [u8]>) -> Settings {
        let mut s = Settings::default();
        if let Some(v) = get(ENV_STRATEGY.as_bytes()).and_then(parse_strategy) {
            s.strategy = v;
        }
        if let Some(v) = get(ENV_BACKEND.as_bytes()).and_then(Backend::parse) {
            s.backend = v;
        }
        if let Some(v) = get(ENV_VERBOSE.as_bytes()) {
            s.verbose = is_true(v);
        }
        if let Some(v) = get(ENV_PERFMAP.as_bytes()) {
            s.perf_map = is_true(v);
        }
        if let Some(v) = get(ENV_LOCK.as_bytes()) {
            s.lock = is_true(v);
        }
        if get(ENV_OFF.as_bytes()).is_some_and(is_true) {
            s.backend = Backend::Off;
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
    /// `--stat [--json] PID...`: the arguments from this index on.
    Stat {
        args: usize,
    },
    /// `--prime [--check] [--json] PATH...`: the arguments from this index on.
    Prime {
        args: usize,
    },
}

/// A command line that makes no sense; hugeload prints usage and exits 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageError<'a> {
    UnknownOption(&'a [u8]),
    MissingValue(&'a [u8]),
    BadValue(&'a [u8]),
    NoProgram,
}

impl UsageError<'_> {
    pub fn message(&self) -> (&'static str, &[u8]) {
        match self {
            UsageError::UnknownOption(o) => ("unknown option: ", o),
            UsageError::MissingValue(o) => ("option needs a value: ", o),
            UsageError::BadValue(o) => ("bad value for option: ", o),
            UsageError::NoProgram => ("no program given", b""),
        }
    }
}

/// Parses hugeload's own options from `args` (argv without argv[0]), on
/// top of `settings`. Options stop at `--` or at the first argument that is
/// not an option: that is PROGRAM, and the rest are its arguments.
pub fn parse<'a>(
    args: impl Iterator<Item = &'a [u8]>,
    settings: &mut Settings,
) -> Result<Command<'a>, UsageError<'a>> {
    let mut argv0 = None;
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
        // Split "--name=value" and "-xVALUE".
        let (name, inline): (&[u8], Option<&'a [u8]>) = if arg.starts_with(b"--") {
            match arg.iter().position(|&b| b == b'=') {
                Some(eq) => (&arg[..eq], Some(&arg[eq + 1..])),
                None => (arg, None),
            }
        } else if arg.len() > 2 {
            (&arg[..2], Some(&arg[2..]))
        } else {
            (arg, None)
        };
        let takes_value = matches!(
            name,
            b"-s" | b"--strategy" | b"-b" | b"--backend" | b"--argv0"
        );
        let value = if takes_value {
            match inline {
                Some(v) => v,
                None => match args.next() {
                    Some((_, v)) => v,
                    None => return Err(UsageError::MissingValue(arg)),
                },
            }
        } else {
            if inline.is_some() {
                return Err(UsageError::UnknownOption(arg));
            }
            b""
        };
        match name {
            b"-s" | b"--strategy" => {
                settings.strategy = parse_strategy(value).ok_or(UsageError::BadValue(arg))?
            }
            b"-b" | b"--backend" => {
                settings.backend = Backend::parse(value).ok_or(UsageError::BadValue(arg))?
            }
            b"--argv0" => argv0 = Some(value),
            b"-v" | b"--verbose" => settings.verbose = true,
            b"--perf-map" => settings.perf_map = true,
            b"-h" | b"--help" => return Ok(Command::Help),
            b"--mark" => return Ok(Command::Mark { files: index + 1 }),
            b"--unmark" => return Ok(Command::Unmark { files: index + 1 }),
            b"--binfmt-rule" => return Ok(Command::BinfmtRule),
            b"--stat" => return Ok(Command::Stat { args: index + 1 }),
            b"--prime" => return Ok(Command::Prime { args: index + 1 }),
            b"--lock" => settings.lock = true,
            b"-V" | b"--version" => return Ok(Command::Version),
            _ => return Err(UsageError::UnknownOption(arg)),
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
        assert!(s.verbose);
        assert!(s.perf_map);
        assert_eq!(s.strategy, Strategy::Aggressive);
        assert_eq!(s.backend, Backend::Thp);
        let (r, s) = run(&["-shugetlb", "x"]);
        assert_eq!(r, Err(UsageError::BadValue(b"-shugetlb")));
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
            Ok(Command::Stat { args: 1 })
        );
        assert_eq!(run(&[]).0, Err(UsageError::NoProgram));
        assert_eq!(run(&["-v"]).0, Err(UsageError::NoProgram));
        assert_eq!(run(&["--"]).0, Err(UsageError::NoProgram));
        assert_eq!(
            run(&["--frobnicate", "x"]).0,
            Err(UsageError::UnknownOption(b"--frobnicate"))
        );
        assert_eq!(
            run(&["--verbose=1", "x"]).0,
            Err(UsageError::UnknownOption(b"--verbose=1"))
        );
        assert_eq!(run(&["-s"]).0, Err(UsageError::MissingValue(b"-s")));
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
        let s = Settings::from_env(env);
        assert_eq!(s.strategy, Strategy::Aggressive);
        assert_eq!(s.backend, Backend::Auto);
        assert!(s.verbose);
        let s = Settings::from_env(|k| (k == b"HUGELOAD_OFF").then_some(&b"1"[..]));
        assert_eq!(s.backend, Backend::Off);
        let s = Settings::from_env(|k| (k == b"HUGELOAD_OFF").then_some(&b"0"[..]));
        assert_eq!(s.backend, Backend::Auto);
    }
}
