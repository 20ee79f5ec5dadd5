"""A PowerShell command as data: which cmdlet or script, with which bound parameters, in order. So
what a driver runs is testable as a table and a dry run lists exactly what a task would run.

No value is ever written into script text. A command is a cmdlet name and its parameters, which
pypsrp sends to the host as typed PSRP parameters (``add_cmdlet(...).add_parameter(...)``). A
script (a fixed one of ``scriptfiles``, a post-install package's, a library file's) is sent as it
is, its values bound to its ``param()`` block in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from octoprov.winrm.scriptfiles import script_text


@dataclass(frozen=True)
class Cmdlet:
    """One command with its bound parameters, in the order they are sent. ``True`` sets a switch.
    ``text``: the script run instead of a cmdlet, with the parameters bound to its ``param()``
    block; ``name`` then only names it."""

    name: str
    parameters: tuple[tuple[str, Any], ...] = ()
    text: str | None = field(default=None, repr=False)

    @property
    def script(self) -> str | None:
        """The script text behind this command; None for a cmdlet."""
        return self.text

    def get(self, name: str) -> Any:
        return dict(self.parameters).get(name)

    def to_json(self) -> dict[str, Any]:
        """For the dry run and logs: bytes (file contents, which carry secrets) shown by size only."""
        shown = {name: f"<{len(value)} bytes>" if isinstance(value, bytes) else value
                 for name, value in self.parameters}
        return {"script" if self.script else "cmdlet": self.name, "parameters": shown}


Pipeline = tuple[Cmdlet, ...]


def _present(parameters: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((key, value) for key, value in parameters.items() if value is not None)


def cmdlet(name: str, **parameters: Any) -> Cmdlet:
    """A command; parameters set to None are left out."""
    return Cmdlet(name, _present(parameters))


def fixed(package: str, name: str, **parameters: Any) -> Cmdlet:
    """The fixed script ``name`` of ``package`` (its ``scripts/<name>.ps1``), named by its file;
    parameters set to None are left out."""
    return Cmdlet(name, _present(parameters), script_text(package, name))


def script(name: str, text: str, parameters: dict[str, Any]) -> Cmdlet:
    """A script of its own (``text``) with ``parameters`` bound by name, never pasted into it."""
    return Cmdlet(name, tuple(parameters.items()), text)


def pipeline(*cmdlets: Cmdlet) -> Pipeline:
    return tuple(cmdlets)


def to_json(command: Cmdlet | Pipeline) -> dict[str, Any]:
    if isinstance(command, Cmdlet):
        return command.to_json()
    return command[0].to_json() if len(command) == 1 else {"pipeline": [item.to_json() for item in command]}
