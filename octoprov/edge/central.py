"""The edge's only way to the centre: the central API over HTTP(S), with an API token. The token is sent in
the Authorization header and never logged or shown in an error."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from octoprov import digests
from octoprov.netboot.bootconfig import API

_CHUNK = 1 << 20


class Unreachable(RuntimeError):
    """The centre could not be asked (the WAN is down, the API is stopped or answered with an error)."""


class Mismatch(RuntimeError):
    """A file the centre sent does not have the SHA-256 the centre declared for it (or declared none)."""


class Central:
    def __init__(self, url: str, token: str, site: str, timeout: float = 10.0):
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the centre's URL must be http(s)://...")
        self.url, self.site, self.timeout = url.rstrip("/"), site, timeout
        self._token = token

    def __repr__(self) -> str:  # never the token
        return f"Central({self.url!r}, site={self.site!r})"

    def _open(self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked at construction
            self.url + path, data=body, method="POST" if body is not None else "GET",
            headers={"Authorization": f"Bearer {self._token}", **(headers or {})})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as exc:
            exc.close()
            raise Unreachable(f"{path}: the centre answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise Unreachable(f"{path}: {type(exc).__name__}: {exc}") from None

    def _json(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        with self._open(path, data, {"Content-Type": "application/json", "Accept": "application/json"}) as answer:
            try:
                return json.loads(answer.read())
            except (OSError, ValueError) as exc:
                raise Unreachable(f"{path}: {exc}") from None

    def site_path(self, suffix: str = "") -> str:
        return f"{API}/sites/{quote(self.site)}{suffix}"

    def answers(self) -> dict[str, Any]:
        found: dict[str, Any] = self._json(self.site_path("/answers"))
        return found

    def report_served(self, served: list[dict[str, Any]]) -> None:
        self._json(self.site_path("/served"), {"served": served})

    def fetch_file(self, path: str, out: BinaryIO) -> int:
        """Copy the central boot file ``/boot/<path>`` into ``out``, checked against the digest the centre
        declares: Mismatch when it differs or is missing. Returns the size."""
        digest, size = hashlib.sha256(), 0
        with self._open("/boot/" + quote(path), headers={digests.WANT: digests.ALGORITHM}) as answer:
            declared = digests.parse_header(answer.headers.get(digests.HEADER))
            try:
                while chunk := answer.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            except OSError as exc:
                raise Unreachable(f"/boot/{path}: {exc}") from None
        if declared is None:
            raise Mismatch(f"{path}: the centre declared no SHA-256 for it")
        if digest.hexdigest() != declared:
            raise Mismatch(f"{path}: SHA-256 {digest.hexdigest()} differs from the {declared} the centre declared")
        return size


def read_token(path: Path) -> str:
    """The API token from its file (first line): never from the command line, where any user could read it."""
    lines = path.read_text().strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise ValueError(f"{path} holds no API token")
    return token
