"""Hypothesis strategies for request bodies, drawn from the server's OpenAPI document."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values() -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
               | st.text(max_size=12))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0,
                overrides: dict[str, st.SearchStrategy[Any]] | None = None,
                always: frozenset[str] = frozenset()) -> st.SearchStrategy[Any]:
    """Values valid for `schema`, with `overrides` for named properties; properties named in
    `always` are always present."""
    overrides = overrides or {}
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].split("/")[-1]], components, depth + 1, overrides, always)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, components, depth + 1, overrides, always) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if depth > 5:
        return json_values()
    if kind == "object" or "properties" in schema:
        props = {k: overrides[k] if k in overrides else from_schema(v, components, depth + 1, overrides, always)
                 for k, v in schema.get("properties", {}).items()}
        required = {k: v for k, v in props.items() if k in always}
        return st.fixed_dictionaries(required, optional={k: v for k, v in props.items() if k not in always})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, depth + 1, overrides, always), max_size=3)
    if kind == "string":
        return st.sampled_from(["", "m", "ghost", "json", "5m", "-1", "sha256:" + "0" * 64, "user"]) | st.text(max_size=10)
    if kind == "integer":
        return st.integers(-5, 25) | st.integers(-(2**64), 2**64)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-3, 3)
    if kind == "boolean":
        return st.booleans()
    return json_values()


def operations(doc: dict[str, Any], *, skip: set[str] = frozenset(),
               overrides: dict[str, st.SearchStrategy[Any]] | None = None,
               always: frozenset[str] = frozenset()) -> list[tuple[str, str, st.SearchStrategy[Any]]]:
    """(method, path, body strategy) for every operation with a JSON body; a third of the
    bodies are arbitrary JSON of any shape."""
    components = doc.get("components", {}).get("schemas", {})
    ops = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is None or path in skip:
                continue
            strat = from_schema(body, components, overrides=overrides, always=always)
            ops.append((method.upper(), path, st.one_of(strat, strat, strat, json_values())))
    return ops
