"""The Octofleet client against a stand-in Octofleet API (a stdlib HTTP server on 127.0.0.1, not the
real product): the requests it sends, what it makes of the answers, and its errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from octoprov.errors import PermanentError, TransientError
from octoprov.octofleet import OctofleetClient, client_from
from octoprov.settings import Settings, SettingsError

TOKEN = "oct0fleet-T0ken-5ecret-81f2"


class StandInOctofleet:
    """Records every request (method, raw path, headers, JSON body) and answers with the status and
    body queued for it; 200 {} when nothing is queued."""

    def __init__(self):
        self.received: list[dict] = []
        self.answers: list[tuple[int, object, dict]] = []
        self.delay_s = 0.0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                stand_in.received.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                          "json": json.loads(raw) if raw else None})
                time.sleep(stand_in.delay_s)
                status, body, headers = stand_in.answers.pop(0) if stand_in.answers else (200, {}, {})
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def answer(self, status: int, body: object = None, **headers: str) -> None:
        self.answers.append((status, {} if body is None else body, headers))


@pytest.fixture
def octofleet(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    stand_in = StandInOctofleet()
    stand_in.thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


@pytest.fixture
def client(octofleet) -> OctofleetClient:
    return OctofleetClient(octofleet.url + "/", TOKEN, timeout=5)


def test_register_node_posts_the_node_and_returns_its_id(octofleet, client):
    octofleet.answer(201, {"id": "n-42", "hostname": "SQL-01"})
    ref = client.register_node("SQL-01", "Windows Server 2025", ["00:15:5d:01:02:03"], ["198.51.100.50"])
    assert ref == "n-42"
    [sent] = octofleet.received
    assert (sent["method"], sent["path"]) == ("POST", "/api/v1/nodes")
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["json"] == {"hostname": "SQL-01", "osName": "Windows Server 2025",
                            "macAddresses": ["00:15:5d:01:02:03"], "ipAddresses": ["198.51.100.50"]}


def test_a_numeric_node_id_is_returned_as_text(octofleet, client):
    octofleet.answer(200, {"id": 17})
    assert client.register_node("web01", None, [], []) == "17"


def test_add_to_group_puts_the_membership_with_encoded_names(octofleet, client):
    octofleet.answer(204, b"")
    assert client.add_to_group("n/42", "SQL Servers/Berlin") is None
    [sent] = octofleet.received
    assert (sent["method"], sent["path"], sent["json"]) == (
        "PUT", "/api/v1/nodes/n%2F42/groups/SQL%20Servers%2FBerlin", None)
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_queue_package_posts_name_and_parameters(octofleet, client):
    octofleet.answer(202, {"id": "job-7"})
    octofleet.answer(204, b"")
    assert client.queue_package("n-42", "SQL Server 2022", {"instanceName": "SQL01", "port": 1433}) == "job-7"
    assert client.queue_package("n-42", "nginx", {}) is None
    first, second = octofleet.received
    assert (first["method"], first["path"]) == ("POST", "/api/v1/nodes/n-42/packages")
    assert first["json"] == {"package": "SQL Server 2022", "parameters": {"instanceName": "SQL01", "port": 1433}}
    assert second["json"] == {"package": "nginx", "parameters": {}}


@pytest.mark.parametrize(("status", "error", "words"), [
    (500, TransientError, "HTTP 500"),
    (503, TransientError, "HTTP 503"),
    (429, TransientError, "HTTP 429"),
    (400, PermanentError, "HTTP 400"),
    (404, PermanentError, "HTTP 404"),
    (409, PermanentError, "HTTP 409"),
    (401, PermanentError, "token was refused"),
    (403, PermanentError, "token was refused"),
])
def test_status_codes_map_to_transient_or_permanent_errors(octofleet, client, status, error, words):
    octofleet.answer(status, {"detail": "group SQL Servers is unknown"})
    with pytest.raises(error) as raised:
        client.add_to_group("n-42", "SQL Servers")
    assert type(raised.value) is error
    assert words in raised.value.message
    assert "PUT /nodes/n-42/groups/SQL%20Servers" in raised.value.message
    assert "group SQL Servers is unknown" in raised.value.message


def test_the_token_never_appears_in_an_error(octofleet, client):
    octofleet.answer(401, {"message": f"token {TOKEN} is expired"})
    with pytest.raises(PermanentError) as raised:
        client.register_node("SQL-01", None, [], [])
    assert TOKEN not in raised.value.message and "expired" in raised.value.message
    assert TOKEN not in repr(client)


def test_a_redirect_is_not_followed(octofleet, client):
    octofleet.answer(302, b"", Location=octofleet.url + "/elsewhere")
    with pytest.raises(PermanentError, match="redirected"):
        client.queue_package("n-42", "nginx", {})
    assert [r["path"] for r in octofleet.received] == ["/api/v1/nodes/n-42/packages"]


@pytest.mark.parametrize("answer", [
    (200, b"<html>proxy login</html>"),
    (200, ["n-42"]),
    (200, {"name": "SQL-01"}),
    (201, {"id": ""}),
    (201, {"id": True}),
])
def test_an_answer_without_a_node_id_is_a_permanent_error(octofleet, client, answer):
    octofleet.answer(*answer)
    with pytest.raises(PermanentError):
        client.register_node("SQL-01", None, [], [])


def test_no_connection_is_transient():
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError, match="POST /nodes"):
        OctofleetClient(f"http://127.0.0.1:{port}/api/v1", TOKEN, timeout=2).register_node("SQL-01", None, [], [])


def test_a_slow_answer_is_a_transient_timeout(octofleet):
    octofleet.delay_s = 1.0
    slow = OctofleetClient(octofleet.url, TOKEN, timeout=0.2)
    with pytest.raises(TransientError, match=r"no answer within 0\.2 s"):
        slow.add_to_group("n-42", "Web")


def test_client_from_settings():
    assert client_from(Settings()) is None
    configured = client_from(Settings(octofleet_api=" https://octofleet.yourdom.local/api/v1/ ", octofleet_token=TOKEN))
    assert isinstance(configured, OctofleetClient)
    assert configured.base_url == "https://octofleet.yourdom.local/api/v1"
    with pytest.raises(SettingsError, match="OCTOPROV_OCTOFLEET_TOKEN"):
        client_from(Settings(octofleet_api="https://octofleet.yourdom.local/api/v1"))
    for bad in ("octofleet.yourdom.local", "ftp://octofleet/api", "https://user:pw@octofleet/api", "https:///api"):
        with pytest.raises(SettingsError, match="OCTOPROV_OCTOFLEET_API"):
            client_from(Settings(octofleet_api=bad, octofleet_token=TOKEN))


def test_settings_come_from_the_environment():
    settings = Settings.from_env({"OCTOPROV_OCTOFLEET_API": "http://192.0.2.20:8080/api/v1",
                                  "OCTOPROV_OCTOFLEET_TOKEN": TOKEN})
    assert client_from(settings).base_url == "http://192.0.2.20:8080/api/v1"
