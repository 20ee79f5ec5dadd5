"""The Jinja2 environments answer files are rendered with, one per target language.

Each language breaks on different characters, so each environment escapes (or refuses) values
by that language's own rules, and every environment uses StrictUndefined: a missing value is
an error, never an empty string.

- XML (Autounattend): autoescaped; carriage returns are written as ``&#13;`` so that a value
  reads back exactly (an XML parser turns a literal CR into LF). Characters XML 1.0 cannot
  carry at all are refused where the context is built (``xml_problem``).
- CMD (startnet.cmd): nothing free-form is ever rendered. Every value must be an int or pass
  ``cmd_word`` (no spaces) or ``cmd_quoted`` (for inside double quotes); anything else stops the
  render. cmd has no escape for ``%`` or ``"`` and, with delayed expansion on, none for ``!``.
- Kickstart: values are quoted with ``shlex.quote`` (pykickstart splits lines with shlex).
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path
from typing import TypedDict

from jinja2 import BaseLoader, Environment, FileSystemLoader, StrictUndefined, Undefined
from markupsafe import Markup, escape

from octoprov.errors import OctoprovError

TEMPLATES = Path(__file__).resolve().parents[2] / "answers"


class UnsafeValue(OctoprovError):
    """A value cannot stand in the file without changing what the file does."""

    status = 409


# -- XML ------------------------------------------------------------------------------------------


def xml_problem(text: str) -> str | None:
    """Why ``text`` cannot be carried by XML 1.0 (control characters, lone surrogates), or None."""
    for char in text:
        code = ord(char)
        if code < 0x20 and char not in "\t\n\r":
            return "contains a control character XML cannot carry"
        if 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            return "contains a character XML cannot carry"
    return None


def _xml_finalize(value: object) -> object:
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    problem = xml_problem(value)
    if problem:
        raise UnsafeValue(f"a value {problem}")
    return Markup(str(escape(value)).replace("\r", "&#13;"))  # noqa: S704 - escaped on this line


# -- CMD ------------------------------------------------------------------------------------------

_CMD_WORD = re.compile(r"^[A-Za-z0-9._:/\\=+,@#-]+$")
_CMD_QUOTED = re.compile(r"^[A-Za-z0-9 ._:/\\=+,@#()-]*$")


class CmdText(str):
    """A value that passed a cmd filter."""


def cmd_word(value: object) -> CmdText:
    """One argument without quotes: no spaces and none of ``%!^&|<>()"``."""
    text = str(value)
    if not _CMD_WORD.match(text):
        raise UnsafeValue("a value is not usable as a word in a cmd script")  # the value may be a secret
    return CmdText(text)


def cmd_quoted(value: object) -> CmdText:
    """Text for inside double quotes: spaces and parentheses are fine there, ``%!"`` never are."""
    text = str(value)
    if not _CMD_QUOTED.match(text):
        raise UnsafeValue("a value is not usable inside quotes in a cmd script")
    return CmdText(text)


def _cmd_finalize(value: object) -> object:
    if isinstance(value, CmdText) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return cmd_word(value)


# -- Kickstart ------------------------------------------------------------------------------------


def ks_quote(value: object) -> str:
    text = str(value)
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise UnsafeValue("a Kickstart value contains a control character")
    return shlex.quote(text)


class _Options(TypedDict):
    """The ``Environment`` options every language shares."""

    loader: BaseLoader
    undefined: type[Undefined]
    keep_trailing_newline: bool
    trim_blocks: bool
    lstrip_blocks: bool


_COMMON: _Options = {"loader": FileSystemLoader(TEMPLATES), "undefined": StrictUndefined,
                     "keep_trailing_newline": True, "trim_blocks": True, "lstrip_blocks": True}
_xml = Environment(autoescape=True, finalize=_xml_finalize, **_COMMON)
# cmd and Kickstart are not HTML: HTML escaping would corrupt them; their own filters above apply instead
_cmd = Environment(autoescape=False, finalize=_cmd_finalize, **_COMMON)  # noqa: S701
_cmd.filters.update(cmd_word=cmd_word, cmd_quoted=cmd_quoted)
_kickstart = Environment(autoescape=False, **_COMMON)  # noqa: S701
_kickstart.filters.update(ks=ks_quote)


def render_xml(template: str, **context: object) -> str:
    return _xml.get_template(template).render(**context)


def render_cmd(template: str, **context: object) -> str:
    """cmd files need CRLF line ends: with bare LF, ``goto`` and ``call`` miss labels."""
    text = _cmd.get_template(template).render(**context)
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def render_kickstart(template: str, **context: object) -> str:
    return _kickstart.get_template(template).render(**context)
