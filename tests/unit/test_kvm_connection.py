"""The connection a worker process keeps per KVM host: the drivers' steps share it, and it is opened
anew when it stopped answering, failed, idled too long, or belongs to another process."""

from __future__ import annotations

import os

import pytest

from octoprov.context import NodeInfo
from octoprov.errors import PermanentError, TargetUnreachable
from octoprov.targets.libvirt import connection, kvm_target
from tests.support.libvirt_ctx import make_ctx

libvirt = pytest.importorskip("libvirt")

URI = "qemu+unix:///system?socket=/nonexistent/kept"  # never opened: open_connection is replaced


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False
        self.answers = True
        self.probes = 0

    def getLibVersion(self) -> int:
        self.probes += 1
        if self.closed or not self.answers:
            raise libvirt.libvirtError("End of file while reading data")
        return 9_000_000

    def isAlive(self) -> int:
        return int(not self.closed)

    def close(self) -> int:
        self.closed = True
        return 0


@pytest.fixture
def opened(monkeypatch):
    """Every connection opened, in order; the process keeps none from another test."""
    monkeypatch.setattr(connection, "_KEPT", connection._Kept())
    made: list[FakeConnection] = []

    def open_connection(uri, credentials=None, options=None, *, read_only=False):
        made.append(FakeConnection())
        return made[-1]

    monkeypatch.setattr(connection, "open_connection", open_connection)
    return made


def node(private_key: str | None = None) -> NodeInfo:
    return NodeInfo(1, "KVM01", "kvm", URI, {}, {"privateKey": private_key} if private_key else {})


def use(target: NodeInfo, error: BaseException | None = None) -> FakeConnection:
    with connection.kept_connection(target) as conn:
        if error is not None:
            raise error
        return conn


def test_blocks_on_one_host_share_one_connection(opened):
    first, second = use(node()), use(node())
    assert second is first and len(opened) == 1 and not first.closed
    assert first.probes == 1  # checked once before it was used again


def test_the_drivers_steps_share_it(monkeypatch, tmp_path):
    monkeypatch.setattr(connection, "_KEPT", connection._Kept())
    real = []
    monkeypatch.setattr(connection, "open_connection",
                        lambda *_args, **_kw: real.append(libvirt.open("test:///default")) or real[-1])
    target, ctx = kvm_target(), make_ctx(tmp_path, uri=URI)
    assert target.compute.destroy_machine(ctx) == "no machine to remove"
    assert target.compute.destroy_machine(ctx) == "no machine to remove"
    assert len(real) == 1
    real[0].close()


def test_a_connection_that_stopped_answering_is_replaced(opened):
    first = use(node())
    first.answers = False  # its daemon restarted, say
    second = use(node())
    assert second is not first and first.closed and len(opened) == 2


def test_a_failing_host_drops_it_and_a_refusal_keeps_it(opened):
    with pytest.raises(PermanentError):
        use(node(), PermanentError("no such domain"))
    assert len(opened) == 1 and not opened[0].closed
    with pytest.raises(TargetUnreachable):
        use(node(), TargetUnreachable("the host went away"))
    assert opened[0].closed
    assert use(node()) is opened[1]


def test_a_connection_idle_too_long_is_opened_anew(opened, monkeypatch):
    first = use(node())
    monkeypatch.setattr(connection, "KEEP_IDLE_S", -1.0)
    assert use(node()) is not first and first.closed and first.probes == 0


def test_other_credentials_get_their_own_connection(opened):
    assert use(node("key A")) is not use(node("key B"))
    assert use(node("key A")) is opened[0]


def test_a_forked_process_opens_its_own_and_leaves_its_parents_open(opened, monkeypatch):
    parent = use(node())
    pid = os.getpid()
    monkeypatch.setattr(connection.os, "getpid", lambda: pid + 1)
    child = use(node())
    assert child is not parent and not parent.closed
    assert use(node()) is child


def test_the_in_process_test_driver_is_opened_per_block(monkeypatch):
    monkeypatch.setattr(connection, "_KEPT", connection._Kept())
    with connection.kept_connection(NodeInfo(1, "KVM01", "kvm", "test:///default", {}, {})) as conn:
        assert conn.getType() == "TEST"
    assert not connection._KEPT.idle
