# reelbox (RPM %postun): on erase ($1 = 0) stop tracking the unit; data stays, as RPM
# convention has it (remove /var/lib/reelbox and the user by hand if you want them gone).
if [ "$1" -eq 0 ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
