#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg on this machine, checks what a user
# gets (binary, man page, completions, unit file, system user, hardening score), runs
# lintian, then purges it and checks nothing is left. Needs root (or sudo) and apt.
#
#   packaging/ci-deb.sh                 # full run: release build, then package and check
#   REELBOX_DEB_SKIP_BUILD=1 ...        # reuse target/release/reelbox
#   REELBOX_DEB_PROFILE=dev ...         # package the debug binary (.ci/test: checks the
#                                       # packaging without a second, release build)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { echo "== $* ($(($(date +%s) - t0)) s)"; }
fail() { echo "ci-deb: FAILED: $*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    fail "needs root (dpkg -i)"
fi

step "tools"
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v man >/dev/null || need+=(man-db)
dpkg-query -W -f='${Status}' adduser 2>/dev/null | grep -q "install ok installed" || need+=(adduser)
if [ ${#need[@]} -gt 0 ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
profile=${REELBOX_DEB_PROFILE:-release}
case "$profile" in
    release) bin=target/release/reelbox; deb_args=(); install_args=() ;;
    # cargo-deb maps the target/release/ assets to target/debug/ and warns that dev
    # packages are not for release. Compression goes to the system's gzip, so a cargo-deb
    # built without optimisation (minutes less to install on CI) packs as fast as any.
    dev) bin=target/debug/reelbox; deb_args=(--profile dev --fast -Z gz --compress-system); install_args=(--debug) ;;
    *) fail "REELBOX_DEB_PROFILE must be release or dev, not $profile" ;;
esac

# Pinned: the flags above (and the dev-profile mapping) are what this version does.
cargo_deb_version=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $cargo_deb_version"; then
    step "cargo install cargo-deb $cargo_deb_version"
    cargo install cargo-deb --version "$cargo_deb_version" --locked "${install_args[@]}"
fi
if [ -z "${REELBOX_DEB_SKIP_BUILD:-}" ]; then
    step "cargo build --profile $profile"
    cargo build --profile "$profile" --locked
fi

step "man pages, completions, models"
packaging/stage-assets.sh "$bin"

step "cargo deb"
rm -rf target/debian
cargo deb --no-build "${deb_args[@]}" --output target/debian/
deb=$(ls target/debian/*.deb)
echo "$deb ($(du -h "$deb" | cut -f1))"

step "lintian"
# Errors fail the run; warnings are printed for the record.
lintian --fail-on error --suppress-tags-from-file packaging/debian/lintian-ignore "$deb" ||
    fail "lintian reported errors"

step "install"
if dpkg-query -W reelbox >/dev/null 2>&1; then $sudo dpkg --purge reelbox >/dev/null; fi
# A failed check must not leave the package installed: its /etc/reelbox/config.toml would
# change what every later test run on this machine reads.
trap 'if dpkg-query -W reelbox >/dev/null 2>&1; then $sudo dpkg --purge reelbox >/dev/null 2>&1; fi' EXIT
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "./$deb" >/dev/null ||
    fail "installing $deb"

step "checks"
want_version="reelbox $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
got_version=$(/usr/bin/reelbox --version)
[ "$got_version" = "$want_version" ] || fail "reelbox --version says '$got_version', expected '$want_version'"
man -w reelbox >/dev/null || fail "no man page for reelbox"
man -w reelbox-keys-create >/dev/null || fail "no man page for reelbox-keys-create"
MANWIDTH=80 man reelbox 2>/dev/null | grep -q "reelbox" || fail "man reelbox does not render"
bash -c 'source /usr/share/bash-completion/completions/reelbox && complete -p reelbox' >/dev/null ||
    fail "bash completion does not register"
grep -q "#compdef reelbox" /usr/share/zsh/vendor-completions/_reelbox || fail "zsh completion missing"
grep -q "complete -c reelbox" /usr/share/fish/vendor_completions.d/reelbox.fish || fail "fish completion missing"
unit=$(ls /lib/systemd/system/reelbox.service /usr/lib/systemd/system/reelbox.service 2>/dev/null | head -1)
[ -n "$unit" ] || fail "reelbox.service not installed"
systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
exposure=$(systemd-analyze security --offline=true --no-pager "$unit" | sed -n 's/.*Overall exposure level for reelbox.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security exposure: $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.5) }' || fail "exposure $exposure is above 2.5"
worker=$(ls /lib/systemd/system/reelbox-worker.service /usr/lib/systemd/system/reelbox-worker.service 2>/dev/null | head -1)
[ -n "$worker" ] || fail "reelbox-worker.service not installed"
systemd-analyze verify "$worker" || fail "systemd-analyze verify $worker"
! systemctl is-enabled reelbox-worker.service >/dev/null 2>&1 || fail "reelbox-worker.service is enabled by the package"
getent passwd reelbox >/dev/null || fail "system user reelbox missing"
[ "$(stat -c %U /var/lib/reelbox)" = reelbox ] || fail "/var/lib/reelbox is not owned by reelbox"
[ -f /etc/reelbox/config.toml ] || fail "/etc/reelbox/config.toml missing"
grep -q "First steps after installing" /usr/share/doc/reelbox/README.Debian || fail "README.Debian missing or without first steps"
! grep -q "cargo run" /usr/share/doc/reelbox/README.Debian || fail "README.Debian holds developer text"
[ ! -e /usr/share/doc/reelbox/README.md ] || fail "the developer README is shipped"
[ -f /usr/share/doc/reelbox/config.example.toml ] || fail "config.example.toml not under /usr/share/doc/reelbox"
# The installed file itself (`man -l`): `man reelbox` may show a page man-db formatted and
# cached from an earlier install, whose source kept the same day-rounded mtime.
man_text=$(MANWIDTH=80 man -l "$(man -w reelbox)" 2>/dev/null)
for want in FILES ENVIRONMENT /etc/reelbox/config.toml /etc/default/reelbox REELBOX_CONFIG REELBOX_LOG journalctl reelbox.service; do
    grep -qF -- "$want" <<<"$man_text" || fail "man reelbox does not name $want"
done
[ -f /usr/share/reelbox/models/README ] || fail "bundled models dir /usr/share/reelbox/models missing"
/usr/share/reelbox/gpu-check.sh --help | grep -q -- "--runtime DIR" || fail "gpu-check.sh is not installed and runnable"
dpkg-query --control-show reelbox conffiles | grep -q /etc/reelbox/config.toml || fail "config.toml is not a conffile"
# Read whole, then matched (a `| grep -q` that ends early breaks the writer's pipe: under
# pipefail a failure however the output reads).
grep -q '^bind = "127.0.0.1:8470"' <<<"$(/usr/bin/reelbox --config /etc/reelbox/config.toml config show)" ||
    fail "the packaged config does not load"

step "as root, as the service, as a login user"
# What an admin runs with sudo must stay the service's: a root-made database once stopped
# the service starting, root-owned model dirs could not be replaced or removed by it.
admin_key=$($sudo /usr/bin/reelbox keys create --offline --name ci-admin --scope admin) ||
    fail "sudo reelbox keys create --offline"
root_owned=$($sudo find /var/lib/reelbox -uid 0 | head -3)
[ -z "$root_owned" ] || fail "root-owned files in /var/lib/reelbox after a root CLI run: $root_owned"
# The service as its unit runs it (no systemd needed): user, config, state dir, umask.
log=$(mktemp)
$sudo runuser -u reelbox -- env -i PATH=/usr/bin:/bin HOME=/var/lib/reelbox REELBOX_CONFIG=/etc/reelbox/config.toml \
    STATE_DIRECTORY=/var/lib/reelbox CACHE_DIRECTORY=/var/cache/reelbox REELBOX_BIND=127.0.0.1:0 \
    sh -c 'umask 0027; exec timeout 20 /usr/bin/reelbox serve' >"$log" 2>&1 &
for _ in $(seq 100); do grep -q "reelbox listening" "$log" && break; sleep 0.1; done
grep -q "reelbox listening" "$log" || fail "the service does not start after a root CLI run: $(cat "$log")"
# A login user's pull (with the admin key a pull needs once keys exist) is done by the
# running service, into its dir, as its user.
url=$(sed -n 's/^reelbox listening on //p' "$log" | head -1)
pulled=$($sudo runuser -u nobody -- env -i PATH=/usr/bin:/bin HOME=/tmp REELBOX_KEY="$admin_key" \
    /usr/bin/reelbox --url "$url" pull demo-shapes 2>&1) ||
    fail "a user's pull through the service: $pulled"
echo "$pulled" | grep -q "demo-shapes installed at /var/lib/reelbox/models/demo-shapes" || fail "a user's pull says: $pulled"
[ "$($sudo stat -c %U /var/lib/reelbox/models/demo-shapes)" = reelbox ] || fail "the service's pull is not the service's"
$sudo kill -TERM "$($sudo cat /var/lib/reelbox/reelbox.pid)" || true
wait || true
# With the service stopped, a login user outside the reelbox group is told the sudo command,
# not "Permission denied".
pull_says=$($sudo runuser -u nobody -- /usr/bin/reelbox pull demo-shapes 2>&1 || true)
echo "$pull_says" | grep -q "sudo reelbox pull demo-shapes" || fail "a user's pull says: $pull_says"

step "remove keeps the data, purge deletes it"
remove_says=$($sudo dpkg --remove reelbox 2>&1) || fail "dpkg --remove reelbox: $remove_says"
echo "$remove_says" | grep -q "apt purge reelbox" || fail "remove does not say what stays: $remove_says"
[ ! -e /usr/bin/reelbox ] || fail "/usr/bin/reelbox left behind by remove"
[ -f /etc/reelbox/config.toml ] && [ -f /var/lib/reelbox/reelbox.redb ] || fail "remove deleted the config or the data"
$sudo dpkg --purge reelbox >/dev/null 2>&1 || fail "dpkg --purge reelbox"
[ ! -e /usr/bin/reelbox ] || fail "/usr/bin/reelbox left behind"
[ ! -e /etc/reelbox ] || fail "/etc/reelbox left behind"
[ ! -e /var/lib/reelbox ] || fail "/var/lib/reelbox left behind"
! getent passwd reelbox >/dev/null || fail "user reelbox left behind"

step "ci-deb: OK"
