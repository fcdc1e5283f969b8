# reelbox: the system user and its directories (RPM %post).
for g in video render; do
    getent group "$g" >/dev/null || groupadd --system "$g"
done
getent group reelbox >/dev/null || groupadd --system reelbox
getent passwd reelbox >/dev/null || useradd --system --gid reelbox --home-dir /var/lib/reelbox \
    --no-create-home --shell /sbin/nologin --comment "reelbox daemon" reelbox
install -d -o reelbox -g reelbox -m 0750 /var/lib/reelbox /var/lib/reelbox/models /var/cache/reelbox
systemctl daemon-reload >/dev/null 2>&1 || :
