"""Pydantic JSON Schema (draft 2020-12) to Swagger 2.0, for flask-restx's OpenAPI document.

Swagger 2.0 knows neither ``null`` nor ``anyOf``: an optional field ``X | None`` becomes
``X`` with the common ``x-nullable`` extension, which OpenAPI tools (schemathesis among
them) understand. ``$ref``s are inlined so each model is self-contained.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

_DROP = {"title", "discriminator", "$defs", "examples"}
SchemaMode = Literal["validation", "serialization"]


def swagger_schema(model: type[BaseModel], mode: SchemaMode = "validation") -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode=mode, ref_template="#/$defs/{model}")
    converted: dict[str, Any] = _convert(schema, schema.get("$defs", {}))  # a schema converts to a schema
    return converted


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs)
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if o.get("type") != "null"]
            nullable = len(options) < len(node[key])
            rest = {k: v for k, v in node.items() if k != key}
            if len(options) == 1:
                converted = _convert({**options[0], **rest}, defs)
            else:  # a union Swagger 2.0 cannot say: leave the value unconstrained
                converted = _convert({k: v for k, v in rest.items() if k != "type"}, defs)
            if nullable:
                converted["x-nullable"] = True
            return converted
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key in ("properties", "patternProperties"):
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _convert(value, defs)
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0]
            if len(types) < len(value):
                out["x-nullable"] = True
        elif key == "default" and value is None:
            continue
        else:
            out[key] = value
    if out.get("type") == "null":
        out.pop("type")
        out["x-nullable"] = True
    return out
