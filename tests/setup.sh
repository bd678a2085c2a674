#!/usr/bin/env bash
# Installs what the integration tests need on a fresh Debian 12 x86-64
# machine (compilers for the fixtures, patchelf, strace, gdb, perf), gives
# the hugetlb pool pages and makes sure THP is usable. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*" >&2; }

# True if apt knows a package with an installable version.
apt_has() {
    local policy
    policy=$(apt-cache policy "$1" 2>/dev/null) || return 1
    [[ $policy == *"Candidate: "* && $policy != *"Candidate: (none)"* ]]
}

log "apt-get update"
"${SUDO[@]}" apt-get update

packages=()
# lld links the LLD fixture library (code a page above its file offsets);
# python3-dev gives Python.h for the extension-module fixture (tests/libraries.rs).
for pkg in patchelf musl-tools golang-go hyperfine gcc-multilib strace gdb linux-perf python3 python3-dev lld xfsprogs btrfs-progs; do
    if apt_has "$pkg"; then
        packages+=("$pkg")
    elif [ "$pkg" = gcc-multilib ]; then
        log "gcc-multilib is not available: the 32-bit ELF test hand-crafts its file"
    else
        log "package $pkg is not available from apt"
        exit 1
    fi
done
# Compilers and the real programs the tests run, when the image lacks them.
declare -A tool_package=(
    [gcc]=gcc [g++]=g++ [git]=git [python3]=python3 [node]=nodejs
    [readelf]=binutils [kill]=procps [java]=openjdk-17-jre-headless [setpriv]=util-linux [fincore]=util-linux
    # tests/install.rs and the package step of .ci/run: the manual page,
    # the zsh completion, the Debian package.
    [man]=man-db [zsh]=zsh [dpkg-deb]=dpkg [gzip]=gzip
)
for tool in "${!tool_package[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        packages+=("${tool_package[$tool]}")
    fi
done
log "apt-get install -y ${packages[*]}"
"${SUDO[@]}" apt-get install -y "${packages[@]}"

if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is not installed (stable Rust >= 1.87 is needed)"
    exit 1
fi

# hugetlb pool: 128 pages of 2 MiB. Never lower what is already there.
pool=/proc/sys/vm/nr_hugepages
want=128
have=$(cat "$pool")
if [ "$have" -lt "$want" ]; then
    log "raising $pool from $have to $want"
    echo "$want" | "${SUDO[@]}" tee "$pool" >/dev/null
fi
log "$pool: $(cat "$pool")"

# The THP tests need transparent huge pages in madvise (or always) mode.
thp=/sys/kernel/mm/transparent_hugepage/enabled
if [[ $(cat "$thp") == *"[never]"* ]]; then
    log "THP is off; switching it to madvise"
    echo madvise | "${SUDO[@]}" tee "$thp" >/dev/null
fi
log "$thp: $(cat "$thp")"

log "tools:"
for tool in cargo rustc gcc musl-gcc ld.lld go node python3 java git gdb patchelf strace perf man zsh dpkg-deb; do
    printf '    %-10s %s\n' "$tool" "$(command -v "$tool" || echo MISSING)" >&2
done
rustc --version >&2
