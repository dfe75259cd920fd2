"""Pure parts of the engine: the revision graph, the report, URL masking. No database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory, revision
from alembic.script.revision import Revision

from tests.alembic_projects import Rev, linear_chain, make_project
from tests.revision_ids import ACCEPTED, CASES, MALFORMED, RELATIVE, TargetCase
from umt_migrations.errors import MigrationError
from umt_migrations.graph import ILLEGAL_ID_CHARS, RELATIVE_DESTINATION, plan_move, validate_target
from umt_migrations.masking import mask_url, scrub
from umt_migrations.report import MAX_BYTES, Report, report_destination
from umt_migrations.urls import describe_target, normalize_url

pytestmark = pytest.mark.unit

A, C1, C2, C3 = "a000000000000", "c00000000001", "c00000000002", "c00000000003"
B1, M = "b0000000001", "m0000000001"


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> ScriptDirectory:
    """a ── c1 ── c2 ── c3            (c3 is a head)
                 └── b1 (feature)      (b1 is a head)"""
    revs = [*linear_chain(3), Rev(B1, C1, "feature", branch_labels=("feature",))]
    ini = make_project(tmp_path_factory.mktemp("graph"), revs)
    return ScriptDirectory.from_config(Config(str(ini)))


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> ScriptDirectory:
    revs = [*linear_chain(3), Rev(B1, C1, "feature"), Rev(M, (C3, B1), "merge")]
    ini = make_project(tmp_path_factory.mktemp("merged"), revs)
    return ScriptDirectory.from_config(Config(str(ini)))


@pytest.mark.parametrize(
    ("current", "target", "direction", "steps"),
    [
        ((), "heads", "upgrade", [A, C1, C2, C3, B1]),
        ((), "feature@head", "upgrade", [A, C1, B1]),
        ((), C2, "upgrade", [A, C1, C2]),
        ((C1,), "c0000000000" + "3", "upgrade", [C2, C3]),
        ((C3,), "heads", "upgrade", [B1]),
        ((C3,), C3, "none", []),
        ((B1, C3), "heads", "none", []),
        ((B1, C3), B1, "none", []),
        ((), "base", "none", []),
    ],
)
def test_upgrades_and_noops(script, current, target, direction, steps) -> None:
    plan = plan_move(script, current, target)
    assert (plan.direction, plan.revisions) == (direction, steps)


def test_a_move_to_an_ancestor_is_a_downgrade_and_needs_permission(script) -> None:
    with pytest.raises(MigrationError) as refused:
        plan_move(script, (C3,), C1)
    assert refused.value.reason == "DowngradeNotAllowed" and refused.value.exit_code == 2
    plan = plan_move(script, (C3,), C1, allow_downgrade=True)
    assert (plan.direction, plan.revisions) == ("downgrade", [C3, C2])
    plan = plan_move(script, (B1, C3), "base", allow_downgrade=True)
    assert plan.direction == "downgrade" and set(plan.revisions) == {A, C1, C2, C3, B1}


def test_merge_point_upgrades_the_other_branch(merged) -> None:
    plan = plan_move(merged, (B1,), "head")
    assert (plan.direction, plan.revisions) == ("upgrade", [C2, C3, M])


@pytest.mark.parametrize(
    ("current", "target", "reason"),
    [
        ((C3,), B1, "InvalidSpec"),  # another branch
        ((), "head", "MultipleHeads"),
        ((), "nope1234", "RevisionNotFound"),
        ((), "c0000", "RevisionNotFound"),  # ambiguous prefix
        (("feedfacecafe",), "heads", "RevisionNotFound"),  # database ahead of the scripts
        ((C1,), f"{C1}+2", "InvalidSpec"),
        ((C1,), "feature@base", "InvalidSpec"),
        ((C3,), f"feature@{C2}", "RevisionNotFound"),  # c2 is not on the feature branch
    ],
)
def test_impossible_moves_name_their_reason(script, current, target, reason) -> None:
    with pytest.raises(MigrationError) as error:
        plan_move(script, current, target, allow_downgrade=True)
    assert error.value.reason == reason
    assert error.value.exit_code == 2
    assert error.value.message


@pytest.mark.parametrize("case", ACCEPTED, ids=str)
def test_every_target_alembic_accepts_passes(case: TargetCase) -> None:
    assert validate_target(case.target) == case.target, case.why


@pytest.mark.parametrize("case", RELATIVE + MALFORMED, ids=str)
def test_relative_and_malformed_targets_are_refused(case: TargetCase) -> None:
    with pytest.raises(MigrationError) as refused:
        validate_target(case.target)
    assert refused.value.reason == "InvalidSpec" and refused.value.exit_code == 2
    words = {"relative": "relative revision identifier", "malformed": "not a revision identifier"}
    if case.target:
        assert words[case.verdict] in refused.value.message, case.why
    else:
        assert "empty" in refused.value.message


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_case_table_follows_alembics_own_parser(case: TargetCase) -> None:
    """Relative exactly when Alembic's parser says so; accepted ids are ids Alembic allows."""
    assert bool(revision._relative_destination.match(case.target)) == (
        case.verdict == "relative"
    ), case.why
    if case.verdict == "accepted":
        symbol = case.target.partition("@")[2] or case.target
        Revision.verify_rev_id(symbol)  # raises for an id Alembic refuses


def test_the_grammar_is_alembics() -> None:
    """graph.py copies Alembic's private constants: a new Alembic that changes them fails here."""
    assert RELATIVE_DESTINATION.pattern == revision._relative_destination.pattern
    assert set(revision._revision_illegal_chars) == ILLEGAL_ID_CHARS


def test_branch_qualified_ids_and_dotted_ids_resolve(tmp_path: Path) -> None:
    revs = [
        *linear_chain(1),
        Rev("v3.0.0.c", C1, "dotted"),
        Rev("0001_initial", "v3.0.0.c", "numbered", branch_labels=("feature",)),
    ]
    script = ScriptDirectory.from_config(Config(str(make_project(tmp_path, revs))))
    assert plan_move(script, (), "v3.0.0.c").revisions == [A, C1, "v3.0.0.c"]
    assert plan_move(script, ("v3.0.0.c",), "feature@0001").revisions == ["0001_initial"]
    assert plan_move(script, (), "feature@head").target == ("0001_initial",)


def test_report_is_compact_json_within_4096_bytes() -> None:
    report = Report(ok=False, direction="upgrade", fromRevision="a", toRevision="b",
                    targetRevision="c", applied=[f"rev{i:09d}" for i in range(800)],
                    durationSeconds=1.23456,
                    error={"reason": "MigrationFailed", "message": "ü" * 50_000})
    text = report.to_json()
    assert len(text.encode()) <= MAX_BYTES
    data = json.loads(text)
    assert data["error"]["reason"] == "MigrationFailed"
    assert data["appliedCount"] == 800 and data["applied"][0] == "rev000000000"
    assert ": " not in text[:40]  # compact separators
    small = json.loads(Report(ok=True, durationSeconds=0.5).to_json())
    assert small["fromRevision"] is None and small["applied"] == [] and "error" not in small


def test_report_destination_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(tmp_path / "env"))
    assert report_destination(tmp_path / "flag") == tmp_path / "flag"
    assert report_destination(None) == tmp_path / "env"


def test_urls_are_normalised_and_masked() -> None:
    assert normalize_url("postgresql://u:p@h/db").startswith("postgresql+psycopg2://")
    assert normalize_url("mysql://u:p@h/db").startswith("mysql+pymysql://")
    assert normalize_url("postgresql+psycopg2://u:p@h/db").startswith("postgresql+psycopg2://")
    assert mask_url("postgresql://bob:s3cr%40t@db:5432/umt") == "postgresql://***@db:5432/umt"
    assert describe_target("postgresql://bob:pw@db:5432/umt") == "postgresql://db:5432/umt"
    text = ('connect to "mysql+pymysql://root:hunter22@x/y" failed; '
            'password=hunter22 PASSWORD "hunter22"')
    assert "hunter22" not in scrub(text, "hunter22")
