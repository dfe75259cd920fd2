"""The project's own destructive-change rules, over SQL parsed with sqlglot (any dialect).

Rule names follow squawk's where squawk has the same rule, so on PostgreSQL both checkers'
findings on one statement merge into one and one ``lint_accept`` entry accepts it everywhere:

=========================  ========  ===================================================
rule                       severity  statement
=========================  ========  ===================================================
ban-drop-table             error     ``DROP TABLE``
ban-drop-column            error     ``ALTER TABLE … DROP COLUMN``
changing-column-type       error     ``ALTER COLUMN … TYPE`` (PostgreSQL and others)
renaming-column            error     ``RENAME COLUMN``, MySQL's ``CHANGE old new``
renaming-table             error     ``ALTER TABLE … RENAME TO``, ``RENAME TABLE``
adding-required-field      error     ``ADD COLUMN … NOT NULL`` without a ``DEFAULT``
adding-not-nullable-field  warning   ``ALTER COLUMN … SET NOT NULL`` (fails on NULL rows)
ban-truncate               error     ``TRUNCATE``
ban-delete-without-where   error     ``DELETE`` without ``WHERE``
mysql-modify-column        warning   MySQL ``MODIFY`` restates a column: type may change
=========================  ========  ===================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

from .findings import ERROR, WARNING, Finding, Severity

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to Command" is ours to judge

#: SQLite's batch mode copies a table: CREATE _alembic_tmp_t, copy, DROP t, RENAME to t.
BATCH_COPY_PREFIX = "_alembic_tmp_"

#: SQLAlchemy dialect name -> sqlglot dialect name.
SQLGLOT_DIALECTS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "mssql": "tsql",
    "oracle": "oracle",
}


@dataclass(frozen=True)
class Statement:
    """One statement of a step's SQL, with where it sits in that SQL."""

    text: str
    start: int  #: offset of its first character
    end: int  #: offset just after its semicolon (or its last character)
    tree: exp.Expr | None  #: None when sqlglot cannot parse it

    def tables(self) -> set[str]:
        if self.tree is None:
            return set()
        return {table.name.lower() for table in self.tree.find_all(exp.Table)}


def split(sql: str, dialect: str) -> list[Statement]:
    """The statements of ``sql`` (comments between them dropped), each parsed if possible."""
    glot = SQLGLOT_DIALECTS.get(dialect, dialect)
    try:
        tokens = Dialect.get_or_raise(glot).tokenize(sql)
    except (TokenError, ValueError):
        return []
    statements = []
    first = None
    for token in tokens:
        if first is None:
            if token.token_type == TokenType.SEMICOLON:
                continue
            first = token
        if token.token_type == TokenType.SEMICOLON:
            statements.append(_statement(sql, first.start, token.end + 1, glot))
            first = None
    if first is not None:
        statements.append(_statement(sql, first.start, len(sql.rstrip()), glot))
    return statements


def _statement(sql: str, start: int, end: int, glot: str) -> Statement:
    text = sql[start:end].strip()
    try:
        tree = sqlglot.parse_one(text.rstrip(";"), read=glot)
    except (ParseError, TokenError, ValueError):
        tree = None
    return Statement(text, start, end, tree)


def check(statements: list[Statement]) -> list[Finding]:
    """The project's rules over ``statements``."""
    copied = _batch_copies(statements)
    findings = []
    for statement in statements:
        if statement.tree is None or statement.tables() & copied:
            continue
        for rule, severity, message in _verdicts(statement.tree):
            findings.append(Finding(rule, severity, message, statement.text, source="sql"))
    return findings


def _batch_copies(statements: list[Statement]) -> set[str]:
    """Tables that SQLite's batch mode rebuilds: their DROP and RENAME are not a loss."""
    tables = set()
    for statement in statements:
        for name in statement.tables():
            if name.startswith(BATCH_COPY_PREFIX):
                tables |= {name, name[len(BATCH_COPY_PREFIX):]}
    return tables


Verdict = tuple[str, Severity, str]


def _verdicts(tree: exp.Expr) -> Iterator[Verdict]:
    for check_ in _CHECKS:
        yield from check_(tree)


def _drop(tree: exp.Expr) -> Iterator[Verdict]:
    if isinstance(tree, exp.Drop) and str(tree.args.get("kind", "")).upper() == "TABLE":
        names = ", ".join(t.sql() for t in tree.args.get("tables") or [])
        yield ("ban-drop-table", ERROR, f"drops table {names}: its rows are gone for good")


def _truncate_delete(tree: exp.Expr) -> Iterator[Verdict]:
    if isinstance(tree, exp.TruncateTable):
        yield ("ban-truncate", ERROR, "TRUNCATE deletes every row of the table")
    if isinstance(tree, exp.Delete) and tree.args.get("where") is None:
        yield ("ban-delete-without-where", ERROR, "DELETE without WHERE deletes every row")
    if isinstance(tree, exp.Command) and str(tree.this).upper() == "RENAME":
        yield ("renaming-table", ERROR, "renames a table: code that uses the old name breaks")


def _alter(tree: exp.Expr) -> Iterator[Verdict]:
    if not isinstance(tree, exp.Alter):
        return
    table = tree.this.sql() if tree.this is not None else "?"
    for action in tree.args.get("actions") or []:
        yield from _action(table, action)


def _action(table: str, action: exp.Expr) -> Iterator[Verdict]:
    if isinstance(action, exp.Drop) and str(action.args.get("kind") or "COLUMN").upper() in (
        "COLUMN", ""
    ):
        for column in action.args.get("tables") or [action.this]:
            if isinstance(column, exp.Column | exp.Identifier):
                yield ("ban-drop-column", ERROR,
                       f"drops column {table}.{column.name}: its values are gone for good")
    elif isinstance(action, exp.AlterColumn):
        if action.args.get("dtype") is not None:
            yield ("changing-column-type", ERROR,
                   f"changes the type of {table}.{action.name}: a rewrite under lock, and "
                   "values may not convert")
        if action.args.get("allow_null") is False:
            yield ("adding-not-nullable-field", WARNING,
                   f"sets {table}.{action.name} NOT NULL: fails while NULL rows exist, and "
                   "scans the table under lock")
    elif isinstance(action, exp.RenameColumn):
        yield ("renaming-column", ERROR,
               f"renames a column of {table}: code that uses the old name breaks")
    elif isinstance(action, exp.AlterRename):
        yield ("renaming-table", ERROR, f"renames {table}: code that uses the old name breaks")
    elif isinstance(action, exp.ColumnDef) and _required(action):
        yield ("adding-required-field", ERROR,
               f"adds {table}.{action.name} NOT NULL without a DEFAULT: fails on a table "
               "with rows, and older code cannot insert")
    elif isinstance(action, exp.ModifyColumn):
        yield from _modify(table, action)


def _modify(table: str, action: exp.ModifyColumn) -> Iterator[Verdict]:
    column = action.this
    if action.args.get("rename_from") is not None:
        yield ("renaming-column", ERROR,
               f"renames {table}.{action.args['rename_from'].name} to {column.name}: code "
               "that uses the old name breaks")
    else:
        yield ("mysql-modify-column", WARNING,
               f"MODIFY restates {table}.{column.name}: check that its type, nullability and "
               "default are what the table already has, or a rewrite follows")


def _required(column: exp.ColumnDef) -> bool:
    kinds = [c.args.get("kind") for c in column.args.get("constraints") or []]
    not_null = any(
        isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null") for k in kinds
    )
    has_default = any(isinstance(k, exp.DefaultColumnConstraint) for k in kinds)
    generated = any(
        isinstance(k, exp.GeneratedAsIdentityColumnConstraint | exp.AutoIncrementColumnConstraint)
        for k in kinds
    )
    return not_null and not has_default and not generated


_CHECKS: tuple[Callable[[exp.Expr], Iterator[Verdict]], ...] = (
    _drop, _truncate_delete, _alter,
)
