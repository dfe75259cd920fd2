"""Shared fixtures: a fresh, real database per test on PostgreSQL, MariaDB and SQLite.

The servers are required, never optional: when one is missing the fixture fails with a
message naming the variable to set, so a CI run without PostgreSQL is red, not skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The emulated cluster's fixtures (`emulator`, `kubelet`, `job_controller`, `kubectl`, ...).
pytest_plugins = ["tests.k8s.fixtures", "tests.operator_harness"]

#: Server URLs (no database part). Override to point the suite at other servers.
PG_SERVER = os.environ.get("UMT_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
MARIADB_SERVER = os.environ.get("UMT_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306")


def _admin_engine(server: str, admin_db: str, env_var: str) -> sa.Engine:
    engine = sa.create_engine(f"{server}/{admin_db}", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(
            f"required database server not reachable at {engine.url.render_as_string()} "
            f"(set {env_var} to point the tests at one): {exc.orig}",
            pytrace=False,
        )
    return engine


class DatabaseFactory:
    """Creates uniquely named databases on one server and drops them afterwards."""

    def __init__(self, server: str, admin_db: str, env_var: str, quote: str) -> None:
        self.server = server
        self._admin_db = admin_db
        self._env_var = env_var
        self._quote = quote
        self._created: list[str] = []
        self._engine: sa.Engine | None = None

    @property
    def admin(self) -> sa.Engine:
        if self._engine is None:
            self._engine = _admin_engine(self.server, self._admin_db, self._env_var)
        return self._engine

    def create(self, prefix: str = "umt_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {self._quote}{name}{self._quote}")
        self._created.append(name)
        return f"{self.server}/{name}"

    def drop_all(self) -> None:
        if self._engine is None:
            return
        with self._engine.connect() as conn:
            for name in self._created:
                if self._quote == '"':
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                else:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        self._engine.dispose()


@pytest.fixture(scope="session")
def pg_factory() -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(PG_SERVER, "postgres", "UMT_TEST_PG", '"')
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def mariadb_factory() -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(MARIADB_SERVER, "mysql", "UMT_TEST_MARIADB", "`")
    yield factory
    factory.drop_all()


@pytest.fixture
def pg_url(pg_factory: DatabaseFactory) -> str:
    """URL of a fresh, empty PostgreSQL database (dropped at the end of the session)."""
    return pg_factory.create()


@pytest.fixture
def mariadb_url(mariadb_factory: DatabaseFactory) -> str:
    """URL of a fresh, empty MariaDB database (dropped at the end of the session)."""
    return mariadb_factory.create()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'umt.db'}"


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each of the three supported backends in turn."""
    fixture = {"postgresql": "pg_url", "mariadb": "mariadb_url", "sqlite": "sqlite_url"}
    return request.getfixturevalue(fixture[request.param])
