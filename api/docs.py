"""The flask-restx ``Api`` object and helpers that document resources from pydantic models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from flask_restx import Api
from pydantic import BaseModel

from api.requests import int_arg
from api.runtime import runtime
from api.schemas import SchemaMode, swagger_schema
from octoprov.pages import Page
from octoprov.specs import View

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


class SchemaModel(Protocol):
    """A model ``Namespace.schema_model`` made: what the OpenAPI document refers to."""

    @property
    def __schema__(self) -> dict[str, Any]: ...


class DocNamespace(Protocol):
    """What the resources use of a flask-restx ``Namespace``, typed (flask-restx ships no type hints).
    Each decorator documents what it decorates and returns it unchanged."""

    def route(self, *urls: str, **kwargs: Any) -> Callable[[_T], _T]: ...

    def param(self, name: str, description: str | None = None, _in: str = "query",
              **kwargs: Any) -> Callable[[_T], _T]: ...

    def doc(self, shortcut: str | None = None, **kwargs: Any) -> Callable[[_T], _T]: ...

    def expect(self, *inputs: SchemaModel, **kwargs: Any) -> Callable[[_T], _T]: ...

    def response(self, code: int, description: str, model: SchemaModel | None = None,
                 **kwargs: Any) -> Callable[[_T], _T]: ...

    def produces(self, mimetypes: list[str]) -> Callable[[_T], _T]: ...

    def schema_model(self, name: str | None = None, schema: dict[str, Any] | None = None) -> SchemaModel: ...


class ErrorHandling(Protocol):
    """The error-handler registration of a flask-restx ``Api``, typed."""

    def errorhandler(self, exception: type[Exception]) -> Callable[[_F], _F]: ...


class Viewer(Protocol):
    """What lists a page's items: a ``View`` class, or an object with an ``of`` of its own."""

    def of(self, item: Any, /) -> View: ...


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Field path -> what is wrong with it"},
    },
    "required": ["message"],
}

ERROR_TEXT = {
    400: "Invalid input; `errors` names each field",
    401: "Missing or invalid API token",
    403: "The caller's role does not allow this",
    404: "No such resource",
    409: "Conflicts with what is stored",
    413: "Request too large",
    422: "The Idempotency-Key was sent before with a different request",
    501: "Not available for this kind of node",
    502: "The host did not answer or refused the connection",
    503: "Busy: this server streams to as many clients as it can (poll instead, or retry later)",
}


def make_api() -> Api:
    return Api(
        version="1.0",
        title="Octoprov API",
        description="Zero-touch OS provisioning: images, driver packs, templates, tasks and hypervisors.",
        prefix="/api/v1",
        doc="/api/v1/docs",
        authorizations={"bearer": {"type": "apiKey", "in": "header", "name": "Authorization",
                                   "description": "`Bearer <token>` from `octoprov token create NAME`"}},
        security="bearer",
    )


def schema_model(ns: DocNamespace, model: type[BaseModel], mode: SchemaMode = "validation") -> SchemaModel:
    name = model.__name__
    return ns.schema_model(name, swagger_schema(model, mode=mode))


def view_model(ns: DocNamespace, model: type[BaseModel]) -> SchemaModel:
    return schema_model(ns, model, mode="serialization")


def page_model(ns: DocNamespace, item_model: type[BaseModel]) -> SchemaModel:
    item = swagger_schema(item_model, mode="serialization")
    return ns.schema_model(item_model.__name__ + "Page", {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": item},
            "total": {"type": "integer", "minimum": 0},
            "page": {"type": "integer", "minimum": 1},
            "perPage": {"type": "integer", "minimum": 1},
        },
        "required": ["items", "total", "page", "perPage"],
    })


def error_model(ns: DocNamespace) -> SchemaModel:
    return ns.schema_model("Error", ERROR_SCHEMA)


def errors(ns: DocNamespace, *codes: int) -> Callable[[_F], _F]:
    """Document the error answers an operation can give (401 is implied by the token)."""
    model = error_model(ns)

    def decorate(func: _F) -> _F:
        for code in (*codes, 401):
            func = ns.response(code, ERROR_TEXT[code], model)(func)
        return func

    return decorate


PAGE_PARAMS = {
    "page": {"in": "query", "type": "integer", "minimum": 1, "default": 1, "description": "Page number"},
    "perPage": {"in": "query", "type": "integer", "minimum": 1, "maximum": 500, "default": 50,
                "description": "Rows per page"},
}


def page_args() -> tuple[int, int]:
    limit = runtime().settings.page_size_max
    return int_arg("page", 1, maximum=1_000_000), int_arg("perPage", 50, maximum=limit)


def page_json(page: Page, view: Viewer) -> dict[str, Any]:
    return page.to_json(lambda item: view.of(item).to_json())
