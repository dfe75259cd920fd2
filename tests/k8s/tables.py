"""Server-side printing (`meta.k8s.io/v1` Table) for resources with printer columns.

`kubectl get` asks for a Table; a real apiserver renders a CRD's `additionalPrinterColumns`
itself. For resources registered with columns, the emulator does the same, so tests can check
what `kubectl get smig` shows. Without columns it answers with a plain list and kubectl prints
on the client side.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Any

_TOKEN_RE = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-/]+)
      | \[(?P<index>-?\d+)\]
      | \[\*\]
      | \[\?\(@\.(?P<filter_field>[A-Za-z0-9_.\-]+)\s*==\s*
          (?P<quote>["'])(?P<filter_value>.*?)(?P=quote)\)\]
    """,
    re.VERBOSE,
)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The values a kubectl-style JSONPath (the subset printer columns use) selects."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.lstrip("$")
    values = [obj]
    position = 0
    while position < len(path):
        match = _TOKEN_RE.match(path, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        position = match.end()
        values = [selected for value in values for selected in _step(value, match)]
    return values


def _step(value: Any, token: re.Match[str]) -> list[Any]:
    if token["field"] is not None:
        return [value[token["field"]]] if isinstance(value, dict) and token["field"] in value \
            else []
    if not isinstance(value, list):
        return []
    if token["index"] is not None:
        index = int(token["index"])
        return [value[index]] if -len(value) <= index < len(value) else []
    if token["filter_field"] is not None:
        return [item for item in value
                if _stringify(jsonpath(item, "." + token["filter_field"])[:1])
                == token["filter_value"]]
    return list(value)


def _stringify(values: list[Any]) -> str:
    return str(values[0]) if values else ""


def human_duration(seconds: float) -> str:
    """Ages the way `kubectl get` shows them (k8s.io/apimachinery/pkg/util/duration)."""
    seconds = int(max(seconds, 0))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _age(timestamp: Any) -> str | None:
    if not isinstance(timestamp, str):
        return None
    moment = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return human_duration((datetime.datetime.now(datetime.UTC) - moment).total_seconds())


def _cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
    values = jsonpath(obj, column["jsonPath"])
    if not values:
        return None
    value = values[0]
    if column.get("type") == "date":
        return _age(value)
    return value


def render_table(items: Sequence[dict[str, Any]], columns: Sequence[dict[str, Any]] | None,
                 resource_version: int) -> dict[str, Any]:
    columns = list(columns) if columns else [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    definitions += [
        {"name": column["name"], "type": column.get("type", "string"),
         "format": column.get("format", ""), "priority": column.get("priority", 0),
         "description": column.get("description", "")}
        for column in columns
    ]
    rows = [
        {
            "cells": [item["metadata"]["name"]] + [_cell(item, column) for column in columns],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": item["metadata"]},
        }
        for item in items
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(resource_version)},
        "columnDefinitions": definitions,
        "rows": rows,
    }
