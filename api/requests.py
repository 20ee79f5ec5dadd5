"""Reading request bodies and query parameters into clear 400s."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import overload
from urllib.parse import unquote_to_bytes

from flask import request
from werkzeug.wrappers import Request

from octoprov.errors import InvalidRequest
from octoprov.models import MAX_ID


def json_body() -> object:
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidRequest({"body": "a JSON object is required"})
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest({"body": f"not valid JSON: {exc}"}) from None


@overload
def int_arg(name: str, default: int, *, minimum: int = 1, maximum: int = MAX_ID) -> int: ...


@overload
def int_arg(name: str, default: None = None, *, minimum: int = 1, maximum: int = MAX_ID) -> int | None: ...


def int_arg(name: str, default: int | None = None, *, minimum: int = 1, maximum: int = MAX_ID) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest({name: "must be a whole number"}) from None
    if not minimum <= value <= maximum:
        raise InvalidRequest({name: f"must be between {minimum} and {maximum}"})
    return value


def choice_arg(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise InvalidRequest({name: "must be one of " + ", ".join(choices)})
    return raw


def text_arg(name: str, max_length: int = 255, *, literal_plus: bool = False) -> str | None:
    """A short printable text. ``literal_plus``: decode the query by RFC 3986 (``%XX`` only) instead of
    as a form, where ``+`` is a space; for arguments iPXE fills in, since its ``uristring`` leaves ``+``
    unencoded (SMBIOS "Standard PC (i440FX + PIIX, 1996)")."""
    return text_value(name, (uri_query(request) if literal_plus else request.args).get(name), max_length)


def text_value(name: str, raw: str | None, max_length: int = 255) -> str | None:
    """``text_arg`` for a value already read from the query: None when absent or empty."""
    if raw is None or raw == "":
        return None
    if len(raw) > max_length or any(ord(c) < 32 for c in raw):
        raise InvalidRequest({name: f"must be at most {max_length} printable characters"})
    return raw


def uri_query(of: Request) -> dict[str, str]:
    """The query string of ``of`` split at ``&`` and ``=`` and percent-decoded, ``+`` left as it is; the first of
    repeated names wins, as with ``request.args.get``. Undecodable bytes become U+FFFD, as Werkzeug's."""
    args: dict[str, str] = {}
    for pair in of.query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name:
            args.setdefault(unquote_to_bytes(name).decode("utf-8", "replace"),
                            unquote_to_bytes(value).decode("utf-8", "replace"))
    return args


def bool_arg(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() not in ("true", "false", "1", "0"):
        raise InvalidRequest({name: "must be true or false"})
    return raw.lower() in ("true", "1")


def timestamp_arg(name: str) -> datetime | None:
    """An ISO 8601 date and time; without a zone, UTC."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest({name: "must be an ISO 8601 date and time"}) from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
