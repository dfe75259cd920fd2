"""A Kubernetes API emulator on a localhost port, in its own thread and event loop.

    with Emulator() as cluster:                     # or the `emulator` fixture
        cluster.create(SECRETS, "default", {...})
        run = cluster.wait_for(lambda: cluster.get(JOBS, "default", "j"), timeout=5)
        subprocess.run(["kubectl", "get", "jobs"], env=cluster.kubectl_env())

The server (`ApiServer`, a kmock handler) lives in a background thread with its own event loop,
so the test thread can block (sync `kubernetes` client, `kubectl`, `wait_for`) without freezing
it, and kopf can run in a third thread. The methods below are for the test thread: reads go to
the store directly, writes are handed to the emulator's loop (watchers live there).
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import os
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import aiohttp.web
import kmock
import yaml

from tests.k8s.admission import pod_security, resource_quota
from tests.k8s.apimachinery import parse_label_selector
from tests.k8s.apiserver import ApiServer
from tests.k8s.builtins import (
    ADMISSION,
    ALL_VERBS,
    BUILTIN_RESOURCES,
    KOPF_PEERINGS,
    WITHOUT_GENERATION,
    bundled_catalogue,
    crd_registration,
)
from tests.k8s.field_selectors import compile_field_selector
from tests.k8s.store import Body, Hook, ResourceType

T = TypeVar("T")

SCHEMA_MIGRATIONS = "migrations.umt.dev/v1alpha1/schemamigrations"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"
SECRETS = "v1/secrets"
CONFIGMAPS = "v1/configmaps"
NAMESPACES = "v1/namespaces"
RESOURCE_QUOTAS = "v1/resourcequotas"
EVENTS = "v1/events"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
LEASES = "coordination.k8s.io/v1/leases"

ResourceRef = str | kmock.resource | ResourceType


class Emulator:
    """The emulated cluster: API server, kubeconfig, and a blocking API for tests."""

    def __init__(self, *, namespace: str = "default", request_log_size: int = 20) -> None:
        self.namespace = namespace
        self.server = ApiServer(request_log_size=request_log_size)
        self.store = self.server.store
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._workdir = tempfile.TemporaryDirectory(prefix="umt-k8s-emulator-")
        self.kubeconfig_path = Path(self._workdir.name) / "kubeconfig"
        self.kubectl_cache_dir = Path(self._workdir.name) / "kubectl-cache"
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_callbacks: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._web_server: aiohttp.web.Server | None = None
        self._http_runner: aiohttp.web.ServerRunner | None = None
        self._site: aiohttp.web.TCPSite | None = None
        self._register_builtins()

    # --- Lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(started,),
                                        name="k8s-emulator", daemon=True)
        self._thread.start()
        self.url = started.result(timeout=10)
        self.kubeconfig_path.write_text(yaml.safe_dump(self.kubeconfig()))
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._stopping is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=15)
        if self._thread.is_alive():
            raise RuntimeError("the emulator's thread did not stop within 15 s")
        self._thread = None
        self.loop.close()
        self._workdir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, started: concurrent.futures.Future[str]) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main(started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())

    async def _main(self, started: concurrent.futures.Future[str]) -> None:
        self._stopping = asyncio.Event()
        # A plain aiohttp server rather than kmock.Server: that one also patches aiohttp's
        # DNS resolution process-wide (kopf's client in another thread included) and keeps a
        # client session of its own; neither is needed here.
        async with self.server:
            self._web_server = aiohttp.web.Server(self.server, handler_cancellation=True,
                                                  access_log=None)
            runner = aiohttp.web.ServerRunner(self._web_server, shutdown_timeout=1.0)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._http_runner, self._site = runner, site
            port = runner.addresses[0][1]
            started.set_result(f"http://127.0.0.1:{port}")
            try:
                await self._stopping.wait()
            finally:
                for callback in list(self._stop_callbacks):
                    await callback()
                self.store.close_watches()
                await runner.cleanup()

    def stop_serving(self) -> None:
        """The API server goes away as kube-apiserver does when its process dies: every open
        connection (watches included) is cut without a final chunk, and the port refuses new
        ones until :meth:`serve_again`. The store lives on, as etcd does.

        Clients must reconnect and resume their watches from the last resourceVersion they saw
        (API concepts, "Efficient detection of changes"); a restarted kube-apiserver serves them
        from etcd again (kube-apiserver reference; ``staging/src/k8s.io/apiserver/pkg/storage/
        cacher``, which rebuilds its watch cache from etcd on start).
        """
        self.submit(self._stop_serving()).result(timeout=10)

    def serve_again(self) -> None:
        """The API server is back on the same address (after :meth:`stop_serving`)."""
        self.submit(self._serve_again()).result(timeout=10)

    async def _stop_serving(self) -> None:
        assert self._site is not None and self._web_server is not None
        await self._site.stop()  # the listening socket closes: new connections are refused
        for rtype in list(self.store.types.values()):  # clients' watches, not the kubelet's
            self.store.drop_watches(rtype, abrupt=True)
        for handler in self._web_server.connections:  # a dead process resets every connection
            if handler.transport is not None:
                handler.transport.abort()

    async def _serve_again(self) -> None:
        assert self._http_runner is not None
        port = int(self.url.rsplit(":", 1)[1])
        self._site = aiohttp.web.TCPSite(self._http_runner, "127.0.0.1", port,
                                         reuse_address=True)
        await self._site.start()

    def add_stop_callback(self, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `await callback()` in the loop before the server stops (the kubelet uses it)."""
        self._stop_callbacks.append(callback)

    # --- Running code in the emulator's loop -------------------------------------------------

    @property
    def in_loop(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` in the emulator's loop and return its result."""
        if self.in_loop or self._thread is None:
            return fn(*args, **kwargs)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed over to the caller
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine in the emulator's loop (for background helpers)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    # --- Resources ---------------------------------------------------------------------------

    def register(self, resource: str, kind: str, *, namespaced: bool = True,
                 status_subresource: bool = True, singular: str | None = None,
                 short_names: Sequence[str] = (), categories: Sequence[str] = (),
                 verbs: Sequence[str] = ALL_VERBS, defaults: Body | None = None,
                 admission: Sequence[Hook] = (),
                 printer_columns: Sequence[dict[str, Any]] | None = None) -> ResourceType:
        """Serve a resource: discovery, CRUD, watch. Custom resources get `printer_columns`
        (a CRD's `additionalPrinterColumns`; `()` for the default Name/Age) and `defaults`
        (merged under every new object, as the CRD schema's defaults are)."""
        ref = kmock.resource(resource)
        self.server.resources[ref] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, singular=singular or kind.lower(),
            shortnames=set(short_names), categories=set(categories), verbs=set(verbs),
            subresources={"status"} if status_subresource else set(),
        )
        rtype = ResourceType(ref, kind, namespaced, status_subresource,
                             orphan_by_default=(ref == kmock.resource(JOBS)),
                             unconditional_update=(ref != kmock.resource(LEASES)),
                             generation=ref not in {kmock.resource(r) for r in WITHOUT_GENERATION},
                             strategic_merge=ref in {kmock.resource(r) for r in BUILTIN_RESOURCES})
        self.store.register(rtype, defaults=defaults, admission=list(admission))
        if printer_columns is not None:
            self.server.printer_columns[ref] = tuple(printer_columns)
        return rtype

    def register_crd(self, crd: Body | str | Path) -> ResourceType:
        """Serve the resource a CustomResourceDefinition (a dict or a YAML file) defines,
        and store the CRD object itself, as a cluster would after `kubectl apply`."""
        if isinstance(crd, (str, Path)):
            crd = yaml.safe_load(Path(crd).read_text())
        assert isinstance(crd, dict) and crd.get("kind") == "CustomResourceDefinition", crd
        options = crd_registration(crd)
        rtype = self.register(options.pop("resource"), options.pop("kind"), **options)
        existing = self.get(CRDS, None, crd["metadata"]["name"])
        if existing is None:
            self.create(CRDS, None, crd)
        return rtype

    def rtype(self, resource: ResourceRef) -> ResourceType:
        """Resolve `batch/v1/jobs`, `jobs`, `job`, `Job`, `smig` to a registered resource."""
        if isinstance(resource, ResourceType):
            return resource
        ref = kmock.resource(resource) if isinstance(resource, str) else resource
        if ref in self.store.types:
            return self.store.types[ref]
        name = str(resource).lower()
        found = [
            rtype for res, rtype in self.store.types.items()
            if name in {str(res.plural), rtype.kind.lower()}
            | {n.lower() for n in self.server.resources[res].shortnames}
            | {str(self.server.resources[res].singular)}
        ]
        preferred = [rtype for rtype in found if rtype.resource.group == ""] or found
        if not preferred:
            raise KeyError(f"no resource {resource!r} is registered in the emulator")
        return preferred[0]

    def _register_builtins(self) -> None:
        catalogue = bundled_catalogue()
        for resource in BUILTIN_RESOURCES:
            info = catalogue[resource]
            assert info.kind is not None, resource
            self.register(resource, info.kind, namespaced=bool(info.namespaced),
                          status_subresource="status" in info.subresources,
                          singular=info.singular, short_names=sorted(info.shortnames),
                          categories=sorted(info.categories), verbs=sorted(info.verbs),
                          admission=[*ADMISSION.get(resource, ()),
                                     *self._validating_admission(resource)])
        for resource, kind, namespaced in KOPF_PEERINGS:
            self.register(resource, kind, namespaced=namespaced, status_subresource=False)
        self.register(SCHEMA_MIGRATIONS, "SchemaMigration", short_names=["smig"],
                      printer_columns=())

    def _validating_admission(self, resource: str) -> list[Hook]:
        """The validating admission plugins that need the cluster's state (the namespace's
        PodSecurity level, its quotas): after defaulting and validation, as in the apiserver."""
        if resource != PODS:
            return []
        return [pod_security(self.get), resource_quota(lambda r, ns: self.list(r, ns))]

    # --- The blocking API for tests ----------------------------------------------------------

    def create(self, resource: ResourceRef, namespace: str | None, body: Body) -> Body:
        return self.call(self.store.create, self.rtype(resource), namespace, body)

    def get(self, resource: ResourceRef, namespace: str | None, name: str) -> Body | None:
        """The object, or None when it does not exist."""
        return self.store.get(self.rtype(resource), namespace, name)

    def list(self, resource: ResourceRef, namespace: str | None = None, *,
             labels: str | dict[str, str] | None = None, fields: str | None = None) -> list[Body]:
        if isinstance(labels, dict):
            labels = ",".join(f"{key}={value}" for key, value in labels.items())
        rtype = self.rtype(resource)
        label_match = parse_label_selector(labels)
        field_match = compile_field_selector(rtype.api_version, rtype.kind, fields)
        items, _ = self.store.list(rtype, namespace)
        return [item for item in items if label_match(item) and field_match(item)]

    def patch(self, resource: ResourceRef, namespace: str | None, name: str, patch: Any, *,
              subresource: str | None = None,
              content_type: str = "application/merge-patch+json") -> Body:
        return self.call(self.store.patch, self.rtype(resource), namespace, name, patch,
                         content_type=content_type, subresource=subresource)

    def patch_status(self, resource: ResourceRef, namespace: str | None, name: str,
                     status: Body) -> Body:
        return self.patch(resource, namespace, name, {"status": status}, subresource="status")

    def delete(self, resource: ResourceRef, namespace: str | None, name: str, *,
               propagation: str | None = None) -> Body:
        return self.call(self.store.delete, self.rtype(resource), namespace, name,
                         propagation=propagation)

    def history(self, resource: ResourceRef, namespace: str | None,
                name: str) -> builtins.list[Body]:
        """The recorded versions of an object, oldest first (deletions skipped)."""
        rtype = self.rtype(resource)
        key = (rtype.resource, namespace if rtype.namespaced else None, name)
        with self.store.lock:
            if key not in self.server.objects:
                return []
            return [dict(version.raw) for version in self.server.objects[key].history
                    if version is not None]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0,
                 message: str = "") -> T:
        """Block until `predicate()` returns something truthy and return it.

        Re-evaluated after every write to the emulated cluster and every watch opened or
        closed (no polling, no sleeps); other sources can wake it with `notify()`;
        raises TimeoutError with `message` and the last result when time runs out.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.store.lock:
                seen = self.store.revision
            result = predicate()
            if result:
                return result
            with self.store.changed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{message or 'condition'} not met within {timeout}s; "
                                       f"last result: {result!r}")
                self.store.changed.wait_for(lambda seen=seen: self.store.revision != seen,
                                            timeout=remaining)

    def notify(self) -> None:
        """Wake `wait_for()` callers (for state kept outside the store, e.g. by the kubelet)."""
        with self.store.changed:
            self.store.notify()

    def watchers(self, resource: ResourceRef) -> int:
        """How many clients watch `resource` (e.g. "kubectl -w is listening now"); the fake
        kubelet's and Job controller's own watches do not count."""
        return self.store.watchers(self.rtype(resource))

    def drop_watches(self, resource: ResourceRef, *, abrupt: bool = False,
                     where: Callable[[dict[str, str]], bool] = lambda params: True) -> int:
        """End clients' watches of `resource` (cleanly, or `abrupt`ly as a broken connection
        would) whose query parameters match `where`; see `ObjectStore.drop_watches`."""
        return self.call(self.store.drop_watches, self.rtype(resource), abrupt=abrupt,
                         where=where)

    def watch_requests(self, resource: ResourceRef) -> builtins.list[dict[str, str]]:
        """The query parameters of the watch requests served for `resource`, oldest first."""
        rtype = self.rtype(resource)
        return self.call(lambda: [dict(w.params) for w in self.server.watch_requests
                                  if w.rtype == rtype])

    def compact(self, resource: ResourceRef) -> None:
        """Compact the history of `resource`: older resourceVersions get 410 Gone."""
        self.call(self.store.compact, self.rtype(resource))

    def wait_for_object(self, resource: ResourceRef, namespace: str | None, name: str,
                        predicate: Callable[[Body], Any] = bool, timeout: float = 5.0) -> Body:
        """Block until the object exists and `predicate(obj)` holds; return the object."""
        def check() -> Body | None:
            obj = self.get(resource, namespace, name)
            return obj if obj is not None and predicate(obj) else None

        return self.wait_for(check, timeout, f"{resource} {namespace}/{name}")

    # --- Clients -----------------------------------------------------------------------------

    def kubeconfig(self) -> Body:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {}}],
            "contexts": [{"name": "emulator", "context": {
                "cluster": "emulator", "user": "emulator", "namespace": self.namespace}}],
            "current-context": "emulator",
        }

    def kubectl_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for `kubectl`/`helm` pointed at this emulator, with a private
        discovery cache (a shared one would remember another emulator's resources)."""
        env = dict(os.environ if base is None else base)
        env.update(KUBECONFIG=str(self.kubeconfig_path),
                   KUBECACHEDIR=str(self.kubectl_cache_dir),
                   HELM_CACHE_HOME=str(Path(self._workdir.name) / "helm-cache"),
                   HELM_CONFIG_HOME=str(Path(self._workdir.name) / "helm-config"),
                   HELM_DATA_HOME=str(Path(self._workdir.name) / "helm-data"))
        return env

    def k8s_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for this emulator (close it, or use `with`)."""
        import kubernetes.client

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)
