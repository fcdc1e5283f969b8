# reelbox (RPM %preun; $1 = 0 on erase, 1 on upgrade): on erase stop and disable both
# units, as the .deb's remove does (a service left running would run a deleted binary).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now reelbox.service reelbox-worker.service >/dev/null 2>&1 || :
fi
