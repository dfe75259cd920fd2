"""The team's migration guide (``migrations/README.md``) as rules over revision files (AST).

=======================  ========  ==========================================================
rule                     severity  the revision file
=======================  ========  ==========================================================
missing-docstring        warning   has no docstring, or one with nothing but the message and
                                   Alembic's header (or the template's ``Why:`` placeholder):
                                   say what and why
column-copy              warning   copies a Column (``.copy()``/``._copy()``) instead of
                                   spelling out names and types
imports-app-models       warning   imports the application's models (``…models``): they
                                   describe today's schema, not the schema at this revision
schema-and-data          warning   both changes the schema and moves data (INSERT, UPDATE,
                                   DELETE, bulk_insert): handle data migrations carefully
lint-accept-without-…    error     ``lint_accept`` names a rule without a reason
lint-accept-invalid      error     ``lint_accept`` is not a literal ``{"rule": "reason"}``
=======================  ========  ==========================================================
"""

from __future__ import annotations

import ast
import re

from .findings import WARNING, Finding
from .source import RevisionSource

_HEADER = re.compile(r"^(Revision ID|Revises|Create Date):", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<the reason for this change[^>]*>")
_DML = re.compile(r"^\s*(INSERT|UPDATE|DELETE|MERGE|REPLACE)\b", re.IGNORECASE)
_DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|RENAME)\b", re.IGNORECASE)

#: Operations (``op.x``/``batch_op.x``) that change the schema.
SCHEMA_OPS = frozenset({
    "create_table", "drop_table", "rename_table", "add_column", "drop_column", "alter_column",
    "create_index", "drop_index", "create_unique_constraint", "create_check_constraint",
    "create_foreign_key", "create_primary_key", "create_exclude_constraint",
    "drop_constraint", "create_table_comment", "drop_table_comment", "batch_alter_table",
})
#: Calls that move data: Core DML constructors and Alembic's bulk insert.
DATA_CALLS = frozenset({"insert", "update", "delete", "bulk_insert", "from_select"})


def check(source: RevisionSource) -> list[Finding]:
    """The guide's rules over one revision file."""
    try:
        tree = source.tree
    except SyntaxError as exc:
        return [Finding("missing-docstring", WARNING, f"cannot parse the file: {exc}",
                        source="guide")]
    findings = list(source.acceptances.problems)
    findings += _docstring(tree)
    findings += _column_copies(tree)
    findings += _model_imports(tree)
    findings += _schema_and_data(tree)
    return findings


def _docstring(tree: ast.Module) -> list[Finding]:
    doc = ast.get_docstring(tree)
    if not doc:
        why = "has no docstring"
    else:
        body = [line for line in doc.splitlines()[1:] if line.strip() and not _HEADER.match(line)]
        text = _PLACEHOLDER.sub("", "\n".join(body)).strip()
        if text and text.lower().rstrip(":") not in ("why", "what"):
            return []
        why = "has a docstring that does not explain the change"
    return [Finding(
        "missing-docstring", WARNING,
        f"the revision {why}: under the message line, say what it changes and why (the "
        "feature, the query or the incident behind it)",
        source="guide",
    )]


def _column_copies(tree: ast.Module) -> list[Finding]:
    findings = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("copy", "_copy")
            and _looks_like_column(node.func.value)
        ):
            findings.append(Finding(
                "column-copy", WARNING,
                f"line {node.lineno}: {ast.unparse(node)[:80]} copies a column: spell out its "
                "name and type (sa.Column(\"name\", sa.String(64), ...)) so the revision keeps "
                "the schema of its own time",
                source="guide",
            ))
    return findings


def _looks_like_column(node: ast.expr) -> bool:
    """``x.c.name``, ``x.columns[…]``, ``Model.__table__…``, ``sa.Column(…)``, ``Model.attr``."""
    text = ast.unparse(node)
    if re.search(r"\.(c|columns)\b|__table__|\bColumn\(", text):
        return True
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
        node.value.id[:1].isupper()
    )


def _model_imports(tree: ast.Module) -> list[Finding]:
    findings = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if "models" in parts and parts[0] not in ("sqlalchemy", "alembic"):
                findings.append(Finding(
                    "imports-app-models", WARNING,
                    f"line {node.lineno}: imports {name}: the models describe today's schema, a "
                    "revision the schema at its point in history; declare what it needs in the "
                    "file (sa.table(...), sa.Column(...))",
                    source="guide",
                ))
                break
    return findings


def _schema_and_data(tree: ast.Module) -> list[Finding]:
    schema = data = False
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            schema |= node.func.attr in SCHEMA_OPS
            data |= node.func.attr in DATA_CALLS
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            data |= node.func.id in DATA_CALLS
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            data |= bool(_DML.match(node.value))
            schema |= bool(_DDL.match(node.value))
    if not (schema and data):
        return []
    return [Finding(
        "schema-and-data", WARNING,
        "the revision both changes the schema and moves data: handle data migrations "
        "carefully (batches, idempotent, a revision of their own: migrations/README.md, "
        "\"Data migrations, in batches\")",
        source="guide",
    )]
