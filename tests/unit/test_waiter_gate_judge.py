"""The app gate's decision (``umt_migrations.gate.judge``), pure."""

from __future__ import annotations

import pytest

from umt_migrations.gate import judge

pytestmark = pytest.mark.unit

KNOWN = {"a1", "b2", "c3", "d4"}


def known(rev: str) -> bool:
    return rev in KNOWN


@pytest.mark.parametrize(("heads", "current", "passed", "words"), [
    (("c3",), ("c3",), True, "at this image's head c3"),
    (("c3", "d4"), ("c3", "d4"), True, "head c3,d4"),
    (("c3",), ("zz9",), True, "do not know"),  # a newer schema: never deadlock a rollout
    (("c3", "d4"), ("c3", "zz9"), True, "do not know"),
    (("c3",), ("b2",), False, "waiting: the database is at b2; expected head c3"),
    (("c3",), (), False, "no revision yet (empty)"),
    (("c3", "d4"), ("c3",), False, "expected head c3,d4"),  # one branch of two is not enough
])
def test_judge(heads: tuple[str, ...], current: tuple[str, ...], passed: bool,
               words: str) -> None:
    verdict = judge(heads, current, known)
    assert verdict.passed is passed and words in verdict.line
