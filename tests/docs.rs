//! README shows what hugeload really prints: its `--help` block is the
//! output of `hugeload --help`, and its `--stat` example has the shape of
//! a real `--stat` of node run through hugeload (the numbers differ from
//! run to run; the words and fields must not).

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::time::{Duration, Instant};

/// The lines of README's code block that starts with `$ COMMAND`.
fn readme_block(command: &str) -> Vec<String> {
    let readme = fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let start = readme
        .find(&format!("```\n$ {command}"))
        .unwrap_or_else(|| panic!("README has no block starting `$ {command}`"));
    let body = &readme[start + 4..];
    let end = body.find("```").unwrap();
    body[..end].lines().skip(1).map(str::to_string).collect()
}

#[test]
fn readme_help_is_the_real_help() {
    let r = run(hl_command(&["--help"]));
    assert_eq!(r.code("hugeload --help"), 0);
    let real: Vec<String> = r.stdout_str().lines().map(str::to_string).collect();
    assert_eq!(
        readme_block("hugeload --help"),
        real,
        "README's help block differs from `hugeload --help`"
    );
}

/// A line's shape: digits and hex runs replaced, so that addresses, sizes
/// and counts may differ.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in line.chars() {
        if c.is_ascii_hexdigit() && !c.is_ascii_alphabetic() || (in_num && c.is_ascii_hexdigit()) {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}

#[test]
fn readme_stat_example_has_the_real_shape() {
    let node = or_skip!(real_copy("node"));
    let mut child = Running::start(hl(
        &[] as &[&str],
        &node,
        &["-e", "require('fs').readFileSync(0)"],
    ));
    let deadline = Instant::now() + TIMEOUT;
    while !child.is_blocked_reading_stdin() {
        if Instant::now() > deadline {
            child.fail("not ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = run(hl_command(&["--stat", &child.pid().to_string()]));
    child.close_stdin();
    child.finish();
    let real: Vec<String> = r.stdout_str().lines().map(shape).collect();
    let example = readme_block("hugeload --stat $(pidof node)");
    for line in example.iter().filter(|l| l.trim() != "...") {
        let want = shape(&line.replace("/usr/bin/node", &node.to_string_lossy()));
        let seen = real.iter().any(|l| {
            // Library paths differ by machine: compare up to the file name;
            // the total line up to its counts (JIT code comes and goes).
            let cut = |s: &str| {
                s.rsplit_once(' ')
                    .map_or(s.to_string(), |(a, _)| a.to_string())
            };
            let total = |s: &str| s.split_once("copies)").map(|(a, _)| a.to_string());
            *l == want
                || cut(l) == cut(&want)
                || (want.starts_with("  total") && total(l).is_some() && total(l) == total(&want))
        });
        assert!(
            seen,
            "README's `{line}` has no line of that shape in a real --stat:\n{}",
            r.stdout_str()
        );
    }
}
