"""Drift: the live schema compared with the models of a project whose ``env.py`` sets
``target_metadata``, as a bounded report (``umt-migrations check --format json``).

The comparison is Alembic's autogenerate (``compare_metadata``) with the options the project's
``env.py`` passes to ``configure()`` (``include_object``, ``compare_type``, …). Seen from the
database: *extra* is in the database and not in the models, *missing* is in the models and
not in the database, *modified* differs (type, nullability, default, comment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext, MigrationStep
from alembic.script import ScriptDirectory

from ..envrun import run_env
from ..project import Project

DRIFT_FORMAT_VERSION = 1
MAX_BYTES = 4096  #: a Job's termination message
KINDS = ("tables", "columns", "indexes", "constraints")


class NotSupportedError(Exception):
    """The project's ``env.py`` sets no ``target_metadata``: there are no models to compare."""


class NotAtHeadError(Exception):
    """The database is not at the scripts' head: the models describe another revision."""


@dataclass
class Drift:
    """What differs, by kind; each entry a short name (``table.column``, index name)."""

    extra: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in KINDS})
    missing: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in KINDS})
    modified: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in KINDS})
    revision: str | None = None

    @property
    def drifted(self) -> bool:
        return any(any(part.values()) for part in (self.extra, self.missing, self.modified))

    def to_json(self, limit: int = MAX_BYTES) -> dict[str, Any]:
        """The report, shrunk to ``limit`` bytes: exact counts, lists cut with a marker."""
        data: dict[str, Any] = {
            "version": DRIFT_FORMAT_VERSION,
            "supported": True,
            "revision": self.revision,
            "drifted": self.drifted,
            "counts": {
                side: sum(len(v) for v in getattr(self, side).values())
                for side in ("extra", "missing", "modified")
            },
        }
        for side in ("extra", "missing", "modified"):
            data[side] = {k: list(v) for k, v in getattr(self, side).items()}
        keep = max((len(v) for s in ("extra", "missing", "modified") for v in data[s].values()),
                   default=0)
        while len(_dump(data).encode()) > limit and keep > 0:
            keep //= 2
            for side in ("extra", "missing", "modified"):
                for kind, items in getattr(self, side).items():
                    data[side][kind] = list(items[:keep])
            data["truncated"] = True
        return data


def not_supported_json(message: str) -> dict[str, Any]:
    return {"version": DRIFT_FORMAT_VERSION, "supported": False, "message": message}


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def compare(project: Project, script: ScriptDirectory) -> Drift:
    """Compare the live schema with the project's ``target_metadata`` (read-only)."""
    found: dict[str, Any] = {}

    def inspect(heads: tuple[str, ...], context: MigrationContext) -> list[MigrationStep]:
        found["heads"] = tuple(sorted(heads))
        metadata = context.opts.get("target_metadata")
        if metadata is None:
            raise NotSupportedError(
                "drift needs models: this project's env.py passes no target_metadata to "
                "configure(), so there is nothing to compare the database with"
            )
        found["diffs"] = compare_metadata(context, metadata)
        return []

    engine = sa.create_engine(project.url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            run_env(project, script, conn, inspect, dont_mutate=True)
    finally:
        engine.dispose()
    heads = found.get("heads", ())
    if set(heads) != set(script.get_heads()):
        raise NotAtHeadError(
            f"the database is at {','.join(heads) or 'base'}, not at the scripts' head "
            f"({','.join(sorted(script.get_heads()))}): migrate first, then check drift"
        )
    drift = Drift(revision=",".join(heads) or None)
    for diff in found.get("diffs", []):
        _record(drift, diff)
    return drift


def _record(drift: Drift, diff: Any) -> None:
    if isinstance(diff, list):  # modify_* of one column: one entry per change
        for change in diff:
            _modified(drift, change)
        return
    action, *rest = diff
    verb, _, what = action.partition("_")
    side = {"add": drift.missing, "remove": drift.extra}.get(verb)
    if side is None:
        return
    if what == "table":
        side["tables"].append(rest[0].name)
    elif what == "column":
        side["columns"].append(f"{rest[1]}.{rest[2].name}")
    elif what == "index":
        side["indexes"].append(_named(rest[0]))
    elif what in ("constraint", "fk"):
        side["constraints"].append(_named(rest[0]))
    elif what == "table_comment":
        drift.modified["tables"].append({"name": rest[0].name, "change": "comment"})


def _modified(drift: Drift, change: tuple[Any, ...]) -> None:
    action, _schema, table, column, _existing, database, models = change
    drift.modified["columns"].append({
        "name": f"{table}.{column}",
        "change": action.removeprefix("modify_"),
        "database": _text(database),
        "models": _text(models),
    })


def _named(item: Any) -> str:
    table = getattr(getattr(item, "table", None), "name", None) or getattr(item, "parent", None)
    name = item.name or "(unnamed)"
    return f"{name} on {getattr(table, 'name', table)}" if table is not None else str(name)


def _text(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    arg = getattr(value, "arg", None)  # a server default
    if arg is not None:
        return str(getattr(arg, "text", arg))
    return str(value)
