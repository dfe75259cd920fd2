"""``umt-migrations apply``: server-side-apply a SchemaMigration, then wait for its outcome.

What a Helm hook Job (or a person, or CI) runs: apply the manifest with a field manager, note
the ``metadata.generation`` the API server gave it, and follow the object with a watch until
the operator reports ``Ready`` for that generation (exit 0), ``Stalled`` (exit 3, with the
reason and message), or the time runs out (exit 4). API trouble is exit 5, bad usage exit 2.

This module is the pure part: reading the manifest, reading a status for one generation, the
progress lines, and the :class:`Tracker` that turns a stream of object versions into lines and
an outcome. The API calls live in :mod:`umt_migrations.waiter_api`, which alone imports
lightkube; the command (:mod:`umt_migrations.apply`) imports it only when ``apply`` runs (the
runner path never pays for it).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from .api_names import API_VERSION, KIND
from .masking import scrub

DEFAULT_FIELD_MANAGER = "umt-migrations"
DEFAULT_TIMEOUT = 600.0
DEFAULT_GRACE = 30.0
#: Bounds on ``apply -f`` input (docs/waiter-and-gate.md): larger or stranger input is refused
#: with exit 2 before anything is sent. A SchemaMigration is a few hundred bytes.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_YAML_ALIASES = 8
MAX_YAML_DEPTH = 64
#: Longest status field printed (the operator's messages are at most 1024 characters).
MAX_FIELD = 1024


class WaitExit(IntEnum):
    """Exit codes of ``apply`` (documented in ``--help`` and docs/waiter-and-gate.md)."""

    READY = 0  #: Ready for the applied generation
    ERROR = 1  #: an unexpected failure of the waiter itself
    USAGE = 2  #: invalid command line or manifest; nothing was applied
    STALLED = 3  #: Stalled for the applied generation: the reason and message are printed
    TIMEOUT = 4  #: neither Ready nor Stalled within --timeout
    API_ERROR = 5  #: the API refused or could not be reached (credentials, RBAC, CRD, deleted)
    APPROVAL_PENDING = 6  #: the plan waits for spec.review.approvedPlanDigest (printed)


EXIT_CODES_HELP = """\
exit codes:
  0  Ready for the generation it applied
  2  invalid usage or manifest (nothing applied)
  3  Stalled for that generation (the reason and message are printed)
  4  timed out (what it last saw is printed)
  5  Kubernetes API error: unreachable, 401/403, CRD not installed, resource deleted
  6  the plan waits for approval (spec.review): its digest and how to approve are printed
"""
#: Where an approval goes in the values of charts/schema-migration (``--approve-set-key``).
DEFAULT_APPROVE_SET_KEY = "review.approvedPlanDigest"
APPROVAL_PENDING_REASON = "ApprovalPending"


class UsageError(Exception):
    """The command line or the manifest cannot be used: exit 2, nothing applied."""


# --- the manifest -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """A SchemaMigration to apply: its body, name and the namespace it names (if any)."""

    body: dict[str, Any]
    name: str
    namespace: str | None

    def for_namespace(self, namespace: str) -> dict[str, Any]:
        """The body to send, with ``metadata.namespace`` set to where it is applied."""
        body = dict(self.body)
        body["metadata"] = {**body["metadata"], "namespace": namespace}
        return body


def read_manifest_text(path: str) -> tuple[str, str]:
    """The manifest's text and a name for messages; ``-`` reads standard input.

    At most :data:`MAX_MANIFEST_BYTES` are read: a larger input is refused, not loaded.
    """
    source = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", None)
            data = stream.read(MAX_MANIFEST_BYTES + 1) if stream else \
                sys.stdin.read(MAX_MANIFEST_BYTES + 1).encode("utf-8")
        else:
            with Path(path).open("rb") as file:
                data = file.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise UsageError(f"{source} is larger than {MAX_MANIFEST_BYTES // 1024} KiB; a "
                             "SchemaMigration manifest is a few hundred bytes")
        return data.decode("utf-8"), source
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def parse_manifest(text: str, source: str = "<manifest>") -> Manifest:
    """One YAML (or JSON) SchemaMigration document, checked enough to apply safely.

    Refused (exit 2): more than :data:`MAX_YAML_ALIASES` aliases (a "billion laughs" bomb
    expands a few of them into gigabytes), nesting deeper than :data:`MAX_YAML_DEPTH`, and a
    key given twice in one mapping (YAML would keep the last one silently).
    """
    import yaml

    try:
        documents = [doc for doc in yaml.load_all(text, Loader=_bounded_loader(source))
                     if doc is not None]
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an int too long to convert
        raise UsageError(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from None
    if len(documents) != 1:
        raise UsageError(f"{source} must hold exactly one SchemaMigration, found "
                         f"{len(documents)} documents")
    body = documents[0]
    if not isinstance(body, dict):
        raise UsageError(f"{source} is not a Kubernetes object (a YAML mapping)")
    if body.get("apiVersion") != API_VERSION or body.get("kind") != KIND:
        raise UsageError(f"{source} is a {body.get('apiVersion')}/{body.get('kind')}, not a "
                         f"{API_VERSION} {KIND}")
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        if isinstance(meta, dict) and meta.get("generateName"):
            raise UsageError(f"{source}: metadata.generateName cannot be applied (apply needs a "
                             "fixed name); set metadata.name")
        raise UsageError(f"{source} has no metadata.name")
    if not isinstance(body.get("spec"), dict):
        raise UsageError(f"{source} has no spec")
    namespace = meta.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise UsageError(f"{source}: metadata.namespace must be a non-empty string")
    return Manifest(body=body, name=meta["name"], namespace=namespace)


def _bounded_loader(source: str) -> type:
    """PyYAML's safe loader with the bounds of :func:`parse_manifest`, naming ``source``."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        aliases = 0
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise UsageError(f"{source} uses more than {MAX_YAML_ALIASES} YAML aliases "
                                     "(*name); write the manifest out in full")
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH:
                    raise UsageError(f"{source} nests deeper than {MAX_YAML_DEPTH} levels")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base`: its keys may be overridden, as YAML intends
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable):
                    continue  # PyYAML refuses it below, in its own words
                if key in seen:
                    raise UsageError(f"{source}: key {key!r} appears twice in one mapping "
                                     f"(line {key_node.start_mark.line + 1}); keep one")
                seen.add(key)
            return super().construct_mapping(node, deep)

    return BoundedLoader


def choose_namespace(manifest: Manifest, flag: str | None, default: str) -> str:
    """``--namespace``, else the manifest's, else the kubeconfig's (or service account's)."""
    if flag and manifest.namespace and flag != manifest.namespace:
        raise UsageError(f"the manifest's namespace {manifest.namespace!r} does not match "
                         f"--namespace {flag!r}")
    return flag or manifest.namespace or default


# --- reading a status for one generation -------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What one version of the object says about the generation the waiter applied."""

    observed: int  #: status.observedGeneration (-1: the operator has not seen the object)
    phase: str | None = None
    job: str | None = None
    current: str | None = None
    target: str | None = None
    message: str | None = None
    ready: bool = False  #: Ready=True for the applied generation (or a later one)
    stalled: bool = False  #: Stalled=True for the applied generation (or a later one)
    reason: str | None = None  #: the Stalled (or Ready) condition's reason
    #: Ready=False with reason ApprovalPending for the applied generation (spec.review)
    pending: bool = False
    digest: str | None = None  #: status.plan.digest of the applied generation, if planned


def read_status(obj: Mapping[str, Any], generation: int) -> Snapshot:
    """The object's status as seen for ``generation``: conditions of older generations, like
    ``kubectl wait`` does, count for nothing."""
    status = obj.get("status") or {}
    wanted = (obj.get("spec") or {}).get("targetRevision")
    resolved = status.get("targetRevision")  # the last run's resolved target
    observed = _int(status.get("observedGeneration"), -1)
    ready = _condition(status, "Ready", generation, observed)
    stalled = _condition(status, "Stalled", generation, observed)
    reason = (stalled or ready or {}).get("reason")
    pending = _condition(status, "Ready", generation, observed, "False")
    pending = pending if (pending or {}).get("reason") == APPROVAL_PENDING_REASON else None
    found = status.get("plan")
    plan: Mapping[str, Any] = found if isinstance(found, dict) else {}
    return Snapshot(
        observed=observed,
        phase=_line(status.get("phase")),
        job=_line(status.get("jobName")),
        current=_line(status.get("currentRevision")),
        target=_line(_target(wanted, resolved, status.get("phase"))),
        message=_line(status.get("message")),
        ready=ready is not None,
        stalled=stalled is not None and ready is None,
        reason=_line(reason if pending is None else APPROVAL_PENDING_REASON),
        pending=pending is not None and ready is None and stalled is None,
        digest=_line(plan.get("digest")) if _int(plan.get("generation"), -1) >= generation
        else None,
    )


def _line(value: Any) -> str | None:
    """A status field as the waiter prints it: masked, on one line, at most
    :data:`MAX_FIELD` characters (whoever wrote the status, each printed line stands alone)."""
    if value is None:
        return None
    text = " ".join(scrub(str(value)).split())
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + "…"


def _target(wanted: str | None, resolved: str | None, phase: str | None) -> str | None:
    """The spec's target; with the id it resolved to once the run is over (``head (ab12…)``).
    While a run is pending, the status still holds the previous run's resolved target."""
    if resolved and phase in ("Succeeded", "Failed") and resolved != wanted:
        return f"{wanted} ({resolved})" if wanted else resolved
    return wanted or resolved


def _condition(status: Mapping[str, Any], type_: str, generation: int,
               observed: int, value: str = "True") -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            seen = _int(cond.get("observedGeneration"), observed)
            if cond.get("status") == value and seen >= generation:
                return cond
    return None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def progress_line(ref: str, snap: Snapshot) -> str:
    """``umt/umt-schema: Running (Job umt-schema-3-abcd): 0abb288d754e -> head - message``."""
    job = f" (Job {snap.job})" if snap.job else ""
    message = f" - {snap.message}" if snap.message else ""
    return (f"{ref}: {snap.phase or 'Pending'}{job}: {snap.current or '?'} -> "
            f"{snap.target or '?'}{message}")


# --- following the object ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: WaitExit
    line: str  #: the last line to print (on stderr, prefixed with ``error:``, unless Ready)


@dataclass
class Tracker:
    """Turns the versions of the object the watch delivers into progress lines and an outcome.

    Lines are printed for the applied generation only (an older status would mislead), once
    per change. Without any status for that generation ``grace`` seconds after ``started``,
    one line says the operator is probably not running; waiting goes on.
    """

    ref: str  #: ``namespace/name``
    generation: int
    started: float
    grace: float = DEFAULT_GRACE
    approve_set_key: str = DEFAULT_APPROVE_SET_KEY
    outcome: Outcome | None = None
    last: Snapshot | None = None
    _shown: Snapshot | None = field(default=None, repr=False)
    _warned: bool = field(default=False, repr=False)

    def observe(self, event: str, obj: Mapping[str, Any] | None) -> list[str]:
        """Lines to print for one event (``ADDED``, ``MODIFIED``, ``DELETED``)."""
        if self.outcome is not None:
            return []
        if event == "DELETED" or obj is None:
            self.outcome = Outcome(WaitExit.API_ERROR,
                                   f"{self.ref} was deleted while waiting for generation "
                                   f"{self.generation}")
            return []
        snap = read_status(obj, self.generation)
        self.last = snap
        lines: list[str] = []
        if snap.observed >= self.generation and _shown_part(snap) != _shown_part(self._shown):
            self._shown = snap
            lines.append(progress_line(self.ref, snap))
        if snap.ready:
            where = f" at {snap.current}" if snap.current else ""
            self.outcome = Outcome(WaitExit.READY,
                                   f"{self.ref} is Ready (generation {self.generation}){where}")
        elif snap.stalled:
            self.outcome = Outcome(WaitExit.STALLED,
                                   f"{self.ref} is Stalled (generation {self.generation}): "
                                   f"{_reason_and_message(snap)}")
        elif snap.pending:
            self.outcome = Outcome(WaitExit.APPROVAL_PENDING, self._approval_line(snap))
        return lines

    def _approval_line(self, snap: Snapshot) -> str:
        """The digest waiting for approval and the exact ways to approve it."""
        namespace, _, name = self.ref.partition("/")
        digest = snap.digest or "<status.plan.digest>"
        return (f"{self.ref} waits for approval (generation {self.generation}): plan "
                f"{digest}. Review it (umt-migrations approve {name} -n {namespace} "
                f"prints it), then approve: helm upgrade ... --set "
                f"{self.approve_set_key}={digest}, or umt-migrations approve {name} "
                f"-n {namespace}. Operator: {snap.message or 'no message'}")

    def next_check(self) -> float | None:
        """When :meth:`tick` has something to say (the grace period's end), if ever."""
        return None if self._warned or self._seen_generation() else self.started + self.grace

    def tick(self, now: float) -> list[str]:
        """The one "operator probably not running" line, once the grace period is over."""
        if self._warned or self._seen_generation() or now < self.started + self.grace:
            return []
        self._warned = True
        namespace = self.ref.split("/")[0]
        line = (f"{self.ref}: no status for generation {self.generation} after {self.grace:g} s: "
                "the SchemaMigration operator is probably not running (or does not watch "
                f"namespace {namespace}); still waiting")
        return [line]

    def timed_out(self, timeout: float) -> Outcome:
        return Outcome(WaitExit.TIMEOUT, f"timed out after {timeout:g} s waiting for {self.ref} "
                       f"(generation {self.generation}) to be Ready; last seen: "
                       f"{self.last_seen()}")

    def last_seen(self) -> str:
        snap = self.last
        if snap is None:
            return "nothing since the apply"
        if snap.observed < self.generation:
            return (f"no status for generation {self.generation} (observedGeneration "
                    f"{snap.observed}): is the operator running?")
        return progress_line(self.ref, snap)

    def _seen_generation(self) -> bool:
        return self.last is not None and self.last.observed >= self.generation


def _reason_and_message(snap: Snapshot) -> str:
    """``Reason: message``, the reason once: the operator's messages often begin with it."""
    reason, message = snap.reason or "no reason given", snap.message or "no message"
    return message if message.startswith(f"{reason}: ") else f"{reason}: {message}"


def _shown_part(snap: Snapshot | None) -> tuple[Any, ...] | None:
    if snap is None:
        return None
    return (snap.phase, snap.job, snap.current, snap.target, snap.message)
