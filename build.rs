//! Link arguments for the freestanding `hugeload` binary only: no C start
//! files, no libc, our own linker script, no executable stack.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    for arg in [
        "-nostartfiles".to_string(),
        "-nostdlib".to_string(),
        "-Wl,-z,noexecstack".to_string(),
        "-Wl,--build-id=none".to_string(),
        format!("-Wl,-T,{dir}/linker.ld"),
    ] {
        println!("cargo:rustc-link-arg-bin=hugeload={arg}");
    }
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
