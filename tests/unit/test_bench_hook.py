"""benchmarks/bench_hook.py cannot run without a cluster; here it parses its arguments, says
why it measures nothing, and renders both charts it would time (the real `helm`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import charts
from tests.charts import Objects, one
from tests.unit.test_schema_migration_chart import hook_manifest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_hook.py"
E2E = ("UMT_E2E", "UMT_E2E_KUBECONFIG", "UMT_E2E_IMAGE", "UMT_E2E_DATABASE_URL",
       "UMT_E2E_ADMIN_URL")


def bench(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in E2E}
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=120, check=False)


def test_without_a_cluster_it_says_so_and_exits_0() -> None:
    result = bench()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no cluster: set UMT_E2E_KUBECONFIG, UMT_E2E_IMAGE, "
                                    "UMT_E2E_DATABASE_URL, UMT_E2E_ADMIN_URL")
    assert "nothing measured" in result.stdout


def test_a_partial_configuration_is_an_error_naming_what_is_missing() -> None:
    result = bench(UMT_E2E_KUBECONFIG="/nonexistent")
    assert result.returncode == 2
    assert "also set UMT_E2E_IMAGE, UMT_E2E_DATABASE_URL, UMT_E2E_ADMIN_URL" in result.stderr


def test_arguments_are_checked() -> None:
    assert bench("--upgrades", "0").returncode == 2
    assert bench("--upgrades", "x").returncode == 2
    assert "--render DIR" in bench("--help").stdout


def hook_job(objects: Objects) -> dict[str, Any]:
    return one(objects, "Job")


def test_it_renders_both_charts_alike_but_for_the_hook(helm_binary: Path,
                                                      tmp_path: Path) -> None:
    result = bench("--render", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["hook", "plain"]

    plain = charts.render(helm_binary, tmp_path / "plain-hook", release="bench-plain",
                          namespace="bench")
    umt = charts.render(helm_binary, tmp_path / "umt",
                        "--set", "database.urlSecretRef.name=bench-db",
                        "--set", "schema-migration.database.urlSecretRef.name=bench-db",
                        "--set", "app.replicas=1", release="bench-plain", namespace="bench")
    job = hook_job(plain)
    assert job["metadata"]["name"] == "bench-plain-migrate"
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    migration = hook_manifest(umt)["spec"]
    assert container["command"] + container["args"][:3] == ["umt-migrations", "migrate",
                                                            "--to", "head"]
    assert container["image"] == migration["image"]
    assert container["env"] == [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {
        "name": migration["database"]["urlSecretRef"]["name"], "key": "url"}}}]
    charts.assert_valid("plain hook", job)
    # the same app objects on both paths: only the migration differs
    for kind in ("Deployment", "Service"):
        theirs, ours = one(plain, kind), one(umt, kind)
        ours["metadata"].pop("namespace")
        assert theirs == ours, kind
