#!/usr/bin/env bash
# Builds the RPM (cargo generate-rpm) and the Arch package (makepkg -R: PKGBUILD's
# package() on an already built binary) and checks each in a throwaway overlay of this
# machine's root, in a mount namespace: nothing lands on the host, not even the package
# databases. In each: install (the user, the directories, the message), a root CLI run
# (`keys create --offline`) that leaves nothing root-owned, an upgrade that keeps an
# edited config and the data, and a removal that keeps the data and the edited config
# (.rpmsave/.pacsave) and says so with the size. No systemd runs here: the unit calls in the scripts are
# skipped ([ -d /run/systemd/system ]); `bash -n` and reading them cover those lines.
#
#   packaging/check-rpm-arch.sh                      # target/release/reelbox
#   REELBOX_PKG_PROFILE=dev packaging/check-rpm-arch.sh   # target/debug/reelbox
#
# Needs root, and from Debian: rpm, makepkg (pacman-package-manager), libarchive-tools,
# and cargo-generate-rpm (`cargo install cargo-generate-rpm --version 0.21.1 --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
t0=$(date +%s)
step() { echo "== $* ($(($(date +%s) - t0)) s)"; }
fail() { echo "check-rpm-arch: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (package managers in a mount namespace)"
for tool in rpm makepkg pacman bsdtar unshare cargo-generate-rpm; do
    command -v "$tool" >/dev/null || fail "needs $tool (see the header)"
done

profile=${REELBOX_PKG_PROFILE:-release}
case "$profile" in
    release) bin=target/release/reelbox ;;
    dev) bin=target/debug/reelbox ;;
    *) fail "REELBOX_PKG_PROFILE must be release or dev, not $profile" ;;
esac
[ -x "$bin" ] || fail "$bin not built"
work=$(mktemp -d /tmp/reelbox-pkgcheck.XXXXXX)
trap 'rm -rf "$work"' EXIT

step "man pages, completions, models"
packaging/stage-assets.sh "$bin"

step "rpm: 0.1.0 and 0.1.1"
rm -rf target/generate-rpm
cargo generate-rpm --profile "$profile" --payload-compress gzip
cargo generate-rpm --profile "$profile" --payload-compress gzip -s 'version = "0.1.1"'
mkdir -p "$work/pkgs"
cp target/generate-rpm/reelbox-0.1.0-1.*.rpm "$work/pkgs/old.rpm"
cp target/generate-rpm/reelbox-0.1.1-1.*.rpm "$work/pkgs/new.rpm"
# Read whole, then matched, as ci-deb.sh does (a `| grep -q` that ends early breaks the
# writer's pipe: under pipefail a failure however the output reads).
grep -q "preuninstall scriptlet" <<<"$(rpm -qp --scripts "$work/pkgs/new.rpm")" || fail "the rpm has no %preun"

step "arch: 0.1.0-1 and 0.1.0-2"
# makepkg runs as a normal user in a copy of what package() reads.
tree="$work/arch-tree"
mkdir -p "$tree/target/release" "$tree/assets/espeak-ng"
cp -r packaging systemd "$tree/"
cp assets/config.example.toml "$tree/assets/"
cp assets/espeak-ng/README.md "$tree/assets/espeak-ng/"
cp -r target/assets "$tree/target/"
cp "$bin" "$tree/target/release/reelbox"
for rel in 1 2; do
    sed -i "s/^pkgrel=.*/pkgrel=$rel/" "$tree/packaging/arch/PKGBUILD"
    chown -R nobody "$work"
    (cd "$tree/packaging/arch" &&
        runuser -u nobody -- env HOME="$work" PKGDEST="$work/pkgs" PKGEXT=.pkg.tar.gz \
            makepkg -R -f --nodeps --skipinteg >"$work/makepkg-$rel.log" 2>&1) ||
        fail "makepkg: $(tail -5 "$work/makepkg-$rel.log")"
done
bsdtar -xOf "$work/pkgs/reelbox-0.1.0-2-"*.pkg.tar.gz .INSTALL | bash -n || fail ".INSTALL: bash -n"
bash -n packaging/arch/PKGBUILD

# Runs $2 (a bash script) as root in an overlay of / (changes go to $work/$1).
in_overlay() {
    local o="$work/$1"
    mkdir -p "$o/upper" "$o/work" "$o/root"
    unshare -m bash -euo pipefail -c "
        mount -t overlay overlay -o lowerdir=/,upperdir=$o/upper,workdir=$o/work $o/root
        mount --bind /proc $o/root/proc
        mount --bind /dev $o/root/dev
        mkdir -p $o/root/tmp/pkgs && cp $work/pkgs/* $o/root/tmp/pkgs/
        chroot $o/root bash -euo pipefail -c \"\$0\"" "$2"
}

# The checks both formats share: $1 installs, $2 upgrades, $3 removes (each a command).
checks='
fail() { echo "check-rpm-arch: FAILED: $*" >&2; exit 1; }
said=$(eval "$INSTALL" 2>&1) || fail "install: $said"
echo "$said" | grep -q "systemctl enable --now reelbox" || fail "install does not say how to start: $said"
echo "$said" | grep -q "reelbox-worker" || fail "install does not name the worker unit: $said"
eval "$USERS"
[ "$(stat -c %U:%a /var/lib/reelbox)" = reelbox:750 ] || fail "/var/lib/reelbox: $(stat -c %U:%a /var/lib/reelbox)"
[ -f /usr/lib/systemd/system/reelbox-worker.service ] || fail "no worker unit"
# The file the units read (EnvironmentFile=); RPM shipped /etc/sysconfig/reelbox, never read.
[ -f /etc/default/reelbox ] || fail "no /etc/default/reelbox"
reelbox --version >/dev/null
# What the binary does for a root CLI run (hand_back): nothing left root-owned.
reelbox keys create --offline --name admin --scope admin >/dev/null 2>&1 || fail "keys create --offline"
owned=$(find /var/lib/reelbox -uid 0 | head -3)
[ -z "$owned" ] || fail "root-owned after keys create --offline: $owned"
echo "# edited by the admin" >>/etc/reelbox/config.toml
said=$(eval "$UPGRADE" 2>&1) || fail "upgrade: $said"
grep -q "edited by the admin" /etc/reelbox/config.toml || fail "the upgrade replaced the edited config"
[ -n "$(ls /var/lib/reelbox)" ] || fail "the upgrade lost the data"
said=$(eval "$REMOVE" 2>&1) || fail "remove: $said"
echo "$said" | grep -q "kept /var/lib/reelbox (" || fail "remove does not say what it kept: $said"
echo "$said" | grep -q "userdel reelbox" || fail "remove does not say how to delete the rest: $said"
[ ! -e /usr/bin/reelbox ] || fail "/usr/bin/reelbox left behind"
[ -d /var/lib/reelbox ] || fail "remove deleted the data"
grep -q "edited by the admin" "/etc/reelbox/config.toml.$SAVED" || fail "the edited config was not kept as .$SAVED"
echo "$said" | grep "kept /var/lib"
'

step "rpm: install, root CLI run, upgrade, erase"
in_overlay rpm "
INSTALL='rpm -i --nodeps /tmp/pkgs/old.rpm'
USERS=:
UPGRADE='rpm -U --nodeps /tmp/pkgs/new.rpm'
REMOVE='rpm -e reelbox'
SAVED=rpmsave
$checks"

step "arch: install, root CLI run, upgrade, remove"
# pacman runs the alpm hooks that apply sysusers.d/tmpfiles.d on Arch; not here, so the
# check applies the package's files with the same tools.
in_overlay arch "
mkdir -p /var/lib/pacman
INSTALL='pacman -U --noconfirm --nodeps --nodeps /tmp/pkgs/reelbox-0.1.0-1-*.pkg.tar.gz'
USERS='systemd-sysusers /usr/lib/sysusers.d/reelbox.conf && systemd-tmpfiles --create /usr/lib/tmpfiles.d/reelbox.conf'
UPGRADE='pacman -U --noconfirm --nodeps --nodeps /tmp/pkgs/reelbox-0.1.0-2-*.pkg.tar.gz'
REMOVE='pacman -R --noconfirm reelbox'
SAVED=pacsave
$checks"

step "OK"
echo "check-rpm-arch: OK ($(($(date +%s) - t0)) s)"
