"""Bearer-token authentication of the management API (the PXE endpoints stay open)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import request

from api.runtime import session_scope
from octoprov.tokens import verify_token

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="octoprov"'}

_P = ParamSpec("_P")
_R = TypeVar("_R")
Refusal = tuple[dict[str, str], int, dict[str, str]]


def check_token() -> Refusal | None:
    """The answer refusing this request's bearer token, or None when it is a valid API token; for
    views outside the namespaces (GET /metrics) as much as for the decorator."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return {"message": "an API token is required: Authorization: Bearer <token>"}, 401, CHALLENGE
    with session_scope() as session:
        if verify_token(session, token.strip()) is None:
            return {"message": "the API token is not valid"}, 401, CHALLENGE
    return None


def require_token(view: Callable[_P, _R]) -> Callable[_P, _R | Refusal]:
    @wraps(view)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | Refusal:
        refused = check_token()
        return refused if refused is not None else view(*args, **kwargs)

    return wrapper
