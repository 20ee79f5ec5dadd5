"""The files a task serves its machine from the per-task file URL, rendered on request.

Windows tasks serve the answer file, the WinPE start script and winpeshl.ini (wimboot injects
all three into WinPE); Linux tasks whose image boots Anaconda serve a Kickstart file. Each
file is rendered on its own, so one that cannot be made (a missing password, a setting
scripts cannot carry) is reported by name without hiding the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from octoprov.answerfiles.autounattend import autounattend_for
from octoprov.answerfiles.inputs import TaskInputs
from octoprov.answerfiles.kickstart import kickstart_for, uses_kickstart
from octoprov.answerfiles.startnet import startnet_for, winpeshl
from octoprov.context import TaskContext
from octoprov.crypto import Vault
from octoprov.errors import InvalidRequest, OctoprovError, PermanentError
from octoprov.models import Task
from octoprov.settings import Settings
from octoprov.targets import registry

WINDOWS_FILES = ("autounattend.xml", "startnet.cmd", "winpeshl.ini")


@dataclass(frozen=True)
class Rendered:
    files: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # file name -> why it cannot be made


def _reason(exc: OctoprovError) -> str:
    if isinstance(exc, InvalidRequest):
        return "; ".join(f"{path}: {message}" for path, message in exc.errors.items())
    return exc.message


def makers(inputs: TaskInputs, settings: Settings) -> dict[str, Callable[[], str]]:
    """File name → how to render it, for the files this task's machine fetches."""
    image = inputs.image
    if image is not None and image.os_type == "windows":
        return {"autounattend.xml": lambda: autounattend_for(inputs, settings).render(),
                "startnet.cmd": lambda: startnet_for(inputs, settings).render(),
                "winpeshl.ini": winpeshl}
    if uses_kickstart(image):
        return {"kickstart.cfg": lambda: kickstart_for(inputs, settings).render()}
    return {}


def render_files(inputs: TaskInputs, settings: Settings) -> Rendered:
    rendered = Rendered()
    for name, make in makers(inputs, settings).items():
        try:
            rendered.files[name] = make()
        except OctoprovError as exc:
            rendered.problems[name] = _reason(exc)
    return rendered


def task_files(session: Session, settings: Settings, vault: Vault, task: Task) -> Rendered:
    """For a caller with no task context (the per-task file URL): the context is read first."""
    return render_files(TaskInputs.load(session, settings, vault, task), settings)


def context_files(connection: Connection, ctx: TaskContext) -> Rendered:
    """For a worker's step, which holds the task's context already: only what the files add is read."""
    return render_files(TaskInputs.from_context(connection, ctx), ctx.settings)


def check_task_files(connection: Connection, ctx: TaskContext) -> str:
    """The ``render_answers`` step: render every file now, so a task that cannot get its answers fails
    here, naming why, rather than when the installer fetches them (which renders them again, fresh).
    A target whose machines fetch no answer files (the fake one) only reports the problems."""
    rendered = context_files(connection, ctx)
    problems = "; ".join(f"{name}: {why}" for name, why in rendered.problems.items())
    if problems and registry.get(ctx.target_type).serves_answers:
        raise PermanentError(problems)
    if problems:
        return f"A real machine would get no answer files: {problems}"
    if not rendered.files:
        return "No answer files: this image's installer takes none"
    return f"{', '.join(rendered.files)} ready; served to the machine while it installs"
