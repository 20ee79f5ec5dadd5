"""Where WinPE finds the images and driver packs, and the URLs machines call back on.

Both end up inside cmd and PowerShell text, so every value here is checked against a character
set those languages read literally, and a setting outside it is reported by its variable name
(with the value left out: one of them is a password).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from octoprov.answerfiles.render import UnsafeValue
from octoprov.settings import Settings, env_name

_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")
_SHARE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9._~+@#-]{1,127}$")
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
_AGENT = re.compile(r"^(?!/)(?!.*\.\.)[A-Za-z0-9._/-]{1,255}$")
_WINPE_DIR = re.compile(r"^[A-Za-z]:\\[A-Za-z0-9 ._\\-]*$")
API = "/api/v1/provisioning"


def _checked(name: str, value: str, pattern: re.Pattern[str], rule: str) -> str:
    if not pattern.match(value):
        raise UnsafeValue(f"{env_name(name)} {rule}")
    return value


@dataclass(frozen=True)
class WinpeShare:
    server: str
    images: str
    drivers: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def guest(self) -> bool:
        return self.user is None

    def unc(self, share: str, relative: str = "") -> str:
        """``\\\\server\\share\\folder\\file`` for a library path (``folder/file``)."""
        parts = [part for part in PurePosixPath(relative).parts if part not in ("", ".")]
        return "\\\\" + "\\".join([self.server, share, *parts])

    @classmethod
    def from_settings(cls, settings: Settings) -> WinpeShare:
        server = settings.winpe_share_server or settings.boot_server_address or urlsplit(
            settings.effective_public_url).hostname or ""
        _checked("winpe_share_server", server, _HOST, "must be a host name or IPv4 address")
        images = _checked("winpe_share_name", settings.winpe_share_name, _SHARE,
                          "may contain only letters, digits, _ and -")
        drivers = _checked("winpe_drivers_share_name", settings.winpe_drivers_share_name, _SHARE,
                           "may contain only letters, digits, _ and -")
        if not settings.winpe_share_user:
            return cls(server, images, drivers)
        user = _checked("winpe_share_user", settings.winpe_share_user, _USER,
                        "may contain only letters, digits, '.', '_' and '-'")
        password = _checked("winpe_share_password", settings.winpe_share_password, _PASSWORD,
                            "must be set, and may contain only letters, digits and ._~+@#- (it stands in a "
                            "cmd script)")
        return cls(server, images, drivers, user, password)


@dataclass(frozen=True)
class Endpoints:
    """The URLs a machine being installed calls, checked once for use in scripts."""

    public_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Endpoints:
        url = settings.effective_public_url
        return cls(_checked("public_url", url, _URL,
                            "must be a plain http(s)://host[:port][/path] URL to be written into WinPE and "
                            "first-logon scripts"))

    @property
    def callback(self) -> str:
        return f"{self.public_url}{API}/pxe/status"

    def files(self, files_token: str) -> str:
        return f"{self.public_url}{API}/pxe/files/{files_token}/"

    def agent_installer(self, settings: Settings) -> str:
        path = _checked("windows_agent_installer", settings.windows_agent_installer, _AGENT,
                        "must be a path in the images folder of letters, digits and ._/- only")
        return f"{self.public_url}/boot/images/{path}"


def winpe_virtio_dir(settings: Settings) -> str:
    return _checked("winpe_virtio_dir", settings.winpe_virtio_dir.rstrip("\\"), _WINPE_DIR,
                    "must be a WinPE folder such as X:\\Windows\\System32\\drivers")
