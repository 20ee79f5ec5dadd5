"""Hostile requests through the API: every entry of tests/data/hostile-requests.json is a 400 naming
its field, on POST /tasks and on its dry run, and stores nothing; random text (lone surrogates and
control characters included) in any string field never makes the dry run fail with a 500, and a
dry run that passes renders every answer file. Most of it runs on SQLite; what a database refuses
(lone surrogates, NUL) runs on PostgreSQL too.

The model-level half is tests/unit/test_hostile_requests.py."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from api import create_app
from octoprov import migrate
from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.runtime import Runtime
from octoprov.settings import Settings
from octoprov.tokens import create_token
from octoprov.validation import storable_problem
from tests.support.examples import spec_example, store_post_install
from tests.unit.test_hostile_requests import CORPUS
from tests.unit.test_taskspec import changed

API = "/api/v1/provisioning"
TASKS = f"{API}/tasks"


@dataclass
class Lab:
    client: FlaskClient
    images: dict[str, int]
    nodes: dict[str, int]
    post_install: dict[str, Any]

    def body(self, entry: dict | None = None) -> dict:
        """The spec example on the fake target (or the entry's), its setup and mutation applied."""
        entry = entry or {}
        target, image = entry.get("target", "fake"), entry.get("image", "windows")
        body = spec_example("static", image_id=self.images[image], node_id=self.nodes[target], **self.post_install)
        body["targetType"] = target
        if target == "kvm":
            body["vm"]["network"]["vswitch"] = "default"  # what libvirt's test driver has: this network, 100 GiB
            body["vm"]["disks"] = [{"sizeGb": 40, "purpose": "os"}, {"sizeGb": 10, "purpose": "data"}]
        changes = [tuple(step) for step in entry.get("setup", ())]
        if "path" in entry:
            changes.append((entry["path"], entry["value"]))
        return changed(body, *changes)

    def post(self, body: object, *, dry_run: bool) -> Any:
        """POST the body as JSON with \\uXXXX escapes: how a lone surrogate travels (json.loads reads it back)."""
        return self.client.post(TASKS, query_string={"dryRun": "true"} if dry_run else {},
                                data=json.dumps(body), content_type="application/json")

    def stored_tasks(self) -> int:
        return self.client.get(TASKS).json["total"]


def _references(client: FlaskClient, settings_: Settings) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
    """Windows and Linux images; fake, KVM (libvirt's test driver) and Hyper-V nodes; the example's package, groups."""
    (settings_.effective_images_dir / "a.wim").write_bytes(b"wim")
    (settings_.effective_images_dir / "tiny.img").write_bytes(b"img")
    images = {kind: client.post(f"{API}/images", json={"name": kind, "osType": kind, "imagePath": path}).json["id"]
              for kind, path in (("windows", "a.wim"), ("linux", "tiny.img"))}
    nodes = {
        "fake": {"name": "F", "kind": "fake", "endpoint": "fake://lab"},
        "kvm": {"name": "KVM01", "kind": "kvm", "endpoint": "test:///default"},
        "hyperv": {"name": "HV01", "kind": "hyperv", "endpoint": "hv01.yourdom.local",
                   "username": "YOURDOM\\svc-hyperv", "password": "secret-pass"},
    }
    node_ids = {kind: client.post(f"{API}/hypervisors", json=node).json["id"] for kind, node in nodes.items()}
    stored = store_post_install(lambda resource, body: client.post(f"{API}/{resource}", json=body).json["id"])
    return images, node_ids, stored


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    """One SQLite-backed app for the module: every request here is refused or a dry run, so nothing is stored."""
    settings_ = Settings(data_dir=tmp_path_factory.mktemp("hostile") / "var", secret_key=Fernet.generate_key().decode())
    settings_.ensure_dirs()
    database = Database(settings_.effective_database_url)
    migrate.upgrade(database.engine)
    app = create_app(runtime=Runtime(settings_, database, Vault.from_settings(settings_)))
    app.config.update(TESTING=True, PROPAGATE_EXCEPTIONS=False)  # an unexpected error is the 500 a user would get
    client = app.test_client()
    with database.session() as session:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {create_token(session, 'hostile')}"
    yield Lab(client, *_references(client, settings_))
    database.dispose()


def _id(entry: dict) -> str:
    return f"{entry['path']}={entry['value']!r}"[:70]


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 400, (field, response.status_code, response.json)
    errors = response.json["errors"]
    assert field in errors, (field, errors)
    assert all(isinstance(message, str) and message for message in errors.values())


@pytest.mark.parametrize("entry", CORPUS, ids=[_id(entry) for entry in CORPUS])
def test_each_hostile_request_is_a_400_naming_its_field(lab, entry):
    body = lab.body(entry)
    _refused(lab.post(body, dry_run=True), entry["field"])
    _refused(lab.post(body, dry_run=False), entry["field"])
    assert lab.stored_tasks() == 0


BASES = sorted({(e.get("target", "fake"), e.get("image", "windows"), json.dumps(e.get("setup")))
                for e in CORPUS if e.get("target") != "hyperv"})  # a Hyper-V dry run may ask its host


@pytest.mark.parametrize("base", BASES, ids=str)
def test_the_unmutated_bases_pass_the_dry_run(lab, base):
    """So that each refusal above is the entry's doing."""
    target, image, setup = base
    response = lab.post(lab.body({"target": target, "image": image, "setup": json.loads(setup) or []}), dry_run=True)
    assert response.status_code == 200, response.json


# --- PostgreSQL: what no database can store -------------------------------------------------------

def _unstorable(value: object) -> bool:
    """A lone surrogate or a NUL somewhere in the value (or its keys)."""
    if isinstance(value, dict):
        return any(_unstorable(key) or _unstorable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(map(_unstorable, value))
    return isinstance(value, str) and storable_problem(value) is not None


UNSTORABLE = [entry for entry in CORPUS if _unstorable({entry["path"]: entry["value"]})]


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_lone_surrogates_and_nul_are_400s_on_postgresql(client, settings, database):
    """Before, a lone surrogate anywhere in a task request reached PostgreSQL's JSONB and came back as a 500."""
    lab = Lab(client, *_references(client, settings))
    assert len(UNSTORABLE) >= 20
    for entry in UNSTORABLE:
        body = lab.body(entry)
        for dry_run in (True, False):
            _refused(lab.post(body, dry_run=dry_run), entry["field"])
    assert lab.stored_tasks() == 0


@pytest.mark.parametrize(("resource", "body", "field"), [
    ("templates", {"name": "Std\ud800"}, "name"),
    ("templates", {"name": "Std", "description": "a\udfffb"}, "description"),
    ("groups", {"name": "SQL\ud800"}, "name"),
    ("packages", {"name": "p", "osType": "linux", "script": "echo \ud800"}, "script"),
    ("images", {"name": "x\ud800", "osType": "windows", "imagePath": "a.wim"}, "name"),
], ids=["template-name", "template-description", "group", "package-script", "image"])
def test_every_resource_refuses_a_lone_surrogate(client, resource, body, field):
    """parse() is every resource's way in; a template name with a surrogate was a 500 on both databases."""
    response = client.post(f"{API}/{resource}", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.json
    assert "surrogate" in response.json["errors"][field]


# --- random text in every string field --------------------------------------------------------------

# free text: odd but valid text passes, so the dry run goes on to render the answer files
FREE_TEXT = [
    "vm.network.vswitch", "vm.storagePath", "os.adminPassword", "domain.ou", "domain.serviceAccount.password",
    "postInstall.runPackages[0].parameters.instanceName", "postInstall.runScripts[0].parameters.Message",
]
STRING_FIELDS = [
    *FREE_TEXT, "hostname", "targetType", "macAddress", "vm.disks[0].purpose", "vm.disks[1].type", "os.language",
    "os.timezone", "os.productKey", "network.mode", "network.ip", "network.subnet", "network.gateway",
    "network.dns[0]", "domain.name", "domain.method", "domain.serviceAccount.username", "postInstall.onFailure",
    "postInstall.runScripts[0].name", "options.webhooks[0]", "postInstall.runCommands[0]",
]
HOSTILE_CHARS = st.one_of(
    st.characters(),  # any Unicode but surrogates
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates, which JSON's \\u escapes can carry
    st.integers(0, 0x1F).map(chr), st.sampled_from("\x7f\x85\u2028\ufeff\ufffe\uffff|<>:\"'&%!^`$\\/*?;,="),
)

VISIBLE_CHARS = st.characters(categories=("L", "N", "P", "S", "Zs"))  # odd but valid: reaches the renderers more often


def _original(body: dict, path: str) -> str:
    value = changed(body)
    for step in path.replace("]", "").replace("[", ".").split("."):
        value = value[int(step)] if step.isdigit() else value.get(step, "") if isinstance(value, dict) else ""
    return value if isinstance(value, str) else ""


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_text_in_any_string_field_never_fails_the_dry_run(lab, data):
    """A 200 (then every answer file renders: nothing the request holds fails later) or a 400 naming fields,
    never a 500 or a traceback."""
    online = data.draw(st.booleans(), label="online join")
    body = lab.body({"setup": [["domain.method", "online" if online else "offline"],
                               ["options", {"webhooks": ["https://hooks.example/done"]}],
                               ["postInstall.runScripts[0].parameters", {"Message": "hello"}]]})
    fields = st.sampled_from(data.draw(st.sampled_from([STRING_FIELDS, FREE_TEXT]), label="kind"))
    for path in data.draw(st.lists(fields, min_size=1, max_size=3, unique=True), label="fields"):
        if path.startswith("postInstall.runCommands"):  # cloud images only: a 400 for this Windows image, text or not
            body["postInstall"]["runCommands"] = ["echo hi"]
        text = data.draw(st.text(HOSTILE_CHARS, max_size=30) | st.text(VISIBLE_CHARS, max_size=30), label=path)
        original = _original(body, path)
        at = data.draw(st.integers(0, len(original)), label="at")
        value = data.draw(st.sampled_from([text, original[:at] + text + original[at:]]), label="value")
        body = changed(body, (path, value))
    if data.draw(st.integers(0, 4), label="odd key") == 0:  # an unknown field: always a 400
        body["os"][data.draw(st.text(HOSTILE_CHARS, min_size=1, max_size=5), label="key")] = "x"
    response = lab.post(copy.deepcopy(body), dry_run=True)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400), (response.status_code, response.get_data(as_text=True))
    assert "Traceback" not in response.get_data(as_text=True)
    if response.status_code == 400:
        assert response.json["errors"] and all(isinstance(k, str) and v for k, v in response.json["errors"].items())
    else:  # valid: the answer files a Windows machine fetches are all there (cloud-init fields are refused)
        assert {"autounattend.xml", "startnet.cmd", "winpeshl.ini"} <= set(response.json["artifacts"]), \
            json.loads(response.json["artifacts"]["plan.json"])["notes"]
