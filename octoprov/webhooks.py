"""Completion notifications: the JSON a webhook receiver gets when a task ends, and its delivery.

A chat or ITSM system learns that a provisioning task completed, failed or was cancelled without
polling the API. Each POST is signed like GitHub's ``X-Hub-Signature-256`` so the receiver can
check it came from Octoprov, and carries a delivery id that stays the same across retries so the
receiver can drop duplicates. Delivery uses only the standard library; the Celery task that
retries it lives in ``workers.notify``. A webhook is a side channel: nothing here touches a task.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from octoprov import states
from octoprov.logs import redactor
from octoprov.models import Task, aware
from octoprov.settings import Settings

EVENTS = ("task.completed", "task.failed", "task.cancelled")
SIGNATURE_HEADER = "X-Octoprov-Signature"
EVENT_HEADER = "X-Octoprov-Event"
DELIVERY_HEADER = "X-Octoprov-Delivery"
USER_AGENT = "octoprov-webhook/1"

_EVENT_OF_STATUS = {states.COMPLETED: EVENTS[0], states.FAILED: EVENTS[1], states.CANCELLED: EVENTS[2]}


class DeliveryFailed(Exception):
    """The receiver did not take the notification; the message says why (never the secret or the URL,
    whose path or query often holds the receiver's own token)."""


def event_for(status: str) -> str | None:
    """The event a task in ``status`` announces; None while it is still running."""
    return _EVENT_OF_STATUS.get(status)


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body>``: the receiver recomputes it to trust the sender."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _iso(moment: datetime | None) -> str | None:
    return aware(moment).isoformat() if moment is not None else None


def task_payload(task: Task, event: str | None = None) -> dict[str, Any]:
    """What a receiver learns about a task: its outcome, not its configuration, which holds
    hypervisor, domain and network details the receiver has no need for.

    ``event`` defaults to the one of the task's status; the worker passes the event it was
    queued for, since a failed task may be retried (and change status) before delivery.
    """
    error = task.error_message
    return {
        "event": event or event_for(task.status),
        "taskId": task.id,
        "hostname": task.hostname,
        "targetType": task.target_type,
        "status": task.status,
        "currentStep": task.current_step,
        "progressPercent": task.progress_percent,
        "errorMessage": redactor.redact(error) if error else error,  # second line of defence, as in logs
        "createdAt": _iso(task.created_at),
        "completedAt": _iso(task.completed_at),
    }


def webhook_urls(settings: Settings, task: Task) -> list[str]:
    """The operator's URLs (``OCTOPROV_WEBHOOK_URLS``) then the task's own, each called once."""
    configured = [url.strip() for url in settings.webhook_urls.split(",") if url.strip()]
    options = (task.config or {}).get("options") or {}
    own = [url for url in options.get("webhooks") or [] if isinstance(url, str) and url]
    return list(dict.fromkeys([*configured, *own]))


def any_to_call(settings: Settings, own: list[str]) -> bool:
    """Whether a task with its own URLs ``own`` has a webhook to call when it ends: a worker that ends a
    task without one sends no notification message for nothing."""
    return bool(own) or any(url.strip() for url in settings.webhook_urls.split(","))


def host_of(url: str) -> str:
    """The part of a URL that is safe to show in task logs (paths and queries may hold tokens)."""
    try:
        return urlsplit(url).hostname or "(no host)"
    except ValueError:
        return "(invalid URL)"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would send the signed body somewhere the operator did not configure; refuse it."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: http.client.HTTPMessage, newurl: str) -> urllib.request.Request | None:
        return None  # urllib then raises HTTPError with the 3xx status


def _split_credentials(url: str) -> tuple[str, str | None]:
    """``https://user:pw@host/...`` -> the URL without them and a Basic Authorization value;
    urllib would otherwise take ``user:pw@host`` for the host name."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, "Basic " + base64.b64encode(credentials.encode()).decode()


def encode_body(body: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact, keys sorted, so a retry signs the same bytes."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def deliver(url: str, event: str, delivery_id: str, body: dict[str, Any], secret: str, timeout: float) -> int:
    """POST ``body`` to ``url``; the HTTP status when the receiver took it (2xx).

    Raises DeliveryFailed for any other status (3xx included: redirects are not followed), a
    timeout, a connection error or a URL that is not http(s).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises for a port that is not a number from 0 to 65535
        target, authorization = _split_credentials(url)
    except ValueError:
        raise DeliveryFailed("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise DeliveryFailed("not an http:// or https:// URL with a host")
    data = encode_body(body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, data)
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(target, data=data, headers=headers, method="POST")  # noqa: S310  # http(s) only, checked above
    opener = urllib.request.build_opener(_NoRedirect)  # per call: proxy settings come from the environment
    try:
        with opener.open(request, timeout=timeout) as response:
            status: int = response.status  # urllib types the response as Any
    except urllib.error.HTTPError as exc:
        exc.close()
        if 300 <= exc.code < 400:
            raise DeliveryFailed(f"HTTP {exc.code}: redirects are not followed") from None
        raise DeliveryFailed(f"HTTP {exc.code}") from None
    except TimeoutError:
        raise DeliveryFailed(f"no answer within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise DeliveryFailed(f"no answer within {timeout:g} s") from None
        raise DeliveryFailed(f"connection failed: {_reason(exc.reason)}") from None
    except ValueError:  # http.client refuses the URL (its text would be quoted in the error)
        raise DeliveryFailed("not a valid URL") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryFailed(f"connection failed: {_reason(exc)}") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status}")
    return status


def _reason(error: object) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
