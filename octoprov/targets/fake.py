"""The fake target: a whole provisioning run with no hardware, for tests, demos and the UI.

Machines are JSON files under ``DATA_DIR/fake/machines`` and every action is appended to
``DATA_DIR/fake/events.jsonl``, so tests can count what was created across worker crashes.
Behaviour comes from the fake node's options: a delay per action, a step to fail at
(``failAt``) and how often (``failTimes``: fail that many times with a transient error,
then succeed; 0 fails for good). After power-on the simulated machine reports its
progress to the status callback over HTTP, as a real installer would.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import AfterValidator, Field

from octoprov.domainjoin import DomainJoinInterface
from octoprov.errors import PermanentError, TransientError
from octoprov.specs import Spec, report
from octoprov.targets import registry
from octoprov.targets.base import (
    BootInterface,
    ComputeInterface,
    InventoryInterface,
    Machine,
    NetworkView,
    PostInstallInterface,
    PowerInterface,
    StorageView,
    Target,
)

if TYPE_CHECKING:
    from octoprov.context import NodeInfo, TaskContext
    from octoprov.taskspec import TaskSpec


def _known_queue(name: str) -> str:
    if name not in registry.queues():
        raise ValueError(f"must be one of {', '.join(registry.queues())}")
    return name


MachineScheduler = Callable[["TaskContext"], None]
_machine_scheduler: MachineScheduler | None = None


def use_machine_scheduler(schedule: MachineScheduler) -> None:
    """Hand in what plays a fake machine after power-on (the workers' timed callback tasks): the
    domain never imports the worker code that does it."""
    global _machine_scheduler
    _machine_scheduler = schedule


class FakeOptions(Spec):
    """How a fake node behaves (the ``fake`` object of a node of kind ``fake``)."""

    delay_s: float = Field(default=0.1, ge=0, le=600, description="Time each work step takes")
    fail_at: str | None = Field(default=None, max_length=100, description="Step name to fail at")
    fail_times: int = Field(default=0, ge=0, le=100,
                            description="Fail that many times with a transient error, then succeed; 0: always")
    callbacks: bool = Field(default=True, description="Simulate the machine's status callbacks after power-on")
    callback_delay_s: float = Field(default=0.2, ge=0, le=3600, description="Time between two callbacks")
    machine_pool: Annotated[str, AfterValidator(_known_queue)] = Field(
        default="default", description="Worker pool whose workers play the machine and send its callbacks, so a "
                                       "rehearsal can spread one task over two pools")


class NodeRegistration(Protocol):
    endpoint: str


def check_node(node: NodeRegistration) -> None:
    if not node.endpoint.startswith("fake://"):
        report({"endpoint": "a fake node's endpoint is fake://<anything>"})


def options_of(ctx: TaskContext) -> FakeOptions:
    return options_from(ctx.node.options if ctx.node else None)


def options_from(node_options: dict[str, Any] | None) -> FakeOptions:
    """The fake behaviour a node's stored options ask for."""
    return FakeOptions.model_validate((node_options or {}).get("fake") or {}, by_alias=True, by_name=True)


def fake_dir(ctx: TaskContext) -> Path:
    return fake_folder(ctx.data_dir)


_made: set[Path] = set()  # the fake's folders this process made sure of


def made_once(folder: Path) -> Path:
    """``folder``, made with its parents the first time this process asks (simulated machines ask often)."""
    if folder not in _made:
        folder.mkdir(parents=True, exist_ok=True)
        _made.add(folder)
    return folder


def fake_folder(data_dir: Path) -> Path:
    """The fake's folder in ``data_dir``, with its subfolders."""
    folder = Path(data_dir) / "fake"
    made_once(folder / "machines")
    made_once(folder / "failures")
    return folder


def record(ctx: TaskContext, action: str, **details: Any) -> None:
    record_in(ctx.data_dir, ctx.task_id, action, **details)


def record_in(data_dir: Path, task_id: int, action: str, **details: Any) -> None:
    """One line in the fake's event log, which tests read to count what was done."""
    line = json.dumps({"action": action, "task": task_id, "time": time.time(), **details}) + "\n"
    write_file(fake_folder(data_dir) / "events.jsonl", line.encode(), os.O_APPEND)  # one write: never interleaved


def events(data_dir: Path) -> list[dict[str, Any]]:
    path = Path(data_dir) / "fake" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fake_mac(task_id: int) -> str:
    """A locally administered MAC derived from the task id: the same on every attempt."""
    digest = hashlib.sha256(str(task_id).encode()).digest()
    return "02:00:" + ":".join(f"{b:02x}" for b in digest[:4])


def act(ctx: TaskContext, step: str) -> None:
    """Before every work step: take the configured time, watching for cancellation; fail as configured."""
    options = options_of(ctx)
    if options.delay_s:  # without a delay, the claim that just took the step saw the task active
        deadline = time.monotonic() + options.delay_s
        while time.monotonic() < deadline:
            ctx.check_cancelled()
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        ctx.check_cancelled()
    if options.fail_at != step:
        return
    if options.fail_times == 0:
        record(ctx, "fail", step=step, permanent=True)
        raise PermanentError(f"fake failure injected at {step}")
    counter = fake_dir(ctx) / "failures" / f"{ctx.task_id}-{step}"
    with open(counter, "a") as handle:
        handle.write("x")
    if counter.stat().st_size <= options.fail_times:
        record(ctx, "fail", step=step, permanent=False)
        raise TransientError(f"fake transient failure at {step} ({counter.stat().st_size} of {options.fail_times})")


def claim_record(path: Path, ctx: TaskContext, content: dict[str, Any], what: str) -> dict[str, Any] | None:
    """Create the JSON record of something this task owns, exactly once. None when it was created
    now; the stored record when an earlier attempt of this task created it (adopt it); refused
    when it belongs to another task."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing: dict[str, Any] = json.loads(path.read_text() or "{}")
        if existing.get("task") != ctx.task_id:
            raise PermanentError(f"{what} belongs to another task") from None
        return existing
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({"task": ctx.task_id, **content}))
    return None


def drop_record(path: Path, ctx: TaskContext, action: str, **details: Any) -> bool:
    """Remove a record (and log the action); False when it was already gone."""
    if not path.exists():
        return False
    path.unlink()
    record(ctx, action, **details)
    return True


def machine_path(ctx: TaskContext) -> Path:
    return fake_dir(ctx) / "machines" / f"task-{ctx.task_id}.json"


def power_of(path: Path) -> str | None:
    """The machine's power state: ``on``, ``off``, or None when there is no such machine."""
    stored = read_file(path)
    if stored is None:
        return None
    state: str | None = json.loads(stored).get("power")
    return state


def set_power(path: Path, state: str) -> None:
    """Store the machine's power state (a removed machine stays removed)."""
    stored = read_file(path)
    if stored is None:
        return
    write_record(path, {**json.loads(stored), "power": state})


def write_record(path: Path, content: dict[str, Any]) -> None:
    """Replace a JSON record whole: a reader sees the old record or the new one, never half of one."""
    temporary = path.with_suffix(".tmp")
    write_file(temporary, json.dumps(content).encode(), os.O_TRUNC)
    os.replace(temporary, path)


# The fake's records are small files that simulated machines read and write a few times per task each: opened
# unbuffered, as the file objects of ``open`` cost a status call, a terminal check and a seek besides.

def read_file(path: Path) -> bytes | None:
    """A small file's bytes, or None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """``data`` written to the file, made if missing (mode 0600), with ``mode`` ``os.O_TRUNC`` or ``os.O_APPEND``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class FakeCompute(ComputeInterface):
    def validate(self, spec: TaskSpec, node: NodeInfo | None) -> None:
        FakeOptions.model_validate(((node.options if node else None) or {}).get("fake") or {}, by_alias=True)

    def create_machine(self, ctx: TaskContext) -> Machine:
        path = machine_path(ctx)
        mac = ctx.mac_address or fake_mac(ctx.task_id)
        existing = claim_record(path, ctx, {"name": ctx.hostname, "mac": mac, "power": "off"},
                                f"a machine called {ctx.hostname}")
        if existing is not None:
            return Machine(path.stem, existing["mac"], f"Adopted {ctx.hostname} created by an earlier attempt")
        record(ctx, "create", machine=path.stem)
        vm = ctx.spec.vm
        if vm is None:
            return Machine(path.stem, mac, f"Created ? vCPU, ? GB RAM, 0 disks; MAC {mac}")
        return Machine(path.stem, mac,
                       f"Created {vm.cpu} vCPU, {vm.memory_gb} GB RAM, {len(vm.disks)} disks; MAC {mac}")

    def destroy_machine(self, ctx: TaskContext) -> str:
        path = machine_path(ctx)
        return f"Removed {ctx.hostname}" if drop_record(path, ctx, "destroy", machine=path.stem) \
            else "no machine to remove"


class FakePower(PowerInterface):
    def power_on(self, ctx: TaskContext) -> str:
        """Like a hypervisor's start: a machine already running goes on with what it was doing."""
        path = machine_path(ctx)
        if power_of(path) == "on":
            return "Already running"
        if options_of(ctx).callbacks:
            if _machine_scheduler is None:
                raise PermanentError("no fake machine can report here: this process runs no fake-machine worker")
            _machine_scheduler(ctx)  # the simulated machine runs as timed worker tasks
        record(ctx, "power_on")
        set_power(path, "on")
        return "Network boot started"

    def power_off(self, ctx: TaskContext) -> str:
        path = machine_path(ctx)
        if power_of(path) == "off":
            return "Already off"
        record(ctx, "power_off")
        set_power(path, "off")
        return "Powered off"


class FakeBoot(BootInterface):
    def _config(self, ctx: TaskContext) -> Path:
        return made_once(fake_dir(ctx) / "boot") / f"task-{ctx.task_id}.json"

    def prepare_boot(self, ctx: TaskContext) -> str:
        """Like writing a boot config file: a repeat (its step cut short after the write) finds it in place."""
        if claim_record(self._config(ctx), ctx, {}, "the boot config") is not None:
            return "Boot config already in place"
        record(ctx, "prepare_boot")
        return "Boot config ready"

    def cleanup_boot(self, ctx: TaskContext) -> str:
        self._config(ctx).unlink(missing_ok=True)
        record(ctx, "cleanup_boot")
        return "Boot config removed"


class FakeDomain(DomainJoinInterface):
    def _account(self, ctx: TaskContext) -> Path:
        return made_once(fake_dir(ctx) / "accounts") / f"{ctx.spec.domain.name}-{ctx.hostname}.json"

    def provision_offline_join(self, ctx: TaskContext) -> str:
        """Like ``djoin /provision``: one computer account per name; a repeat returns its blob."""
        if claim_record(self._account(ctx), ctx, {}, f"computer account {ctx.hostname}") is None:
            record(ctx, "computer_account", hostname=ctx.hostname)
        return f"FAKE-DJOIN-BLOB:{ctx.hostname}:{ctx.spec.domain.name}"

    def remove_computer_account(self, ctx: TaskContext) -> str:
        if drop_record(self._account(ctx), ctx, "remove_computer_account", hostname=ctx.hostname):
            return f"Removed computer account {ctx.hostname}"
        return "no computer account to remove"


class FakePostInstall(PostInstallInterface):
    def run_item(self, ctx: TaskContext, item: dict[str, Any]) -> str:
        """The agent finds itself installed on a repeat, as the real agent installers do; anything else (a
        package, a script) runs again."""
        if item.get("type") == "agent":
            folder = made_once(fake_dir(ctx) / "installed")
            if claim_record(folder / f"task-{ctx.task_id}-{item['step']}.json", ctx, {}, item["step"]) is not None:
                return f"Already installed: {item['step']}"
        record(ctx, "post_install", item=item)
        return f"Ran {item['type']}"


def inventory_for_node(node: NodeInfo) -> FakeInventory:
    return FakeInventory()


def fake_target() -> Target:
    return Target(FakeCompute(), FakePower(), FakeBoot(), FakeDomain(), FakePostInstall(), before_step=act)


class FakeInventory(InventoryInterface):
    """A fake host offers one switch and one storage pool, so forms and validation can be tried."""

    def networks(self) -> list[NetworkView]:
        return [NetworkView(name="fake-switch", type="vswitch", active=True, vlan_capable=True)]

    def storage(self) -> list[StorageView]:
        return [StorageView(name="fake-pool", type="dir", active=True, path="/fake",
                            capacity_bytes=2**40, free_bytes=2**39)]
