"""Serving server-sent events: the wire format, the resume point, heartbeats, and the bound on open streams.

A stream holds one gunicorn thread for as long as it is open, so a process serves at most
``OCTOPROV_EVENTS_MAX_STREAMS`` at once (more are answered 503: the UI polls instead) and ends each after
``OCTOPROV_EVENTS_MAX_STREAM_S`` (the client reconnects with ``Last-Event-ID`` and loses nothing). A comment
line every ``OCTOPROV_EVENTS_HEARTBEAT_S`` keeps proxies from closing a quiet stream and tells the server
when its client went away. No database connection is held while the stream waits or writes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

from flask import Response, current_app, request
from sqlalchemy.orm import Session

from api.auth import Refusal
from api.outage import reason, unreachable
from api.runtime import runtime
from octoprov.db import Database
from octoprov.errors import InvalidRequest
from octoprov.events import Event, Horizon
from octoprov.models import MAX_ID
from octoprov.settings import Settings

log = logging.getLogger(__name__)

RETRY_MS = 2000  # how long an EventSource waits before it reconnects
HORIZON = "octoprov.events.horizon"
SLOTS = "octoprov.events.slots"

Snapshot = Callable[[Session, int], list[Event]]  # (session, upto) -> what a first connection gets
Reader = Callable[[Session, int, int], tuple[list[Event], int]]  # (session, after, upto) -> events, next cursor


class Slots:
    """How many streams this process serves at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1

    def releaser(self) -> Callable[[], None]:
        """Gives the place back once, whichever comes first: the stream's end or the response's close."""
        done = threading.Event()

        def release() -> None:
            if not done.is_set():
                done.set()
                self.give_back()

        return release


# Set when this API process is asked to stop (api/server.py): open streams end at once, so a restart does
# not wait out the server's graceful timeout; the clients reconnect with Last-Event-ID and lose nothing.
STOPPING = threading.Event()


def encode(event: Event) -> str:
    """One event in the text/event-stream format; JSON escapes line breaks, so ``data`` is one line."""
    head = f"id: {event.id}\n" if event.id is not None else ""
    return f"{head}event: {event.kind}\ndata: {json.dumps(event.data, separators=(',', ':'))}\n\n"


def resume_point() -> int | None:
    """Where the client was: the ``Last-Event-ID`` header (a reconnection), else the ``lastEventId`` query
    parameter (a first connection that already has a point); None for a fresh start."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip()
    if not value.isdigit() or int(value) > MAX_ID:
        raise InvalidRequest({"Last-Event-ID": f"must be an event id from this stream (0 to {MAX_ID})"})
    return int(value)


def _horizon() -> Horizon:
    """This process's horizon, made on first use (the app's extensions live as long as the process)."""
    extensions = current_app.extensions
    if HORIZON not in extensions:
        settings = runtime().settings
        extensions.setdefault(HORIZON, Horizon(settings.events_gap_grace_s, settings.events_poll_ms / 2000))
    found: Horizon = extensions[HORIZON]
    return found


def _slots() -> Slots:
    extensions = current_app.extensions
    if SLOTS not in extensions:
        extensions.setdefault(SLOTS, Slots(runtime().settings.effective_events_max_streams))
    found: Slots = extensions[SLOTS]
    return found


def event_stream(snapshot: Snapshot, read: Reader) -> Response | Refusal:
    """The streaming answer: the snapshot or what followed the client's resume point, then every new event."""
    cursor = resume_point()
    slots = _slots()
    if not slots.take():
        return ({"message": "this server streams to as many clients as it can; poll instead, or retry later"},
                503, {"Retry-After": "30"})
    release = slots.releaser()
    body = _events(runtime().database, _horizon(), runtime().settings, snapshot, read, cursor, release)
    response = Response(body, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    response.call_on_close(release)
    return response


def _events(database: Database, horizon: Horizon, settings: Settings, snapshot: Snapshot, read: Reader,
            cursor: int | None, release: Callable[[], None]) -> Iterator[str]:
    try:
        yield from _follow(database, horizon, settings, snapshot, read, cursor)
    except Exception as exc:
        # the answer (200) is under way: the stream just ends, and the client's reconnection is answered 503
        # with Retry-After (api.outage) until the database is back
        part = unreachable(exc)
        if part is None:
            raise
        log.warning("an event stream ended: the %s is unreachable (%s)", part, reason(exc))
    finally:
        release()


def _follow(database: Database, horizon: Horizon, settings: Settings, snapshot: Snapshot, read: Reader,
            cursor: int | None, clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    started = last_sent = clock()
    yield f"retry: {RETRY_MS}\n\n"
    while not STOPPING.is_set():
        batch: list[Event] = []
        with database.session() as session:
            upto = horizon.advance(session)
            if cursor is None:
                batch, cursor = snapshot(session, upto), upto
            while cursor < upto:
                events, cursor = read(session, cursor, upto)
                batch.extend(events)
        if batch:
            yield "".join(encode(event) for event in batch)
            last_sent = clock()
        now = clock()
        if now - started >= settings.events_max_stream_s:
            return
        if now - last_sent >= settings.events_heartbeat_s:
            yield ": keep-alive\n\n"
            last_sent = now
        STOPPING.wait(settings.events_poll_ms / 1000)
