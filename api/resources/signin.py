"""/session: signing in to the web UI with a user name and password (Active Directory or a local account),
and signing out. The sign-in answers the CSRF token the UI echoes; the session itself is an HttpOnly,
SameSite=Strict cookie (Secure over HTTPS) that no script can read."""

from __future__ import annotations

from typing import Any

from flask import make_response, request
from flask_restx import Namespace, Resource
from werkzeug.wrappers import Response

from api.auth import session_of_cookie
from api.docs import DocNamespace, error_model
from api.requests import json_body
from api.runtime import runtime, session_scope
from octoprov import audit, signin, websessions
from octoprov.errors import InvalidRequest

ns: DocNamespace = Namespace("session", path="/session", description="Sign-in to the web UI")
credentials_model = ns.schema_model("Credentials", {
    "type": "object",
    "properties": {"username": {"type": "string", "minLength": 1, "maxLength": 255,
                                "description": "DOMAIN\\\\user, user@domain, user, or a local account"},
                   "password": {"type": "string", "minLength": 1, "maxLength": 1024}},
    "required": ["username", "password"],
})
signed_in_model = ns.schema_model("SignedIn", {
    "type": "object",
    "properties": {"actor": {"type": "string"}, "role": {"type": "string"},
                   "csrfToken": {"type": "string", "description": "Send it as X-CSRF-Token with every change"},
                   "expiresAt": {"type": "string", "format": "date-time"}},
    "required": ["actor", "role", "csrfToken", "expiresAt"],
})


def _credentials() -> tuple[str, str]:
    body = json_body()
    if not isinstance(body, dict):
        raise InvalidRequest({"body": "must be a JSON object with username and password"})
    problems: dict[str, str] = {}
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not username.strip() or len(username) > 255 or "\x00" in username:
        problems["username"] = "must be a user name of 1-255 characters"
    if not isinstance(password, str) or not password or len(password) > 1024 or "\x00" in password:
        problems["password"] = "must be a password of 1-1024 characters"  # noqa: S105 - a message
    if problems:
        raise InvalidRequest(problems)
    return str(username), str(password)


def _audit(actor: str, role: str | None, action: str, status: int) -> None:
    with runtime().database.alone() as connection:
        audit.record(connection, audit.AuditEntry(actor=actor, role=role, source=request.remote_addr, action=action,
                                               result=audit.result_of(status), status=status))


@ns.route("")
class Session(Resource):  # type: ignore[misc]  # flask-restx ships no type hints
    @ns.expect(credentials_model)
    @ns.response(200, "Signed in; the cookie is set", signed_in_model)
    @ns.response(400, "Invalid input; `errors` names each field", error_model(ns))
    @ns.response(401, "Refused: wrong user name or password, or the account may not sign in", error_model(ns))
    @ns.response(429, "Too many refused sign-ins; Retry-After says how long to wait", error_model(ns))
    @ns.response(503, "Active Directory cannot be reached", error_model(ns))
    def post(self) -> Response | tuple[dict[str, Any], int, dict[str, str]]:
        """Sign in with a user name and password; the answer sets the session cookie."""
        username, password = _credentials()
        settings = runtime().settings
        source = request.remote_addr or ""
        refused: signin.SigninRefused | None = None
        with session_scope() as session:  # a refusal is an answer, not an error: its counted failure is kept
            try:
                done = signin.sign_in(session, settings, username, password, source)
            except signin.SigninRefused as exc:
                refused = exc
        if refused is not None:
            _audit(f"user:{username.strip()[:200]}", None, "sign-in", refused.status)
            headers = {"Retry-After": str(refused.retry_after_s)} if refused.retry_after_s else {}
            return {"message": refused.message}, refused.status, headers
        _audit(done.actor, done.role.value, "sign-in", 200)
        response = make_response({"actor": done.actor, "role": done.role.value, "csrfToken": done.session.csrf_token,
                                  "expiresAt": done.session.expires_at.isoformat()}, 200)
        response.set_cookie(websessions.COOKIE, done.session.cookie, max_age=settings.session_hours * 3600,
                            path="/", httponly=True, samesite="Strict",
                            secure=request.is_secure or settings.public_url.startswith("https://"))
        return response

    @ns.response(204, "Signed out (also when there was no sign-in)")
    def delete(self) -> Response:
        """Sign out: the session ends on the server and the cookie is cleared."""
        cookie = request.cookies.get(websessions.COOKIE)
        signed_in = session_of_cookie() if cookie else None
        if cookie:
            with session_scope() as session:
                websessions.end(session, cookie)
        if signed_in is not None:
            _audit(signed_in.actor, signed_in.role.value, "sign-out", 204)
        # the same Content-Type as the other 204s of the API (flask-restx's JSON representation)
        response = make_response("", 204)
        response.mimetype = "application/json"
        response.delete_cookie(websessions.COOKIE, path="/", httponly=True, samesite="Strict")
        return response
