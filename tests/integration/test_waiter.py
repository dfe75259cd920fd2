"""``umt-migrations apply`` (the waiter) as a real process against the API emulator, with the
real operator (kopf, in-process) and the fake kubelet running the Job's real ``migrate``
against a real PostgreSQL database.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import REPO_ROOT
from tests.k8s.emulator import SCHEMA_MIGRATIONS, Emulator
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    HEAD,
    NS,
    REVISION_IDS,
    Operator,
    add_secret,
    db_revision,
    jobs_of,
)

pytestmark = pytest.mark.integration

NAME = "umt-schema"
REF = f"{NS}/{NAME}"
WAITER_TIMEOUT = 90  # seconds a waiter process may take in these tests


def manifest(target: str = "head", secret: str = "umt-db", **spec: Any) -> str:
    return yaml.safe_dump({
        "apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
        "metadata": {"name": NAME},
        "spec": {"targetRevision": target,
                 "database": {"urlSecretRef": {"name": secret, "key": "url"}}, **spec}})


def waiter_env(emulator: Emulator) -> dict[str, str]:
    env = emulator.kubectl_env()
    env.pop("UMT_MIGRATIONS_DEBUG", None)
    return env


def start_waiter(emulator: Emulator, body: str, *args: str) -> subprocess.Popen[str]:
    with tempfile.TemporaryFile("w+") as stdin:  # the manifest arrives on standard input
        stdin.write(body)
        stdin.seek(0)
        return subprocess.Popen(
            [sys.executable, "-m", "umt_migrations", "apply", "-f", "-", *args],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=waiter_env(emulator))


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=WAITER_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the waiter did not finish:\n{out}\n{err}") from None
    return proc.returncode, out, err


def run_waiter(emulator: Emulator, body: str, *args: str) -> tuple[int, str, str]:
    return finish(start_waiter(emulator, body, *args))


def waiter_watches(emulator: Emulator) -> list[dict[str, str]]:
    """The watch requests the waiter made (it selects its object by name; kopf does not)."""
    return [params for params in emulator.watch_requests(SCHEMA_MIGRATIONS)
            if params.get("fieldSelector") == f"metadata.name={NAME}"]


@pytest.fixture
def kubelet_options() -> dict[str, Any]:
    """Jobs run ``umt-migrations migrate`` from this repository as a local process."""
    return {"command_map": {"umt-migrations": [sys.executable, "-m", "umt_migrations"]},
            "cwd": str(REPO_ROOT)}


@pytest.fixture
def operator(emulator: Emulator, kopf_operator: Any, kubelet: FakeKubelet) -> Iterator[Operator]:
    """The real operator (its handlers, in kopf) against this test's emulator."""
    import kopf

    import umt_operator.handlers  # noqa: F401  (registers into the default registry)
    from umt_operator.settings import Settings

    # The tests name registry.example images and the examples the published one: allowed.
    settings = Settings.from_env({"UMT_OPERATOR_DEFAULT_IMAGE": "registry.example/umt:2.0.0",
                                  "UMT_OPERATOR_ALLOWED_IMAGES":
                                      "registry.example/*,ghcr.io/umt/umt-migrations:*",
                                  "UMT_OPERATOR_METRICS_PORT": "0",
                                  "UMT_OPERATOR_JOB_BACKOFF_LIMIT": "1"})
    running = Operator(emulator, kopf_operator, kopf.get_default_registry(), settings)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def database(emulator: Emulator, pg_url: str) -> str:
    add_secret(emulator, pg_url)
    return pg_url


def test_ready_prints_progress_and_exits_0(emulator: Emulator, operator: Operator,
                                           kubelet: FakeKubelet, database: str) -> None:
    code, out, err = run_waiter(emulator, manifest())
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == f"{REF}: applied generation 1 (field manager umt-migrations)"
    job = jobs_of(emulator, NAME)[0]["metadata"]["name"]
    assert f"{REF}: Succeeded (Job {job}): {HEAD} -> head ({HEAD}) - migrated base→{HEAD}" in out
    assert f"{REF}: Running (Job {job}): ? -> head - Job {job} is migrating" in out
    assert lines[-1] == f"{REF} is Ready (generation 1) at {HEAD}"
    assert all(a != b for a, b in itertools.pairwise(lines)), out  # one line per change
    assert db_revision(database) == HEAD
    obj = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)
    assert obj["spec"]["targetRevision"] == "head"
    assert "password" not in out + err and err == ""

    # Applied again unchanged: same generation, already Ready, no second Job.
    code, out, _ = run_waiter(emulator, manifest())
    assert code == 0 and "applied generation 1" in out
    assert len(jobs_of(emulator, NAME)) == 1


def test_progress_while_the_job_runs(emulator: Emulator, operator: Operator,
                                     kubelet: FakeKubelet, database: str) -> None:
    with kubelet.held(f"{NAME}-*"):
        proc = start_waiter(emulator, manifest(target=REVISION_IDS[1]))
        emulator.wait_for(lambda: jobs_of(emulator, NAME), timeout=30)
        job = jobs_of(emulator, NAME)[0]["metadata"]["name"]
        emulator.wait_for(lambda: (emulator.get(SCHEMA_MIGRATIONS, NS, NAME).get("status")
                                   or {}).get("phase") == "Running", timeout=30)
    code, out, err = finish(proc)
    assert code == 0, out + err
    assert f"{REF}: Running (Job {job}): ? -> {REVISION_IDS[1]} - Job {job} is migrating" in out
    assert f"{REF}: Succeeded (Job {job}): {REVISION_IDS[1]} -> {REVISION_IDS[1]} - " in out
    assert f"{REF} is Ready (generation 1) at {REVISION_IDS[1]}" in out


def test_stalled_prints_reason_and_message_exits_3(emulator: Emulator, operator: Operator,
                                                    kubelet: FakeKubelet, database: str) -> None:
    code, out, err = run_waiter(emulator, manifest(target="0123456789ab"))
    assert code == 3, out + err
    error = err.strip().splitlines()[-1]
    assert error.startswith(f"error: {REF} is Stalled (generation 1): RevisionNotFound: ")
    assert "RevisionNotFound: RevisionNotFound" not in error  # the reason once
    assert "0123456789ab" in error
    engine = sa.create_engine(database)
    try:
        assert not sa.inspect(engine).has_table("alembic_version")  # nothing ran
    finally:
        engine.dispose()


def test_missing_secret_stalls_exits_3(emulator: Emulator, operator: Operator,
                                       kubelet: FakeKubelet) -> None:
    code, out, err = run_waiter(emulator, manifest(secret="nowhere"))
    assert code == 3, out + err
    assert f"{REF} is Stalled (generation 1): SecretNotFound:" in err
    assert 'secret "nowhere" not found' in err


def test_new_generation_is_waited_for_not_the_old_ready(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, database: str) -> None:
    assert run_waiter(emulator, manifest(target=REVISION_IDS[1]))[0] == 0
    code, out, err = run_waiter(emulator, manifest(target="head"))
    assert code == 0, out + err
    assert "applied generation 2" in out
    assert f"{REF} is Ready (generation 2) at {HEAD}" in out
    assert db_revision(database) == HEAD


def test_timeout_exits_4_saying_what_it_saw(emulator: Emulator, operator: Operator,
                                            kubelet: FakeKubelet, database: str) -> None:
    with kubelet.held(f"{NAME}-*"):
        code, out, err = run_waiter(emulator, manifest(), "--timeout", "3")
    assert code == 4, out + err
    assert f"error: timed out after 3 s waiting for {REF} (generation 1) to be Ready; " \
           f"last seen: {REF}: " in err
    assert "operator is probably not running" not in out


def test_operator_absent_says_so_then_times_out(emulator: Emulator, database: str) -> None:
    code, out, err = run_waiter(emulator, manifest(), "--timeout", "3", "--operator-grace", "1")
    assert code == 4, out + err
    warnings = [line for line in out.splitlines() if "probably not running" in line]
    assert warnings == [(f"{REF}: no status for generation 1 after 1 s: the SchemaMigration "
                         f"operator is probably not running (or does not watch namespace {NS}); "
                         "still waiting")]
    assert "no status for generation 1 (observedGeneration -1): is the operator running?" in err
    assert emulator.get(SCHEMA_MIGRATIONS, NS, NAME) is not None  # it was applied


def test_dropped_watches_are_resumed(emulator: Emulator, operator: Operator,
                                     kubelet: FakeKubelet, database: str) -> None:
    """A broken connection, then a clean end, then a compaction (410): the waiter comes back
    from the last resourceVersion each time, lists again after the 410, and still ends 0."""
    with kubelet.held(f"{NAME}-*"):
        proc = start_waiter(emulator, manifest())
        emulator.wait_for(lambda: waiter_watches(emulator), timeout=30)
        selected = {"where": lambda params: params.get("fieldSelector") == f"metadata.name={NAME}"}
        emulator.wait_for(lambda: emulator.drop_watches(SCHEMA_MIGRATIONS, abrupt=True, **selected))
        emulator.wait_for(lambda: len(waiter_watches(emulator)) >= 2, timeout=30)
        emulator.wait_for(lambda: emulator.drop_watches(SCHEMA_MIGRATIONS, **selected))
        emulator.wait_for(lambda: len(waiter_watches(emulator)) >= 3, timeout=30)
        emulator.compact(SCHEMA_MIGRATIONS)
        emulator.wait_for(lambda: emulator.drop_watches(SCHEMA_MIGRATIONS, abrupt=True, **selected))
        emulator.wait_for(lambda: len(waiter_watches(emulator)) >= 5, timeout=30)
    code, out, err = finish(proc)
    assert code == 0, out + err
    watches = waiter_watches(emulator)
    versions = [params.get("resourceVersion") for params in watches]
    assert all(versions[:4]), versions  # every reconnection resumed from a version...
    assert "watch interrupted" in out and "resuming from resourceVersion" in out
    assert "watch expired (410 Gone); listing again" in out  # ...until it was compacted away
    assert f"{REF} is Ready (generation 1) at {HEAD}" in out
    assert len(jobs_of(emulator, NAME)) == 1


def test_api_errors_exit_5_in_one_line(emulator: Emulator, tmp_path: Any) -> None:
    # CRD not installed: the resource is unknown to this API server.
    emulator.store.types.pop(emulator.rtype(SCHEMA_MIGRATIONS).resource)
    code, out, err = run_waiter(emulator, manifest())
    assert code == 5, out + err
    assert err.startswith(f"error: cannot apply SchemaMigration {REF}: ") and "CRD" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    # Unreachable API server.
    config = emulator.kubeconfig()
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    code, out, err = run_waiter(emulator, manifest(), "--kubeconfig", str(path))
    assert code == 5 and err.startswith("error: cannot reach the Kubernetes API at "
                                        "http://127.0.0.1:9: ConnectError"), err

    # No credentials at all.
    env = {k: v for k, v in waiter_env(emulator).items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "umt_migrations", "apply", "-f", "-"],
                          input=manifest(), capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert proc.returncode == 5 and "no usable Kubernetes credentials" in proc.stderr


def kubeconfig_with_user(user: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}


def exec_user(command: str) -> dict[str, Any]:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": command}}


@pytest.mark.parametrize(("kubeconfig", "message"), [
    ("clusters: [\n", "ParserError"),  # not YAML
    ("clusters: 5\n", "TypeError"),  # YAML of the wrong shape
    (yaml.safe_dump(kubeconfig_with_user(exec_user("/nonexistent/get-token"))),
     "FileNotFoundError"),  # the exec plugin is not installed
    (yaml.safe_dump(kubeconfig_with_user(exec_user("false"))), "Exec false returned 1"),
])
def test_unusable_credentials_exit_5_in_one_line(tmp_path: Any, kubeconfig: str,
                                                 message: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "UMT_MIGRATIONS_DEBUG")}
    proc = subprocess.run(
        [sys.executable, "-m", "umt_migrations", "apply", "-f", "-", "--kubeconfig", str(path)],
        input=manifest(), capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.startswith("error: no usable Kubernetes credentials: ")
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("body", "message"), [
    ("kind: [", "is not valid YAML"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "not a migrations.umt.dev"),
    ("apiVersion: migrations.umt.dev/v1alpha1\nkind: SchemaMigration\nspec: {}\n",
     "no metadata.name"),
])
def test_invalid_manifest_exits_2_and_applies_nothing(emulator: Emulator, body: str,
                                                      message: str) -> None:
    code, _, err = run_waiter(emulator, body)
    assert code == 2 and message in err and err.startswith("error: <stdin>")
    assert emulator.list(SCHEMA_MIGRATIONS) == []


def test_namespace_flag_must_agree_with_the_manifest(emulator: Emulator) -> None:
    body = manifest().replace(f"name: {NAME}", f"name: {NAME}\n  namespace: other")
    code, _, err = run_waiter(emulator, body, "--namespace", NS)
    assert code == 2 and "does not match --namespace" in err
    assert emulator.list(SCHEMA_MIGRATIONS) == []


def test_help_documents_the_exit_codes() -> None:
    proc = subprocess.run([sys.executable, "-m", "umt_migrations", "apply", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    for line in ("0  Ready", "2  invalid usage", "3  Stalled", "4  timed out", "5  Kubernetes API"):
        assert line in proc.stdout


# --- server-side apply, as the emulator does it (tests/k8s/server_side_apply.py) -----------------


def owners(obj: dict[str, Any], *path: str) -> set[str]:
    """The managers whose managedFields entry holds ``path``."""
    found = set()
    for entry in obj["metadata"].get("managedFields") or []:
        node = entry.get("fieldsV1") or {}
        for key in path:
            node = node.get(f"f:{key}")
            if node is None:
                break
        else:
            found.add(f"{entry['manager']}/{entry['operation']}")
    return found


def test_the_waiter_takes_its_fields_back_and_drops_what_it_no_longer_sends(
        emulator: Emulator) -> None:
    assert run_waiter(emulator, manifest(image="registry.example/umt:1.0.0"),
                      "--timeout", "0")[0] == 4
    emulator.patch(SCHEMA_MIGRATIONS, NS, NAME, {"spec": {"targetRevision": REVISION_IDS[1]},
                                                 "metadata": {"labels": {"team": "umt"}}})
    obj = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)
    assert owners(obj, "spec", "targetRevision") == {"umt-tests/Update"}

    code, out, err = run_waiter(emulator, manifest(), "--timeout", "0")  # no image any more
    assert code == 4 and "applied generation 3" in out, out + err
    obj = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)
    assert obj["spec"]["targetRevision"] == "head" and "image" not in obj["spec"]
    assert obj["metadata"]["labels"] == {"team": "umt"}  # another manager's field stays
    assert owners(obj, "spec", "targetRevision") == {"umt-migrations/Apply"}
    assert owners(obj, "metadata", "labels", "team") == {"umt-tests/Update"}


def test_kubectl_apply_conflicts_with_the_waiter_unless_forced(emulator: Emulator,
                                                               kubectl: Any) -> None:
    assert run_waiter(emulator, manifest(), "--timeout", "0")[0] == 4
    changed = manifest(target=REVISION_IDS[1])
    args = ("apply", "--server-side", "--validate=false", "-f", "-")
    refused = kubectl(*args, input=changed, check=False)
    assert refused.returncode != 0
    assert 'conflict with "umt-migrations": .spec.targetRevision' in refused.stderr
    assert emulator.get(SCHEMA_MIGRATIONS, NS, NAME)["spec"]["targetRevision"] == "head"

    kubectl(*args, "--force-conflicts", input=changed)
    obj = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)
    assert obj["spec"]["targetRevision"] == REVISION_IDS[1]
    assert owners(obj, "spec", "targetRevision") == {"kubectl/Apply"}
    assert owners(obj, "spec", "database", "urlSecretRef", "name") == \
        {"kubectl/Apply", "umt-migrations/Apply"}  # the same value: shared

    assert run_waiter(emulator, manifest(), "--timeout", "0")[0] == 4  # force: taken back
    obj = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)
    assert obj["spec"]["targetRevision"] == "head"
    assert owners(obj, "spec", "targetRevision") == {"umt-migrations/Apply"}


def test_apply_needs_a_field_manager(emulator: Emulator) -> None:
    import json
    import urllib.error
    import urllib.request

    url = (f"{emulator.url}/apis/migrations.umt.dev/v1alpha1/namespaces/{NS}/"
           f"schemamigrations/{NAME}")
    request = urllib.request.Request(url, data=manifest().encode(), method="PATCH",
                                     headers={"Content-Type": "application/apply-patch+yaml"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422
    assert "fieldManager: Required value" in json.loads(refused.value.read())["message"]
    assert emulator.get(SCHEMA_MIGRATIONS, NS, NAME) is None
