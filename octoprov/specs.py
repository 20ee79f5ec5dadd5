"""Base classes for what the API takes in (specs) and gives out (views).

One pydantic model per resource is the single source of truth for validation, for the
JSON the API returns and for the OpenAPI document (``api/schemas.py`` converts them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, ValidationError
from pydantic.alias_generators import to_camel

from octoprov.errors import InvalidRequest, field_path

SpecT = TypeVar("SpecT", bound="Spec")

MASK = "********"


class Spec(BaseModel):
    """Input: camelCase keys, unknown keys refused, no silent type coercion."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True, str_strip_whitespace=True
    )


class View(BaseModel):
    """Output: camelCase keys, read from ORM objects."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)

    @classmethod
    def of(cls, obj: Any):
        """The view of a stored object."""
        return cls.model_validate(obj)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# Timestamps always leave as ISO-8601 with an explicit offset (SQLite drops the zone on read).
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda v: (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat(), return_type=str),
]


def errors_of(exc: ValidationError) -> dict[str, str]:
    """Field path -> message for every error pydantic found (first message per path)."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        location = tuple(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        errors.setdefault(field_path(location), message)
    return errors


def parse(model: type[SpecT], body: object) -> SpecT:
    """Validate a decoded JSON body against ``model``; InvalidRequest names every bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(errors_of(exc)) from None
