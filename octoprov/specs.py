"""Base classes for what the API takes in (specs) and gives out (views).

One pydantic model per resource is the single source of truth for validation, for the
JSON the API returns and for the OpenAPI document (``api/schemas.py`` converts them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from octoprov.errors import InvalidRequest, field_path
from octoprov.validation.text import storable_problem

SpecT = TypeVar("SpecT", bound="Spec")
WhereT = TypeVar("WhereT", bound=str | tuple[str | int, ...])  # a field name, or a location tuple

MASK = "********"


class Spec(BaseModel):
    """Input: camelCase keys, unknown keys refused, no silent type coercion."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,  # lets code build specs by Python name; parse() still takes camelCase only
        extra="forbid",
        strict=True,
        hide_input_in_errors=True,  # inputs include passwords
    )


class View(BaseModel):
    """Output: camelCase keys, read from ORM objects."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)

    @classmethod
    def of(cls, obj: Any) -> Self:
        """The view of a stored object."""
        return cls.model_validate(obj)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# Timestamps always leave as ISO-8601 with an explicit offset (SQLite drops the zone on read).
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda v: (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat(), return_type=str),
]


def report(errors: Mapping[WhereT, str | None]) -> None:
    """Raise a ValidationError putting each message at its place: a (camelCase) field name of
    the model being validated, or a location tuple relative to the value being validated.
    None means that place is fine. Pydantic prefixes the locations of enclosing models."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError("invalid", "{reason}", {"reason": reason}),
            loc=where if isinstance(where, tuple) else (where,),
            input=None,
        )
        for where, reason in errors.items()
        if reason is not None
    ]
    if details:
        raise ValidationError.from_exception_data("request", details)


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "string_unicode": "holds a lone surrogate, which is not Unicode text",  # a key pydantic cannot read, in this object
}


def errors_of(exc: ValidationError) -> dict[str, str]:
    """Field path -> message for every error pydantic found (messages at one path joined)."""
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        path = field_path(tuple(part for part in error["loc"] if part != "[key]"))
        if error["type"] == "value_error":
            message = str(error["ctx"]["error"])
        else:
            message = _MESSAGES.get(error["type"], error["msg"])
        if path not in errors:
            errors[path] = message
        elif message not in errors[path]:
            errors[path] += "; " + message
    return errors


def _escaped(key: str) -> str:
    """A key as it stands in a field path: characters no path should hold written as ``\\uXXXX``."""
    if key.isascii() and key.isprintable():  # every key of every body: none to escape
        return key
    return "".join(f"\\u{ord(char):04x}" if _unprintable(char) else char for char in key)


def _unprintable(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF)


def text_errors(value: object, problem: Callable[[str, str], str | None], path: str = "") -> dict[str, str]:
    """Field path -> message for every string (and object key) of a decoded JSON body that
    ``problem(path, text)`` finds fault with. A faulty key is named with its odd characters escaped."""
    if isinstance(value, str):
        found = problem(path or "body", value)
        return {path or "body": found} if found else {}
    errors: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{_escaped(str(key))}" if path else _escaped(str(key))
            found = problem(here, str(key))
            errors.update({here: f"the name {found}"} if found else text_errors(item, problem, here))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors.update(text_errors(item, problem, f"{path}[{index}]"))
    return errors


def parse(model: type[SpecT], body: object, errors: dict[str, str] | None = None,
          context: dict[str, Any] | None = None) -> SpecT:
    """Validate a decoded JSON body against ``model``; one InvalidRequest names every bad field,
    together with ``errors`` the caller found before (for example unknown references).

    Only camelCase keys are accepted, as the API documents them: a snake_case key is an unknown field.
    """
    if not isinstance(body, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    # a lone surrogate or a NUL fails every database, and UTF-8 itself: refused in every body, first
    errors = {**(errors or {}), **text_errors(body, lambda _path, text: storable_problem(text))}
    try:
        spec = model.model_validate(body, by_alias=True, by_name=False, context=context)
    except ValidationError as exc:
        found = {_escaped(path): message for path, message in errors_of(exc).items()}  # odd keys, as above
        errors = {**found, **errors}  # what was found first says more (a NUL, an unknown reference)
    if errors:
        raise InvalidRequest(errors)
    return spec
