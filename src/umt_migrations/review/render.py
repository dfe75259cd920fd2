"""Each step of a move as Alembic's offline mode (``--sql``) renders it, one text per step.

The project's own ``env.py`` runs once in offline mode with the steps of a :class:`graph.Plan`;
the text written between two steps is the first one's SQL (Alembic asks for the next step only
once the previous one is written). A step whose ``upgrade()`` (or ``downgrade()``) fails
offline (it reads the database) is *not offline-renderable*: its SQL is what it wrote before
failing plus a line that says so, and the steps after it still render.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationStep
from alembic.script import ScriptDirectory

from .. import graph
from ..envrun import _commit_per_migration, reenable_logging
from ..project import Project
from ..urls import InvalidURL, normalize_url
from .source import RevisionSource

NOT_RENDERABLE = "-- not offline-renderable"


@dataclass(frozen=True)
class RenderedStep:
    """One step of the plan: what runs, its offline SQL, and the file it comes from."""

    revision: str
    description: str
    sql: str
    source: RevisionSource
    error: str | None = None  #: why the step could not be rendered offline

    @property
    def renderable(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Rendering:
    """The rendered steps, the dialect they were rendered for, and the version table's name."""

    dialect: str
    version_table: str
    steps: tuple[RenderedStep, ...]


def dialect_project(project: Project, dialect: str | None) -> Project:
    """``project`` rendering for ``dialect`` (e.g. ``postgresql``) instead of its URL's."""
    if not dialect:
        return project
    url = normalize_url(f"{dialect}://")
    try:
        sa.make_url(url).get_dialect()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
        raise InvalidURL(
            f"--dialect {dialect!r}: SQLAlchemy knows no such dialect (e.g. postgresql, mysql, "
            "mariadb, sqlite)") from None
    return replace(project, url=url)


def render(project: Project, script: ScriptDirectory, plan: graph.Plan) -> Rendering:
    """Render every step of ``plan`` offline, through the project's ``env.py``."""
    out = io.StringIO()
    marks: list[int] = []
    failures: dict[int, tuple[str, int]] = {}  #: step index -> (why, where in the output)
    seen: dict[str, Any] = {}

    def steps(_heads: tuple[str, ...], context: MigrationContext) -> Iterator[MigrationStep]:
        seen["version_table"] = context.version_table
        seen["dialect"] = context.dialect.name
        for index, step in enumerate(plan.steps):
            marks.append(out.tell())
            guarded = _Guarded(
                step, lambda exc, i=index: failures.setdefault(i, (_why(exc), out.tell()))
            )
            yield cast(MigrationStep, guarded)  # a stand-in with the same attributes

    config = project.alembic_config(configure_logger=False)
    config.output_buffer = out
    context = EnvironmentContext(
        config,
        script,
        fn=steps,
        as_sql=True,
        starting_rev=list(plan.current) or None,
        destination_rev=graph.format_heads(plan.target) or "base",
        output_buffer=out,
        transaction_per_migration=True,
    )
    _commit_per_migration(context)
    try:
        with context:
            script.run_env()
    finally:
        reenable_logging()
    text = out.getvalue()
    bounds = [*marks, len(text)]
    if bounds:
        bounds[0] = 0  # what env.py wrote before the first step runs with it
    rendered = []
    for index, step in enumerate(plan.steps):
        start, end = (bounds[index], bounds[index + 1]) if index < len(marks) else (0, 0)
        error, where = failures.get(index, (None, end))
        sql = text[start:where]
        if error is not None:  # the marker where the step stopped; Alembic's stamp follows
            sql = f"{sql.rstrip()}\n\n{NOT_RENDERABLE}: {error}\n\n{text[where:end].lstrip()}"
        rendered.append(_rendered(step, sql.lstrip("\n"), error))
    return Rendering(
        dialect=str(seen.get("dialect", "")),
        version_table=str(seen.get("version_table", "alembic_version")),
        steps=tuple(rendered),
    )


def _rendered(step: MigrationStep, sql: str, error: str | None) -> RenderedStep:
    revision = step.revision  # type: ignore[attr-defined]
    doc = (revision.doc or "").strip().splitlines()
    return RenderedStep(
        revision=revision.revision,
        description=doc[0] if doc else "",
        sql=sql,
        source=RevisionSource.read(revision.path),
        error=error,
    )


def _why(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class _Guarded:
    """A step whose migration function reports a failure instead of ending the rendering."""

    def __init__(self, step: MigrationStep, on_error: Any) -> None:
        self._step = step
        self._on_error = on_error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)

    def __str__(self) -> str:
        return str(self._step)

    @property
    def migration_fn(self) -> Any:
        function = self._step.migration_fn

        def guarded(**kw: Any) -> None:
            try:
                function(**kw)
            except Exception as exc:  # noqa: BLE001 - offline, a revision that reads the database fails
                self._on_error(exc)

        return guarded
