"""Who is calling the management API, and whether their role allows the operation (the PXE endpoints stay open).

Every management operation declares the role it needs with ``requires``; the OpenAPI document shows it
(``x-octoprov-role``) and ``check_declared_roles`` refuses to start an API with an operation that declares none.
A caller is an API token (``Authorization: Bearer``), which carries its role, or a browser signed in to the
UI (the session cookie of ``octoprov.websessions``, whose state-changing requests must echo its CSRF token).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import g, request
from flask_restx import Resource

from api.docs import ERROR_TEXT, DocNamespace, error_model
from api.runtime import runtime, session_scope
from octoprov import websessions
from octoprov.roles import Role
from octoprov.tokens import verify_token

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="octoprov"'}
ROLE_EXTENSION = "x-octoprov-role"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # reads: no CSRF token needed

_P = ParamSpec("_P")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., Any])
Refusal = tuple[dict[str, str], int, dict[str, str]]


@dataclass(frozen=True)
class Caller:
    """Who a request comes from, as the audit trail names them (``token:NAME``), and their role."""

    actor: str
    role: Role


def requires(ns: DocNamespace, role: Role) -> Callable[[_F], _F]:
    """Declare that an operation needs ``role`` (or a higher one)."""

    def decorate(func: _F) -> _F:
        func.required_role = role  # type: ignore[attr-defined]  # read by authorize and check_declared_roles
        func = ns.doc(vendor={ROLE_EXTENSION: role.value})(func)
        return ns.response(403, ERROR_TEXT[403], error_model(ns))(func)

    return decorate


def bearer_caller() -> Caller | None:
    """The caller named by the request's bearer token, or None without a valid one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    with runtime().database.alone() as connection:  # a read, and now and then one write: no transaction
        found = verify_token(connection, token.strip())
    return None if found is None else Caller(f"token:{found.name}", Role(found.role))


def check_token() -> Refusal | None:
    """The answer refusing this request's bearer token, or None when it is a valid API token of any role; for
    views outside the namespaces (GET /metrics)."""
    if not request.headers.get("Authorization"):
        return {"message": "an API token is required: Authorization: Bearer <token>"}, 401, CHALLENGE
    return None if bearer_caller() is not None else ({"message": "the API token is not valid"}, 401, CHALLENGE)


def session_of_cookie() -> websessions.ActiveSession | None:
    """The browser's unexpired sign-in, from its session cookie, or None."""
    cookie = request.cookies.get(websessions.COOKIE)
    if not cookie:
        return None
    with session_scope() as session:
        return websessions.find(session, cookie)


def authorize(view: Callable[_P, _R]) -> Callable[_P, _R | Refusal]:
    """Let the request through if its caller's role allows what ``view`` declares it needs."""
    needed: Role = getattr(view, "required_role")  # noqa: B009 - check_declared_roles made sure it is there

    @wraps(view)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | Refusal:
        g.audited = True  # the audit trail records this request (api.auditing), whatever the outcome
        if request.headers.get("Authorization"):
            caller = bearer_caller()
            if caller is None:
                return {"message": "the API token is not valid"}, 401, CHALLENGE
        else:
            signed_in = session_of_cookie()
            if signed_in is None:
                return {"message": "sign in, or send an API token: Authorization: Bearer <token>"}, 401, CHALLENGE
            caller = Caller(signed_in.actor, signed_in.role)
            if request.method not in SAFE_METHODS and not signed_in.csrf_matches(
                    request.headers.get(websessions.CSRF_HEADER)):
                g.caller = caller
                return {"message": f"the {websessions.CSRF_HEADER} header of this sign-in is missing or wrong"}, 403, {}
        g.caller = caller
        if not caller.role.allows(needed):
            return {"message": f"{request.method} {request.path} needs the {needed} role; "
                               f"{caller.actor} has the {caller.role} role"}, 403, {}
        return view(*args, **kwargs)

    return wrapper


def check_declared_roles(resources: Iterable[type[Resource]]) -> None:
    """Refuse to serve a management operation that does not say which role it needs."""
    missing = [f"{resource.__name__}.{method.lower()}" for resource in resources
               if authorize in getattr(resource, "method_decorators", ())
               for method in sorted(resource.methods or ())
               if not isinstance(getattr(getattr(resource, method.lower()), "required_role", None), Role)]
    if missing:
        raise RuntimeError(f"operations without a declared role (api.auth.requires): {', '.join(missing)}")
