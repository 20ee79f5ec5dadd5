"""YAML as cloud-init reads it, written by PyYAML's safe dumper from plain data.

Values are never pasted into YAML text: a host name, a password hash or a shell command with
quotes, colons, ``#``, newlines or non-ASCII characters comes back exactly as it went in.
Multi-line strings (scripts, JSON) are written as literal blocks so that a person reading the
seed can read them too; PyYAML falls back to a quoted scalar wherever a block could not carry a
string exactly (trailing spaces, special characters).
"""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value.rstrip("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump(data: dict[str, Any], header: str | None = None) -> str:
    """``data`` as a YAML document (UTF-8 text, keys in the given order), after ``header`` if any."""
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                     width=4096)
    return f"{header}\n{text}" if header else text
