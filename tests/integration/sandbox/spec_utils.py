"""Reading field names out of Bling's OpenAPI spec (refs and allOf resolved)."""
from __future__ import annotations

from typing import Any


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return resolve(spec, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]])
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            r = resolve(spec, part)
            merged["properties"].update(r.get("properties", {}))
            merged["required"] += r.get("required", [])
        merged["properties"].update(schema.get("properties", {}))
        return merged
    if "properties" in schema:
        return {**schema, "properties": {k: resolve(spec, v) for k, v in schema["properties"].items()}}
    if schema.get("type") == "array" and "items" in schema:
        return {**schema, "items": resolve(spec, schema["items"])}
    return schema


def properties(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The properties of a component schema, nested schemas resolved."""
    return resolve(spec, {"$ref": f"#/components/schemas/{name}"})["properties"]


def required(spec: dict[str, Any], name: str) -> list[str]:
    return list(resolve(spec, {"$ref": f"#/components/schemas/{name}"}).get("required", []))
