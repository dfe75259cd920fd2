#!/usr/bin/env python3
"""What hook mode costs: `helm upgrade` of charts/umt (the waiter Job, then the operator's
migration Job) against a plain chart whose pre-upgrade hook Job runs
`umt-migrations migrate --to head` itself, with the same image, the same Secret and the same
app objects. Every upgrade is a no-op for the database and leaves the app as it is, so what is
measured is the hook path. Printed, not asserted: a figure of your cluster, not a test.

    .venv/bin/python benchmarks/bench_hook.py [--upgrades 5] [--timeout 600]
    .venv/bin/python benchmarks/bench_hook.py --render DIR   # no cluster: write and render both

On the cluster given by the e2e variables (tests/e2e/cluster.py): UMT_E2E_KUBECONFIG,
UMT_E2E_IMAGE (already on the nodes), UMT_E2E_DATABASE_URL (as pods reach the server),
UMT_E2E_ADMIN_URL (as this machine reaches it). It installs the operator chart in a namespace
of its own (as the e2e suite does), creates a database, installs both releases once, then
times `--upgrades` upgrades of each, alternating, and removes everything. Three paths:

    hook        charts/umt as it is (rerunOnUpgrade: true: a new generation per upgrade, which
                the operator answers without a Job when nothing the migration depends on changed)
    hook-norerun  charts/umt with schema-migration.rerunOnUpgrade=false
    plain       the plain hook Job

With no cluster configured it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import charts as test_charts  # noqa: E402
from tests.e2e.cluster import VARIABLES, Cluster, Databases, Target, configured_target  # noqa: E402

PATHS = ("hook", "hook-norerun", "plain")
#: The runner's arguments in the operator's Job (umt_operator.jobs.runner_args), defaults.
MIGRATE = ["migrate", "--to", "head", "--config", "/app/alembic.ini", "--lock-timeout", "300"]


def tool(name: str) -> Path:
    found = shutil.which(name)
    if found:
        return Path(found)
    fetched = subprocess.run([str(ROOT / "scripts" / "fetch-k8s-tools.sh")], check=True,
                             capture_output=True, text=True)
    return Path(fetched.stdout.strip()) / name


def umt_values(target_image: str, secret: str) -> list[str]:
    """charts/umt's values for both releases: the image under test, one replica, the Secret."""
    repository, tag = target_image.rsplit(":", 1)
    return ["--set-string", f"global.image.repository={repository}",
            "--set-string", f"global.image.tag={tag}",
            "--set", "global.image.pullPolicy=IfNotPresent", "--set", "app.replicas=1",
            "--set", f"database.urlSecretRef.name={secret}",
            "--set", f"schema-migration.database.urlSecretRef.name={secret}"]


def hook_job(image: str, secret: str) -> dict[str, Any]:
    """The Job a chart author would write without the operator: migrate, in a hook."""
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "{{ .Release.Name }}-migrate", "annotations": {
            "helm.sh/hook": "pre-install,pre-upgrade",
            "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "migrate", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["umt-migrations"], "args": MIGRATE,
                "env": [{"name": "DATABASE_URL",
                         "valueFrom": {"secretKeyRef": {"name": secret, "key": "url"}}}],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
            "volumes": [{"name": "tmp", "emptyDir": {}}]}}},
    }


def write_plain_chart(where: Path, umt_chart: Path, helm: Path, release: str, image: str,
                      secret: str) -> Path:
    """A chart holding the plain hook Job and charts/umt's own app objects (rendered once for
    `release`, so both paths apply the same Deployment and Service)."""
    app = test_charts.render(helm, umt_chart, *umt_values(image, secret),
                             "--show-only", "templates/deployment.yaml",
                             "--show-only", "templates/service.yaml",
                             release=release, namespace="default")
    chart = where / "plain-hook"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "plain-hook", "version": "0.1.0",
        "description": "bench_hook.py: the migration as a plain pre-upgrade hook Job"}))
    (chart / "templates" / "job.yaml").write_text(yaml.safe_dump(hook_job(image, secret),
                                                                 sort_keys=False))
    for obj in app:
        obj["metadata"].pop("namespace", None)  # the release namespace, at install
        (chart / "templates" / f"{obj['kind'].lower()}.yaml").write_text(
            json.dumps(obj, indent=2))  # JSON: nothing in it reads as a template
    return chart


def build_charts(work: Path, helm: Path, image: str, secret: str,
                 plain_release: str) -> tuple[Path, Path]:
    umt = test_charts.umt_chart(helm, work)
    return umt, write_plain_chart(work, umt, helm, plain_release, image, secret)


def render_only(out: Path, helm: Path) -> int:
    """Write both charts under `out` and render them: the benchmark's charts, no cluster."""
    image, secret = "ghcr.io/umt/umt-migrations:0.1.0", "bench-db"
    out.mkdir(parents=True, exist_ok=True)
    umt, plain = build_charts(out, helm, image, secret, "bench-plain")
    for name, chart, args in (("hook", umt, umt_values(image, secret)),
                              ("plain", plain, [])):
        objects = test_charts.render(helm, chart, *args, release=f"bench-{name}",
                                     namespace="bench")
        kinds = ", ".join(sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects))
        print(f"{name}: {chart}: {kinds}")
    return 0


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(target: Target, upgrades: int, timeout: int) -> dict[str, list[float]]:
    from tests.e2e.conftest import Installation

    helm, kubectl = tool("helm"), tool("kubectl")
    work = Path(tempfile.mkdtemp(prefix="bench-hook-"))
    cluster = Cluster(target.kubeconfig, kubectl, helm, work)
    cluster.kubectl("version")
    databases = Databases(target.database_url, target.admin_url)
    operator = Installation(cluster, target, databases)
    secret = "bench-db"
    releases = {"hook": "bench-hook", "hook-norerun": "bench-norerun", "plain": "bench-plain"}
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    try:
        operator.install()
        print(f"operator installed in {operator.system}, watching {operator.apps}",
              file=sys.stderr)
        _, url = databases.create("bench")
        cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret},
                        "stringData": {"url": url}}, namespace=operator.apps)
        umt, plain = build_charts(work, helm, target.image, secret, releases["plain"])
        charts_of = {"hook": (umt, umt_values(target.image, secret)),
                     "hook-norerun": (umt, [*umt_values(target.image, secret), "--set",
                                            "schema-migration.rerunOnUpgrade=false"]),
                     "plain": (plain, [])}

        def helm_run(verb: str, path: str) -> None:
            chart, values = charts_of[path]
            cluster.helm(verb, releases[path], str(chart), "--namespace", operator.apps,
                         *values, "--timeout", f"{timeout}s", timeout=timeout + 60)

        for path in PATHS:  # the first install migrates the database; not measured
            helm_run("install", path)
        for round_ in range(upgrades):
            for path in PATHS:
                times[path].append(timed(partial(helm_run, "upgrade", path)))
            print(f"round {round_ + 1}/{upgrades}: " + ", ".join(
                f"{path} {times[path][-1]:.1f} s" for path in PATHS), file=sys.stderr)
    finally:
        for release in releases.values():
            cluster.helm("uninstall", release, "--namespace", operator.apps, "--wait",
                         check=False)
        operator.cleanup()
        databases.drop_all()
        shutil.rmtree(work, ignore_errors=True)
    return times


def report(times: dict[str, list[float]]) -> None:
    medians = {path: statistics.median(values) for path, values in times.items()}
    print(f"helm upgrade, no-op migration, app unchanged; median of {len(times['plain'])}:")
    for path in PATHS:
        print(f"  {path:13s} {medians[path]:6.2f} s   (runs: "
              + ", ".join(f"{t:.1f}" for t in times[path]) + ")")
    for path in ("hook", "hook-norerun"):
        print(f"  {path} / plain = {medians[path] / medians['plain']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrades", type=int, default=5,
                        help="timed upgrades of each path (default 5)")
    parser.add_argument("--timeout", type=int, default=600,
                        help="helm --timeout of each install/upgrade, seconds (default 600)")
    parser.add_argument("--render", type=Path, metavar="DIR",
                        help="no cluster: write both charts under DIR and render them")
    args = parser.parse_args(argv)
    if args.upgrades < 1:
        parser.error("--upgrades must be at least 1")
    if args.render is not None:
        return render_only(args.render, tool("helm"))
    try:
        target = configured_target()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if target is None:
        print(f"no cluster: set {', '.join(VARIABLES)} (see tests/e2e/cluster.py) to measure "
              "hook mode against a plain hook Job; nothing measured")
        return 0
    report(measure(target, args.upgrades, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
