"""A KVM task's context on libvirt's built-in ``test:///default`` driver, with no database behind it."""

from __future__ import annotations

import libvirt
import pytest

from octoprov.context import NodeInfo, TaskContext
from octoprov.settings import Settings
from octoprov.targets.libvirt import kvm_target
from tests.support.examples import task_spec

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

URI = "test:///default"


def make_ctx(tmp_path, task_id=42, hostname="web01", vm=None, mac=None, uri=URI, options=None) -> TaskContext:
    vm = vm or {"cpu": 2, "memoryGb": 4, "generation": 2,
                "disks": [{"sizeGb": 20, "purpose": "data"}, {"sizeGb": 60, "purpose": "os"},
                          {"sizeGb": 5, "purpose": "data", "type": "fixed"}]}
    node = NodeInfo(1, "KVM01", "kvm", uri, options or {}, {})
    return TaskContext(task_id=task_id, hostname=hostname, target_type="kvm", os_type="linux",
                       spec=task_spec("kvm", hostname, os_type="linux", vm=vm),
                       mac_address=mac, machine_ref=None, node=node, settings=Settings(data_dir=tmp_path),
                       database=None, vault=None)


@pytest.fixture
def conn():
    """One connection per test: the test driver's state lives while a connection to it is open."""
    connection = libvirt.open(URI)
    yield connection
    connection.close()


@pytest.fixture
def target(conn):
    return kvm_target(lambda _uri: conn)
