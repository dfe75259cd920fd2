"""The emulator's object store: kmock's `objects` plus the semantics of a real apiserver.

kmock keeps objects as plain dicts keyed by `(kmock.resource, namespace, name)`, with their
history. This store adds what an operator relies on and kmock leaves out: `uid`,
`resourceVersion` (one counter for the whole "cluster", bumped on every write), `generation`
(on the kinds that have one, bumped when anything outside `metadata`/`status` changes),
`creationTimestamp`, the namespace
from the URL, `generateName`, status-subresource isolation, no-op writes that change nothing,
resourceVersion preconditions (409), finalizers with `deletionTimestamp`, cascading deletion by
owner references, and a bounded event history so watches resume from a `resourceVersion`
without replaying what the client has already listed.

Writes must run in the emulator's event loop (watch queues are asyncio queues); reads are
thread-safe. Every write notifies `changed`, a `threading.Condition`, for `wait_for()`.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import copy
import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import kmock

from tests.k8s import server_side_apply
from tests.k8s.apimachinery import (
    ApiError,
    apply_patch,
    merge_patch,
    not_found,
    now_rfc3339,
    random_suffix,
)

# Metadata fields that only the server writes; client writes to them are ignored.
SYSTEM_METADATA = (
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds",
)
PROPAGATION_POLICIES = ("Orphan", "Background", "Foreground")

Body = dict[str, Any]
#: A mutating admission step: `hook(new, old)` edits `new` in place; `old` is None on create.
Hook = Callable[[Body, "Body | None"], None]


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """What the store needs to know about a registered resource."""

    resource: kmock.resource
    kind: str
    namespaced: bool
    status_subresource: bool
    orphan_by_default: bool = False  # batch/v1 Jobs: API deletes without a policy orphan pods
    #: A PUT without `metadata.resourceVersion` is accepted (the strategy's
    #: `AllowUnconditionalUpdate`); Leases refuse it (pkg/registry/coordination/lease/strategy.go).
    unconditional_update: bool = True
    #: Objects get `metadata.generation` only where the kind's strategy sets it in
    #: `PrepareForCreate` (Pods, Jobs, custom resources, CRDs; not Secrets or ConfigMaps...).
    generation: bool = True
    #: Built-in kinds take strategic merge patches; custom resources do not.
    strategic_merge: bool = False

    @property
    def api_version(self) -> str:
        group, version = self.resource.group, self.resource.version
        return f"{group}/{version}" if group else str(version)

    @property
    def qualified_plural(self) -> str:
        """`jobs.batch`, `pods`: the way apiserver error messages name a resource."""
        group = self.resource.group
        return f"{self.resource.plural}.{group}" if group else str(self.resource.plural)


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: Body
    old: Body | None = None  # the previous state, so selector watches see objects leave


@dataclasses.dataclass(eq=False)
class Subscription:
    """An open watch: its events arrive on `queue`; None ends it."""

    rtype: ResourceType
    queue: asyncio.Queue[WatchEvent | None]
    #: The query of the client's watch request; None for the stand-ins' own watches.
    params: dict[str, str] | None = None
    #: Ended as a broken connection ends it, without a final chunk (see `drop_watches`).
    abrupt: bool = False


class ObjectStore:
    def __init__(self, objects: kmock.ObjectsArray, *, history_size: int = 10_000) -> None:
        self.objects = objects
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.resource_version = 1
        #: Bumped (and `changed` notified) on every write and every watch opened or closed.
        self.revision = 0
        self.types: dict[kmock.resource, ResourceType] = {}
        self.defaults: dict[kmock.resource, Body] = {}
        self.admission: dict[kmock.resource, list[Hook]] = collections.defaultdict(list)
        self.object_history_size = 50
        self._history: dict[kmock.resource, collections.deque[WatchEvent]] = \
            collections.defaultdict(lambda: collections.deque(maxlen=history_size))
        self._expired_rv: dict[kmock.resource, int] = collections.defaultdict(int)
        self._subscriptions: dict[kmock.resource, set[Subscription]] = \
            collections.defaultdict(set)
        self._pending_policy: dict[tuple[kmock.resource, str | None, str], str] = {}

    def register(self, rtype: ResourceType, *, defaults: Body | None = None,
                 admission: Sequence[Hook] = ()) -> None:
        """Declare (or re-declare) a resource; `defaults` are merged under every new object,
        `admission` hooks edit or reject every write."""
        with self.lock:
            self.types[rtype.resource] = rtype
            self.defaults[rtype.resource] = copy.deepcopy(defaults or {})
            self.admission[rtype.resource] = list(admission)

    def type_of(self, resource: kmock.resource) -> ResourceType:
        try:
            return self.types[resource]
        except KeyError:
            raise ApiError(404, "NotFound",
                           "the server could not find the requested resource") from None

    # --- Reads (any thread) ------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Body | None:
        with self.lock:
            key = (rtype.resource, self._ns(rtype, namespace), name)
            if key not in self.objects or self.objects[key].deleted:
                return None
            return copy.deepcopy(self.objects[key].raw)

    def list(self, rtype: ResourceType, namespace: str | None = None) -> tuple[list[Body], int]:
        """All live objects of a resource (in one namespace, or all), and the current RV."""
        with self.lock:
            items = [copy.deepcopy(obj) for obj in self._live(rtype, namespace)]
            return items, self.resource_version

    def _live(self, rtype: ResourceType, namespace: str | None) -> Iterator[Body]:
        for (resource, ns, _), obj in self.objects.items():
            if (resource == rtype.resource and not obj.deleted
                    and (namespace is None or ns == namespace)):
                yield obj.raw

    # --- Writes (the emulator's event loop only) ---------------------------------------------

    def create(self, rtype: ResourceType, namespace: str | None, body: Body) -> Body:
        with self.lock:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            ns = self._ns(rtype, namespace or meta.get("namespace"))
            if rtype.namespaced and ns is None:
                raise ApiError(400, "BadRequest", "the namespace of the object is not set")
            if namespace and meta.get("namespace") not in (None, namespace):
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                               "not match the namespace sent on the request")
            name = meta.get("name") or self._generate_name(rtype, ns, meta.get("generateName"))
            if self.get(rtype, ns, name) is not None:
                raise ApiError(409, "AlreadyExists",
                               f'{rtype.qualified_plural} "{name}" already exists', name=name)
            if rtype.status_subresource:
                obj.pop("status", None)  # as the apiserver does: status comes via /status
            obj = merge_patch(copy.deepcopy(self.defaults.get(rtype.resource, {})), obj)
            meta = obj["metadata"]
            for field in SYSTEM_METADATA:
                meta.pop(field, None)
            meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
            if rtype.generation:
                meta["generation"] = 1
            if ns is not None:
                meta["namespace"] = ns
            obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
            for hook in self.admission.get(rtype.resource, []):
                hook(obj, None)
            if not server_side_apply.applying.get():  # an apply records its own fields
                server_side_apply.record_update(obj, None, server_side_apply.current_manager.get(),
                                                None, rtype.status_subresource, rtype.api_version)
            key = (rtype.resource, ns, name)
            self._write(rtype, key, "ADDED", obj, old=None)
            return copy.deepcopy(obj)

    def patch(self, rtype: ResourceType, namespace: str | None, name: str, patch: Any, *,
              content_type: str = "application/merge-patch+json",
              subresource: str | None = None) -> Body:
        with self.lock:
            current = self._require(rtype, namespace, name)
            patched = apply_patch(current, patch, content_type, strategic=rtype.strategic_merge)
            self._check_rv(rtype, current, (patched.get("metadata") or {}).get("resourceVersion"))
            return self._update(rtype, current, patched, subresource)

    def replace(self, rtype: ResourceType, namespace: str | None, name: str, body: Body, *,
                subresource: str | None = None) -> Body:
        with self.lock:
            current = self._require(rtype, namespace, name)
            requested = (body.get("metadata") or {}).get("resourceVersion")
            if not requested and not rtype.unconditional_update:
                # k8s.io/apiserver/pkg/registry/generic/registry/store.go, Store.Update: with no
                # resourceVersion and no unconditional updates, "must be specified for an update".
                raise ApiError(422, "Invalid", f'{rtype.qualified_plural} "{name}" is invalid: '
                               "metadata.resourceVersion: Invalid value: 0: must be specified "
                               "for an update", name=name)
            self._check_rv(rtype, current, requested)
            return self._update(rtype, current, copy.deepcopy(body), subresource)

    def delete(self, rtype: ResourceType, namespace: str | None, name: str, *,
               propagation: str | None = None, preconditions: Body | None = None) -> Body:
        with self.lock:
            current = self._require(rtype, namespace, name)
            meta = current["metadata"]
            for field in ("uid", "resourceVersion"):
                expected = (preconditions or {}).get(field)
                if expected is not None and expected != meta.get(field):
                    raise ApiError(409, "Conflict", f"Precondition failed: {field} in "
                                   f"precondition: {expected}, {field} in object meta: "
                                   f"{meta.get(field)}")
            if propagation is not None and propagation not in PROPAGATION_POLICIES:
                raise ApiError(400, "BadRequest", f"invalid propagationPolicy {propagation!r}")
            policy = propagation or ("Orphan" if rtype.orphan_by_default else "Background")
            key = (rtype.resource, self._ns(rtype, namespace), name)
            if not meta.get("finalizers"):
                return self._remove(rtype, key, policy)
            if meta.get("deletionTimestamp"):
                return current
            self._pending_policy[key] = policy
            marked = copy.deepcopy(current)
            marked["metadata"].update(deletionTimestamp=now_rfc3339(),
                                      deletionGracePeriodSeconds=0)
            if "generation" in meta:  # registry/store.go updateForGracefulDeletionAndFinalizers
                marked["metadata"]["generation"] = meta["generation"] + 1
            self._write(rtype, key, "MODIFIED", marked, old=current)
            return copy.deepcopy(marked)

    # --- Watching (the emulator's event loop only) -------------------------------------------

    def subscribe(self, rtype: ResourceType, since: int | None,
                  params: dict[str, str] | None = None,
                  ) -> tuple[builtins.list[WatchEvent], Subscription]:
        """Atomically: the events to send first, and a queue of everything that follows.

        Without `since`, the first events are synthetic ADDED events for every live object, as
        the apiserver does; with it, they are the recorded events newer than `since`. `params`
        is the query of a client's watch request (None for the stand-ins' own watches).
        """
        with self.lock:
            if since is None:
                initial = [WatchEvent(int(obj["metadata"]["resourceVersion"]), "ADDED",
                                      copy.deepcopy(obj)) for obj in self._live(rtype, None)]
            elif since < self._expired_rv[rtype.resource]:
                raise ApiError(410, "Expired", f"too old resource version: {since} "
                               f"({self._expired_rv[rtype.resource]})")
            else:
                initial = [event for event in self._history[rtype.resource] if event.rv > since]
            subscription = Subscription(rtype, asyncio.Queue(), params)
            self._subscriptions[rtype.resource].add(subscription)
            self.notify()
            return initial, subscription

    async def watch(self, rtype: ResourceType, on_event: Callable[[str, Body], None]) -> None:
        """An informer's list and watch, for the stand-ins' own controllers: `on_event(type,
        obj)` for every live object (ADDED), then for every change, until the server stops."""
        initial, subscription = self.subscribe(rtype, None)
        try:
            for event in initial:
                on_event(event.type, event.obj)
            while (event := await subscription.queue.get()) is not None:
                on_event(event.type, event.obj)
        finally:
            self.unsubscribe(subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self.lock:
            self._subscriptions[subscription.rtype.resource].discard(subscription)
            self.notify()

    def compact(self, rtype: ResourceType) -> None:
        """Forget the event history of `rtype`, as etcd compaction does (the apiserver asks
        for one every 5 minutes, `--etcd-compaction-interval`): a watch from any earlier
        resourceVersion then gets 410 Gone ("too old resource version") and must list again
        (API concepts, "410 Gone responses": https://kubernetes.io/docs/reference/using-api/api-concepts/)."""
        with self.lock:
            self._history[rtype.resource].clear()
            self._expired_rv[rtype.resource] = self.resource_version

    def watchers(self, rtype: ResourceType) -> int:
        """How many clients watch this resource right now."""
        with self.lock:
            return sum(sub.params is not None for sub in self._subscriptions[rtype.resource])

    def drop_watches(self, rtype: ResourceType, *, abrupt: bool = False,
                     where: Callable[[dict[str, str]], bool] = lambda params: True) -> int:
        """End the clients' watches of `rtype` whose query matches `where`; return how many.

        Real clusters end watches all the time: the apiserver closes each one cleanly after
        `timeoutSeconds` or its own `--min-request-timeout` (1800 s by default, randomised) and
        when it restarts (kube-apiserver reference, "--min-request-timeout"); load balancers
        and broken links cut them without a final chunk (`abrupt`). Clients must watch again
        from the last resourceVersion they saw (API concepts, "Efficient detection of
        changes": https://kubernetes.io/docs/reference/using-api/api-concepts/).
        """
        with self.lock:
            dropped = [sub for sub in self._subscriptions[rtype.resource]
                       if sub.params is not None and where(sub.params)]
            for subscription in dropped:
                subscription.abrupt = abrupt
                subscription.queue.put_nowait(None)
            return len(dropped)

    def close_watches(self) -> None:
        """End every open watch (the server is about to stop)."""
        with self.lock:
            for subscriptions in self._subscriptions.values():
                for subscription in subscriptions:
                    subscription.queue.put_nowait(None)

    # --- Internals ---------------------------------------------------------------------------

    @staticmethod
    def _ns(rtype: ResourceType, namespace: str | None) -> str | None:
        return namespace if rtype.namespaced else None

    def _require(self, rtype: ResourceType, namespace: str | None, name: str) -> Body:
        current = self.get(rtype, namespace, name)
        if current is None:
            raise not_found(rtype.qualified_plural, name)
        return current

    def _generate_name(self, rtype: ResourceType, ns: str | None, prefix: str | None) -> str:
        if not prefix:
            raise ApiError(422, "Invalid", f"{rtype.kind} is invalid: metadata.name: Required "
                           "value: name or generateName is required")
        for _ in range(100):
            name = f"{prefix}{random_suffix()}"
            if self.get(rtype, ns, name) is None:
                return name
        raise ApiError(409, "AlreadyExists", f"no free name for generateName {prefix!r}")

    @staticmethod
    def _check_rv(rtype: ResourceType, current: Body, requested: str | None) -> None:
        """Optimistic concurrency: a write carrying a resourceVersion other than the stored one
        is refused with 409 Conflict (k8s.io/apiserver/pkg/registry/generic/registry/store.go,
        Store.Update, `OptimisticLockErrorMsg`), as the API conventions say under "Concurrency
        Control and Consistency"; two clients updating from the same read: the first wins, the
        second gets 409. See
        https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md"""
        if requested is not None and requested != current["metadata"]["resourceVersion"]:
            name = current["metadata"]["name"]
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                           f'{rtype.qualified_plural} "{name}": the object has been modified; '
                           "please apply your changes to the latest version and try again",
                           name=name)

    def _update(self, rtype: ResourceType, current: Body, new: Body,
                subresource: str | None) -> Body:
        if subresource not in (None, "status") or (subresource and not rtype.status_subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(current)
            new.pop("status", None)
            if status is not None:
                new["status"] = status
        elif rtype.status_subresource:
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        meta = new.setdefault("metadata", {})
        for field in SYSTEM_METADATA:
            meta.pop(field, None)
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        for hook in self.admission.get(rtype.resource, []):
            hook(new, current)
        if not server_side_apply.applying.get():  # who wrote what (metadata.managedFields)
            server_side_apply.record_update(new, current, server_side_apply.current_manager.get(),
                                            subresource, rtype.status_subresource,
                                            rtype.api_version)
        if new == current:
            return current  # a no-op write: no new resourceVersion, no event
        if rtype.generation and _spec_part(new, rtype) != _spec_part(current, rtype):
            meta["generation"] = current["metadata"].get("generation", 1) + 1
        key = (rtype.resource, meta.get("namespace"), meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._write(rtype, key, "MODIFIED", new, old=current)
            return self._remove(rtype, key, self._pending_policy.pop(key, "Background"))
        self._write(rtype, key, "MODIFIED", new, old=current)
        return copy.deepcopy(new)

    def _remove(self, rtype: ResourceType, key: tuple[Any, str | None, str], policy: str) -> Body:
        old = copy.deepcopy(self.objects[key].raw)
        gone = copy.deepcopy(old)
        dependents = self._dependents(old["metadata"]["uid"])
        if policy == "Foreground":
            self._collect(dependents, old["metadata"]["uid"], "Background")
        self._write(rtype, key, "DELETED", gone, old=old)
        if policy != "Foreground":
            self._collect(dependents, old["metadata"]["uid"], policy)
        return gone

    def _dependents(self, owner_uid: str) -> builtins.list[tuple[ResourceType, Body]]:
        found = []
        for (resource, _, _), obj in list(self.objects.items()):
            if obj.deleted:
                continue
            refs = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                found.append((self.types[resource], copy.deepcopy(obj.raw)))
        return found

    def _collect(self, dependents: builtins.list[tuple[ResourceType, Body]], owner_uid: str,
                 policy: str) -> None:
        """The garbage collector's part: delete dependents, or orphan them."""
        for rtype, obj in dependents:
            meta = obj["metadata"]
            if self.get(rtype, meta.get("namespace"), meta["name"]) is None:
                continue
            if policy == "Orphan":
                refs = [ref for ref in meta.get("ownerReferences", [])
                        if ref.get("uid") != owner_uid]
                self.patch(rtype, meta.get("namespace"), meta["name"],
                           {"metadata": {"ownerReferences": refs or None}})
            else:
                self.delete(rtype, meta.get("namespace"), meta["name"], propagation="Background")

    def _write(self, rtype: ResourceType, key: tuple[Any, str | None, str], event_type: str,
               obj: Body, old: Body | None) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        if event_type == "DELETED":
            self.objects[key].delete()
        elif key in self.objects:
            self.objects[key].history.append(copy.deepcopy(obj))
            del self.objects[key].history[:-self.object_history_size]
        else:
            self.objects[key] = copy.deepcopy(obj)
        history = self._history[rtype.resource]
        if len(history) == history.maxlen:
            self._expired_rv[rtype.resource] = history[0].rv
        event = WatchEvent(self.resource_version, event_type, copy.deepcopy(obj), old)
        history.append(event)
        for subscription in self._subscriptions[rtype.resource]:
            subscription.queue.put_nowait(event)
        self.notify()

    def notify(self) -> None:
        self.revision += 1
        self.changed.notify_all()


def _spec_part(obj: Body, rtype: ResourceType) -> Body:
    """Everything whose change bumps `metadata.generation` (all but metadata and status)."""
    skipped = {"metadata", "status"} if rtype.status_subresource else {"metadata"}
    return {key: value for key, value in obj.items() if key not in skipped}
