"""Optional client of an Octofleet endpoint-management API: registers a provisioned node there, adds
it to groups and queues packages for its agent.

Octoprov's own records (nodes, groups, packages) stay the source of truth; this only mirrors them
when ``OCTOPROV_OCTOFLEET_API`` is set. The calls, relative to that base URL (for example
``https://octofleet.yourdom.local/api/v1``), each with ``Authorization: Bearer <OCTOPROV_OCTOFLEET_TOKEN>``
and JSON bodies:

``POST /nodes``
    ``{"hostname": ..., "osName": ..., "macAddresses": [...], "ipAddresses": [...]}`` answered by a 2xx
    with ``{"id": "<node ref>"}``. A node Octofleet knows already (by its MACs) is expected to answer
    its existing id, so that a retried registration does not create a second node.
``PUT /nodes/{nodeRef}/groups/{groupName}``
    Makes the node a member of the group of that name; no body. PUT, so a retry is harmless.
``POST /nodes/{nodeRef}/packages``
    ``{"package": "<package name>", "parameters": {...}}`` answered by a 2xx, optionally with
    ``{"id": "<job id>"}``: queues the package for the node's agent.

Path segments are percent-encoded. No connection, a timeout, 429 or a 5xx raise TransientError (the
step may be retried); any other 4xx, a redirect, or an answer other than the above raise
PermanentError. The token is never part of a message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import requests

from octoprov.errors import PermanentError, TransientError
from octoprov.logs import redactor
from octoprov.settings import Settings, SettingsError

TIMEOUT_S = 15.0


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _ref(value: object) -> str | None:
    """An id from an answer as text; None if it is not a non-empty string or a number."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def _detail(response: requests.Response) -> str:
    """What the server said about an error, shortened and with secrets masked."""
    try:
        data = response.json()
    except ValueError:
        data = None
    text = None
    if isinstance(data, dict):
        text = next((data[key] for key in ("message", "detail", "error") if isinstance(data.get(key), str)), None)
    text = (text or response.text or "").strip()
    return f": {redactor.redact(text[:300])}" if text else ""


class OctofleetClient:
    def __init__(self, base_url: str, token: str, timeout: float = TIMEOUT_S, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._http = session or requests.Session()
        redactor.register(token)

    def __repr__(self) -> str:
        return f"OctofleetClient({self.base_url!r})"

    def register_node(self, hostname: str, os_name: str | None, macs: list[str], ips: list[str]) -> str:
        """Register the node and return Octofleet's id for it (its ``node_ref`` in the other calls)."""
        body = {"hostname": hostname, "osName": os_name, "macAddresses": list(macs), "ipAddresses": list(ips)}
        ref = _ref(self._call("POST", "/nodes", body).get("id"))
        if ref is None:
            raise PermanentError("Octofleet POST /nodes: the answer has no node id")
        return ref

    def add_to_group(self, node_ref: str, group_name: str) -> None:
        self._call("PUT", f"/nodes/{_segment(node_ref)}/groups/{_segment(group_name)}")

    def queue_package(self, node_ref: str, package_name: str, parameters: dict[str, Any]) -> str | None:
        """Queue a package for the node's agent; Octofleet's job id when it gives one."""
        body = {"package": package_name, "parameters": parameters}
        return _ref(self._call("POST", f"/nodes/{_segment(node_ref)}/packages", body).get("id"))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        what = f"Octofleet {method} {path}"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            response = self._http.request(method, self.base_url + path, json=body, headers=headers,
                                          timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise TransientError(f"{what}: no answer within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise TransientError(f"{what}: {redactor.redact(str(exc))[:300]}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientError(f"{what}: HTTP {status}{_detail(response)}")
        if status in (401, 403):
            raise PermanentError(f"{what}: HTTP {status}, the token was refused (OCTOPROV_OCTOFLEET_TOKEN)"
                                 f"{_detail(response)}")
        if 300 <= status < 400:
            raise PermanentError(f"{what}: HTTP {status}, redirected; set OCTOPROV_OCTOFLEET_API to the address "
                                 f"that answers")
        if status >= 400:
            raise PermanentError(f"{what}: HTTP {status}{_detail(response)}")
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            raise PermanentError(f"{what}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise PermanentError(f"{what}: the answer is not a JSON object")
        return data


def client_from(settings: Settings) -> OctofleetClient | None:
    """The client of the configured Octofleet API; None when none is configured."""
    url = settings.octofleet_api.strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
        raise SettingsError("OCTOPROV_OCTOFLEET_API must be an http(s) URL without credentials or query, "
                            f"such as https://octofleet.yourdom.local/api/v1, not {url!r}")
    if not settings.octofleet_token:
        raise SettingsError("OCTOPROV_OCTOFLEET_TOKEN is required when OCTOPROV_OCTOFLEET_API is set")
    return OctofleetClient(url, settings.octofleet_token)
