"""Pure helpers that mirror Kubernetes API machinery: patches, selectors, names, timestamps.

No I/O and no state: the store and the HTTP layer of the emulator build on these.
"""

from __future__ import annotations

import copy
import datetime
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import jsonpatch

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class ApiError(Exception):
    """An API failure rendered as a `Status` object, like the real apiserver does."""

    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def not_found(kind_plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind_plural} "{name}" not found', name=name)


def now_rfc3339() -> str:
    """The current time the way the apiserver writes it: seconds precision, UTC, `Z`."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    return "".join(random.choices(_SUFFIX_ALPHABET, k=length))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, `None` deletes, the rest replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch, approximated as a merge patch minus the `$` directives.

    Good enough for what `kubectl patch` and `kubectl apply` send for our resources (lists are
    replaced as a whole rather than merged by key).
    """
    return merge_patch(target, _strip_directives(patch))


def _strip_directives(patch: Any) -> Any:
    if isinstance(patch, Mapping):
        return {
            key: _strip_directives(value)
            for key, value in patch.items()
            if not key.startswith("$")
        }
    if isinstance(patch, list):
        return [_strip_directives(item) for item in patch]
    return patch


def json_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 JSON patch; a failed `test` or a bad path is a 422 like on a real apiserver."""
    try:
        return jsonpatch.apply_patch(target, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(422, "Invalid", f"the server rejected our request: {exc}") from exc


STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCHERS: dict[str, Callable[[Any, Any], Any]] = {
    "application/json-patch+json": json_patch,
    "application/merge-patch+json": merge_patch,
    STRATEGIC_MERGE_PATCH: strategic_merge_patch,
}


def apply_patch(target: dict[str, Any], patch: Any, content_type: str, *,
                strategic: bool = True) -> dict[str, Any]:
    """`patch` applied to `target` as its media type says. Custom resources (`strategic`
    False) take no strategic merge patch: the apiserver answers 415 (their patch types in
    apiextensions-apiserver's customresource_handler.go; kubernetes/kubernetes#53558)."""
    media_type = content_type.split(";")[0].strip().lower() or "application/merge-patch+json"
    patcher = PATCHERS.get(media_type) if strategic or media_type != STRATEGIC_MERGE_PATCH \
        else None
    if patcher is None:  # negotiation.NewUnsupportedMediaTypeError (handlers/patch.go)
        accepted = [*(t for t in PATCHERS if strategic or t != STRATEGIC_MERGE_PATCH),
                    "application/apply-patch+yaml"]
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown "
                       f"format - accepted media types include: {', '.join(accepted)}")
    if media_type == "application/json-patch+json" and not isinstance(patch, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    if media_type != "application/json-patch+json" and not isinstance(patch, Mapping):
        raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
    return patcher(copy.deepcopy(target), patch)


# --- Selectors -------------------------------------------------------------------------------

Requirement = Callable[[Mapping[str, str]], bool]

_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_requirements(selector: str) -> list[str]:
    """Split on commas that are not inside `in (a, b)` value sets."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _parse_requirement(text: str) -> Requirement:
    if match := _SET_RE.match(text):
        key, operator, raw_values = match.groups()
        values = {value.strip() for value in raw_values.split(",") if value.strip()}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if "!=" in text:
        key, value = (part.strip() for part in text.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "==" in text or "=" in text:
        key, value = (part.strip() for part in re.split(r"==?", text, maxsplit=1))
        return lambda labels: labels.get(key) == value
    if text.startswith("!"):
        key = text[1:].strip()
        return lambda labels: key not in labels
    key = text
    return lambda labels: key in labels


def parse_label_selector(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a label selector (`a=b,c!=d,e,!f,g in (h,i),j notin (k)`) to a predicate on
    an object."""
    requirements = [_parse_requirement(part) for part in _split_requirements(selector or "")]

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return matches


def field_value(obj: Mapping[str, Any], path: str) -> str | None:
    """The string form of a dotted field (`metadata.name`, `status.phase`), as a `fieldRef`
    of the downward API sees it."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value is None else str(value)
