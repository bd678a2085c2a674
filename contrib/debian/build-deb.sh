#!/usr/bin/env bash
# Builds the Debian package of hugeload with dpkg-deb alone (no debhelper):
#
#   contrib/debian/build-deb.sh [--binary FILE] [--out DIR]
#
# Without --binary it runs `cargo build --release --locked` first. Writes
# DIR/hugeload_VERSION_amd64.deb (DIR: target/debian) and prints its path.
# VERSION is Cargo.toml's. The package holds:
#
#   /usr/bin/hugeload
#   /usr/share/man/man1/hugeload.1.gz
#   /usr/share/bash-completion/completions/hugeload
#   /usr/share/zsh/vendor-completions/_hugeload
#   /lib/systemd/system/hugeload-prime.service      (not enabled)
#   /usr/share/doc/hugeload/{copyright,changelog.gz}
#   /usr/share/doc/hugeload/examples/prime.list
#   /usr/share/doc/hugeload/examples/binfmt.d/hugeload.conf  (not registered)
#
# The binfmt_misc rule is opt-in: registering it routes every marked binary
# through hugeload system-wide, so the package only ships an example.
# Maintainer, changelog date: DEBFULLNAME/DEBEMAIL (else git's user.name
# and user.email), SOURCE_DATE_EPOCH (else the last commit's time).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
binary=""
out="$root/target/debian"

die() {
    printf 'build-deb.sh: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

while [ $# -gt 0 ]; do
    case $1 in
    --binary) [ $# -ge 2 ] || die "--binary needs a FILE"; binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a DIR"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

for tool in dpkg-deb gzip md5sum; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# The version in [package] of Cargo.toml.
version=$(awk '
    /^\[/ { in_package = ($0 == "[package]") }
    in_package && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }
' "$root/Cargo.toml")
[ -n "$version" ] || die "no version in $root/Cargo.toml"

if [ -z "$binary" ]; then
    printf '==> cargo build --release --locked\n' >&2
    (cd "$root" && cargo build --release --locked)
    binary="$root/target/x86_64-unknown-linux-gnu/release/hugeload"
fi
[ -x "$binary" ] || die "$binary is not an executable file"
reported=$("$binary" --version) || die "$binary --version failed"
[ "$reported" = "hugeload $version" ] ||
    die "$binary says '$reported', Cargo.toml says version $version"

# The example binfmt_misc rule must be the one this binary prints, with
# the package's path.
rule=$("$binary" --binfmt-rule | awk -F: 'BEGIN { OFS = ":" } { $7 = "/usr/bin/hugeload"; print }')
conf="$root/contrib/binfmt.d/hugeload.conf"
grep -qxF -- "$rule" "$conf" ||
    die "$conf does not hold the rule of this binary (hugeload --binfmt-rule, path /usr/bin/hugeload): $rule"

maintainer_name=${DEBFULLNAME:-$(git -C "$root" config user.name 2>/dev/null || true)}
maintainer_email=${DEBEMAIL:-$(git -C "$root" config user.email 2>/dev/null || true)}
maintainer="${maintainer_name:-hugeload maintainers} <${maintainer_email:-root@localhost.localdomain}>"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/hugeload"
doc="$pkg/usr/share/doc/hugeload"

install -D -m 755 "$binary" "$pkg/usr/bin/hugeload"
install -D -m 644 "$root/contrib/man/hugeload.1" "$pkg/usr/share/man/man1/hugeload.1"
gzip -9n "$pkg/usr/share/man/man1/hugeload.1"
install -D -m 644 "$root/contrib/completions/hugeload.bash" \
    "$pkg/usr/share/bash-completion/completions/hugeload"
install -D -m 644 "$root/contrib/completions/_hugeload" \
    "$pkg/usr/share/zsh/vendor-completions/_hugeload"
# The unit names /usr/local/bin/hugeload (where README installs it by
# hand); the package's hugeload is /usr/bin/hugeload. Its manual page goes
# in as the unit's documentation.
mkdir -p "$pkg/lib/systemd/system"
sed -e 's|/usr/local/bin/hugeload|/usr/bin/hugeload|g' \
    -e '/^Description=/a Documentation=man:hugeload(1)' \
    "$root/contrib/systemd/hugeload-prime.service" >"$pkg/lib/systemd/system/hugeload-prime.service"
chmod 644 "$pkg/lib/systemd/system/hugeload-prime.service"
grep -q '^ExecStart=/usr/bin/hugeload ' "$pkg/lib/systemd/system/hugeload-prime.service" ||
    die "hugeload-prime.service: ExecStart does not run /usr/bin/hugeload"
install -D -m 644 "$root/contrib/debian/copyright" "$doc/copyright"
install -D -m 644 "$root/contrib/systemd/prime.list" "$doc/examples/prime.list"
install -D -m 644 "$conf" "$doc/examples/binfmt.d/hugeload.conf"
install -D -m 644 "$root/contrib/debian/lintian-overrides" \
    "$pkg/usr/share/lintian/overrides/hugeload"

# A native package's changelog: one entry for this build.
{
    printf 'hugeload (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Built from the hugeload source at %s.\n\n' "$commit"
    printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$doc/changelog"
gzip -9n "$doc/changelog"

mkdir -p "$pkg/DEBIAN"
for script in postinst prerm postrm; do
    install -m 755 "$root/contrib/debian/$script" "$pkg/DEBIAN/$script"
done
(cd "$pkg" && find usr lib -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 644 "$pkg/DEBIAN/md5sums"
installed_size=$(du -sk --apparent-size "$pkg/usr" "$pkg/lib" | awk '{ s += $1 } END { print s }')
cat >"$pkg/DEBIAN/control" <<EOF
Package: hugeload
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $installed_size
Section: utils
Priority: optional
Multi-Arch: foreign
Description: run a program with its machine code on 2 MiB pages
 hugeload is a statically linked ELF loader that maps a program's code onto
 2 MiB pages at load time, from the file's page cache when it can (shared,
 no copy), else copies in hugetlb or transparent huge pages, without
 changing the program. Use it as a launcher (hugeload PROGRAM ARGS), as a
 program's PT_INTERP (patchelf --set-interpreter /usr/bin/hugeload), or
 through an opt-in binfmt_misc rule. hugeload --prime reads code into
 2 MiB page-cache pages for later runs; hugeload --stat reports how much
 code of running processes is on huge pages.
EOF

# Owned by root whoever builds it; timestamps from SOURCE_DATE_EPOCH.
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/hugeload_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
printf '%s\n' "$deb"
