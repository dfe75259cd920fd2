"""The HTTP face of the emulator: kmock's Kubernetes emulator with a real apiserver's semantics.

kmock (`kmock.KubernetesEmulator`) brings the HTTP plumbing, URL parsing, API discovery
(`/api`, `/apis`, `/apis/<group>/<version>` from `kmock.resources`) and its object container
(`kmock.objects`). The reactions for list/watch/get/create/patch/put/delete are replaced here by
ones backed by `ObjectStore`, which adds what kopf, `kubectl` and the `kubernetes` client rely
on (see `tests/k8s/store.py`). User reactions (`server['...'] << 500`) still win over these
fallbacks, so a test can inject API failures; a failing reaction changes no state.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from tests.k8s import crd_validation, server_side_apply
from tests.k8s.apimachinery import ApiError, not_found, parse_label_selector
from tests.k8s.audit import record_request
from tests.k8s.field_selectors import compile_field_selector
from tests.k8s.store import ObjectStore, ResourceType, WatchEvent
from tests.k8s.tables import render_table, wants_table
from tests.k8s.validation import FieldError, forbidden, invalid_error, unsupported

Payload = Any


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """A kmock handler serving the emulated cluster; run it with an aiohttp server."""

    #: How many past requests kmock keeps for assertions. kmock rescans the log for every
    #: reaction on every request: 20 cost ~1 ms a request, 200 ~14 ms, 1000 ~50 ms.
    request_log_size: int = 20
    store: ObjectStore = attrs.field(init=False)
    #: `kubectl logs`: text per (namespace, pod name), filled by the fake kubelet.
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)
    printer_columns: dict[kmock.resource, tuple[dict[str, Any], ...]] = \
        attrs.field(factory=dict, init=False)
    #: The query of every watch request served (newest last, bounded), so tests can see how
    #: clients came back after a dropped watch (`ObjectStore.drop_watches`).
    watch_requests: list[WatchRequest] = attrs.field(factory=list, init=False)
    #: Pages of chunked lists not served yet, by continue token (see `_continuation`).
    continuations: dict[str, tuple[list[dict[str, Any]], int]] = \
        attrs.field(factory=dict, init=False)
    _builtin_count: int = attrs.field(default=0, init=False)
    _by_action: dict[Any, Any] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store = ObjectStore(self.objects)
        self.fallback[_is_put] << self._serve_replace
        # The built-in reactions by action, for the fast path below.
        self._builtin_count = len(self._payloads)
        self._by_action = {
            criteria.action: payload
            for payload in self._payloads
            if (criteria := getattr(payload._source, "criteria", None)) is not None
            and type(criteria).__name__ == "K8sCriteria"
        }

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._trim_logs()
        # The field manager of this request's writes (tests/k8s/server_side_apply.py).
        server_side_apply.current_manager.set(server_side_apply.manager_from(
            request.params.get("fieldManager"), _header(request, "User-Agent")))
        record_request(request)  # who asked for what, in RBAC's words (tests/k8s/audit.py)
        # Unknown fields of a custom resource: pruned, or refused when Strict
        # (tests/k8s/crd_validation.py; Warn is the apiserver's default).
        crd_validation.field_validation.set(request.params.get("fieldValidation") or "Warn")
        # Fast path: with no user reaction added, a resource request goes straight to the
        # built-in reaction of its action. kmock would test every reaction's criteria in turn
        # (~4 ms a request here), which would dominate the operator's measured latency.
        if len(self._payloads) == self._builtin_count and request.resource is not None \
                and not _is_discovery(request) and not _is_put(request):
            payload = self._by_action.get(request.action)
            if payload is not None and not payload._disabled.is_set():
                return await payload(request)
        # Skip kmock's own state changes (KubernetesEmulator._handle): the reactions below make
        # them, and only when no user reaction intercepted the request first.
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    def _trim_logs(self) -> None:
        keep = self.request_log_size
        del self._requests[:-keep]
        for payload in self._payloads:
            del payload._requests[:-keep]
        for errors in self._errors:
            del errors[:-keep]

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, ApiError):
            # `application/json` without a charset, as the apiserver writes it (clients such
            # as lightkube compare the header exactly before reading a Status).
            return aiohttp.web.Response(body=json.dumps(exc.as_status()).encode(),
                                        status=exc.code,
                                        headers={"Content-Type": "application/json"})
        return await super()._render_error(exc)

    async def _serve_server_version(self, request: kmock.Request) -> Payload:
        return {
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-umt-emulator",
            "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2025-08-27T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        }

    async def _serve_version(self, request: kmock.Request) -> Payload:
        # kmock names the core group version "/v1" (kubectl then finds no pods), and gives
        # subresources (`pods/status`) the short names of their resource, which makes kubectl
        # warn that `smig` is ambiguous; a real apiserver says "v1" and lists them bare.
        discovery = await super()._serve_version(request)
        discovery["groupVersion"] = discovery["groupVersion"].lstrip("/")
        for resource in discovery["resources"]:
            if "/" in resource["name"]:
                resource.update(shortNames=[], categories=[], singularName="",
                                verbs=["get", "patch", "update"])
        return discovery

    # --- Reactions ---------------------------------------------------------------------------

    async def _serve_list(self, request: kmock.Request) -> Payload:
        rtype = self.store.type_of(request.resource)
        if "sendInitialEvents" in request.params:  # ValidateListOptions, as for watches
            raise invalid_error("ListOptions", "meta.k8s.io", "", [forbidden(
                "sendInitialEvents", "sendInitialEvents is forbidden for list")])
        token = request.params.get("continue")
        if token:
            items, rv = self._continued(token)
        else:
            items, rv = self.store.list(rtype, request.namespace)
            matches = _selection(rtype, request)
            items = sorted((item for item in items if matches(item)), key=_storage_order)
        if self._table_columns(rtype, request) is not None:
            return render_table(items, self.printer_columns[rtype.resource], rv)
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = int(request.params.get("limit") or 0)
        if 0 < limit < len(items):
            items, rest = items[:limit], items[limit:]
            metadata["continue"] = self._continuation(rest, rv)
            metadata["remainingItemCount"] = len(rest)
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": metadata,
            "items": items,
        }

    def _continuation(self, rest: list[dict[str, Any]], rv: int) -> str:
        """Paging ("Retrieving large results sets in chunks", API concepts): the next pages come
        from the same snapshot as the first (the apiserver reads etcd at the list's
        resourceVersion), so they are kept here under an opaque token."""
        token = base64.urlsafe_b64encode(os.urandom(12)).decode()
        self.continuations[token] = (rest, rv)
        while len(self.continuations) > 100:
            self.continuations.pop(next(iter(self.continuations)))
        return token

    def _continued(self, token: str) -> tuple[list[dict[str, Any]], int]:
        if token not in self.continuations:  # the apiserver's answer to an expired token
            raise ApiError(410, "Expired", "The provided continue parameter is too old to "
                           "display a consistent list result. You can start a new list "
                           "without the continue parameter.")
        return self.continuations.pop(token)

    async def _serve_fetch(self, request: kmock.Request) -> Payload:
        rtype = self.store.type_of(request.resource)
        obj = self.store.get(rtype, request.namespace, request.name)
        if obj is None:
            raise not_found(rtype.qualified_plural, request.name)
        if request.subresource == "log" and rtype.kind == "Pod":
            text = self.pod_logs.get((request.namespace, request.name), "")
            return text.encode()
        if request.subresource not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if self._table_columns(rtype, request) is not None:
            return render_table([obj], self.printer_columns[rtype.resource],
                                int(obj["metadata"]["resourceVersion"]))
        return obj

    async def _serve_create(self, request: kmock.Request) -> Payload:
        rtype = self.store.type_of(request.resource)
        body = _json_body(request)
        return kmock.Response(status=201, payload=self.store.create(rtype, request.namespace, body))

    async def _serve_update(self, request: kmock.Request) -> Payload:
        rtype = self.store.type_of(request.resource)
        content_type = _header(request, "Content-Type") or "application/merge-patch+json"
        if content_type.startswith("application/apply-patch"):
            return self._server_side_apply(rtype, request)
        if "force" in request.params:  # meta/v1/validation: ValidatePatchOptions
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: force: '
                           "Forbidden: may not be specified for non-apply patch")
        return self.store.patch(rtype, request.namespace, request.name, _json_body(request),
                                content_type=content_type, subresource=request.subresource)

    async def _serve_replace(self, request: kmock.Request) -> Payload:
        rtype = self.store.type_of(request.resource)
        return self.store.replace(rtype, request.namespace, request.name, _json_body(request),
                                  subresource=request.subresource)

    async def _serve_delete(self, request: kmock.Request) -> Payload:
        rtype = self.store.type_of(request.resource)
        options = request.data if isinstance(request.data, dict) else {}
        propagation = options.get("propagationPolicy") or request.params.get("propagationPolicy")
        if propagation is None and options.get("orphanDependents") is not None:
            propagation = "Orphan" if options["orphanDependents"] else "Background"
        return self.store.delete(rtype, request.namespace, request.name,
                                 propagation=propagation,
                                 preconditions=options.get("preconditions"))

    async def _serve_watch(self, request: kmock.Request) -> Payload:
        # A JSON content type, or client-go refuses the stream ("no stream serializers
        # registered for application/octet-stream", kmock's default for streams).
        rtype = self.store.type_of(request.resource)
        matches = _selection(rtype, request)  # a bad selector is refused before streaming
        _check_watch_options(request.params)
        return kmock.Response(headers={"Content-Type": "application/json"},
                              payload=self._watch_stream(rtype, request, matches))

    async def _watch_stream(self, rtype: ResourceType, request: kmock.Request,
                            matches: Callable[[dict[str, Any]], bool]) -> AsyncIterator[Payload]:
        since = request.params.get("resourceVersion") or "0"
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        # Watch-list (API concepts, "Streaming lists"): the state as ADDED events, whatever
        # resourceVersion the client gave (NotOlderThan it: this server is always current),
        # then a BOOKMARK marking their end.
        watch_list = request.params.get("sendInitialEvents") == "true"
        if watch_list:
            since = "0"
        columns = self._table_columns(rtype, request)
        self.watch_requests.append(WatchRequest(rtype, dict(request.params),
                                                _header(request, "User-Agent") or ""))
        del self.watch_requests[:-200]
        yield b""  # send the headers now: the client knows the watch is established
        try:
            initial, subscription = self.store.subscribe(
                rtype, None if since == "0" else int(since), dict(request.params))
        except ApiError as exc:
            yield {"type": "ERROR", "object": exc.as_status()}
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        snapshot = self.store.resource_version
        try:
            for event in initial:
                if (shown := _as_seen(event, matches, columns)) is not None:
                    yield shown
            if watch_list:
                yield {"type": "BOOKMARK", "object": {
                    "kind": rtype.kind, "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(snapshot),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}}
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(subscription.queue.get(), remaining)
                except TimeoutError:
                    return
                if event is None:  # the server is stopping, or a test drops the watch
                    if subscription.abrupt and request._raw_request is not None \
                            and request._raw_request.transport is not None:
                        request._raw_request.transport.abort()  # no final chunk: a broken link
                    return
                if (shown := _as_seen(event, matches, columns)) is not None:
                    yield shown
        finally:
            self.store.unsubscribe(subscription)

    def _table_columns(self, rtype: ResourceType,
                       request: kmock.Request) -> tuple[dict[str, Any], ...] | None:
        """The printer columns to render a Table with, when the client asks for one and the
        resource has server-side printing (custom resources do); else None."""
        if wants_table(_header(request, "Accept") or ""):
            return self.printer_columns.get(rtype.resource)
        return None

    def _server_side_apply(self, rtype: ResourceType, request: kmock.Request) -> Payload:
        """Server-side apply with field ownership, conflicts and `force`
        (https://kubernetes.io/docs/reference/using-api/server-side-apply/; the rules and
        their sources are in tests/k8s/server_side_apply.py). Creates the object when absent."""
        manager = request.params.get("fieldManager")
        if not manager:  # meta/v1/validation: ValidatePatchOptions
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: '
                           "fieldManager: Required value: is required for apply patch")
        force = request.params.get("force", "false").lower()
        if force not in ("true", "false"):
            raise ApiError(400, "BadRequest", f"invalid value for force: {force!r}")
        try:
            body = yaml.safe_load(request.body or b"{}") or {}
        except yaml.YAMLError as exc:
            raise ApiError(400, "BadRequest", f"error decoding YAML: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of an apply patch must be an object")
        if body.get("apiVersion") != rtype.api_version or body.get("kind") != rtype.kind:
            raise ApiError(400, "BadRequest", f"the API version in the data "
                           f"({body.get('apiVersion')}) and kind ({body.get('kind')}) do not "
                           f"match the expected {rtype.api_version} {rtype.kind}")
        meta = body.get("metadata") or {}
        if meta.get("name") != request.name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) "
                           f"does not match the name on the URL ({request.name})")
        live = self.store.get(rtype, request.namespace, request.name)
        result = server_side_apply.apply(
            live, body, manager, force=force == "true", subresource=request.subresource,
            status_subresource=rtype.status_subresource, api_version=rtype.api_version)
        if live is not None and meta.get("resourceVersion"):
            # A precondition, as in any patch: the patched object carries it to the update,
            # which refuses a stale one (409; kubernetes/kubernetes#63104).
            result["metadata"]["resourceVersion"] = meta["resourceVersion"]
        token = server_side_apply.applying.set(True)
        try:
            if live is None:
                if request.subresource:
                    raise not_found(rtype.qualified_plural, request.name)
                result["metadata"]["name"] = request.name
                return kmock.Response(status=201,
                                      payload=self.store.create(rtype, request.namespace, result))
            return self.store.replace(rtype, request.namespace, request.name, result,
                                      subresource=request.subresource)
        finally:
            server_side_apply.applying.reset(token)


def _check_watch_options(params: Any) -> None:
    """The watch-list rules of `ValidateListOptions`
    (k8s.io/apimachinery/pkg/apis/meta/internalversion/validation/validation.go):
    `sendInitialEvents` needs `resourceVersionMatch=NotOlderThan` and `allowWatchBookmarks`;
    `resourceVersionMatch` on a watch needs `sendInitialEvents`. 422 on `ListOptions`."""
    errors: list[FieldError] = []
    send, match = params.get("sendInitialEvents"), params.get("resourceVersionMatch")
    if send is not None:
        if not match:
            errors.append(forbidden("resourceVersionMatch", "sendInitialEvents requires "
                                    "setting resourceVersionMatch to NotOlderThan"))
        elif match != "NotOlderThan":
            errors.append(unsupported("resourceVersionMatch", match, ["NotOlderThan"]))
        if params.get("allowWatchBookmarks") != "true":
            errors.append(forbidden("allowWatchBookmarks", "sendInitialEvents requires "
                                    "setting allowWatchBookmarks to true"))
    elif match:
        errors.append(forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                "for watch unless sendInitialEvents is provided"))
    if errors:
        raise invalid_error("ListOptions", "meta.k8s.io", "", errors)


@attrs.frozen
class WatchRequest:
    rtype: ResourceType
    params: dict[str, str]
    user_agent: str


def _storage_order(obj: dict[str, Any]) -> tuple[str, str]:
    """Lists come in etcd key order: by namespace, then name."""
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _is_discovery(request: kmock.Request) -> bool:
    """``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>``, ``/apis/<group>/<version>``."""
    parts = request.url.path.strip("/").split("/")
    return parts[0] in ("api", "apis") and len(parts) <= (2 if parts[0] == "api" else 3)


def _is_put(request: kmock.Request) -> bool:
    return request.method == "PUT" and request.resource is not None and bool(request.name)


def _header(request: kmock.Request, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _json_body(request: kmock.Request) -> Any:
    if request.data is None and request.body:
        content_type = _header(request, "Content-Type")
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an "
                       f"unknown format ({content_type}); this emulator speaks JSON only")
    return request.data if request.data is not None else {}


def _selection(rtype: ResourceType,
               request: kmock.Request) -> Callable[[dict[str, Any]], bool]:
    """The namespace, name, label and field selection of a list or watch request; a field
    the kind does not let clients select on is 400 (tests/k8s/field_selectors.py)."""
    labels = parse_label_selector(request.params.get("labelSelector"))
    fields = compile_field_selector(rtype.api_version, rtype.kind,
                                    request.params.get("fieldSelector"))
    namespace, name = request.namespace, request.name

    def matches(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return bool(
            (namespace is None or meta.get("namespace") == namespace)
            and (name is None or meta.get("name") == name)
            and labels(obj) and fields(obj)
        )

    return matches


def _as_seen(event: WatchEvent, matches: Callable[[dict[str, Any]], bool],
             columns: tuple[dict[str, Any], ...] | None = None) -> Payload | None:
    """The event as a selective watch sees it: objects entering or leaving the selection
    show up as ADDED or DELETED, like on a real apiserver."""
    now = matches(event.obj)
    before = event.old is not None and matches(event.old)
    if event.type == "MODIFIED" and now != before:
        kind = "ADDED" if now else "DELETED"
    elif event.type == "DELETED":
        kind = "DELETED" if now or before else None
    else:
        kind = event.type if now else None
    if kind is None:
        return None
    if columns is not None:
        return {"type": kind, "object": render_table([event.obj], columns, event.rv)}
    return {"type": kind, "object": event.obj}
