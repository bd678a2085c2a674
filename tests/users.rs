//! What an ordinary user gets: hugeload run without privilege.
//!
//! `HUGELOAD_STRICT=1` turns skips (no root to switch users, a tool
//! missing) into failures.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::process::Command;

/// `setpriv` to the `nobody` user, running `hugeload ARGS...` (a copy of
/// hugeload that user can run).
fn as_nobody(args: &[&str]) -> Result<Command, Skip> {
    need_root("switch to the nobody user")?;
    let setpriv = need_tool("setpriv")?;
    let dir = std::path::PathBuf::from(format!("/tmp/hl-users.{}", std::process::id()));
    let hl = dir.join("hugeload");
    if !hl.exists() {
        fs::create_dir_all(&dir).unwrap();
        fs::copy(hugeload(), &hl).unwrap();
        set_mode(&dir, 0o755);
        set_mode(&hl, 0o755);
    }
    let mut cmd = Command::new(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&hl)
        .args(args);
    clear_hugeload_env(&mut cmd);
    Ok(cmd)
}

/// java finds libjli through `$ORIGIN/../lib` of its own file. Without
/// privilege `/proc/self/exe` names hugeload; hugeload expands the
/// program's `$ORIGIN` for ld.so, so java runs as it does directly.
#[test]
fn origin_of_the_program_without_privilege() {
    let java = canonical(&or_skip!(need_tool("java")));
    let mut direct = Command::new("setpriv");
    direct
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&java)
        .arg("-version");
    let d = run(direct);
    assert_eq!(d.code("java -version"), 0, "{}", d.stderr_str());
    let java_s = java.to_string_lossy().into_owned();
    let h = run(or_skip!(as_nobody(&["-b", "thp", &java_s, "-version"])));
    assert_eq!(
        h.code("hugeload java -version as nobody"),
        0,
        "{}",
        h.stderr_str()
    );
    assert_eq!(h.stderr_str(), d.stderr_str());
    assert_eq!(h.stdout_str(), d.stdout_str());

    // The $ORIGIN fixture, copied where nobody may read it: its library
    // sits in $ORIGIN/../lib.
    let prog = or_skip!(fixture("modes-origin"));
    let lib = or_skip!(fixture("libmodesorigin.so"));
    let dir = std::path::PathBuf::from(format!("/tmp/hl-users.{}/origin", std::process::id()));
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("lib")).unwrap();
    fs::copy(&prog, dir.join("bin/prog")).unwrap();
    fs::copy(&lib, dir.join("lib/libmodesorigin.so")).unwrap();
    for p in [
        dir.clone(),
        dir.join("bin"),
        dir.join("lib"),
        dir.join("bin/prog"),
    ] {
        set_mode(&p, 0o755);
    }
    let prog_s = dir.join("bin/prog").to_string_lossy().into_owned();
    let h = run(or_skip!(as_nobody(&["-v", &prog_s])));
    let err = h.stderr_str();
    assert_eq!(h.code("hugeload modes-origin as nobody"), 4, "{err}");
    assert!(
        h.stdout_str()
            .starts_with("hello from DIR/lib through $ORIGIN\n"),
        "{}",
        h.stdout_str()
    );
    assert!(
        err.contains("$ORIGIN of the program expanded for ld.so: "),
        "{err}"
    );
}
