#!/usr/bin/env python3
"""Operator latency and memory, against the API emulator, the operator in its own process.

Latency (Jobs that finish instantly; the benchmark plays the Job controller and kubelet, in
the order a real cluster writes: the pod's status first, then the Job's):
  - resource created → its Job created (targets p50 ≤ 10 ms);
  - Job finished (pod terminated with the runner's report, then Job Complete) → resource Ready
    (targets p50 ≤ 15 ms, p95 ≤ 30 ms), and how many times the operator read pods meanwhile
    (target 0: the pod watch already told it);
  - a pod's waiting reason (CreateContainerConfigError: missing Secret) → resource Stalled,
    while the Job's status stays as it was (as on a real cluster);
  p50 and p95 over N resources (default 200), one at a time.
Memory: RSS of the operator process (``python -m umt_operator``) with M resources watched,
each with its finished Job and pod (default 1,000). Target ≤ 80 MiB.

    .venv/bin/python benchmarks/bench_operator.py [--resources 200] [--watched 1000]

UMT_BENCH_IDLE (seconds, default 3): how long the operator's CPU time must stay flat before it
counts as idle in the memory measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.k8s.audit import CALLS  # noqa: E402
from tests.k8s.emulator import JOBS, PODS, SCHEMA_MIGRATIONS, Emulator  # noqa: E402
from tests.k8s.fixtures import register_repo_crds  # noqa: E402
from umt_operator.jobs import job_name  # noqa: E402

NS = "default"
REPORT = json.dumps({"ok": True, "direction": "upgrade", "fromRevision": None,
                     "toRevision": "240cfb931a0a", "targetRevision": "240cfb931a0a",
                     "applied": ["0abb288d754e", "3ab691d3a566", "7b15a05d0cb1", "240cfb931a0a"],
                     "durationSeconds": 0.8}, separators=(",", ":"))


def smig(name: str) -> dict[str, Any]:
    return {"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
            "metadata": {"name": name},
            "spec": {"targetRevision": "head",
                     "database": {"urlSecretRef": {"name": "umt-db", "key": "url"}}}}


#: ``python -m umt_operator`` as the image runs it: the image installs ``.[operator]`` only, so
#: the ``kubernetes`` client library (a test dependency here, ~28 MiB once imported, and which
#: kopf imports whenever it is installed) is absent; hiding it reproduces that environment.
OPERATOR_AS_IN_THE_IMAGE = (
    "import runpy, sys; sys.modules['kubernetes'] = None; "
    "runpy.run_module('umt_operator', run_name='__main__', alter_sys=True)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_operator(cluster: Emulator) -> subprocess.Popen[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path),
           "UMT_OPERATOR_NAMESPACES": NS, "UMT_OPERATOR_METRICS_PORT": "0",
           "UMT_OPERATOR_HEALTH_PORT": str(free_port())}
    log = open(Path(tempfile.gettempdir()) / "umt-operator-bench.log", "a")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-c", OPERATOR_AS_IN_THE_IMAGE], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log, text=True)


def pod_reads() -> int:
    """Requests the operator made for pods outside its watch (get, list), so far: the emulator
    records every request it serves (tests/k8s/audit.py)."""
    return CALLS.count(lambda call: call.by_operator and call.verb in ("get", "list")
                       and call.resource.partition("/")[0] == "pods")


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def start_job(cluster: Emulator, job: dict[str, Any]) -> str:
    """Play Job controller: the pod (with the template's labels), then the Job's one write."""
    name = job["metadata"]["name"]
    labels = {**job["spec"]["template"]["metadata"]["labels"],
              "batch.kubernetes.io/job-name": name, "job-name": name}
    cluster.create(PODS, NS, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-x", "labels": labels, "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": name,
            "uid": job["metadata"]["uid"], "controller": True}]},
        "spec": job["spec"]["template"]["spec"],
    })
    cluster.patch_status(JOBS, NS, name, {"startTime": now_rfc3339(), "active": 1, "ready": 0,
                                         "terminating": 0})
    return f"{name}-x"


def finish_job(cluster: Emulator, job: dict[str, Any]) -> None:
    """Play kubelet and Job controller: the pod terminates with the report, then Complete."""
    name = job["metadata"]["name"]
    now = now_rfc3339()
    cluster.patch_status(PODS, NS, f"{name}-x", {
        "phase": "Succeeded",
        "containerStatuses": [{"name": "migrate", "ready": False, "restartCount": 0,
                               "image": "x", "imageID": "x",
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                        "message": REPORT, "startedAt": now,
                                                        "finishedAt": now}}}]})
    cluster.patch_status(JOBS, NS, name, {
        "completionTime": now, "succeeded": 1, "active": None,
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                       {"type": "Complete", "status": "True"}]})


def has_condition(cluster: Emulator, name: str, type_: str) -> bool:
    obj = cluster.get(SCHEMA_MIGRATIONS, NS, name) or {}
    return any(c.get("type") == type_ and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def settle(cluster: Emulator, name: str) -> None:
    """Wait until the operator has written what the running Job means (no race with it)."""
    cluster.wait_for(lambda: "waiting for its pod" in str(
        ((cluster.get(SCHEMA_MIGRATIONS, NS, name) or {}).get("status") or {}).get("message")),
        timeout=30)


def latency(cluster: Emulator, count: int,
            prefix: str = "lat") -> tuple[list[float], list[float], list[float], int]:
    to_job, to_ready, to_stalled = [], [], []
    reads_before = pod_reads()
    for index in range(count):
        name = f"{prefix}-{index:04d}"
        began = time.perf_counter()
        uid = cluster.create(SCHEMA_MIGRATIONS, NS, smig(name))["metadata"]["uid"]
        job = cluster.wait_for(lambda name=name, uid=uid: cluster.get(JOBS, NS,
                                                                      job_name(name, 1, uid)),
                               timeout=30)
        to_job.append(time.perf_counter() - began)
        start_job(cluster, job)
        settle(cluster, name)
        began = time.perf_counter()
        finish_job(cluster, job)
        cluster.wait_for(lambda name=name: has_condition(cluster, name, "Ready"), timeout=30)
        to_ready.append(time.perf_counter() - began)
    reads = pod_reads() - reads_before
    for index in range(count):
        name = f"{prefix}-stuck-{index:04d}"
        uid = cluster.create(SCHEMA_MIGRATIONS, NS, smig(name))["metadata"]["uid"]
        job = cluster.wait_for(lambda name=name, uid=uid: cluster.get(JOBS, NS,
                                                                      job_name(name, 1, uid)),
                               timeout=30)
        pod = start_job(cluster, job)
        settle(cluster, name)
        began = time.perf_counter()
        cluster.patch_status(PODS, NS, pod, {"phase": "Pending", "containerStatuses": [{
            "name": "migrate", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "CreateContainerConfigError",
                                  "message": 'secret "umt-db" not found'}}}]})
        cluster.wait_for(lambda name=name: has_condition(cluster, name, "Stalled"), timeout=30)
        to_stalled.append(time.perf_counter() - began)
    return to_job, to_ready, to_stalled, reads


def rss_mib(pid: int) -> tuple[float, float]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def memory(cluster: Emulator, watched: int) -> tuple[float, float, float]:
    """RSS after the operator has listed ``watched`` Ready resources, each with its finished
    Job and pod, and gone idle."""
    from umt_operator.jobs import render_job
    from umt_operator.settings import Settings
    from umt_operator.spec import parse_spec

    settings = Settings()
    for index in range(watched):
        name = f"mem-{index:04d}"
        created = cluster.create(SCHEMA_MIGRATIONS, NS, smig(name))
        manifest = render_job(name=name, namespace=NS, uid=created["metadata"]["uid"],
                              generation=1, spec=parse_spec(smig(name)["spec"]),
                              settings=settings, image=settings.default_image)
        manifest["metadata"]["name"] = job_name(name, 1, created["metadata"]["uid"])
        job = cluster.create(JOBS, NS, manifest)
        start_job(cluster, job)
        finish_job(cluster, job)
        cluster.patch_status(SCHEMA_MIGRATIONS, NS, name, {
            "observedGeneration": 1, "phase": "Succeeded", "jobName": manifest["metadata"]["name"],
            "currentRevision": "240cfb931a0a",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded",
                            "observedGeneration": 1, "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    operator = start_operator(cluster)
    try:
        began = time.perf_counter()
        cluster.wait_for(lambda: cluster.watchers(SCHEMA_MIGRATIONS) > 0, timeout=60)
        idle_since, last = time.perf_counter(), -1.0
        idle = float(os.environ.get("UMT_BENCH_IDLE", "3"))  # CPU time flat this long: all done
        while time.perf_counter() - idle_since < idle:
            cpu = sum(int(x) for x in Path(f"/proc/{operator.pid}/stat").read_text().split()[13:15])
            if cpu != last:
                last, idle_since = cpu, time.perf_counter()
            time.sleep(0.2)
        settled = idle_since - began  # when its CPU time last moved
        rss, peak = rss_mib(operator.pid)
        return rss, peak, settled
    finally:
        operator.terminate()
        operator.wait(timeout=30)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def measure_latency(count: int) -> tuple[list[float], list[float], list[float], int]:
    with Emulator(request_log_size=20) as cluster:
        register_repo_crds(cluster)
        operator = start_operator(cluster)
        try:
            cluster.wait_for(lambda: cluster.watchers(SCHEMA_MIGRATIONS) > 0
                             and cluster.watchers(JOBS) > 0, timeout=60)
            latency(cluster, 10, prefix="warm")  # warm-up, not measured
            return latency(cluster, count)
        finally:
            operator.terminate()
            operator.wait(timeout=30)


def count(minimum: int) -> Any:
    """An argparse type: a whole number of at least `minimum`."""
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
        return int(text)
    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=count(1), default=200)
    parser.add_argument("--watched", type=count(0), default=1000)
    args = parser.parse_args()

    to_job, to_ready, to_stalled, reads = measure_latency(args.resources)
    print(f"\noperator latency over {args.resources} resources (emulator, operator process)")
    for label, values, targets in (("created → Job created", to_job, (10, None)),
                                   ("Job finished → Ready", to_ready, (15, 30)),
                                   ("pod waiting → Stalled", to_stalled, (None, None))):
        p50, p95 = pct(values, 0.50), pct(values, 0.95)
        ok = (targets[0] is None or p50 <= targets[0]) and (targets[1] is None or p95 <= targets[1])
        wanted = " / ".join("-" if t is None else f"{t}" for t in targets)
        verdict = f"(targets {wanted} ms) {'OK' if ok else 'ABOVE TARGET'}" \
            if targets != (None, None) else "(for the record)"
        print(f"  {label:24s} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
              f"mean {statistics.mean(values) * 1000:6.1f} ms  max {max(values) * 1000:6.1f} ms"
              f"  {verdict}")
    print(f"  pod reads by the operator while {args.resources} Jobs finished: {reads} (target 0)")

    for watched in (0, args.watched):
        with Emulator(request_log_size=20) as cluster:
            register_repo_crds(cluster)
            rss, peak, settled = memory(cluster, watched)
        verdict = "" if watched == 0 else ("OK" if rss <= 80 else "ABOVE TARGET")
        print(f"operator memory with {watched:5d} resources (and their Jobs and pods) watched: "
              f"RSS {rss:.1f} MiB (peak {peak:.1f} MiB), listed and idle after {settled:.1f} s"
              + (f" (target ≤ 80 MiB) {verdict}" if verdict else ""))


if __name__ == "__main__":
    main()
