"""The waiter's pure parts: manifest checks, status for one generation, progress lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from umt_migrations.waiter import (
    Manifest,
    Tracker,
    UsageError,
    WaitExit,
    choose_namespace,
    parse_manifest,
    read_manifest_text,
    read_status,
)

pytestmark = pytest.mark.unit

REF = "umt/umt-schema"


def obj(generation: int = 3, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"targetRevision": "head"},
            "status": status}


def cond(type_: str, value: str, generation: int, reason: str = "R") -> dict[str, Any]:
    return {"type": type_, "status": value, "observedGeneration": generation, "reason": reason}


def test_ready_of_an_older_generation_counts_for_nothing() -> None:
    old = obj(observedGeneration=2, phase="Succeeded", conditions=[cond("Ready", "True", 2)])
    snap = read_status(old, 3)
    assert not snap.ready and not snap.stalled and snap.observed == 2
    new = obj(observedGeneration=3, phase="Succeeded", conditions=[cond("Ready", "True", 3)])
    assert read_status(new, 3).ready


def test_stalled_for_the_generation_with_its_reason() -> None:
    status = obj(observedGeneration=3, phase="Failed", message="boom",
                 conditions=[cond("Ready", "False", 3),
                             cond("Stalled", "True", 3, "MigrationFailed")])
    tracker = Tracker(REF, 3, started=0.0)
    lines = tracker.observe("MODIFIED", status)
    assert lines == [f"{REF}: Failed: ? -> head - boom"]
    assert tracker.outcome is not None and tracker.outcome.code == WaitExit.STALLED
    assert tracker.outcome.line == f"{REF} is Stalled (generation 3): MigrationFailed: boom"


def test_stalled_names_the_reason_once() -> None:
    """The operator's failure messages begin with the reason: it is not repeated."""
    status = obj(observedGeneration=3, phase="Failed", message="MigrationFailed: revision x failed",
                 conditions=[cond("Stalled", "True", 3, "MigrationFailed")])
    tracker = Tracker(REF, 3, started=0.0)
    tracker.observe("MODIFIED", status)
    assert tracker.outcome is not None
    assert tracker.outcome.line == \
        f"{REF} is Stalled (generation 3): MigrationFailed: revision x failed"


@pytest.mark.parametrize(("message", "reason", "expected"), [
    ("MigrationFailed: revision x failed:\n  UndefinedTable: relation \"t\"\n",
     "MigrationFailed",
     'MigrationFailed: revision x failed: UndefinedTable: relation "t"'),
    ("cannot reach postgresql://umt:pw@db/umt\r\n(refused)", "DatabaseUnavailable",
     "DatabaseUnavailable: cannot reach postgresql://***@db/umt (refused)"),
    (None, "JobRejected", "JobRejected: no message"),
    ("x" * 5000, "MigrationFailed", "MigrationFailed: " + "x" * 1023 + "…"),
])
def test_the_last_line_stands_alone(message: str | None, reason: str, expected: str) -> None:
    """Helm shows a failed hook's log as one line with ``\\n`` escapes (issue 15 §2): the
    waiter's last line is ``<ns>/<name> is Stalled (generation N): <Reason>: <message>``, one
    line, masked, bounded, whatever the status holds."""
    status = obj(observedGeneration=3, phase="Failed", message=message,
                 conditions=[cond("Stalled", "True", 3, reason)])
    tracker = Tracker(REF, 3, started=0.0)
    lines = tracker.observe("MODIFIED", status)
    assert tracker.outcome is not None and tracker.outcome.code == WaitExit.STALLED
    assert tracker.outcome.line == f"{REF} is Stalled (generation 3): {expected}"
    assert all("\n" not in line and "\r" not in line for line in lines)


def test_one_line_per_change_for_the_applied_generation_only() -> None:
    tracker = Tracker(REF, 3, started=0.0)
    assert tracker.observe("ADDED", obj(observedGeneration=2, phase="Succeeded")) == []
    running = obj(observedGeneration=3, phase="Running", jobName="umt-schema-3-abcd",
                  currentRevision="0abb288d754e", message="migrating")
    assert tracker.observe("MODIFIED", running) == [
        f"{REF}: Running (Job umt-schema-3-abcd): 0abb288d754e -> head - migrating"]
    assert tracker.observe("MODIFIED", running) == []  # the same again: nothing new
    done = obj(observedGeneration=3, phase="Succeeded", jobName="umt-schema-3-abcd",
               currentRevision="240cfb931a0a", targetRevision="240cfb931a0a", message="ok",
               conditions=[cond("Ready", "True", 3, "Succeeded")])
    assert tracker.observe("MODIFIED", done) == [
        f"{REF}: Succeeded (Job umt-schema-3-abcd): 240cfb931a0a -> head (240cfb931a0a) - ok"]
    assert tracker.outcome is not None and tracker.outcome.code == WaitExit.READY


def test_operator_probably_not_running_said_once_after_the_grace() -> None:
    tracker = Tracker(REF, 1, started=100.0, grace=30.0)
    tracker.observe("ADDED", obj(1, observedGeneration=-1))
    assert tracker.tick(129.0) == [] and tracker.next_check() == 130.0
    assert "operator is probably not running" in tracker.tick(130.0)[0]
    assert tracker.tick(200.0) == [] and tracker.next_check() is None
    outcome = tracker.timed_out(600)
    assert outcome.code == WaitExit.TIMEOUT
    assert "no status for generation 1 (observedGeneration -1)" in outcome.line


def test_no_grace_warning_once_the_operator_answered() -> None:
    tracker = Tracker(REF, 1, started=0.0, grace=1.0)
    tracker.observe("ADDED", obj(1, observedGeneration=1, phase="Pending"))
    assert tracker.tick(50.0) == [] and tracker.next_check() is None


def test_deleted_while_waiting_is_an_api_error() -> None:
    tracker = Tracker(REF, 1, started=0.0)
    tracker.observe("DELETED", obj(1))
    assert tracker.outcome is not None and tracker.outcome.code == WaitExit.API_ERROR


GOOD = """
apiVersion: migrations.umt.dev/v1alpha1
kind: SchemaMigration
metadata: {name: umt-schema, namespace: umt}
spec: {targetRevision: head}
"""


def test_manifest_is_read_and_its_namespace_honoured() -> None:
    manifest = parse_manifest(GOOD)
    assert (manifest.name, manifest.namespace) == ("umt-schema", "umt")
    assert choose_namespace(manifest, None, "default") == "umt"
    assert choose_namespace(Manifest({}, "x", None), None, "default") == "default"
    with pytest.raises(UsageError, match="does not match --namespace"):
        choose_namespace(manifest, "other", "default")
    assert manifest.for_namespace("umt")["metadata"]["namespace"] == "umt"


@pytest.mark.parametrize(("text", "message"), [
    (GOOD + "---\n" + GOOD, "exactly one SchemaMigration"),
    ("- a\n- b\n", "not a Kubernetes object"),
    (GOOD.replace("name: umt-schema, ", "generateName: u-, "), "metadata.generateName"),
    (GOOD.replace("spec: {targetRevision: head}", ""), "has no spec"),
])
def test_bad_manifests_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_manifest(text)


def test_unreadable_manifests_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read .*: No such file or directory"):
        read_manifest_text(str(tmp_path / "missing.yaml"))
    with pytest.raises(UsageError, match=r"cannot read .*: Is a directory"):
        read_manifest_text(str(tmp_path))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(GOOD.replace("umt-schema", "sch\xe9ma").encode("latin-1"))
    with pytest.raises(UsageError, match=r"latin1.yaml is not UTF-8 text \(byte \d+"):
        read_manifest_text(str(latin1))


def test_the_cli_imports_no_kubernetes_client() -> None:
    """The runner path stays lean: lightkube loads only inside ``apply``."""
    code = ("import sys, umt_migrations.cli as cli; cli.build_parser(); "
            "print(sorted(m for m in ('lightkube', 'kopf', 'kubernetes', 'httpx', 'httpx2') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "[]"
