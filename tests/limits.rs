//! Limits a user may set (`ulimit`) under which a direct run works: so
//! must a run through hugeload, or hugeload says why in one line. Never a
//! crash.
//!
//! `HUGELOAD_STRICT=1` turns skips into failures.

#[macro_use]
mod common;

use common::*;
use std::process::Command;

/// `sh -c 'ulimit LIMIT && exec "$@"' sh ARGV...`, with a clean hugeload
/// environment.
fn limited(limit: &str, argv: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit {limit} && exec \"$@\""))
        .arg("sh")
        .args(argv);
    clear_hugeload_env(&mut c);
    c
}

/// A 100,000-byte argument under a 200 KiB stack limit: the launcher no
/// longer copies the arguments below the kernel's copy, so they do not
/// take the limit twice.
#[test]
fn long_argument_under_a_small_stack_limit() {
    let arg = "a".repeat(100_000);
    let hl = hugeload().to_string_lossy().into_owned();
    let d = run(limited("-s 200", &["/bin/echo", &arg]));
    assert_eq!(d.code("direct"), 0, "{}", d.stderr_str());
    for opts in [&[][..], &["-b", "off"][..], &["-b", "thp"][..]] {
        let mut argv = vec![hl.as_str()];
        argv.extend_from_slice(opts);
        argv.extend_from_slice(&["/bin/echo", &arg]);
        let h = run(limited("-s 200", &argv));
        assert_eq!(
            h.code(&format!("hugeload {opts:?} echo")),
            0,
            "{}",
            h.stderr_str()
        );
        assert_eq!(h.stdout, d.stdout);
    }
    // /proc/PID/cmdline still shows the program's arguments.
    let h = run(limited("-s 200", &[&hl, "/bin/cat", "/proc/self/cmdline"]));
    assert_eq!(h.stdout, b"/bin/cat\0/proc/self/cmdline\0");
}

/// With only one free file descriptor (`ulimit -n 4`) a dynamically
/// linked program runs directly; through hugeload it runs too (hugeload
/// hands it to the kernel when it cannot hold the program and its ld.so
/// open at once, and says so under -v).
#[test]
fn one_free_file_descriptor() {
    let hl = hugeload().to_string_lossy().into_owned();
    let d = run(limited("-n 4", &["/bin/echo", "hi"]));
    assert_eq!(d.code("direct"), 0, "{}", d.stderr_str());
    let h = run(limited("-n 4", &[&hl, "/bin/echo", "hi"]));
    assert_eq!(
        h.code("hugeload echo under ulimit -n 4"),
        0,
        "{}",
        h.stderr_str()
    );
    assert_eq!(h.stdout, d.stdout);
    assert!(h.stderr.is_empty(), "{}", h.stderr_str());
    let h = run(limited("-n 4", &[&hl, "-v", "/bin/echo", "hi"]));
    assert_eq!(h.stdout, d.stdout);
    assert!(
        h.stderr_str().contains("handed to the kernel"),
        "{}",
        h.stderr_str()
    );
}
