"""``lint --against REF``: revision files whose content changed since a git ref.

A revision that existed at ``REF`` and whose content hash (:mod:`.source`: the file without
its ``lint_accept``) differs now has been edited after it was committed: databases that ran
it will not run it again. The finding ``revision-edited`` is an error no ``lint_accept`` can
wave away; write a new revision instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from .findings import ERROR, Finding
from .render import RenderedStep
from .source import RevisionSource

GIT_TIMEOUT_SECONDS = 60


class GitError(RuntimeError):
    """git cannot answer: not a repository, unknown ref, git missing."""


def edited_since(ref: str, scripts: Path) -> Callable[[RenderedStep], list[Finding]]:
    """A check for :func:`.plan.build`: ``revision-edited`` on steps changed since ``ref``."""
    root = Path(_git(scripts, "rev-parse", "--show-toplevel").strip())
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()

    def check(step: RenderedStep) -> list[Finding]:
        path = step.source.path.resolve()
        try:
            relative = path.relative_to(root.resolve()).as_posix()
        except ValueError:
            return []
        before = _show(root, commit, relative)
        if before is None:
            return []  # new since the ref: nothing was applied from it
        then = RevisionSource(path, before).content_hash
        if then == step.source.content_hash:
            return []
        return [Finding(
            "revision-edited", ERROR,
            f"{relative} changed since {ref} ({commit[:12]}): a revision that has run anywhere "
            "is not run again where it ran; revert the edit and write a new revision",
            source="guide",
        )]

    return check


def _show(root: Path, commit: str, relative: str) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(root), "show", f"{commit}:{relative}"],
        capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False,
    )
    return proc.stdout if proc.returncode == 0 else None


def _git(where: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(where), *args],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False,
        )
    except FileNotFoundError:
        raise GitError("--against needs git, which is not installed") from None
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else "no such ref"
        raise GitError(f"--against: git {' '.join(args[:1])} failed in {where}: {detail}")
    return proc.stdout
