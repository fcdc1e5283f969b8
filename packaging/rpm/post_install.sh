# reelbox: the system user and its directories (RPM %post; $1 = 1 on install, 2 on upgrade).
for g in video render; do
    getent group "$g" >/dev/null || groupadd --system "$g"
done
getent group reelbox >/dev/null || groupadd --system reelbox
getent passwd reelbox >/dev/null || useradd --system --gid reelbox --home-dir /var/lib/reelbox \
    --no-create-home --shell /sbin/nologin --comment "reelbox daemon" reelbox
install -d -o reelbox -g reelbox -m 0750 /var/lib/reelbox /var/lib/reelbox/models /var/cache/reelbox
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
# RPM convention leaves enabling to the admin (presets); say how, and what comes first.
if [ "$1" -eq 1 ]; then
    echo "reelbox: start it with \`systemctl enable --now reelbox\` (127.0.0.1:8470), then" \
        "\`sudo reelbox setup\` (ONNX Runtime and the demo models); a worker box enables" \
        "reelbox-worker instead, after adding [cluster] to /etc/reelbox/config.toml" >&2
fi
