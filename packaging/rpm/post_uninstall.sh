# reelbox (RPM %postun; $1 = 0 on erase, 1 or more on upgrade).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    # An upgrade restarts what runs (the worker only when it runs), as the .deb does.
    if [ -d /run/systemd/system ]; then
        systemctl try-restart reelbox.service reelbox-worker.service >/dev/null 2>&1 || :
    fi
elif [ -d /var/lib/reelbox ]; then
    # RPM has no purge: the data stays. Say what, its size, and how to delete it, as the
    # .deb's remove and purge say it.
    size=$(du -sh /var/lib/reelbox 2>/dev/null | cut -f1)
    echo "reelbox: kept /var/lib/reelbox (${size:-?}: films, models, jobs, API keys);" \
        "to delete it, copy out the films you want, then" \
        "\`rm -rf /var/lib/reelbox /var/cache/reelbox && userdel reelbox\`" >&2
fi
