"""squawk, the PostgreSQL migration linter (PyPI ``squawk-cli``, a Rust binary in the wheel).

Each step's SQL goes to squawk as one file, so its context rules (a table created in the same
transaction, a ``lock_timeout`` set before) see the whole step. squawk (2.70) reports every
rule as ``Warning`` and a statement it cannot parse as ``Error`` (``syntax-error``); the
project raises the destructive ones to errors through :mod:`.sqlrules`, whose rules share
squawk's names. A project's ``.squawk.toml`` is honoured: in the scripts folder
(``migrations/``, which the image carries) or beside ``alembic.ini``, else wherever squawk
finds one from the working directory up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .findings import ERROR, WARNING, Finding

TIMEOUT_SECONDS = 120
CONFIG_NAME = ".squawk.toml"


class SquawkUnavailableError(RuntimeError):
    """squawk is not installed where this program can find it."""


def binary() -> str:
    """The squawk next to this interpreter (a venv, the image), else on ``PATH``."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return str(beside)
    found = shutil.which("squawk")
    if found is None:
        raise SquawkUnavailableError(
            "squawk is not installed: `pip install squawk-cli` (the PostgreSQL linter the "
            "plan runs over each step)"
        )
    return found


def config_for(scripts: Path, ini: Path) -> Path | None:
    """The project's ``.squawk.toml``: in its scripts folder, else beside ``alembic.ini``."""
    for folder in (scripts, ini.parent):
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    return None


def lint(sqls: Sequence[str], config: Path | None = None) -> list[list[dict[str, Any]]]:
    """squawk's JSON findings for each SQL text, in order (one squawk process for all)."""
    if not sqls:
        return []
    options = ["--config", str(config)] if config is not None else []
    with tempfile.TemporaryDirectory(prefix="umt-squawk-") as folder:
        paths = []
        for index, sql in enumerate(sqls):
            path = Path(folder) / f"step{index:04d}.sql"
            path.write_text(sql, encoding="utf-8")
            paths.append(path)
        proc = subprocess.run(
            [binary(), "--reporter", "json", *options, *map(str, paths)],
            capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False,
        )
        try:
            reported = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            raise RuntimeError(
                f"squawk exited {proc.returncode} without JSON: {proc.stderr.strip()[:300]}"
            ) from None
    by_file: list[list[dict[str, Any]]] = [[] for _ in sqls]
    index_of = {path.name: index for index, path in enumerate(paths)}
    for item in reported:
        position = index_of.get(Path(str(item.get("file", ""))).name)
        if position is not None:
            by_file[position].append(item)
    return by_file


def offset(sql: str, line: int, column: int) -> int:
    """squawk's 0-based line and column as an offset into ``sql``."""
    lines = sql.split("\n")
    line = max(0, min(line, len(lines) - 1))
    return sum(len(text) + 1 for text in lines[:line]) + column


def finding(item: dict[str, Any], statement: str | None) -> Finding:
    """A squawk JSON item as a finding: its rule name, its level, its message and help."""
    message = str(item.get("message") or "").strip()
    help_ = str(item.get("help") or "").strip()
    level = ERROR if str(item.get("level", "")).lower() == "error" else WARNING
    return Finding(
        rule=str(item.get("rule_name") or "squawk"),
        severity=level,
        message=f"{message} {help_}".strip() if help_ else message,
        statement=statement,
        source="squawk",
    )
