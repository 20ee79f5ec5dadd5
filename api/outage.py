"""Answering 503 while the database or the broker cannot be reached, instead of a 500 with a traceback.

Such an error is the platform's, not the request's (``octoprov.errors.is_infrastructure``): the client
should simply try again, and ``Retry-After`` says when. One handler on the Flask app answers for every
route; the flask-restx ``Api`` hands these errors on to it (``api._register_error_handlers``), since
restx would log each of them with its traceback as it does a 500's. The sessions of the failed request
were rolled back and closed by ``Database.session``, and the engine's pool pings a connection before
using it (``octoprov.db``), so the first request after the outage is served as usual.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

from flask import Flask, g, request

from octoprov.errors import is_infrastructure

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
"""Seconds a client waits before trying again: a restarted or failed-over database or broker is usually
back by then, and a client that waits longer would only delay the work it brings."""

UNREACHABLE = "octoprov_unreachable"  # on flask.g: what this request could not reach (api.auditing reads it)

Part = Literal["database", "broker"]
Answer = tuple[dict[str, str], int, dict[str, str]]

_CREDENTIALS = re.compile(r"(\w+://)[^@\s/]*@")  # the user and password part of a URL in a message
_REASON_LENGTH = 200


def unreachable(error: BaseException) -> Part | None:
    """Which part of the platform ``error`` says cannot be reached, or None for any other error."""
    if not is_infrastructure(error):
        return None
    from sqlalchemy.exc import SQLAlchemyError

    return "database" if isinstance(error, SQLAlchemyError) else "broker"


def answer(error: Exception) -> Answer:
    """The 503 for an error of the database or the broker; re-raises any other error, so that it is
    answered (and logged with its traceback) as before."""
    part = unreachable(error)
    if part is None:
        raise error
    setattr(g, UNREACHABLE, part)
    route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"  # the path may hold a token
    log.warning("%s %s answered 503: the %s is unreachable (%s)", request.method, route, part, reason(error))
    return ({"message": f"the {part} is unreachable; try again shortly"}, 503,
            {"Retry-After": str(RETRY_AFTER_S)})


def reason(error: BaseException) -> str:
    """The driver's own first line of the error, short and without credentials: never the statement or its
    parameters, which SQLAlchemy adds to its messages and which may hold secrets."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    text = _CREDENTIALS.sub(r"\1***@", lines[0] if lines else "")[:_REASON_LENGTH]
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def install(app: Flask) -> None:
    """Answer the outage errors of every route of ``app``; other errors go on to Flask's own handling."""
    app.register_error_handler(Exception, answer)
