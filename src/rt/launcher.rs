//! Launcher mode, `hugeload [OPTIONS] PROGRAM [ARGS...]`: hugeload's own
//! command line chooses what to do; running a program is the shared load
//! (`load::load`).

use super::boot::Boot;
use super::host::Host;
use super::load::{self, Request};
use super::{mark, out, prime, stat};
use hugeload::options::{self, Command};

const USAGE: &str = "\
usage: hugeload [OPTIONS] [--] PROGRAM [ARGS...]
Runs PROGRAM with its code on 2 MiB pages.
  -s, --strategy=conservative|aggressive   how text edges are rounded (default conservative)
  -b, --backend=auto|pagecache|thp|hugetlb|off
                                           where huge pages come from (default auto)
  -v, --verbose                            report what was mapped, and why anything was not
                                           (-vv: also what had nothing to report)
      --argv0=NAME                         argv[0] for the program (default: PROGRAM as given)
      --perf-map                           write /tmp/perf-PID.map for the code moved to huge pages
      --lock                               lock the program's code in memory (mlock)
      --stat [--json] PID...               how much code of running processes is on huge pages
      --prime [--check] [--json] [--list FILE] PATH...
                                           read the code of ELF files (and under directories)
                                           into 2 MiB page-cache pages, for every later run
      --mark FILE... / --unmark FILE...    set/clear the binfmt_misc marker (e_ident[15] = 'H')
      --binfmt-rule                        print the binfmt_misc rule for /etc/binfmt.d/hugeload.conf
  -h, --help                               this text
  -V, --version                            the version
Short options bundle (-vs aggressive); a long option takes its value after
'=' or as the next argument, and may be shortened to any unambiguous
prefix (--verb).
Environment: HUGELOAD_STRATEGY, HUGELOAD_BACKEND, HUGELOAD_VERBOSE=1|2,
HUGELOAD_OFF=1, HUGELOAD_PERFMAP=1, HUGELOAD_LOCK=1, HUGELOAD_INTERP=PATH
(PT_INTERP mode). Values in any case; a value that means nothing is
reported and ignored. Options win; all are ignored for secure-execution
programs.
Exit status: the program's; 125 for a usage error, 126 if PROGRAM cannot be
run, 127 if it is not found.
";

pub fn main(boot: &Boot) -> ! {
    let mut settings = boot.settings();
    let command = options::parse(boot.args_from(1), &mut settings);
    match command {
        Ok(Command::Run { program, argv0 }) => {
            let index = 1 + program;
            let typed = boot.arg(index).unwrap_or(b"");
            let request = Request {
                typed,
                argv0: argv0.unwrap_or(typed),
                rest: index + 1,
                search_path: true,
                execfd: None,
                kernel_fallback: true,
            };
            let host = Host::probe(settings.backend);
            match load::load(boot, &host, &settings, &request) {
                Ok(handoff) => handoff.enter(),
                Err(failure) => failure.exit(),
            }
        }
        Ok(Command::Help) => out::print_or_fail(USAGE.as_bytes()),
        Ok(Command::Version) => {
            out::print_or_fail(concat!("hugeload ", env!("CARGO_PKG_VERSION"), "\n").as_bytes())
        }
        Ok(Command::Mark { files }) => mark::main(boot, 1 + files, true),
        Ok(Command::Unmark { files }) => mark::main(boot, 1 + files, false),
        Ok(Command::BinfmtRule) => mark::print_rule(),
        Ok(Command::Stat { args, json }) => stat::main(boot, 1 + args, json),
        Ok(Command::Prime { args, json }) => prime::main(boot, 1 + args, json),
        // One line and a pointer to --help, with env's status for its own
        // errors, so it cannot pass for the program's.
        Err(e) => out::usage_error(|l| e.write(l)),
    }
}
