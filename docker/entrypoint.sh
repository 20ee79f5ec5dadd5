#!/bin/sh
# Entry point of the Octoprov image, one image for every role:
#   api | worker | beat | pxe | flower | db upgrade | any other octoprov command  ->  octoprov "$@"
#   samba                                       ->  the WinPE file share (smbd), configured from OCTOPROV_* settings
#   sh | bash | python | python3 ...            ->  run as given, for a look inside
# CI runs this same script outside the container (tests/integration/test_deployment.py, tests/integration/test_multihost.py), so
# it relies only on what both places have: octoprov and python on PATH, Samba's tools for the samba role.
set -eu

samba() {
    # The configuration comes from the settings, never edited by hand (docs/winpe-share.md);
    # testparm refuses it here, loudly, rather than smbd half-starting with it.
    conf="${SAMBA_CONF:-/etc/samba/smb.conf}"
    python -m octoprov.answerfiles.samba >"$conf.new"
    testparm --suppress-prompt "$conf.new" >/dev/null
    mv "$conf.new" "$conf"
    if [ -n "${OCTOPROV_WINPE_SHARE_USER:-}" ]; then
        # one read-only account for every WinPE; a container starts with a fresh passdb, so add it each time
        user="$OCTOPROV_WINPE_SHARE_USER"
        password="${OCTOPROV_WINPE_SHARE_PASSWORD:?set OCTOPROV_WINPE_SHARE_PASSWORD for OCTOPROV_WINPE_SHARE_USER}"
        id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
        printf '%s\n%s\n' "$password" "$password" | smbpasswd -c "$conf" -s -a "$user" >/dev/null
    fi
    exec smbd --foreground --no-process-group --debug-stdout --configfile="$conf" "$@"
}

case "${1:-}" in
    samba)
        shift
        samba "$@"
        ;;
    sh | bash | python | python3)
        exec "$@"
        ;;
    *)
        exec octoprov "$@"
        ;;
esac
