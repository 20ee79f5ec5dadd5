"""Signing in to the web UI with a user name and password, in Chromium against a real API server: the session
cookie's flags as the browser keeps them, no script can read it, the UI's own changes carry the CSRF token,
a forged request without it is refused (a plain fetch, and a form another origin posts), the audit log page
and who is offered it, sign-out."""

from __future__ import annotations

import http.server
import json
import re
import threading

import pytest
import requests

from tests.support.live import free_port, octoprov, start_live_api
from tests.support.ui_browser import chromium_path, unavailable

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the test extras install it
    sync_playwright = None

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    if sync_playwright is None:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    chromium_path()
    api = start_live_api(tmp_path_factory.mktemp("signin") / "var",
                         extra_env={"OCTOPROV_DATABASE_URL": "", "OCTOPROV_BROKER_URL": ""})
    octoprov("user", "create", "dana", "--role", "admin", "--password-stdin", env=api.env, input=PASSWORD + "\n")
    yield api
    api.stop()


@pytest.fixture
def forger():
    """A page of another origin whose form posts a node registration to the API as soon as it loads."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, pages
    server.shutdown()
    server.server_close()


def test_password_sign_in_cookie_flags_and_csrf_in_chromium(live, forger):
    server, pages = forger
    viewer_token = octoprov("token", "create", "wallboard", "--role", "viewer", env=live.env).stdout.strip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path())
        context = chromium.new_context(base_url=live.url)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto("/ui/signin?next=%2Fui%2Fimages")
        page.fill("#username", "dana")
        page.fill("#password", "not the password")
        page.click("#password-form button[type=submit]")
        expect(page.locator("#password-error")).to_contain_text("the user name or password is wrong")
        page.fill("#password", PASSWORD)
        page.click("#password-form button[type=submit]")
        page.wait_for_url(re.compile(r"/ui/images$"))
        expect(page.locator("main")).to_contain_text("Images")

        cookie = next(c for c in context.cookies() if c["name"] == "octoprov_session")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["secure"] is False
        assert "octoprov_session" not in page.evaluate("document.cookie")  # no script can read it
        assert page.evaluate("sessionStorage.getItem('octoprov.token')") is None

        # the UI's own request carries the CSRF token (the role lets it in: 400 for the empty body) ...
        let_in = page.evaluate("""async () => { try { await Octo.api("POST", "/tasks", {}); return 0; }
                                                catch (error) { return error.status; } }""")
        assert let_in == 400
        # ... a request riding on the cookie alone is refused
        forged = page.evaluate("""async () => (await fetch("/api/v1/provisioning/hypervisors", {method: "POST",
            credentials: "same-origin", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({name: "FORGED", kind: "fake", endpoint: "fake://x"})})).status""")
        assert forged == 403
        # ... and so is a form another origin makes the browser post
        pages["/forge"] = f"""<form method="post" enctype="text/plain"
            action="{live.url}/api/v1/provisioning/hypervisors"><input name='{{"name":"FORGED2","kind":"fake",
            "endpoint":"fake://x","x":"' value='"}}'></form><script>document.forms[0].submit()</script>""".encode()
        other = context.new_page()
        with other.expect_response(lambda response: "/hypervisors" in response.url) as posted:
            other.goto(f"http://127.0.0.1:{server.server_port}/forge")
        answer = posted.value
        assert answer.status in (401, 403), answer.status  # no CSRF header (403), or no cookie at all (401)
        nodes = requests.get(live.url + "/api/v1/provisioning/hypervisors", headers=live.headers, timeout=30).json()
        assert not [n for n in nodes["items"] if n["name"].startswith("FORGED")]

        # the audit log page shows the sign-in and the refused forgeries; admins see its link
        page.goto("/ui/audit")
        rows = page.locator("#audit-table tbody tr")
        expect(rows.filter(has_text="sign-in").filter(has_text="user:dana")).not_to_have_count(0)
        expect(rows.filter(has_text="POST /provisioning/hypervisors")).not_to_have_count(0)
        expect(page.locator("nav [data-needs-role=admin]")).to_be_visible()
        page.goto("/ui/images")  # an admin is offered the library's forms
        expect(page.locator("section[data-needs-role=admin]").first).to_be_visible()
        page.goto("/ui/audit")
        page.select_option("#filter-result", "ok")
        expect(rows.filter(has_text="POST /provisioning/hypervisors")).to_have_count(0)

        page.click("#signout")
        page.wait_for_url(re.compile(r"/ui/signin$"))
        assert not [c for c in context.cookies() if c["name"] == "octoprov_session"]
        assert page.evaluate("async () => (await fetch('/api/v1/caller')).status") == 401
        context.close()

        # a viewer is not offered the audit log, and the page says why if opened anyway
        viewer = chromium.new_context(base_url=live.url)
        viewer.add_init_script(f"sessionStorage.setItem('octoprov.token', {json.dumps(viewer_token)})")
        page = viewer.new_page()
        page.goto("/ui/audit")
        expect(page.locator("#audit-message")).to_contain_text("needs the admin role")
        expect(page.locator("nav [data-needs-role=admin]")).to_be_hidden()
        page.goto("/ui/")  # nor a new task, nor the library's forms
        expect(page.locator("a.button", has_text="New task")).to_be_hidden()
        expect(page.locator("nav a", has_text="Images")).to_be_visible()
        page.goto("/ui/images")
        expect(page.locator("section[data-needs-role=admin]").first).to_be_hidden()
        viewer.close()
        chromium.close()
