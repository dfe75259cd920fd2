"""A fake scheduler and kubelet for the emulator (the Job controller is `job_controller.py`).

Pods in the emulator run as LOCAL processes: the container's `command + args` (the first
word mapped through `command_map`, or found in the venv's `bin/`), with the container's env
resolved from Secrets and ConfigMaps like a kubelet does, `TERMINATION_MESSAGE_PATH` pointing
at a temporary file, and the pod status a real kubelet would report (phases, container states,
exit codes, termination messages, `CreateContainerConfigError`, `ErrImagePull`).

    kubelet = FakeKubelet(emulator, path_map={"/app": repo_root}).start()
    with kubelet.held("umt-*"):          # the pod shows Running, the process waits
        ...
    assert kubelet.processes_started == 1

Everything runs as tasks in the emulator's event loop; the public methods are for the test
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.k8s.apimachinery import ApiError, now_rfc3339
from tests.k8s.emulator import CONFIGMAPS, PODS, SECRETS, Emulator
from tests.k8s.pod_runtime import (
    ContainerConfigError,
    PodStatus,
    expand,
    resolve_env,
    termination_message,
)
from tests.k8s.worker import LoopWorker

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_NAME = "emulated-node"
#: The labels every node carries (the kubelet sets them: pkg/kubelet/kubelet_node_status.go).
NODE_LABELS = {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
               "kubernetes.io/arch": "amd64"}
VENV_BIN = Path(sys.executable).parent
#: Host variables a local process needs; everything else comes from the pod spec.
HOST_ENV = ("HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "PGPASSFILE", "SSL_CERT_FILE")

@dataclasses.dataclass
class ContainerRun:
    """One local process started for a pod (what a test asserts "ran exactly once")."""

    namespace: str
    pod: str
    job: str | None
    argv: list[str]
    env: dict[str, str]
    exit_code: int | None = None
    output: str = ""
    termination_message: str = ""
    start_error: bool = False  # the container never started (command not in the image)


def _normalised(mapping: Mapping[str, str | Path] | None) -> dict[str, str]:
    return {prefix.rstrip("/"): str(local).rstrip("/") for prefix, local in (mapping or {}).items()}


class FakeKubelet(LoopWorker):
    def __init__(self, emulator: Emulator, *,
                 command_map: Mapping[str, Sequence[str]] | None = None,
                 cwd: str | Path = REPO_ROOT,
                 unpullable: Sequence[str] = ("does-not-exist",),
                 node_images: Sequence[str] | None = None,
                 extra_env: Mapping[str, str] | None = None,
                 path_map: Mapping[str, str | Path] | None = None,
                 image_path_map: Mapping[str, Mapping[str, str | Path]] | None = None,
                 image_pull_backoff: float = 0.5,
                 kill_grace: float = 2.0,
                 sync_delay: float = 0.3) -> None:
        super().__init__(emulator)
        self.command_map = {key: list(value) for key, value in (command_map or {}).items()}
        self.cwd = Path(cwd)
        self.unpullable = tuple(unpullable)
        #: Images already on the node (None: all of them), for `imagePullPolicy: Never`.
        self.node_images = None if node_images is None else tuple(node_images)
        self.extra_env = dict(extra_env or {})
        #: Image paths to local ones, applied to args and env values (`{"/app": REPO_ROOT}`).
        self.path_map = _normalised(path_map)
        #: Per image (exact reference), a path map used instead of `path_map`: two "images"
        #: holding different releases of the migrations are two local folders.
        self.image_path_map = {image: _normalised(mapping)
                               for image, mapping in (image_path_map or {}).items()}
        self.image_pull_backoff = image_pull_backoff
        #: How long after binding the kubelet first writes the pod's status. A real kubelet
        #: learns of a bound pod through its own watch, then its pod worker mounts volumes and
        #: fetches Secrets before the first status (pkg/kubelet/pod_workers.go); that takes
        #: from a few hundred milliseconds to seconds. An operator that looks at the pod only
        #: once, right after the Job's first status, must not see a verdict there.
        self.sync_delay = sync_delay
        self.kill_grace = kill_grace
        #: Every process started, in order; `processes_started` counts them.
        self.runs: list[ContainerRun] = []
        self._pods: dict[str, asyncio.Task[None]] = {}
        self._seen_pods: set[str] = set()  # a pod runs once, whatever events follow
        self._holds: list[str] = []
        self._gate = asyncio.Event()
        self._config_changed = asyncio.Event()
        self._tmp = tempfile.TemporaryDirectory(prefix="umt-fake-kubelet-")

    # --- Public API (test thread) ------------------------------------------------------------

    @property
    def processes_started(self) -> int:
        return len(self.runs)

    def stop(self) -> None:
        super().stop()
        self._tmp.cleanup()

    def hold(self, pattern: str = "*") -> None:
        """Keep matching pods (by Job name, else pod name; fnmatch) Running but not started:
        the pod and Job look busy, the process waits for `release()`."""
        self.emulator.call(self._holds.append, pattern)

    def release(self, pattern: str | None = None) -> None:
        """Release one hold (`pattern`) or all of them (None)."""
        def drop() -> None:
            if pattern is None:
                self._holds.clear()
            elif pattern in self._holds:
                self._holds.remove(pattern)
            self._open_gate()

        self.emulator.call(drop)

    @contextlib.contextmanager
    def held(self, pattern: str = "*") -> Iterator[None]:
        self.hold(pattern)
        try:
            yield
        finally:
            self.release(pattern)

    def runs_for(self, job_or_pod: str) -> list[ContainerRun]:
        return [run for run in self.runs if job_or_pod in (run.job, run.pod)]

    # --- Loop side ---------------------------------------------------------------------------

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.store.watch(self.emulator.rtype(PODS), self._on_pod_event),
                             name="fake-kubelet pods"),
            loop.create_task(self._watch_config(), name="fake-kubelet config"),
        ]

    def _children(self) -> list[asyncio.Task[None]]:
        return list(self._pods.values())

    def _open_gate(self) -> None:
        self._gate.set()
        self._gate = asyncio.Event()

    def _is_held(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self._holds)

    def _on_pod_event(self, event_type: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if event_type == "DELETED" and uid in self._pods:
            self._pods[uid].cancel()
        elif event_type == "ADDED" and uid not in self._seen_pods:
            self._seen_pods.add(uid)
            if (pod.get("status") or {}).get("phase") in (None, "Pending"):
                task = asyncio.get_running_loop().create_task(self._run_pod(pod))
                self._pods[uid] = task

    async def _watch_config(self) -> None:
        """Wake pods stuck on a missing Secret/ConfigMap whenever one changes."""
        subscriptions = []
        getters: dict[asyncio.Future[Any], Any] = {}
        try:
            for resource in (SECRETS, CONFIGMAPS):
                _, subscription = self.store.subscribe(self.emulator.rtype(resource), None)
                subscriptions.append(subscription)
                getters[asyncio.ensure_future(subscription.queue.get())] = subscription
            while True:
                done, _ = await asyncio.wait(getters, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    subscription = getters.pop(future)
                    getters[asyncio.ensure_future(subscription.queue.get())] = subscription
                self._config_changed.set()
                self._config_changed = asyncio.Event()
        finally:
            for subscription in subscriptions:
                self.store.unsubscribe(subscription)
            for future in getters:
                future.cancel()

    async def _run_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", "default"), meta["name"], meta["uid"]
        job = next((ref["name"] for ref in meta.get("ownerReferences", [])
                    if ref.get("kind") == "Job"), None)
        container = pod["spec"]["containers"][0]
        status = PodStatus(container, pod_ip="127.0.0.1")
        try:
            await self._schedule(ns, name, pod)
            await asyncio.sleep(self.sync_delay)  # the kubelet's own pace, not a test sync
            self._write_status(ns, name, status.waiting("ContainerCreating"))
            image = str(container.get("image", ""))
            if container.get("imagePullPolicy") == "Never" and self.node_images is not None \
                    and image not in self.node_images:
                # pkg/kubelet/images/image_manager.go: `ErrImageNeverPull`, and the pod waits
                # for good (the kubelet never pulls it; only a new pod could get it).
                self._write_status(ns, name, status.waiting(
                    "ErrImageNeverPull", f'Container image "{image}" is not present with pull '
                    "policy of Never"))
                await asyncio.Future()
            if any(marker in image for marker in self.unpullable):
                await self._fail_image_pull(ns, name, status)
            env = await self._resolve_env_when_ready(pod, container, status)
            self._write_status(ns, name, status.running())
            while self._is_held(job or name):
                await self._gate.wait()
            run = ContainerRun(ns, name, job, self._argv(container, env), env)
            exit_code = await self._execute(run, container, status)
        finally:  # cancelled: the pod was deleted (its process killed) or the kubelet stops
            self._pods.pop(uid, None)
        message = run.termination_message
        reason = "StartError" if run.start_error else None
        self._write_status(ns, name, status.terminated(exit_code, reason, message))

    async def _schedule(self, ns: str, name: str, pod: dict[str, Any]) -> None:
        """The scheduler's part: bind the pod to the one node, or mark it unschedulable.

        The node carries the well-known labels (kubernetes.io/hostname, os, arch) and no
        taints. A `nodeSelector` it does not satisfy leaves the pod Pending for good with
        `PodScheduled=False`, reason `Unschedulable` and the scheduler's message, built as
        `FitError.Error()` builds it (pkg/scheduler/framework/types.go; the node affinity
        plugin's reason `ErrReasonPod`, pkg/scheduler/framework/plugins/nodeaffinity). A bound
        pod gets `spec.nodeName` and `PodScheduled=True` (the `pods/binding` subresource,
        pkg/registry/core/pod/storage/storage.go `assignPod`).
        """
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        if any(NODE_LABELS.get(key) != value for key, value in selector.items()):
            self._write_status(ns, name, {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node "
                           "affinity/selector. preemption: 0/1 nodes are available: 1 "
                           "Preemption is not helpful for scheduling.",
                "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}]})
            await asyncio.Future()  # no node will ever fit: Pending until deleted
        with contextlib.suppress(ApiError):
            self.store.patch(self.emulator.rtype(PODS), ns, name,
                             {"spec": {"nodeName": NODE_NAME}})
        self._write_status(ns, name, {"conditions": [{
            "type": "PodScheduled", "status": "True", "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339()}]})

    async def _fail_image_pull(self, ns: str, name: str, status: PodStatus) -> None:
        image = status.image
        self._write_status(ns, name, status.waiting(
            "ErrImagePull", f'failed to pull and unpack image "{image}": failed to resolve '
            f'reference "{image}": {image}: not found'))
        await asyncio.sleep(self.image_pull_backoff)  # the kubelet's back-off, not a test sync
        self._write_status(ns, name, status.waiting(
            "ImagePullBackOff", f'Back-off pulling image "{image}"'))
        await asyncio.Future()  # never pulls: stays waiting until deleted or killed

    async def _resolve_env_when_ready(self, pod: dict[str, Any], container: dict[str, Any],
                                      status: PodStatus) -> dict[str, str]:
        meta = pod["metadata"]
        while True:
            changed = self._config_changed
            try:
                return resolve_env(pod, container, self._lookup)
            except ContainerConfigError as exc:
                self._write_status(meta["namespace"], meta["name"],
                                   status.waiting("CreateContainerConfigError", str(exc)))
            await changed.wait()

    def _lookup(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        return self.emulator.get(SECRETS if kind == "Secret" else CONFIGMAPS, ns, name)

    def _local_path(self, text: str, mapping: Mapping[str, str] | None = None) -> str:
        """`/app/alembic.ini` -> `<repo>/alembic.ini` for a `path_map` of `{"/app": repo}`."""
        mapping = self.path_map if mapping is None else mapping
        for prefix, local in mapping.items():
            if text == prefix or text.startswith(prefix + "/"):
                return local + text[len(prefix):]
            if text.startswith("--") and f"={prefix}" in text:  # --config=/app/alembic.ini
                option, _, value = text.partition("=")
                return f"{option}={self._local_path(value, mapping)}"
        return text

    def _argv(self, container: dict[str, Any], env: dict[str, str]) -> list[str]:
        mapping = self.image_path_map.get(str(container.get("image")), self.path_map)
        argv = [self._local_path(expand(str(arg), env), mapping) for arg in
                (container.get("command") or []) + (container.get("args") or [])]
        if not argv:
            return []
        if argv[0] in self.command_map:
            return self.command_map[argv[0]] + argv[1:]
        if not os.path.isabs(argv[0]) and (VENV_BIN / argv[0]).exists():
            return [str(VENV_BIN / argv[0]), *argv[1:]]
        return argv

    def _process_env(self, run: ContainerRun, message_path: Path) -> dict[str, str]:
        env = {key: os.environ[key] for key in HOST_ENV if key in os.environ}
        env["PATH"] = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)])
        env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
        env["HOSTNAME"] = run.pod
        env.update(self.extra_env)
        env.update({key: self._local_path(value) for key, value in run.env.items()})
        env["TERMINATION_MESSAGE_PATH"] = str(message_path)
        return env

    async def _execute(self, run: ContainerRun, container: dict[str, Any],
                       status: PodStatus) -> int:
        workdir = Path(tempfile.mkdtemp(dir=self._tmp.name, prefix=f"{run.pod}-"))
        message_path = workdir / "termination-log"
        message_path.touch()
        if not run.argv:
            return self._start_error(run, "the emulator cannot run an image's entrypoint: "
                                          "set the container's command")
        try:
            process = await asyncio.create_subprocess_exec(
                *run.argv, cwd=self.cwd, env=self._process_env(run, message_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except (FileNotFoundError, PermissionError):
            # What containerd reports when the command is not in the image: the container
            # never runs, `terminated` with reason StartError and exit code 128.
            return self._start_error(
                run, "failed to create containerd task: failed to create shim task: OCI "
                "runtime create failed: runc create failed: unable to start container process: "
                f'exec: "{run.argv[0]}": executable file not found in $PATH: unknown')
        self.runs.append(run)  # counted once it really runs
        self.emulator.notify()
        output = b""
        try:
            assert process.stdout is not None
            output = await process.stdout.read()
            exit_code = await process.wait()
        except asyncio.CancelledError:
            await self._kill(process)
            run.exit_code = 143
            raise
        finally:
            self.emulator.server.pod_logs[(run.namespace, run.pod)] = \
                output.decode(errors="replace")
            self.emulator.notify()  # `wait_for(lambda: run.exit_code ...)` may be waiting
        run.output = output.decode(errors="replace")
        run.exit_code = exit_code if exit_code >= 0 else 128 - exit_code
        run.termination_message = termination_message(
            message_path, run.output, run.exit_code,
            container.get("terminationMessagePolicy", "File"))
        return run.exit_code

    @staticmethod
    def _start_error(run: ContainerRun, message: str) -> int:
        run.exit_code, run.start_error, run.termination_message = 128, True, message
        return run.exit_code

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), self.kill_grace)
                return
            except TimeoutError:
                continue

    def _write_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiError):  # the pod may be gone already
            self.store.patch(self.emulator.rtype(PODS), ns, name, {"status": status},
                             subresource="status")
