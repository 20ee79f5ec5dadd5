"""The flask-restx ``Api`` object and helpers that document resources from pydantic models."""

from __future__ import annotations

from flask_restx import Api, Namespace
from pydantic import BaseModel

from api.requests import int_arg
from api.runtime import runtime
from api.schemas import swagger_schema
from octoprov.pages import Page

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
    404: "No such resource",
    409: "Conflicts with what is stored",
    413: "Request too large",
    501: "Not available for this kind of node",
    502: "The host did not answer or refused the connection",
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


def schema_model(ns: Namespace, model: type[BaseModel], mode: str = "validation"):
    name = model.__name__
    return ns.schema_model(name, swagger_schema(model, mode=mode))


def view_model(ns: Namespace, model: type[BaseModel]):
    return schema_model(ns, model, mode="serialization")


def page_model(ns: Namespace, item_model: type[BaseModel]):
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


def error_model(ns: Namespace):
    return ns.schema_model("Error", ERROR_SCHEMA)


def errors(ns: Namespace, *codes: int):
    """Document the error answers an operation can give (401 is implied by the token)."""
    model = error_model(ns)

    def decorate(func):
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


def page_json(page: Page, view: type) -> dict:
    return {
        "items": [view.of(item).to_json() for item in page.items],
        "total": page.total,
        "page": page.page,
        "perPage": page.per_page,
    }
