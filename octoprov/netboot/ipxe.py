"""Rendering iPXE scripts from the templates in ``ipxe/``.

iPXE's script language has no quoting: a space splits arguments, ``${`` expands a setting,
``||`` and ``&&`` chain commands, a newline starts a new command. So every value is checked
by a filter for the place it stands in (a URL or word, kernel arguments, a comment), and a
value that does not fit is refused instead of being rendered. Templates use StrictUndefined:
a missing value is an error, never an empty string.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).resolve().parents[2] / "ipxe"

_WORD = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!*+,;=%&-]+$")
_ARGS = re.compile(r"^[A-Za-z0-9 =,./:_+@%-]*$")


class UnsafeValue(ValueError):
    """A value cannot stand in an iPXE script without changing what the script does."""


def ipxe_word(value: object) -> str:
    text = str(value)
    if not _WORD.match(text) or "&&" in text or "||" in text:
        raise UnsafeValue(f"not usable as one iPXE argument: {text!r}")
    return text


def ipxe_args(value: object) -> str:
    text = "" if value is None else str(value)
    if not _ARGS.match(text):
        raise UnsafeValue(f"not usable as kernel arguments in an iPXE script: {text!r}")
    return text


def ipxe_comment(value: object) -> str:
    """Text for a comment or an echo: one line, no expansion, no command separators."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", str(value))
    return text.replace("${", "$ {").replace("||", "| |").replace("&&", "& &")


# iPXE scripts, not HTML: HTML escaping would corrupt URLs; every value passes a filter above instead
_environment = Environment(
    loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, keep_trailing_newline=True,
    autoescape=False,  # noqa: S701
)
_environment.filters.update(ipxe_word=ipxe_word, ipxe_args=ipxe_args, ipxe_comment=ipxe_comment)


def render(template: str, **context: Any) -> str:
    return _environment.get_template(f"{template}.ipxe.j2").render(**context)
