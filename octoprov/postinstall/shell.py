"""The shell scripts post-install items run as on Linux machines.

Parameters become shell variables, each value quoted with the shell's own rules (``shlex.quote``)
and exported, ahead of the item's own script text: a value is data to the script, never code,
whatever quotes, ``$()`` or newlines it holds. Names are checked again here (letters, digits,
underscore), since a name is pasted as it is.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from octoprov.validation.names import check_parameter_name


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def exports(parameters: Mapping[str, object]) -> str:
    lines = []
    for name, value in parameters.items():
        check_parameter_name(name)
        lines.append(f"{name}={shlex.quote(_value(value))}; export {name}")
    return "\n".join(lines)


def item_script(body: str, parameters: Mapping[str, object]) -> str:
    """``body`` run with ``set -e`` after its parameters."""
    return f"set -e\n{exports(parameters)}\n{body}\n"


def installer_script(remote_path: str, arguments: str) -> str:
    """Run an uploaded installer with its arguments (split as a shell would), then delete it."""
    argv = " ".join(shlex.quote(arg) for arg in shlex.split(arguments))
    path = shlex.quote(remote_path)
    return f"sh {path} {argv}\nstatus=$?\nrm -f {path}\nexit $status\n"
