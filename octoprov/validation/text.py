"""Text every consumer of a request can carry: the database, UTF-8, XML, cmd, PowerShell and the shell.

JSON can spell things no other format can: a lone UTF-16 surrogate (``"\\ud800"``) has no UTF-8 form,
so PostgreSQL, SQLite, libvirt and every script refuse it with an exception; NUL ends a C string and
no PostgreSQL text holds it; other control characters and U+FFFE/U+FFFF cannot stand in XML 1.0
(the answer file) at all. A request holding one is refused when it arrives, naming the field,
instead of failing an hour later, after its machine exists.
"""

from __future__ import annotations

import unicodedata

LINE_BREAKS = "\t\n\r"  # what multi-line text (a shell command, a script parameter) may hold
_NONCHARACTERS = "\ufffe\uffff"  # outside XML 1.0's Char production
_WITHOUT_LINE_BREAKS = str.maketrans("", "", LINE_BREAKS)


def has_lone_surrogate(text: str) -> bool:
    # ASCII text (nearly every value of every request) holds no surrogate: checked in C, not per character
    return not text.isascii() and any(0xD800 <= ord(char) <= 0xDFFF for char in text)


def storable_problem(text: str) -> str | None:
    """Why no database or UTF-8 consumer can take ``text`` (a lone surrogate, NUL), or None. The
    message never shows the character: the text may be a password."""
    if has_lone_surrogate(text):
        return "must be valid Unicode text: it holds a lone surrogate, which has no UTF-8 form"
    if "\x00" in text:
        return "must not contain NUL characters"
    return None


def text_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why ``text`` cannot go into a provisioning artifact, or None: a storable problem, a control
    character (tab, newline and carriage return allowed in ``multiline`` text), U+FFFE or U+FFFF."""
    if text.isascii() and text.isprintable():  # most text: none of these (looked for character by character)
        return None
    problem = storable_problem(text)
    if problem:
        return problem
    allowed = LINE_BREAKS if multiline else ""
    if text.isascii():  # the same answer, cheaper: ASCII's control characters are what isprintable() refuses
        controls = not (text.translate(_WITHOUT_LINE_BREAKS) if multiline else text).isprintable()
    else:
        controls = any(unicodedata.category(char) == "Cc" and char not in allowed for char in text)
    if controls:
        return ("must not contain control characters other than tab and line breaks" if multiline
                else "must not contain control characters")
    if any(char in text for char in _NONCHARACTERS):  # two substring searches, not a loop over the text
        return "must not contain U+FFFE or U+FFFF, which XML cannot carry"
    return None


def check_text(text: str, *, multiline: bool = False) -> str:
    """Text an artifact can carry (see ``text_problem``); returned unchanged."""
    problem = text_problem(text, multiline=multiline)
    if problem:
        raise ValueError(problem)
    return text


def check_single_line(text: str) -> str:
    """Text for one line of an artifact (a name, a path, a password); returned unchanged."""
    return check_text(text)


def check_password(password: str) -> str:
    """A password Setup, WinRM and SSH can all use. Control characters are refused: XML cannot carry
    most of them (the answer file would not render once the machine exists) and nobody can type
    the others at a logon prompt. The message never repeats the value: it is a secret."""
    problem = storable_problem(password)
    if problem:
        raise ValueError(problem)
    if any(ord(char) < 0x20 and char not in LINE_BREAKS for char in password):
        raise ValueError("contains a control character XML cannot carry")  # as the answer file's own check says
    return check_single_line(password)
