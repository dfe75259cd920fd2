"""The waiter's door to the Kubernetes API, through lightkube's async client.

Server-side apply, then one object followed the way client-go's reflector follows objects:
watch from the resourceVersion the apply returned; when the watch ends or the connection
drops, watch again from the last resourceVersion seen (lightkube itself reconnects after a
clean end); when the API server answers 410 Gone (that version was compacted away), list
again and watch from the list's version. Credentials come from the in-cluster service account,
else ``$KUBECONFIG`` / ``~/.kube/config`` (``lightkube.KubeConfig.from_env``), or
``--kubeconfig``.

Only ``umt-migrations apply`` imports this module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.core import generic_client
from lightkube.core.exceptions import ApiError, ConfigError
from lightkube.generic_resource import create_namespaced_resource

from .api_names import GROUP, KIND, PLURAL, VERSION
from .waiter import (
    DEFAULT_APPROVE_SET_KEY,
    DEFAULT_FIELD_MANAGER,
    Manifest,
    Outcome,
    Tracker,
    UsageError,
    WaitExit,
    choose_namespace,
)

#: The HTTP library lightkube is built on (httpx, or its fork httpx2 from lightkube 1.0 on).
httpx: Any = generic_client.httpx  # type: ignore[attr-defined]

SchemaMigration = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
REQUEST_TIMEOUT = 10.0
MAX_BACKOFF = 5.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    namespace: str | None
    timeout: float
    field_manager: str
    grace: float
    kubeconfig: str | None
    context: str | None
    approve_set_key: str = DEFAULT_APPROVE_SET_KEY

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        return cls(args.namespace, args.timeout, args.field_manager, args.operator_grace,
                   args.kubeconfig, args.context,
                   getattr(args, "approve_set_key", DEFAULT_APPROVE_SET_KEY))


class ApiProblem(Exception):  # noqa: N818 - named for the problem, like StopIteration
    """The API cannot be used (credentials, RBAC, missing CRD): exit 5 with this message."""


def apply_and_wait(manifest: Manifest, options: Options, say: Say) -> Outcome:
    """Apply ``manifest`` and follow it; the outcome carries the exit code and last line."""
    started = time.monotonic()
    try:
        return asyncio.run(_apply_and_wait(manifest, options, say, started))
    except UsageError as exc:
        return Outcome(WaitExit.USAGE, str(exc))
    except ApiProblem as exc:
        return Outcome(WaitExit.API_ERROR, str(exc))


async def _apply_and_wait(manifest: Manifest, options: Options, say: Say,
                          started: float) -> Outcome:
    client, server = _client(options)
    try:
        namespace = choose_namespace(manifest, options.namespace, client.namespace)
        ref = f"{namespace}/{manifest.name}"
        applied = await _apply(client, manifest, namespace, options.field_manager, ref, server)
        generation = int(applied["metadata"].get("generation") or 0)
        say(f"{ref}: applied generation {generation} (field manager {options.field_manager})")
        tracker = Tracker(ref, generation, started, options.grace,
                          approve_set_key=options.approve_set_key)
        for line in tracker.observe("ADDED", applied):
            say(line)
        if tracker.outcome is not None:
            return tracker.outcome
        follower = _Follower(client, manifest.name, namespace, ref)
        return await follower.run(tracker, applied["metadata"]["resourceVersion"],
                                  started + options.timeout, options.timeout, say)
    finally:
        await client.close()


def _client(options: Options) -> tuple[AsyncClient, str]:
    try:
        if options.kubeconfig:
            config = KubeConfig.from_file(options.kubeconfig)
        else:
            config = KubeConfig.from_env()
        single = config.get(context_name=options.context)
        assert single is not None  # without a default, get() raises instead of returning None
        client = AsyncClient(single, timeout=httpx.Timeout(REQUEST_TIMEOUT))
        return client, str(single.cluster.server)
    except Exception as exc:  # noqa: BLE001 - only the kubeconfig is read here (YAML, shapes, files)
        raise ApiProblem(_no_credentials(exc)) from None


def _no_credentials(exc: BaseException) -> str:
    """Credentials lightkube cannot use: read from the kubeconfig, or obtained per request
    (an exec plugin that fails or is missing, a token file gone)."""
    return (f"no usable Kubernetes credentials: {_text(exc)} (in a pod, mount a service "
            "account token; elsewhere set KUBECONFIG or --kubeconfig)")


async def _apply(client: AsyncClient, manifest: Manifest, namespace: str, field_manager: str,
                 ref: str, server: str) -> dict[str, Any]:
    obj = SchemaMigration(**manifest.for_namespace(namespace))
    try:
        # lightkube's overloads leave out namespace= for a namespaced resource; apply() takes it.
        result = await client.apply(obj, namespace=namespace,  # type: ignore[call-overload]
                                    field_manager=field_manager, force=True)
    except ApiError as exc:
        raise ApiProblem(f"cannot apply {KIND} {ref}: {_api_error(exc)}") from None
    except (ConfigError, OSError) as exc:  # the exec plugin or token file of the credentials
        raise ApiProblem(_no_credentials(exc)) from None
    except httpx.HTTPStatusError as exc:  # no Status lightkube could read (a proxy's page)
        raise ApiProblem(f"cannot apply {KIND} {ref}: {_http_error(exc, server)}") from None
    except httpx.HTTPError as exc:
        raise ApiProblem(f"cannot reach the Kubernetes API at {server}: {_text(exc)}") from None
    return dict(result)


def _http_error(exc: Any, server: str) -> str:
    """An HTTP error without a Status lightkube recognised: read one if the body holds it."""
    response = exc.response
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return _describe(response.status_code, body.get("reason"), body.get("message") or "")
    return f"HTTP {response.status_code} from {server}"


def _api_error(exc: ApiError) -> str:
    """One line for an API error, with the remedy when one is known."""
    status = exc.status
    return _describe(status.code, status.reason, str(status.message or exc))


def _describe(code: int | None, reason: str | None, message: str) -> str:
    message = " ".join(message.split())
    if code in (401, 403):
        return (f"{message} ({code} {reason}): the waiter needs get, list, watch, create "
                f"and patch on {PLURAL}.{GROUP} in this namespace")
    if code == 404 and "namespaces" not in message:
        return (f"{message} (404): is the {KIND} CRD installed? "
                f"(kubectl get crd {PLURAL}.{GROUP})")
    return f"{message} ({code} {reason})"


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'}"


@dataclass
class _Event:
    type: str
    obj: dict[str, Any] | None


@dataclass
class _Note:
    line: str
    api_down: bool | None = None  #: True: the API is unreachable; False: reachable again


class _Fatal(Exception):  # noqa: N818 - named for the problem, like StopIteration
    pass


class _Follower:
    """Follows one object with list+watch, feeding a queue the main loop reads with timeouts."""

    def __init__(self, client: AsyncClient, name: str, namespace: str, ref: str) -> None:
        self.client, self.name, self.namespace, self.ref = client, name, namespace, ref
        self.queue: asyncio.Queue[_Event | _Note | _Fatal] = asyncio.Queue()

    async def run(self, tracker: Tracker, version: str, deadline: float, timeout: float,
                  say: Say) -> Outcome:
        task = asyncio.create_task(self._follow(version))
        api_down: str | None = None
        try:
            while tracker.outcome is None:
                now = time.monotonic()
                for line in tracker.tick(now):
                    say(line)
                if now >= deadline:
                    if api_down is not None:
                        return Outcome(WaitExit.API_ERROR, f"timed out after {timeout:g} s "
                                       f"with the Kubernetes API unreachable: {api_down}")
                    return tracker.timed_out(timeout)
                wake = min(deadline, tracker.next_check() or deadline)
                try:
                    item = await asyncio.wait_for(self.queue.get(), max(wake - now, 0))
                except TimeoutError:
                    continue
                if isinstance(item, _Fatal):
                    return Outcome(WaitExit.API_ERROR, str(item))
                if isinstance(item, _Note):
                    say(item.line)
                    if item.api_down is not None:
                        api_down = item.line if item.api_down else None
                    continue
                for line in tracker.observe(item.type, item.obj):
                    say(line)
            return tracker.outcome
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _follow(self, version: str | None) -> None:
        try:
            await self._watch_from(version)
        except (ConfigError, OSError) as exc:  # credentials renewed on a 401 (exec, token file)
            await self.queue.put(_Fatal(_no_credentials(exc)))

    async def _watch_from(self, version: str | None) -> None:
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._relist()
                async for kind, obj in self.client.watch(
                        SchemaMigration, namespace=self.namespace,
                        fields={"metadata.name": self.name}, resource_version=version):
                    version = (obj.metadata and obj.metadata.resourceVersion) or version
                    failures = 0
                    await self.queue.put(_Event(kind, dict(obj)))
            except ApiError as exc:
                code = exc.status.code
                if code == 410:  # compacted away: list again, watch from the list's version
                    await self.queue.put(_Note(f"{self.ref}: watch expired (410 Gone); "
                                               "listing again"))
                    version = None
                    continue
                if code in (401, 403, 404):
                    await self.queue.put(_Fatal(f"cannot watch {KIND} {self.ref}: "
                                                f"{_api_error(exc)}"))
                    return
                failures += 1
                await self._pause(failures, f"watch failed ({_api_error(exc)})", version)
            except httpx.HTTPError as exc:
                failures += 1
                await self._pause(failures, f"watch interrupted ({_text(exc)})", version)
                await self._until_reachable()

    async def _relist(self) -> str:
        listing = self.client.list(SchemaMigration, namespace=self.namespace,
                                   fields={"metadata.name": self.name})
        items = [dict(obj) async for obj in listing]
        await self.queue.put(_Event("ADDED", items[0]) if items else _Event("DELETED", None))
        return listing.resourceVersion

    async def _pause(self, failures: int, what: str, version: str | None) -> None:
        resume = f"resuming from resourceVersion {version}" if version else "listing again"
        await self.queue.put(_Note(f"{self.ref}: {what}; {resume}"))
        await asyncio.sleep(min(MAX_BACKOFF, 0.25 * 2 ** (failures - 1)))

    async def _until_reachable(self) -> None:
        """Probe with a GET until the API answers (any answer), noting the outage once."""
        down = False
        attempt = 0
        while True:
            try:
                await self.client.get(SchemaMigration, self.name, namespace=self.namespace)
            except ApiError:
                pass  # it answered: reachable (a 404 shows up in the watch as DELETED)
            except httpx.HTTPError as exc:
                attempt += 1
                if not down:
                    down = True
                    await self.queue.put(_Note(f"{self.ref}: cannot reach the Kubernetes API "
                                               f"({_text(exc)}); retrying", api_down=True))
                await asyncio.sleep(min(MAX_BACKOFF, 0.25 * 2 ** attempt))
                continue
            if down:
                await self.queue.put(_Note(f"{self.ref}: the Kubernetes API is reachable again",
                                           api_down=False))
            return



# --- umt-migrations approve (the decisions are umt_migrations.approve's) ----------------------

#: ``choose(obj, plan.json or None, why the ConfigMap could not be read)`` returns the digest to
#: approve, or None and a line saying why not.
Choose = Callable[[dict[str, Any], Any, "str | None"], "tuple[str | None, str]"]


def approve(name: str, namespace: str | None, kubeconfig: str | None, context: str | None,
            choose: Choose) -> tuple[str, str]:
    """Read ``name`` (and its plan ConfigMap), let ``choose`` pick the digest, and patch it into
    ``spec.review.approvedPlanDigest`` with the ``resourceVersion`` read. Returns ``approved``,
    ``refused``, ``conflict`` (the object changed meanwhile) or ``api-error``, and a line."""
    options = Options(namespace, REQUEST_TIMEOUT, DEFAULT_FIELD_MANAGER, 0.0, kubeconfig, context)
    try:
        return asyncio.run(_approve(name, options, choose))
    except ApiProblem as exc:
        return "api-error", str(exc)


async def _approve(name: str, options: Options, choose: Choose) -> tuple[str, str]:
    from lightkube.resources.core_v1 import ConfigMap
    from lightkube.types import PatchType

    client, server = _client(options)
    namespace = options.namespace or client.namespace
    ref = f"{namespace}/{name}"
    try:
        obj = dict(await client.get(SchemaMigration, name, namespace=namespace))
        config_map = ((obj.get("status") or {}).get("plan") or {}).get("sqlConfigMap")
        full, problem = None, None
        if config_map:
            try:
                found = await client.get(ConfigMap, config_map, namespace=namespace)
                full = json.loads((found.data or {}).get("plan.json") or "null")
            except ApiError as exc:
                problem = f"ConfigMap {config_map}: {_api_error(exc)}"
        digest, line = choose(obj, full, problem)
        if digest is None:
            return "refused", f"{ref}: {line}"
        patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                 "spec": {"review": {"approvedPlanDigest": digest}}}
        try:
            await client.patch(SchemaMigration, name, patch, namespace=namespace,
                               patch_type=PatchType.MERGE)
        except ApiError as exc:
            if exc.status.code == 409:
                return "conflict", f"{ref} changed while the plan was shown: {line}"
            raise
        return "approved", f"{ref}: {line}"
    except ApiError as exc:
        return "api-error", f"cannot approve {KIND} {ref}: {_api_error(exc)}"
    except (ConfigError, OSError) as exc:
        return "api-error", _no_credentials(exc)
    except httpx.HTTPError as exc:
        return "api-error", f"cannot reach the Kubernetes API at {server}: {_text(exc)}"
    finally:
        await client.close()
