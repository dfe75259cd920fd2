"""A revision file as text: its content hash and the acceptances it declares (no import).

The content hash is the sha256 of the file with its ``lint_accept`` assignment and the
comment lines right above it left out (accepting a finding is review, not a change of what
the revision does), blank lines and trailing spaces dropped, line endings normalised. Any
other edit, comments and docstring included, changes it.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .findings import ERROR, Finding

ACCEPT_ATTRIBUTE = "lint_accept"


@dataclass
class RevisionSource:
    """The text of one revision file, parsed once."""

    path: Path
    text: str

    @classmethod
    def read(cls, path: str | Path) -> RevisionSource:
        return cls(Path(path), Path(path).read_text(encoding="utf-8"))

    @cached_property
    def tree(self) -> ast.Module:
        return ast.parse(self.text, filename=str(self.path))

    @cached_property
    def _accept_node(self) -> ast.Assign | ast.AnnAssign | None:
        for node in self.tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else []
            )
            if any(isinstance(t, ast.Name) and t.id == ACCEPT_ATTRIBUTE for t in targets):
                return node  # type: ignore[return-value]
        return None

    @cached_property
    def content_hash(self) -> str:
        return content_hash(self.text, self._accept_node)

    @cached_property
    def acceptances(self) -> Acceptances:
        return read_acceptances(self._accept_node, self.path)


@dataclass
class Acceptances:
    """``lint_accept`` as declared: the rules accepted with a reason, and what is wrong."""

    reasons: dict[str, str] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)


def content_hash(text: str, skip: ast.stmt | None = None) -> str:
    """``sha256:<hex>`` of ``text`` without the lines of ``skip`` (the ``lint_accept``)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if skip is not None and skip.end_lineno is not None:
        first = skip.lineno - 1
        while first > 0 and lines[first - 1].lstrip().startswith("#"):
            first -= 1
        del lines[first : skip.end_lineno]
    kept = [line.rstrip() for line in lines if line.strip()]
    return "sha256:" + hashlib.sha256("\n".join(kept).encode("utf-8")).hexdigest()


def read_acceptances(node: ast.Assign | ast.AnnAssign | None, path: Path) -> Acceptances:
    """Parse ``lint_accept = {"rule": "reason", ...}``: a literal dict of strings."""
    found = Acceptances()
    if node is None:
        return found
    value = node.value
    if not isinstance(value, ast.Dict):
        found.problems.append(_problem(
            "lint-accept-invalid",
            f"{path.name}: {ACCEPT_ATTRIBUTE} must be a literal dict "
            '{"rule": "reason", ...}, so it can be read without running the file',
        ))
        return found
    for key, reason in zip(value.keys, value.values, strict=True):
        rule = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None
        if rule is None:
            found.problems.append(_problem(
                "lint-accept-invalid",
                f"{path.name}: every key of {ACCEPT_ATTRIBUTE} must be a rule name in quotes",
            ))
            continue
        text = reason.value if isinstance(reason, ast.Constant) else None
        if not isinstance(text, str) or not text.strip():
            found.problems.append(_problem(
                "lint-accept-without-reason",
                f"{path.name}: {ACCEPT_ATTRIBUTE} accepts '{rule}' without a reason: say why "
                "the finding is safe here (what was checked, since when)",
            ))
            continue
        found.reasons[rule] = " ".join(text.split())
    return found


def _problem(rule: str, message: str) -> Finding:
    return Finding(rule=rule, severity=ERROR, message=message, source="guide")
