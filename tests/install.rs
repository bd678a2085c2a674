//! Tests of what installs hugeload: the manual page
//! (`contrib/man/hugeload.1`), the bash and zsh completions
//! (`contrib/completions/`), the binfmt_misc example
//! (`contrib/binfmt.d/hugeload.conf`) and the Debian package that
//! `contrib/debian/build-deb.sh` builds (its contents only: CI installs and
//! removes it). A test whose tool is missing (man, bash, zsh, dpkg-deb)
//! prints `SKIP <test>: <reason>`; with `HUGELOAD_STRICT=1` that fails.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const BACKENDS: [&str; 5] = ["auto", "pagecache", "thp", "hugetlb", "off"];
const STRATEGIES: [&str; 2] = ["conservative", "aggressive"];

fn man_page() -> PathBuf {
    manifest_dir().join("contrib/man/hugeload.1")
}

fn bash_completion() -> PathBuf {
    manifest_dir().join("contrib/completions/hugeload.bash")
}

fn zsh_completion() -> PathBuf {
    manifest_dir().join("contrib/completions/_hugeload")
}

/// Runs `cmd`, asserts that it exited 0, and returns its stdout.
fn stdout_of(cmd: std::process::Command) -> String {
    let what = describe(&cmd);
    let r = run(cmd);
    assert!(r.success(), "{what}: {}", r.short());
    r.stdout_str()
}

/// The manual page rendered at 80 columns, after checking that man (groff)
/// renders it without a warning.
fn rendered_man_page() -> Result<String, Skip> {
    let man = need_tool("man")?;
    let mut cmd = command(man);
    cmd.args(["--warnings", "-l"])
        .arg(man_page())
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("LC_ALL", "C.UTF-8");
    let what = describe(&cmd);
    let r = run(cmd);
    assert!(r.success(), "{what}: {}", r.short());
    assert!(r.stderr.is_empty(), "{what}: warnings:\n{}", r.stderr_str());
    Ok(r.stdout_str())
}

#[test]
fn man_page_renders_without_warnings() {
    let text = or_skip!(rendered_man_page());
    for section in [
        "SYNOPSIS",
        "MODES",
        "OPTIONS",
        "BACKENDS",
        "ENVIRONMENT",
        "EXIT STATUS",
        "FILES",
        "EXAMPLES",
    ] {
        assert!(
            text.lines().any(|l| l == section),
            "the manual page has no section {section}"
        );
    }
    let source = fs::read_to_string(man_page()).unwrap();
    let th = source
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("no .TH line");
    assert!(
        th.contains(&format!("\"hugeload {VERSION}\"")),
        "{th}: the manual page's version is not Cargo.toml's ({VERSION})"
    );
}

/// Every option and environment variable `hugeload --help` names, and
/// every backend and strategy, is in the manual page.
#[test]
fn man_page_covers_help() {
    let text = or_skip!(rendered_man_page());
    let help = stdout_of(hl_command(&["--help"]));
    let mut names = BTreeSet::new();
    for word in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        let option = word.starts_with('-') && word.len() > 1 && word != "--";
        if option || word.starts_with("HUGELOAD_") {
            names.insert(word.to_string());
        }
    }
    assert!(
        names.contains("--backend") && names.contains("HUGELOAD_INTERP"),
        "{names:?}"
    );
    names.extend(BACKENDS.iter().chain(&STRATEGIES).map(|s| s.to_string()));
    names.insert("--list".into());
    for name in &names {
        assert!(
            text.contains(name.as_str()),
            "the manual page does not mention {name} (from hugeload --help)"
        );
    }
    for status in ["127", "126", "125"] {
        assert!(
            text.contains(&format!("       {status}")),
            "no exit status {status}"
        );
    }
}

/// What the bash completion offers with `words` on the line, the cursor
/// at the end of the last one.
fn bash_complete(words: &[&str]) -> Result<Vec<String>, Skip> {
    let bash = need_tool("bash")?;
    let mut cmd = command(bash);
    cmd.args([
        "--norc",
        "-c",
        r#"source "$0" || exit 1
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
_hugeload || exit 1
printf '%s\n' "${COMPREPLY[@]}""#,
    ])
    .arg(bash_completion())
    .args(words);
    Ok(stdout_of(cmd)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn sorted(words: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut v: Vec<String> = words.into_iter().map(Into::into).collect();
    v.sort();
    v
}

#[test]
fn bash_completes_options() {
    assert_eq!(
        or_skip!(bash_complete(&["hugeload", "--back"])),
        ["--backend"]
    );
    assert_eq!(
        sorted(or_skip!(bash_complete(&["hugeload", "-v", "--st"]))),
        ["--stat", "--strategy"]
    );
    let all = or_skip!(bash_complete(&["hugeload", "-"]));
    for option in [
        "--prime",
        "--mark",
        "--binfmt-rule",
        "--lock",
        "--perf-map",
        "--argv0",
    ] {
        assert!(all.iter().any(|o| o == option), "{option} not in {all:?}");
    }
    // Options end at PROGRAM: after it, nothing of hugeload's.
    let after = or_skip!(bash_complete(&["hugeload", "true", "--back"]));
    assert!(!after.iter().any(|o| o == "--backend"), "{after:?}");
}

#[test]
fn bash_completes_backends_and_strategies() {
    let backends = sorted(BACKENDS);
    let prefixed = sorted(BACKENDS.iter().map(|b| format!("--backend={b}")));
    assert_eq!(
        sorted(or_skip!(bash_complete(&["hugeload", "--backend="]))),
        prefixed
    );
    assert_eq!(
        sorted(or_skip!(bash_complete(&["hugeload", "-b", ""]))),
        backends
    );
    // As bash splits the line at '=' (COMP_WORDBREAKS).
    assert_eq!(
        sorted(or_skip!(bash_complete(&["hugeload", "--backend", "="]))),
        backends
    );
    assert_eq!(
        or_skip!(bash_complete(&["hugeload", "--backend", "=", "hu"])),
        ["hugetlb"]
    );
    assert_eq!(
        or_skip!(bash_complete(&["hugeload", "-v", "--backend=pa"])),
        ["--backend=pagecache"]
    );
    assert_eq!(
        sorted(or_skip!(bash_complete(&["hugeload", "--strategy", ""]))),
        sorted(STRATEGIES)
    );
    assert_eq!(
        or_skip!(bash_complete(&["hugeload", "-b", "thp", "-s", "ag"])),
        ["aggressive"]
    );
}

#[test]
fn bash_completes_files_and_pids() {
    let dir = scratch_dir("bash-completion");
    fs::write(dir.join("prime.list"), "").unwrap();
    fs::write(dir.join("program"), "").unwrap();
    let prefix = format!("{}/pr", dir.display());
    let files = sorted([
        format!("{}/prime.list", dir.display()),
        format!("{}/program", dir.display()),
    ]);
    // PROGRAM, and the files of --mark and --prime.
    assert_eq!(
        sorted(or_skip!(bash_complete(&["hugeload", &prefix]))),
        files
    );
    assert_eq!(
        sorted(or_skip!(bash_complete(&[
            "hugeload", "--mark", "x", &prefix
        ]))),
        files
    );
    assert_eq!(
        sorted(or_skip!(bash_complete(&[
            "hugeload", "--prime", "--list", &prefix
        ]))),
        files
    );
    assert_eq!(
        sorted(or_skip!(bash_complete(&["hugeload", "--prime", "--"]))),
        ["--check", "--json", "--list"]
    );
    // --stat: PIDs (this test's among them), and --json.
    let me = std::process::id().to_string();
    let pids = or_skip!(bash_complete(&["hugeload", "--stat", &me]));
    assert!(pids.contains(&me), "{me} not in {pids:?}");
    assert!(
        pids.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())),
        "{pids:?}"
    );
    assert_eq!(
        or_skip!(bash_complete(&["hugeload", "--stat", "--j"])),
        ["--json"]
    );
}

#[test]
fn zsh_completion_parses_and_loads() {
    let zsh = or_skip!(need_tool("zsh"));
    let file = zsh_completion();
    let first = fs::read_to_string(&file).unwrap();
    assert!(first.starts_with("#compdef hugeload\n"), "no #compdef line");
    let mut cmd = command(&zsh);
    cmd.arg("-n").arg(&file);
    stdout_of(cmd);
    // Autoloaded from its directory, as compinit finds it in $fpath.
    let mut cmd = command(&zsh);
    cmd.args([
        "-f",
        "-c",
        r#"fpath=("$1" $fpath); autoload -Uz +X _hugeload && whence -w _hugeload"#,
        "zsh",
    ])
    .arg(file.parent().unwrap());
    assert_eq!(stdout_of(cmd).trim(), "_hugeload: function");
}

/// The binfmt_misc example is the rule this hugeload prints, for
/// `/usr/bin/hugeload`.
#[test]
fn binfmt_example_is_the_rule() {
    let rule = stdout_of(hl_command(&["--binfmt-rule"]));
    let mut fields: Vec<&str> = rule.trim_end().split(':').collect();
    assert_eq!(fields.len(), 8, "{rule}");
    fields[6] = "/usr/bin/hugeload";
    let want = fields.join(":");
    let conf = fs::read_to_string(manifest_dir().join("contrib/binfmt.d/hugeload.conf")).unwrap();
    let rules: Vec<&str> = conf
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .collect();
    assert_eq!(rules, [want.as_str()]);
}

/// Files and directories of the package, as `dpkg-deb -c` lists them
/// (`./usr/bin/hugeload` without the `./`).
fn package_paths(deb: &Path) -> Result<BTreeSet<String>, Skip> {
    let mut cmd = command(need_tool("dpkg-deb")?);
    cmd.arg("-c").arg(deb);
    Ok(stdout_of(cmd)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .collect())
}

#[test]
fn debian_package_holds_what_it_should() {
    or_skip!(need_tool("dpkg-deb"));
    or_skip!(need_tool("gzip"));
    let out = scratch_dir("deb");
    let mut cmd = command(manifest_dir().join("contrib/debian/build-deb.sh"));
    cmd.arg("--binary").arg(hugeload()).arg("--out").arg(&out);
    let printed = stdout_of(cmd);
    let deb = out.join(format!("hugeload_{VERSION}_amd64.deb"));
    assert_eq!(printed.trim(), deb.display().to_string());
    assert!(deb.is_file(), "{} was not written", deb.display());

    let paths = or_skip!(package_paths(&deb));
    for want in [
        "usr/bin/hugeload",
        "usr/share/man/man1/hugeload.1.gz",
        "usr/share/bash-completion/completions/hugeload",
        "usr/share/zsh/vendor-completions/_hugeload",
        "lib/systemd/system/hugeload-prime.service",
        "usr/share/doc/hugeload/copyright",
        "usr/share/doc/hugeload/changelog.gz",
        "usr/share/doc/hugeload/examples/prime.list",
        "usr/share/doc/hugeload/examples/binfmt.d/hugeload.conf",
    ] {
        assert!(
            paths.contains(want),
            "{want} is not in the package: {paths:#?}"
        );
    }
    // Opt-in: nothing under /etc (no binfmt_misc rule registered, no
    // prime list), no binfmt.d drop-in the system would read.
    for path in &paths {
        let read_by_systemd = ["lib/binfmt.d/", "usr/lib/binfmt.d/"]
            .iter()
            .any(|d| path.starts_with(d) && path.ends_with(".conf"));
        assert!(
            !path.starts_with("etc") && !read_by_systemd,
            "{path}: the package would register or configure something"
        );
    }

    let field = |name: &str| {
        let mut cmd = command("dpkg-deb");
        cmd.arg("-f").arg(&deb).arg(name);
        stdout_of(cmd).trim().to_string()
    };
    assert_eq!(field("Package"), "hugeload");
    assert_eq!(field("Version"), VERSION);
    assert_eq!(field("Architecture"), "amd64");

    // The files themselves.
    let root = out.join("root");
    let mut cmd = command("dpkg-deb");
    cmd.arg("-x").arg(&deb).arg(&root);
    stdout_of(cmd);
    let bin = root.join("usr/bin/hugeload");
    assert_eq!(fs::read(&bin).unwrap(), fs::read(hugeload()).unwrap());
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    let unit = fs::read_to_string(root.join("lib/systemd/system/hugeload-prime.service")).unwrap();
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/hugeload --prime ")),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local/"), "{unit}");
    let conf =
        fs::read_to_string(root.join("usr/share/doc/hugeload/examples/binfmt.d/hugeload.conf"))
            .unwrap();
    assert!(conf.contains(":/usr/bin/hugeload:POF"), "{conf}");
    let mut cmd = command("gzip");
    cmd.arg("-dc")
        .arg(root.join("usr/share/man/man1/hugeload.1.gz"));
    assert_eq!(stdout_of(cmd), fs::read_to_string(man_page()).unwrap());
}
