"""The Samba configuration of the WinPE file share, generated from the settings.

WinPE applies the WIM straight from an SMB share, and the spec's lessons shape the
configuration: no name lookups (``name resolve order = bcast host``, ``dns proxy = no``,
``hostname lookups = no``: each cost WinPE minutes of waiting), SMB1 and NTLMv1 only when
explicitly enabled for WinPE older than Windows 10 1709, both shares read-only, and either
guest access or one account with read access only (its password is in every start script).

Print it with ``python -m octoprov.answerfiles.samba [--images-path P] [--drivers-path P]
[--samba-dir D]`` (the paths as the Samba host sees the folders, e.g. inside a container; ``D`` keeps
Samba's own files out of the host's ``/var/lib/samba`` and ``/run/samba``). ``docs/winpe-share.md``
explains the choices and the HTTP alternative.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import PurePosixPath

from octoprov.answerfiles.share import WinpeShare
from octoprov.errors import InvalidRequest
from octoprov.settings import Settings
from octoprov.validation.names import has_control_characters


def _folder(value: str, field: str) -> str:
    """A folder smb.conf can hold: one line, and no ``%``, which Samba expands in paths (``/srv/%U`` is a
    different folder for each client's user name)."""
    if (not PurePosixPath(value).is_absolute() or has_control_characters(value) or value != value.strip()
            or "%" in value):
        raise InvalidRequest({field: "must be an absolute path on one line, without surrounding spaces or %"})
    return value


# Samba's own files below --samba-dir: the parameter and its place in that folder.
SAMBA_DIR_LAYOUT = {
    "private dir": "private",  # passdb.tdb (the WinPE account), secrets.tdb
    "lock directory": "lock",  # messaging sockets, locking and session databases
    "state directory": "state",
    "cache directory": "cache",
    "pid directory": "run",  # smbd.pid, samba-dcerpcd.pid
    "ncalrpc dir": "run/ncalrpc",  # where smbd reaches samba-dcerpcd (share listing)
    "log file": "log/log.%m",
}
# The subfolders to make, with their modes, before testparm and smbd run: testparm reports a missing lock,
# state, cache or PID folder as an error, smbd stops without its private dir and cannot set up log/cores
# without log/ (ncalrpc it makes itself).
MADE_BEFOREHAND = {"private": 0o700, "lock": 0o755, "state": 0o755, "cache": 0o755, "run": 0o755, "log": 0o750}


def samba_dir_lines(samba_dir: str) -> list[str]:
    """The ``[global]`` lines that put every file Samba writes below one folder, so that a container, a
    second smbd beside the host's, or a test runs without touching the host's Samba state."""
    folder = _folder(samba_dir, "sambaDir")
    return [f"   {name} = {PurePosixPath(folder, place)}" for name, place in SAMBA_DIR_LAYOUT.items()]


def smb_conf(settings: Settings, images_path: str | None = None, drivers_path: str | None = None,
             samba_dir: str | None = None) -> str:
    share = WinpeShare.from_settings(settings)
    images = _folder(images_path or str(settings.effective_images_dir), "imagesPath")
    drivers = _folder(drivers_path or str(settings.effective_drivers_dir), "driversPath")
    own_files = samba_dir_lines(samba_dir) if samba_dir is not None else []
    lines = [
        "# Samba configuration of the Octoprov WinPE file share, generated from the OCTOPROV_* settings",
        "# (python -m octoprov.answerfiles.samba): change the settings, not this file.",
        "[global]",
        "   server role = standalone server",
        "   workgroup = WORKGROUP",
        "   server string = Octoprov WinPE share",
        "   # WinPE connects by IP address: no name lookups, each of which costs it minutes",
        "   name resolve order = bcast host",
        "   dns proxy = no",
        "   hostname lookups = no",
        "   # WinPE speaks SMB directly on 445 (every version since Windows 2000 does): no NetBIOS session port 139",
        "   smb ports = 445",
        "   load printers = no",
        "   printing = bsd",
        "   printcap name = /dev/null",
        "   disable spoolss = yes",
    ]
    if own_files:
        lines += [f"   # Samba's own files below {samba_dir} (--samba-dir), whose subfolders must exist",
                  *own_files]
    if settings.samba_smb1:
        lines += ["   # WinPE before Windows 10 1709 speaks SMB1 only, and with it NTLMv1 (OCTOPROV_SAMBA_SMB1)",
                  "   server min protocol = NT1",
                  "   ntlm auth = ntlmv1-permitted"]
    else:
        lines += ["   server min protocol = SMB2_02"]
    if share.guest:
        lines += ["   # guest access: any name without a Samba account is the guest account",
                  "   map to guest = Bad User",
                  "   guest account = nobody"]
    else:
        lines += ["   map to guest = Never"]
    for name, path, comment in ((share.images, images, "Octoprov images"),
                                (share.drivers, drivers, "Octoprov driver packs")):
        lines += ["", f"[{name}]", f"   comment = {comment} (read-only, for WinPE)", f"   path = {path}",
                  "   read only = yes", "   browseable = yes", "   wide links = no"]
        lines += ["   guest ok = yes", "   guest only = yes"] if share.guest else [
            "   guest ok = no", f"   valid users = {share.user}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the Samba configuration of the WinPE file share.")
    parser.add_argument("--images-path", help="the images folder as the Samba host sees it")
    parser.add_argument("--drivers-path", help="the drivers folder as the Samba host sees it")
    parser.add_argument("--samba-dir", help="a folder for Samba's own files (passdb, locks, state, cache, PID "
                                            "files, logs) instead of the build's /var/lib/samba, /run/samba, "
                                            "/var/log/samba; create its subfolders first: "
                                            + ", ".join(MADE_BEFOREHAND))
    args = parser.parse_args(argv)
    sys.stdout.write(smb_conf(Settings.from_env(), args.images_path, args.drivers_path, args.samba_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
