"""Task inputs for answer-file tests, made from request bodies through the real request model."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from types import SimpleNamespace

from octoprov import secureboot
from octoprov.answerfiles.inputs import ImageInfo, PackInfo, TaskInputs
from octoprov.settings import Settings
from octoprov.taskspec import parse_task_request
from tests.support import TESTS
from tests.support.examples import spec_example

GOLDEN = TESTS / "golden"
TOKEN = "cAllBack-T0ken_0123456789abcdefghijklmnopq"  # token_urlsafe(32) has this alphabet and length
BLOB = "ARAIAMzMzMxQAQAAAAAAAAAAAgABAAAAAQAAAAQAAgABAAAAAQAAADgBAAA4AQAAAQAAAA=="  # base64 as djoin writes it
HYPERV_MAC = "00:15:5d:01:02:03"  # the spec's example VM
IMAGE = ImageInfo(1, "Windows Server 2025 Standard", "windows", "x64", "windows/ws2025/install.wim", 2)


class References:
    """Every id exists; the node is of the body's own target type."""

    def __init__(self, os_type: str = "windows"):
        self.os_type = os_type

    def image_os_type(self, image_id):
        return self.os_type

    def image_indexes(self, image_id):
        return None

    def template_exists(self, template_id):
        return True

    def hypervisor_kind(self, node_id):
        return self.kind

    def package(self, package_id):
        schema = {"type": "object", "properties": {"instanceName": {"type": "string"}}, "required": []}
        return SimpleNamespace(name="package", os_type=self.os_type, parameters_schema=schema)

    def group_exists(self, group_id):
        return True

    def script_os_type(self, name):
        return self.os_type

    kind = "hyperv"


def make_settings(**overrides) -> Settings:
    values = {"public_url": "http://192.0.2.10:8080", "boot_server_address": "192.0.2.10", **overrides}
    return Settings(**values)


def inputs_for(body: dict, *, os_type: str = "windows", image: ImageInfo = IMAGE, mac: str | None = HYPERV_MAC,
               blob: str | None = BLOB, hardware: dict | None = None, node_options: dict | None = None,
               packs: tuple[PackInfo, ...] = (), task_id: int = 42) -> TaskInputs:
    refs = References(os_type)
    refs.kind = body.get("targetType")
    spec = parse_task_request(copy.deepcopy(body), {}, refs)
    return TaskInputs(task_id=task_id, hostname=spec.hostname, target_type=spec.target_type, spec=spec,
                      mac_address=mac, hardware=hardware or {}, image=image, node_options=node_options or {},
                      packs=packs, callback_token=TOKEN, domain_join_blob=blob,
                      secure_boot_after_install=secureboot.after_install_for(
                          spec, os_type, node_options, signed_kernel=image.signed_kernel))


def example(variant: str = "dhcp", **changes) -> dict:
    """The spec's SQL-SERVER-01 request; ``changes`` replace whole top-level sections."""
    body = spec_example("static" if variant == "static" else "dhcp")
    body.update(changes)
    return body


def check_golden(name: str, text: str) -> None:
    """Compare with the golden file byte for byte; OCTOPROV_UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / name
    if os.environ.get("OCTOPROV_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert path.read_bytes() == text.encode("utf-8"), f"{name} differs from its golden file"


__all__ = ["BLOB", "HYPERV_MAC", "IMAGE", "TOKEN", "check_golden", "example", "inputs_for", "make_settings", "replace"]
