"""Independent Alembic projects, written to disk by tests.

Each project is a real ``alembic.ini`` + ``env.py`` + revision files, shaped after the
conventions of published projects (FACTS.md, "Alembic projects in the wild"), so the runner is
exercised on more than UMT's own environment.

Every revision's upgrade inserts a row into ``applied_log`` (and its downgrade another), so a
test can count how many times each revision really ran.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ENV_STYLES = (
    "standard",  # uses config.attributes["connection"] when given, else sqlalchemy.url
    "per_revision",  # as standard, and commits each revision (transaction_per_migration=True)
    "url_only",  # reads only sqlalchemy.url, ignores a passed connection
    "second_connection",  # opens its own engine even when handed a connection
    "custom_version_table",  # version table renamed to "schema_history"
    "single_transaction",  # wraps the whole run in one transaction
)

_ENV_HEAD = '''\
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
'''

_ENV_OFFLINE = '''
def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True{opts})
    with context.begin_transaction():
        context.run_migrations()

'''

_ENV_BODIES = {
    "standard": '''
def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is None:
        engine = engine_from_config(config.get_section(config.config_ini_section),
                                    prefix="sqlalchemy.", poolclass=pool.NullPool)
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=None)
            with context.begin_transaction():
                context.run_migrations()
    else:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
''',
    "url_only": '''
def run_migrations_online():
    engine = engine_from_config(config.get_section(config.config_ini_section),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
''',
    "second_connection": '''
def run_migrations_online():
    passed = config.attributes.get("connection")
    engine = engine_from_config(config.get_section(config.config_ini_section),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        if passed is not None:
            passed.exec_driver_sql("SELECT 1")  # touches the passed one, migrates on its own
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
''',
    "custom_version_table": '''
def run_migrations_online():
    engine = engine_from_config(config.get_section(config.config_ini_section),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None,
                          version_table="schema_history")
        with context.begin_transaction():
            context.run_migrations()
''',
    "single_transaction": '''
def run_migrations_online():
    engine = engine_from_config(config.get_section(config.config_ini_section),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=None,
                          transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
''',
}

_ENV_BODIES["per_revision"] = _ENV_BODIES["standard"].replace(
    "target_metadata=None)", "target_metadata=None, transaction_per_migration=True)"
)

_ENV_TAIL = '''
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''


@dataclass
class Rev:
    """One revision of a generated project."""

    id: str
    down: str | tuple[str, ...] | None
    message: str = ""
    upgrade_sql: list[str] = field(default_factory=list)
    downgrade_sql: list[str] = field(default_factory=list)
    branch_labels: tuple[str, ...] = ()
    fail: bool = False  #: upgrade raises after its SQL ran
    fail_down: bool = False  #: downgrade raises after its SQL ran
    upgrade_python: list[str] = field(default_factory=list)  #: extra lines at the end of upgrade()
    module_python: list[str] = field(default_factory=list)  #: module-level lines (attributes)


def _revision_source(rev: Rev) -> str:
    def body(direction: str, statements: list[str]) -> str:
        lines = [f"op.execute({stmt!r})" for stmt in statements]
        lines.append(
            "op.execute(\"INSERT INTO applied_log (revision, direction) "
            f"VALUES ('{rev.id}', '{direction}')\")"
        )
        if (rev.fail and direction == "up") or (rev.fail_down and direction == "down"):
            lines.append("op.execute('SELECT * FROM table_that_does_not_exist')")
        if direction == "up":
            lines.extend(rev.upgrade_python)
        return "\n".join(f"    {line}" for line in lines)

    return textwrap.dedent(
        f'''\
        """{rev.message or rev.id}"""
        from alembic import op

        revision = {rev.id!r}
        down_revision = {rev.down!r}
        branch_labels = {rev.branch_labels or None!r}
        depends_on = None
        {{module}}

        def upgrade():
        {{up}}


        def downgrade():
        {{down}}
        '''
    ).format(up=body("up", rev.upgrade_sql), down=body("down", rev.downgrade_sql),
             module="\n".join(rev.module_python))


def make_project(
    root: Path,
    revisions: list[Rev],
    *,
    env_style: str = "standard",
    relative_script_location: bool = False,
    url: str | None = None,
) -> Path:
    """Write a project under ``root`` and return its ``alembic.ini`` path.

    The first revision must create ``applied_log`` (as :func:`linear_chain`'s does).
    """
    if env_style not in ENV_STYLES:
        raise ValueError(env_style)
    scripts = root / "migrations"
    (scripts / "versions").mkdir(parents=True, exist_ok=True)
    offline_opts = ', version_table="schema_history"' if env_style == "custom_version_table" else ""
    (scripts / "env.py").write_text(
        _ENV_HEAD + _ENV_OFFLINE.format(opts=offline_opts) + _ENV_BODIES[env_style] + _ENV_TAIL
    )
    (scripts / "script.py.mako").write_text('"""${message}"""\n')
    for rev in revisions:
        (scripts / "versions" / f"{rev.id}.py").write_text(_revision_source(rev))
    location = "migrations" if relative_script_location else "%(here)s/migrations"
    ini = root / "alembic.ini"
    ini.write_text(
        "[alembic]\n"
        f"script_location = {location}\n"
        + (f"sqlalchemy.url = {url.replace('%', '%%')}\n" if url else "")
        + "\n[loggers]\nkeys = root\n[handlers]\nkeys = console\n[formatters]\nkeys = generic\n"
        "[logger_root]\nlevel = WARN\nhandlers = console\n"
        "[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = generic\n"
        "[formatter_generic]\nformat = %%(levelname)s %%(name)s %%(message)s\n"
    )
    return ini


def set_script_location(ini: Path, location: str) -> None:
    """Rewrite the ``script_location`` of a generated project's ``alembic.ini``."""
    text = ini.read_text()
    old = next(line for line in text.splitlines() if line.startswith("script_location"))
    ini.write_text(text.replace(old, f"script_location = {location}"))


def linear_chain(count: int, *, prefix: str = "c") -> list[Rev]:
    """``count`` revisions after the log table, each creating a small table."""
    revs = [Rev("a000000000000", None, "create applied_log")]
    revs[0].upgrade_sql = [LOG_TABLE]
    revs[0].downgrade_sql = []
    previous = revs[0].id
    for index in range(1, count + 1):
        rev_id = f"{prefix}{index:011d}"
        revs.append(
            Rev(
                rev_id,
                previous,
                f"step {index}",
                upgrade_sql=[f"CREATE TABLE t_{rev_id} (id INTEGER PRIMARY KEY, note VARCHAR(20))"],
                downgrade_sql=[f"DROP TABLE t_{rev_id}"],
            )
        )
        previous = rev_id
    return revs


#: Portable log table: an explicit id keeps it valid on PostgreSQL, MariaDB and SQLite.
LOG_TABLE = (
    "CREATE TABLE applied_log (revision VARCHAR(40) NOT NULL, direction VARCHAR(4) NOT NULL)"
)
