"""A fake Job controller: one pod at a time per Job, status like Kubernetes >= 1.31.

For each new Job it creates a pod (`<job>-<5 chars>`, the Job's labels and pod template, an
owner reference, no node: the fake scheduler binds it), follows the pod through the API (its
own watch of pods, as the real controller's informer: whoever runs the pod, the fake kubelet or
a test writing its status), and writes the Job status only when the real controller would
(pkg/controller/job/job_controller.go, `syncJob`: the status is written when the counts or
conditions it computes differ):

- once the pod is created: `startTime`, `active: 1`, `ready: 0`, `terminating: 0`, in ONE write
  (`syncJob` creates the pods in `manageJob`, then updates the status once);
- `ready: 1` when the pod's `Ready` condition turns True (`countReadyPods`), and nothing at all
  while the pod waits (unschedulable, image pull, missing Secret, ...): a pod that waits
  changes the Pod, never the Job;
- when the pod ends: `active`/`ready` back to 0 and `failed` (or `succeeded`) counted, then
  `SuccessCriteriaMet` + `Complete`, or `FailureTarget` + `Failed` (Kubernetes >= 1.31: the
  interim condition first, the final one once the pods have stopped), with the reason a real
  controller gives (`PodFailurePolicy`, `BackoffLimitExceeded`, `DeadlineExceeded`).
Retries follow `backoffLimit` (a new pod each time, `failed` counting them) and `podFailurePolicy`
(`FailJob`, `Ignore`, `Count` on exit codes); a pod deleted before it ended counts as failed.
`activeDeadlineSeconds` deletes the active pod (`deleteActivePods`; the kubelet kills a deleted
pod's process). A deleted Job stops being managed; whether its running pod dies depends on the
deletion's propagation policy (the emulator's garbage collector deletes the pod for
Background/Foreground).

Not emulated: parallelism/completions above 1, suspend, ttlSecondsAfterFinished, the
exponential back-off delay between retries (see `retry_delay`), pod conditions in rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import time
from typing import Any

from tests.k8s.apimachinery import ApiError, now_rfc3339
from tests.k8s.emulator import EVENTS, JOBS, PODS, Emulator
from tests.k8s.worker import LoopWorker

#: pkg/controller/job/job_controller.go: the rate limiter of a Job whose sync failed.
DEFAULT_API_BACKOFF = 1.0
MAX_API_BACKOFF = 60.0


@dataclasses.dataclass(frozen=True)
class PodOutcome:
    """How a pod ended, read from its status; `exit_code` None: deleted before it ended."""

    pod: str
    container: str
    exit_code: int | None
    message: str


def pod_outcome(pod: dict[str, Any]) -> PodOutcome | None:
    """The outcome of a pod in a terminal phase (its first container's `terminated` state)."""
    status = pod.get("status") or {}
    if status.get("phase") not in ("Succeeded", "Failed"):
        return None
    container = (status.get("containerStatuses") or [{}])[0]
    terminated = (container.get("state") or {}).get("terminated") or {}
    exit_code = terminated.get("exitCode", 0 if status["phase"] == "Succeeded" else 1)
    name = container.get("name") or pod["spec"]["containers"][0]["name"]
    return PodOutcome(pod["metadata"]["name"], name, exit_code, terminated.get("message") or "")


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


class JobController(LoopWorker):
    """The fake Job controller; `start()` it in an emulator (the `job_controller` fixture)."""

    def __init__(self, emulator: Emulator, *, retry_delay: float = 0.0,
                 create_backoff: float = DEFAULT_API_BACKOFF,
                 max_create_backoff: float = MAX_API_BACKOFF) -> None:
        super().__init__(emulator)
        self.retry_delay = retry_delay
        #: The back-off of a Job whose pod creation was refused: 1 s, doubling up to 60 s.
        self.create_backoff = create_backoff
        self.max_create_backoff = max_create_backoff
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._seen: set[str] = set()  # a Job is taken up once, whatever events follow
        #: Pods created and not ended yet, by uid: their names, how they end, whether `ready`
        #: counted them.
        self._names: dict[str, str] = {}
        self._outcomes: dict[str, asyncio.Future[PodOutcome]] = {}
        self._ready: set[str] = set()

    # --- Loop side ---------------------------------------------------------------------------

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.store.watch(self.emulator.rtype(JOBS), self._on_job_event),
                             name="fake job controller: jobs"),
            loop.create_task(self.store.watch(self.emulator.rtype(PODS), self._on_pod_event),
                             name="fake job controller: pods"),
        ]

    def _children(self) -> list[asyncio.Task[None]]:
        return list(self._jobs.values())

    def _on_job_event(self, event_type: str, job: dict[str, Any]) -> None:
        uid = job["metadata"]["uid"]
        if event_type == "DELETED":
            task = self._jobs.pop(uid, None)
            if task is not None:
                task.cancel()  # the Job is gone: nothing left to manage or report on
        elif uid not in self._seen and not _finished(job):
            self._seen.add(uid)
            self._jobs[uid] = asyncio.get_running_loop().create_task(
                self._manage(job), name=f"job {job['metadata']['name']}")

    def _on_pod_event(self, event_type: str, pod: dict[str, Any]) -> None:
        """The pods of managed Jobs: `ready` counted once its `Ready` condition is True
        (`countReadyPods`), the outcome once it ended or was deleted."""
        uid = pod["metadata"]["uid"]
        future = self._outcomes.get(uid)
        if future is None or future.done():
            return
        if event_type == "DELETED":
            container = pod["spec"]["containers"][0]["name"]
            future.set_result(PodOutcome(pod["metadata"]["name"], container, None, ""))
        elif (outcome := pod_outcome(pod)) is not None:
            future.set_result(outcome)
        elif _is_ready(pod) and uid not in self._ready:
            self._ready.add(uid)
            job = _owner_job(pod)
            if job is not None:
                self._patch_status(pod["metadata"]["namespace"], job, {"ready": 1})

    # --- One Job ----------------------------------------------------------------------------

    async def _manage(self, job: dict[str, Any]) -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        spec = job["spec"]
        failed = 0
        pod_uid = None
        first = {"startTime": now_rfc3339(), "ready": 0, "terminating": 0,
                 "uncountedTerminatedPods": {}}
        try:
            async with asyncio.timeout(spec.get("activeDeadlineSeconds")):
                while True:
                    pod_uid = await self._create_pod_retrying(job, first)
                    self._patch_status(ns, name, {**first, "active": 1})
                    first = {}
                    # shielded: a deadline stops the wait, the pod is dealt with below
                    outcome = await asyncio.shield(self._outcomes[pod_uid])
                    self._forget(pod_uid)
                    pod_uid = None
                    if outcome.exit_code == 0:
                        self._finish(job, succeeded=True, reason="CompletionsReached",
                                     message="Reached expected number of succeeded pods")
                        return
                    action, index = _failure_policy_action(spec, outcome)
                    if action == "Ignore":
                        self._patch_status(ns, name, {"active": None, "ready": 0})
                        continue
                    failed += 1
                    self._patch_status(ns, name, {"active": None, "ready": 0, "failed": failed})
                    if action == "FailJob":
                        self._finish(job, succeeded=False, reason="PodFailurePolicy",
                                     message=f"Container {outcome.container} for pod {ns}/"
                                     f"{outcome.pod} failed with exit code {outcome.exit_code} "
                                     f"matching FailJob rule at index {index}")
                        return
                    if failed > spec.get("backoffLimit", 6):
                        self._finish(job, succeeded=False, reason="BackoffLimitExceeded",
                                     message="Job has reached the specified backoff limit")
                        return
                    if self.retry_delay:
                        await asyncio.sleep(self.retry_delay)  # the controller's back-off
        except TimeoutError:
            if pod_uid is not None:  # deleteActivePods: the active pod is deleted, and failed
                pod = self._forget(pod_uid)
                pod_uid = None
                with contextlib.suppress(ApiError):
                    self.store.delete(self.emulator.rtype(PODS), ns, pod,
                                      propagation="Background")
                    self._record_event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod}")
                failed += 1
            self._patch_status(ns, name, {"active": None, "ready": 0, "failed": failed})
            self._finish(job, succeeded=False, reason="DeadlineExceeded",
                         message="Job was active longer than specified deadline")
        finally:
            self._jobs.pop(job["metadata"]["uid"], None)
            if pod_uid is not None:
                self._forget(pod_uid)

    def _forget(self, pod_uid: str) -> str:
        """Stop following a pod; its name."""
        self._ready.discard(pod_uid)
        self._outcomes.pop(pod_uid, None)
        return self._names.pop(pod_uid, "")

    async def _create_pod_retrying(self, job: dict[str, Any], first: dict[str, Any]) -> str:
        """Create the Job's pod; while the API server refuses it (pod validation, PodSecurity,
        ResourceQuota: tests/k8s/admission.py), record a `FailedCreate` Warning Event on the
        Job, `Error creating: <the server's message>`, and try again after a back-off.

        As `syncJob` in pkg/controller/job/job_controller.go: `manageJob` fails, the status
        computed meanwhile is written all the same (`startTime`, `ready: 0`, no `active`
        pod), the error requeues the Job rate-limited (`DefaultJobApiBackOff` 1 s doubling
        to `MaxJobApiBackOff` 60 s); the Event comes from `RealPodControl.createPods`
        (pkg/controller/controller_utils.go, reason `FailedCreate`). Only
        `activeDeadlineSeconds` ends the retries. Each attempt's pod has another generated
        name, so each Event is a new one."""
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        delay = self.create_backoff
        while True:
            try:
                uid = self._create_pod(job)
            except ApiError as exc:
                if first:
                    self._patch_status(ns, name, dict(first))
                    first.clear()
                self._record_event(job, "Warning", "FailedCreate",
                                   f"Error creating: {exc.message}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_create_backoff)
                continue
            return uid

    def _record_event(self, job: dict[str, Any], event_type: str, reason: str,
                      message: str) -> None:
        """A core/v1 Event about the Job, as client-go's recorder makes it
        (k8s.io/client-go/tools/record/event.go `makeEvent`): named `<job>.<hex nanos>`,
        `involvedObject` the Job's full reference, source `job-controller`."""
        meta = job["metadata"]
        now = now_rfc3339()
        event = {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Job", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"],
                               "apiVersion": "batch/v1",
                               "resourceVersion": meta.get("resourceVersion", "")},
            "reason": reason, "message": message, "type": event_type,
            "source": {"component": "job-controller"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1, "eventTime": None,
            "reportingComponent": "job-controller", "reportingInstance": "",
        }
        with contextlib.suppress(ApiError):  # the recorder drops what it cannot write
            self.store.create(self.emulator.rtype(EVENTS), meta["namespace"], event)

    def _create_pod(self, job: dict[str, Any]) -> str:
        meta = job["metadata"]
        template = copy.deepcopy(job["spec"]["template"])
        pod_meta = template.get("metadata") or {}
        pod = {
            "metadata": {
                "generateName": f"{meta['name']}-",
                "labels": pod_meta.get("labels") or {},
                "annotations": pod_meta.get("annotations") or {},
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                    "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
                }],
            },
            "spec": template.get("spec", {}),  # no nodeName: the scheduler binds it
        }
        created = self.store.create(self.emulator.rtype(PODS), meta["namespace"], pod)
        self._record_event(job, "Normal", "SuccessfulCreate",
                           f"Created pod: {created['metadata']['name']}")
        uid = created["metadata"]["uid"]
        self._names[uid] = created["metadata"]["name"]
        self._outcomes[uid] = asyncio.get_running_loop().create_future()
        return uid

    def _finish(self, job: dict[str, Any], *, succeeded: bool, reason: str,
                message: str) -> None:
        """Two writes, as since Kubernetes 1.31: the interim condition, then the final one;
        and the Event `syncJob` records: Normal `Completed` "Job completed", or a Warning
        with the failure's reason and message."""
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        interim, final = ("SuccessCriteriaMet", "Complete") if succeeded \
            else ("FailureTarget", "Failed")
        conditions: list[dict[str, Any]] = []
        for condition_type in (interim, final):
            now = now_rfc3339()
            conditions.append({"type": condition_type, "status": "True", "reason": reason,
                               "message": message, "lastProbeTime": now,
                               "lastTransitionTime": now})
            status: dict[str, Any] = {"conditions": list(conditions), "active": None,
                                      "ready": 0, "terminating": 0}
            if succeeded:
                status["succeeded"] = 1
            if condition_type == final and succeeded:
                status["completionTime"] = now
            self._patch_status(ns, name, status)
        if succeeded:
            self._record_event(job, "Normal", "Completed", "Job completed")
        else:
            self._record_event(job, "Warning", reason, message)

    def _patch_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiError):  # the Job may have been deleted meanwhile
            self.store.patch(self.emulator.rtype(JOBS), ns, name, {"status": status},
                             subresource="status")


def _finished(job: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _owner_job(pod: dict[str, Any]) -> str | None:
    return next((ref["name"] for ref in pod["metadata"].get("ownerReferences") or []
                 if ref.get("kind") == "Job"), None)


def _failure_policy_action(spec: dict[str, Any], outcome: PodOutcome) -> tuple[str, int]:
    """The action of the first `podFailurePolicy` rule matching the exit code ("Count" when
    none matches, or the pod was deleted before it ended), and that rule's index."""
    if outcome.exit_code is None:
        return "Count", -1
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    for index, rule in enumerate(rules):
        on_codes = rule.get("onExitCodes")
        if not on_codes:
            continue
        if on_codes.get("containerName") not in (None, outcome.container):
            continue
        values = set(on_codes.get("values") or [])
        if on_codes.get("operator") == "In":
            matched = outcome.exit_code in values
        else:  # NotIn: any non-zero exit code outside the values
            matched = outcome.exit_code not in values
        if matched:
            return str(rule.get("action", "Count")), index
    return "Count", -1
