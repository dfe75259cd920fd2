"""The plan's digest: what a reviewer approves and what the runner checks before it runs.

``sha256:<hex>`` over the from and to revisions and, in order, each step's revision id, its
content hash and its offline SQL (for a step that cannot be rendered offline, its content
hash alone stands for it). The content hash is in because the offline SQL is not all that
runs: a data migration's online branch (batches, checks) never shows in ``--sql`` output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from alembic.script import ScriptDirectory

from .. import graph
from ..project import Project
from .render import RenderedStep, render

#: Bumped when what the digest covers changes (old approvals then no longer match).
DIGEST_VERSION = 1


def digest(
    from_revision: str | None, to_revision: str | None, steps: Sequence[RenderedStep]
) -> str:
    """The digest of a move: stable across processes and machines for the same inputs."""
    payload = {
        "v": DIGEST_VERSION,
        "from": from_revision,
        "to": to_revision,
        "steps": [
            [step.revision, step.source.content_hash, step.sql if step.renderable else None]
            for step in steps
        ],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_of_move(project: Project, script: ScriptDirectory, plan: graph.Plan) -> str:
    """Render ``plan`` offline for the project's dialect and digest it (what ``plan`` prints)."""
    rendering = render(project, script, plan)
    return digest(
        graph.format_heads(plan.current), graph.format_heads(plan.target), rendering.steps
    )
