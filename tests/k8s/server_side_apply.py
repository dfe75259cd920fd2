"""Server-side apply and field ownership (`metadata.managedFields`), as the apiserver does them.

Pure functions over plain dicts; the HTTP layer (`apiserver.py`) and the store call them.
The rules, from "Server-Side Apply" (https://kubernetes.io/docs/reference/using-api/server-side-apply/)
and the apiserver's field manager (k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager,
k8s.io/apimachinery/pkg/util/managedfields/internal/conflict.go, sigs.k8s.io/structured-merge-diff):

- every write records which manager owns which fields: an apply under the `fieldManager` query
  parameter (required for apply: 422 without it), any other write under `fieldManager` or, when
  absent, the User-Agent up to its first `/` (handlers/create.go, `managerOrUserAgent`);
- an apply whose fields have another value than the live object's and are owned by another
  manager fails with 409 Conflict listing them ("Apply failed with N conflicts: ..."), unless
  `force=true`, which takes those fields over; applying the same value shares ownership;
- fields a manager applied before and no longer applies are removed, unless another manager
  owns them too;
- an update (create, PUT, any other PATCH) gives its manager the fields it changed, taking them
  from their previous owners; it never conflicts.

Simplifications, all at least as strict for a client: lists are atomic (a CRD list without
`x-kubernetes-list-type`, like every list in our CRD's spec, is atomic; built-in types merge some
lists by key), `status` is owned only through the status subresource, and `apiVersion`,
`kind` and the metadata the server writes are never owned.
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Iterator
from typing import Any

from tests.k8s.apimachinery import ApiError, now_rfc3339

Body = dict[str, Any]
Path = tuple[str, ...]

#: Who writes in the current request (set by the HTTP layer); writes made by the tests
#: themselves, outside any request, are recorded under this name.
current_manager: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_manager", default="umt-tests")
#: Set while an apply writes its own result, which records its managed fields itself.
applying: contextvars.ContextVar[bool] = contextvars.ContextVar("applying", default=False)

_UNOWNED_METADATA = {
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
}


def manager_from(field_manager: str | None, user_agent: str | None) -> str:
    """`fieldManager`, else the User-Agent's prefix up to the first `/` (at most 128 chars)."""
    if field_manager:
        return field_manager
    prefix = (user_agent or "").split("/")[0]
    return "".join(ch for ch in prefix if ch.isprintable())[:128]


def owned_part(obj: Body, subresource: str | None, status_subresource: bool) -> Body:
    """The fields a write through this endpoint can own."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    part = {key: value for key, value in obj.items()
            if key not in ("apiVersion", "kind")
            and not (status_subresource and key == "status")}
    meta = {key: value for key, value in (obj.get("metadata") or {}).items()
            if key not in _UNOWNED_METADATA}
    part.pop("metadata", None)
    if meta:
        part["metadata"] = meta
    return part


def leaves(obj: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every owned field: dicts are walked, everything else (lists included) is a leaf."""
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            yield from leaves(value, (*prefix, key))
    elif prefix:
        yield prefix, obj


def to_fields_v1(paths: set[Path]) -> Body:
    tree: Body = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def from_fields_v1(tree: Body, prefix: Path = ()) -> set[Path]:
    children = {key: value for key, value in tree.items() if key.startswith("f:")}
    if not children:
        return {prefix} if prefix else set()
    paths: set[Path] = set()
    for key, value in children.items():
        paths |= from_fields_v1(value if isinstance(value, dict) else {}, (*prefix, key[2:]))
    return paths


def _get(obj: Any, path: Path) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return False, None
        obj = obj[key]
    return True, obj


def _set(obj: Body, path: Path, value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(obj.get(key), dict):
            obj[key] = {}
        obj = obj[key]
    if value == {} and isinstance(obj.get(path[-1]), dict):
        return  # an empty map applied: the map exists; its other owners' fields stay
    obj[path[-1]] = copy.deepcopy(value)


def _remove(obj: Body, path: Path) -> None:
    parents = [obj]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(parents) - 1, 0, -1):  # maps left empty by the removal go too
        if parents[depth] == {}:
            parents[depth - 1].pop(path[depth - 1], None)


def _entries(obj: Body | None) -> list[Body]:
    return copy.deepcopy(((obj or {}).get("metadata") or {}).get("managedFields") or [])


def _key(entry: Body) -> tuple[Any, ...]:
    return entry.get("manager"), entry.get("operation"), entry.get("subresource")


def _set_entry(entries: list[Body], manager: str, operation: str, subresource: str | None,
               api_version: str, paths: set[Path]) -> list[Body]:
    key = (manager, operation, subresource)
    old = next((e for e in entries if _key(e) == key), None)
    rest = [e for e in entries if _key(e) != key]
    if not paths:
        return rest
    if old is not None and from_fields_v1(old.get("fieldsV1") or {}) == paths:
        return entries  # no change of ownership: the entry (and its time) stays where it was
    entry: Body = {"manager": manager, "operation": operation, "apiVersion": api_version,
                   "time": now_rfc3339(), "fieldsType": "FieldsV1",
                   "fieldsV1": to_fields_v1(paths)}
    if subresource:
        entry["subresource"] = subresource
    return [entry if _key(e) == key else e for e in entries] if old is not None \
        else [*rest, entry]


def _without(entries: list[Body], taken: set[Path], keep: tuple[Any, ...]) -> list[Body]:
    """`entries` with the `taken` fields removed from every entry but `keep`'s."""
    result = []
    for entry in entries:
        if _key(entry) == keep:
            result.append(entry)
            continue
        paths = from_fields_v1(entry.get("fieldsV1") or {}) - taken
        if paths:
            result.append({**entry, "fieldsV1": to_fields_v1(paths)})
    return result


def record_update(new: Body, old: Body | None, manager: str, subresource: str | None,
                  status_subresource: bool, api_version: str) -> None:
    """Record, in `new`'s metadata, that `manager` wrote the fields that changed from `old`."""
    before = dict(leaves(owned_part(old or {}, subresource, status_subresource)))
    after = dict(leaves(owned_part(new, subresource, status_subresource)))
    changed = {path for path, value in after.items() if before.get(path, _MISSING) != value}
    gone = set(before) - set(after)
    entries = _without(_entries(old), changed | gone, ("", "", ""))
    key = (manager, "Update", subresource)
    mine = next((from_fields_v1(e.get("fieldsV1") or {}) for e in entries if _key(e) == key),
                set())
    entries = _set_entry(entries, manager, "Update", subresource, api_version,
                         (mine - gone) | changed)
    new.setdefault("metadata", {})["managedFields"] = entries


_MISSING = object()


def apply(live: Body | None, applied: Body, manager: str, *, force: bool,
          subresource: str | None, status_subresource: bool, api_version: str) -> Body:
    """The object after `manager` applies `applied` to `live` (None: it does not exist yet).

    Raises the apiserver's 409 Conflict when another manager owns a field set to another value
    and `force` is false.
    """
    current = copy.deepcopy(live) if live is not None else {}
    entries = _entries(live)
    key = (manager, "Apply", subresource)
    wanted = dict(leaves(owned_part(applied, subresource, status_subresource)))
    conflicts = []
    for entry in entries:
        if _key(entry) == key or entry.get("subresource") != subresource:
            continue
        for path in sorted(from_fields_v1(entry.get("fieldsV1") or {}) & set(wanted)):
            found, value = _get(current, path)
            if found and value != wanted[path]:
                conflicts.append((entry, path))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    if conflicts:
        entries = _without(entries, {path for _, path in conflicts}, key)
    previous = next((from_fields_v1(e.get("fieldsV1") or {}) for e in entries
                     if _key(e) == key), set())
    others = set().union(*(from_fields_v1(e.get("fieldsV1") or {}) for e in entries
                           if _key(e) != key and e.get("subresource") == subresource))
    for path in previous - set(wanted) - others:
        _remove(current, path)
    for path, value in wanted.items():
        _set(current, path, value)
    meta = current.setdefault("metadata", {})
    meta["managedFields"] = _set_entry(entries, manager, "Apply", subresource, api_version,
                                       set(wanted))
    return current


def _conflict_error(conflicts: list[tuple[Body, Path]]) -> ApiError:
    def who(entry: Body) -> str:
        name = f'"{entry.get("manager")}"'
        if entry.get("subresource"):
            name += f' with subresource "{entry["subresource"]}"'
        if entry.get("operation") == "Update":
            name += f' using {entry.get("apiVersion")}'
            if entry.get("time"):
                name += f' at {entry["time"]}'
        return name

    def dotted(path: Path) -> str:
        return "".join(f".{key}" for key in path)

    causes = [{"type": "FieldManagerConflict", "message": f"conflict with {who(entry)}",
               "field": dotted(path)} for entry, path in conflicts]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {who(entry)}: {dotted(path)}"
    else:
        lines: list[str] = []
        for name in sorted({who(entry) for entry, _ in conflicts}):
            lines.append(f"conflicts with {name}:")
            lines += [f"- {dotted(path)}" for entry, path in conflicts if who(entry) == name]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, causes=causes)
