"""What post-install items share on Linux and Windows machines: where the machine said it is, its
output lines in the task log, retries of the items that may safely run again, and an agent step
without an installer to give.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from octoprov import pipeline
from octoprov.errors import PermanentError
from octoprov.models import Node, Task
from octoprov.paths import confined
from octoprov.validation import check_unreserved_variable

if TYPE_CHECKING:
    from octoprov.context import TaskContext

TAIL_LINES = 20


class TaskLog:
    """Output lines into the task log, written in batches (one database session per batch)."""

    def __init__(self, ctx: TaskContext, step: str) -> None:
        self.ctx, self.step = ctx, step
        self.lines: list[str] = []
        self.tail: list[str] = []
        self.flushed = time.monotonic()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.tail = [*self.tail, line][-TAIL_LINES:]
        if len(self.lines) >= 50 or time.monotonic() - self.flushed > 1:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            with self.ctx.database.session() as session:
                for line in self.lines:
                    pipeline.log(session, self.ctx.task_id, f"| {line}"[:2000], step=self.step)
            self.lines = []
        self.flushed = time.monotonic()


def reported(ctx: TaskContext, over: str) -> tuple[str, dict[str, Any]]:
    """(first address, node options) from the machine's own authenticated report: where to log on. The
    first address is the one that report came from (results.record_facts keeps no other), so post-install
    connects only to an address Octoprov saw the machine at, never to one it merely claimed."""
    with ctx.database.session() as session:
        task = session.get_one(Task, ctx.task_id)
        node = session.get(Node, task.result_node_id) if task.result_node_id else None
        if node is None or not node.ip_addresses:
            raise PermanentError(f"the machine reported no address: post-install over {over} needs `addresses` in "
                                 "its first-boot callback, including the one the callback comes from (the task log "
                                 "names a report whose addresses were not kept)")
        return node.ip_addresses[0], dict(node.options or {})


def with_retries(ctx: TaskContext, item: dict[str, Any], title: str, repeatable: bool,
                 attempt: Callable[[TaskLog], str | None]) -> str:
    """Run ``attempt`` (one try; its output goes to the sink it is given; None when it succeeded,
    else what went wrong, e.g. "exited with status 3") once, or for an item that may safely run
    again as many more times as ``postInstall.retries`` says, with a growing pause in between. The
    final failure fails the step with the last lines of output."""
    attempts = 1 + (ctx.spec.post_install.retries if repeatable else 0)
    for number in range(1, attempts + 1):
        sink = TaskLog(ctx, item["step"])
        try:
            problem = attempt(sink)
        finally:
            sink.flush()
        if problem is None:
            return f"{title}: done" + (f" (attempt {number})" if number > 1 else "")
        if number < attempts:
            log(ctx, item["step"], f"{title} {problem}; trying again", level="warn")
            pause(ctx, min(30, 2 ** number))
    tail = "\n".join(sink.tail[-5:])
    raise PermanentError(f"{title} {problem}" + (f"; last output:\n{tail}" if tail else ""))


def agent_skipped(ctx: TaskContext, item: dict[str, Any], system: str, where: str, consequence: str) -> str:
    """The agent step when the images folder holds no installer for this OS: a warning, not a failure."""
    message = f"No {system} agent installer at images/{where}: {consequence}"
    log(ctx, item["step"], message, level="warn")
    return message


def log(ctx: TaskContext, step: str, message: str, level: str = "info") -> None:
    with ctx.database.session() as session:
        pipeline.log(session, ctx.task_id, message, level=level, step=step)


def pause(ctx: TaskContext, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.2)


@dataclass(frozen=True)
class PackageRun:
    """A package as one item runs it: its script and the item's parameters, checked against its schema
    again (the package may have changed since the task was accepted)."""

    name: str
    script: str
    parameters: dict[str, Any]
    idempotent: bool
    timeout_s: int


def package_run(ctx: TaskContext, item: dict[str, Any]) -> PackageRun:
    from octoprov.packages import get_package, validate_parameters

    with ctx.database.session() as session:
        package = get_package(session, item["packageId"])
        parameters = validate_parameters(package, item.get("parameters") or {}, "parameters")
        return PackageRun(package.name, package.script, parameters, package.idempotent, package.timeout_s)


def unreserved(title: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` unless one shadows a variable PowerShell, sh or the dynamic linker acts on
    (``LD_PRELOAD``, ``PATH``, ``$input``). Requests are refused such names; this catches a task
    stored before they were, at the last moment before its values would reach the machine's shell."""
    for name in parameters:
        try:
            check_unreserved_variable(name)
        except ValueError as exc:
            raise PermanentError(f"{title}: parameter {name} {exc}; not run") from None
    return parameters


def library_script(ctx: TaskContext, item: dict[str, Any]) -> str:
    """The text of a ``runScripts`` entry's file in the scripts library (a byte-order mark, which
    Windows editors write, left out)."""
    path = confined(ctx.settings.effective_scripts_dir, item["name"])
    if not path.is_file():
        raise PermanentError(f"no script {item['name']} in the scripts library")
    return path.read_text(encoding="utf-8-sig")
