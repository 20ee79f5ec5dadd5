"""Sign-in to the web UI with a user name and password: local accounts (bcrypt) and Active Directory (the
Samba AD DC of the Windows tests, over LDAPS, role from nested group membership); the session cookie's
flags, the CSRF token every change must echo, rate limiting per name and per address, sign-out, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from api import create_app
from octoprov import users
from octoprov.crypto import Vault
from octoprov.models import AuditEvent, WebSession, utcnow
from octoprov.roles import Role
from octoprov.runtime import Runtime
from octoprov.settings import Settings
from tests.support.samba_dc import BASE_DN, complex_password

SESSION = "/api/v1/session"
PASSWORD = "correct horse battery"


def make_client(tmp_path, database, **settings):
    s = Settings(data_dir=tmp_path / "var", secret_key=Fernet.generate_key().decode(), signin_max_failures=3,
                 events_max_stream_s=1, events_poll_ms=100, **settings)
    s.ensure_dirs()
    app = create_app(runtime=Runtime(s, database, Vault.from_settings(s)))
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def browser(tmp_path, database):
    with database.session() as session:
        users.create_user(session, "alice", PASSWORD, Role.OPERATOR)
        users.create_user(session, "root-admin", PASSWORD, Role.ADMIN)
        disabled = users.create_user(session, "gone", PASSWORD, Role.ADMIN)
        disabled.disabled = True
    return make_client(tmp_path, database)


def sign_in(client, username: str, password: str, address: str = "192.0.2.7"):
    return client.post(SESSION, json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_a_local_user_signs_in_with_a_strict_cookie_and_acts_in_their_role(browser, database):
    answer = sign_in(browser, "Alice", PASSWORD)
    assert answer.status_code == 200, answer.json
    assert answer.json["actor"] == "user:alice" and answer.json["role"] == "operator"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("octoprov_session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie  # plain http here; https below
    assert PASSWORD not in answer.get_data(as_text=True)
    assert browser.get("/api/v1/caller").json == {"actor": "user:alice", "role": "operator"}
    csrf = {"X-CSRF-Token": answer.json["csrfToken"]}
    # a change without the CSRF token is refused, whatever the role allows; with it, the role decides
    no_token = browser.post("/api/v1/provisioning/tasks", json={})
    assert no_token.status_code == 403 and "X-CSRF-Token" in no_token.json["message"]
    wrong = browser.post("/api/v1/provisioning/tasks", json={}, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    assert browser.post("/api/v1/provisioning/tasks", json={}, headers=csrf).status_code == 400  # let in; invalid
    node = browser.post("/api/v1/provisioning/hypervisors", headers=csrf,
                        json={"name": "LAB", "kind": "fake", "endpoint": "fake://lab"})
    assert node.status_code == 403 and "needs the admin role" in node.json["message"]
    signed_out = browser.delete(SESSION)
    assert signed_out.status_code == 204 and signed_out.mimetype == "application/json"  # as documented
    assert browser.get("/api/v1/caller").status_code == 401
    with database.session() as session:
        trail = [(e.actor, e.action, e.result) for e in session.query(AuditEvent).order_by(AuditEvent.id)]
        stored = session.query(WebSession).count()
    assert trail[0] == ("user:alice", "sign-in", "ok") and trail[-1] == ("user:alice", "sign-out", "ok")
    assert ("user:alice", "POST /provisioning/tasks", "denied") in trail
    assert stored == 0


def test_the_cookie_is_secure_over_https(tmp_path, database):
    with database.session() as session:
        users.create_user(session, "carol", PASSWORD, Role.VIEWER)
    client = make_client(tmp_path, database)
    answer = client.post(SESSION, json={"username": "carol", "password": PASSWORD}, base_url="https://octoprov.test")
    assert answer.status_code == 200 and "Secure" in answer.headers["Set-Cookie"]


def test_refusals_say_nothing_about_which_part_was_wrong(browser):
    for username, password in (("alice", "wrong password!"), ("nobody", PASSWORD), ("gone", PASSWORD)):
        answer = sign_in(browser, username, password)
        assert answer.status_code == 401, (username, answer.json)
        assert answer.json["message"] == "the user name or password is wrong, or the account may not sign in"
        assert "Set-Cookie" not in answer.headers
    bad = browser.post(SESSION, json={"username": "", "password": 5})
    assert bad.status_code == 400 and set(bad.json["errors"]) == {"username", "password"}


def test_wrong_passwords_are_limited_per_user_and_per_address(browser):
    for _ in range(3):
        assert sign_in(browser, "alice", "wrong password!").status_code == 401
    limited = sign_in(browser, "alice", PASSWORD)  # even the right password waits now
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert sign_in(browser, "root-admin", PASSWORD, address="192.0.2.8").status_code == 200  # other user: fine
    for number in range(30):  # ten times the per-user limit from one address, spread over names
        sign_in(browser, f"guess{number}", "wrong password!", address="192.0.2.9")
    assert sign_in(browser, "root-admin", PASSWORD, address="192.0.2.9").status_code == 429
    assert sign_in(browser, "root-admin", PASSWORD, address="192.0.2.10").status_code == 200


def test_a_session_ends_when_it_expires_or_the_user_is_disabled(browser, database, tmp_path):
    csrf = sign_in(browser, "root-admin", PASSWORD).json["csrfToken"]
    assert browser.get("/api/v1/caller").status_code == 200
    with database.session() as session:
        session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert browser.get("/api/v1/caller").status_code == 401
    assert browser.post("/api/v1/provisioning/tasks", json={}, headers={"X-CSRF-Token": csrf}).status_code == 401


# -- Active Directory ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def directory(samba_dc):
    """Users and groups of the lab's domain: operators through a nested group, admins directly, a disabled
    account in the admins' group, and one in no mapped group."""
    password = complex_password()
    names = {name: samba_dc.add_user(f"ui-{name}", password, disabled=name == "disabled")
             for name in ("operator", "admin", "disabled", "outsider")}
    helpdesk = samba_dc.add_group("ui-helpdesk", [names["operator"]])
    operators = samba_dc.add_group("ui-operators", [helpdesk])
    admins = samba_dc.add_group("ui-admins", [names["admin"], names["disabled"]])
    return password, {operators: "operator", admins: "admin"}


@pytest.fixture
def ad_browser(tmp_path, database, lab_dns, directory):
    import json

    _, groups = directory
    return make_client(tmp_path, database, ldap_url=f"ldaps://{lab_dns.dc_name}", ldap_base_dn=BASE_DN,
                       ldap_ca_file=lab_dns.ca_file, ldap_role_groups=json.dumps(groups))


def test_ad_users_sign_in_with_the_role_of_their_nested_groups(ad_browser, directory):
    password, _ = directory
    answer = sign_in(ad_browser, "ui-operator", password)
    assert answer.status_code == 200, answer.json
    assert answer.json["actor"] == "user:ui-operator@octolab.test" and answer.json["role"] == "operator"
    csrf = {"X-CSRF-Token": answer.json["csrfToken"]}
    assert ad_browser.post("/api/v1/provisioning/tasks", json={}, headers=csrf).status_code == 400  # may create
    node = ad_browser.post("/api/v1/provisioning/hypervisors", headers=csrf,
                           json={"name": "LAB", "kind": "fake", "endpoint": "fake://lab"})
    assert node.status_code == 403  # may not register a node
    admin = sign_in(ad_browser, "ui-admin@octolab.test", password)
    assert admin.status_code == 200 and admin.json["role"] == "admin"


def test_ad_refuses_disabled_accounts_wrong_passwords_and_outsiders(ad_browser, directory):
    password, _ = directory
    assert sign_in(ad_browser, "ui-disabled", password).status_code == 401
    assert sign_in(ad_browser, "ui-admin", password + "x").status_code == 401
    outsider = sign_in(ad_browser, "ui-outsider", password)
    assert outsider.status_code == 401 and "in none of the groups" in outsider.json["message"]
    assert sign_in(ad_browser, "OCTOLAB\\ui-operator", "").status_code == 400  # never an anonymous bind
