"""Where the Alembic project and the database are: ``alembic.ini`` lookup and URL resolution.

The URL always comes from the caller (``--url``, then ``DATABASE_URL``), never from a
committed file; a project's own ``sqlalchemy.url`` is honoured only as a last resort before
the embedded SQLite default, so a fresh clone works with no server at all.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config

from .urls import normalize_url

#: The embedded default database: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///umt.db"
CONFIG_ENV = "UMT_ALEMBIC_CONFIG"
URL_ENV = "DATABASE_URL"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


class ProjectError(Exception):
    """The Alembic project cannot be found or read (message names the path)."""


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config``, else ``$UMT_ALEMBIC_CONFIG``, else ./alembic.ini, else UMT's own."""
    for candidate in (explicit, os.environ.get(CONFIG_ENV)):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise ProjectError(f"Alembic config not found: {path}")
            return path.resolve()
    for path in (Path.cwd() / "alembic.ini", _SOURCE_ROOT / "alembic.ini"):
        if path.is_file():
            return path.resolve()
    raise ProjectError(
        "no alembic.ini here: run from the project root, or pass --config PATH "
        f"(or set {CONFIG_ENV})"
    )


def resolve_url(explicit: str | None, config_path: Path | None = None) -> str:
    """``--url``, else ``$DATABASE_URL``, else the project's own URL, else the SQLite default."""
    raw = explicit or os.environ.get(URL_ENV)
    if not raw and config_path is not None:
        raw = _read(config_path).get_main_option("sqlalchemy.url") or None
    return normalize_url(raw or DEFAULT_URL)


def _read(config_path: Path) -> Config:
    """The project's Alembic config, parsed; a file ConfigParser cannot read is named."""
    config = Config(str(config_path))
    try:
        config.file_config  # noqa: B018  (parses the file once; Config keeps the result)
    except configparser.Error as exc:
        reason = str(exc).splitlines()[0]
        raise ProjectError(f"cannot read the Alembic config {config_path}: {reason}") from None
    return config


def absolute_sqlite(url: str, base: Path) -> str:
    """Pin a relative SQLite path to ``base`` so a change of directory keeps the same file."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return url
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return url
    if Path(parsed.database).is_absolute():
        return url
    return parsed.set(database=str(base / parsed.database)).render_as_string(hide_password=False)


@dataclass
class Project:
    """An Alembic project to run: its config file, the URL, and the directory to run in."""

    config_path: Path
    url: str
    workdir: Path

    @classmethod
    def locate(cls, config: str | None = None, url: str | None = None) -> Project:
        config_path = find_config(config)
        resolved = absolute_sqlite(resolve_url(url, config_path), Path.cwd())
        return cls(config_path, resolved, find_script_base(config_path))

    def alembic_config(self, **attributes: object) -> Config:
        """A fresh :class:`Config` with the URL set (``%`` escaped for ConfigParser).

        Alembic prints to ``sys.stdout`` as it was when Alembic was imported unless told
        otherwise: this one prints to the current one, which the command line masks.
        """
        cfg = Config(str(self.config_path), stdout=sys.stdout)
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes.update(attributes)
        return cfg

    @contextmanager
    def running(self) -> Iterator[None]:
        """Run with the working directory the project's relative paths expect."""
        previous = Path.cwd()
        if self.workdir == previous:
            yield
            return
        os.chdir(self.workdir)
        try:
            yield
        finally:
            os.chdir(previous)


def find_script_base(config_path: Path) -> Path:
    """Where to run: the directory a relative ``script_location`` is relative to.

    Alembic resolves a relative ``script_location`` against the working directory, so projects
    write ``migrations``, ``.`` or a path that only makes sense from a parent folder (such as
    site-packages, where their own code overrides it). Tried in order: the working directory,
    the ini's folder, then each of its parents; the first where the location holds an
    ``env.py`` wins. An absolute location (``%(here)s/...``) or a package resource
    (``myapp:migrations``) runs from here.
    """
    cwd = Path.cwd()
    location = _read(config_path).get_alembic_option("script_location")
    if not location:
        raise ProjectError(
            f"{config_path} has no script_location in its [alembic] section: set it to the "
            "project's migrations folder"
        )
    if ":" in location and not Path(location).is_absolute():
        return cwd  # a package resource (myapp:migrations): Alembic finds it
    if Path(location).is_absolute():
        if not (Path(location) / "env.py").is_file():
            raise ProjectError(
                f"script_location {location} (from {config_path}) holds no env.py: point "
                "script_location at the project's migrations folder"
            )
        return cwd
    tried: list[Path] = []
    for base in (cwd, config_path.parent, *config_path.parent.parents):
        candidate = Path(os.path.normpath(base / location))
        if candidate in tried:
            continue
        tried.append(candidate)
        if (candidate / "env.py").is_file():
            return base
    raise ProjectError(
        f"relative script_location '{location}' (from {config_path}) holds no env.py in any of "
        f"the places tried, in order: {', '.join(map(str, tried))}. Run from the directory it "
        "is relative to (a SchemaMigration's spec.alembic.workingDir), or make it absolute "
        "with %(here)s"
    )
