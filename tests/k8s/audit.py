"""Who asked the emulator for what, in the words of Kubernetes RBAC: a small audit log.

Every request the emulator serves becomes the (verb, API group, resource, namespace, name) an
apiserver's authorizer is asked about, derived from the HTTP method, path and query exactly as
k8s.io/apiserver does it (`RequestInfoFactory.NewRequestInfo`,
staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go):

- `/api/{version}/...` is the core group (""), `/apis/{group}/{version}/...` a named group;
  anything shorter, or under another prefix, is a non-resource request (`/apis`, `/version`);
- POST is `create`, GET/HEAD `get`, PUT `update`, PATCH `patch`, DELETE `delete`;
- a GET without a name is `list`, or `watch` when the `watch` parameter is set to anything but
  `false`/`0`; a list or watch with `fieldSelector=metadata.name=X` is about the name X;
- a DELETE without a name is `deletecollection`;
- `/namespaces/{ns}/{resource}/{name}/{subresource}` is the resource `{resource}/{subresource}`
  for RBAC (rules name subresources that way), except the namespace's own subresources;
- the deprecated `/watch/...` and `/proxy/...` path prefixes are verbs of their own.

Each distinct call is kept, with how many requests made it, the client's User-Agent and the
pytest test it happened in (PYTEST_CURRENT_TEST), so a test can tell the operator's calls (kopf's
client and the operator's own, see OPERATOR_USER_AGENTS) from the test's own (kubectl, helm, the
`kubernetes` client; the fake kubelet and the tests' blocking API write to the store directly and
never show up here).
With UMT_API_CALLS_LOG set, each new distinct call is also appended to that file as a JSON
line: a pytest run in a subprocess hands its recording over that way.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

#: User-Agent prefixes of the operator's two HTTP clients: kopf's (`kopf/<version>`, set in
#: kopf/_cogs/clients/auth.py) and its own (`umt_operator.kube.KubeAPI`).
OPERATOR_USER_AGENTS = ("kopf/", "umt-schema-operator")

#: Where a subprocess appends its calls (one JSON object per line).
LOG_VARIABLE = "UMT_API_CALLS_LOG"

_SPECIAL_VERBS = {"proxy", "watch"}
_SPECIAL_VERBS_NO_SUBRESOURCES = {"proxy"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete"}


@dataclasses.dataclass(frozen=True, order=True)
class Call:
    """One request as the authorizer sees it. For RBAC, `resource` includes the subresource
    (`schemamigrations/status`); `path` is set only for non-resource requests."""

    verb: str
    group: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    user_agent: str = ""
    test: str = ""

    @property
    def is_resource_request(self) -> bool:
        return not self.path

    @property
    def by_operator(self) -> bool:
        return self.user_agent.startswith(OPERATOR_USER_AGENTS)

    def as_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Call:
        return cls(**json.loads(line))


def request_call(method: str, path: str, query: Mapping[str, list[str]],
                 user_agent: str = "", test: str = "") -> Call:
    """The call an apiserver would authorize for this HTTP request (see the module's doc)."""
    verb = method.lower()
    parts = path.strip("/").split("/") if path.strip("/") else []  # splitPath
    who = {"user_agent": user_agent, "test": test}
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return Call(verb, path=path, **who)
    group = ""
    if parts[0] == "apis":
        if len(parts) < 4:
            return Call(verb, path=path, **who)
        group = parts[1]
        parts = parts[3:]
    else:
        parts = parts[2:]
    if parts[0] in _SPECIAL_VERBS and len(parts) >= 2:
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource, name, subresource = [*parts, "", "", ""][:3]
    if verb in _SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = ""
    if not name and verb == "get":
        watch = (query.get("watch") or [""])[0].lower()
        verb = "watch" if "watch" in query and watch not in ("false", "0") else "list"
        name = _name_from_field_selector((query.get("fieldSelector") or [""])[0])
    if not name and verb == "delete":
        verb = "deletecollection"
    return Call(verb, group, f"{resource}/{subresource}" if subresource else resource,
                namespace, name, **who)


def _name_from_field_selector(selector: str) -> str:
    """`metadata.name=X` (or `==X`) among the selector's terms: the name the list is about."""
    for term in selector.split(","):
        key, sep, value = term.replace("==", "=").partition("=")
        if sep and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return ""


class CallLog:
    """The distinct calls of this process and how many requests made each, thread-safe (each
    emulator serves in its own thread); each new call is appended to `$UMT_API_CALLS_LOG` when
    that is set."""

    def __init__(self) -> None:
        self._counts: collections.Counter[Call] = collections.Counter()
        self._lock = threading.Lock()

    def record(self, call: Call) -> None:
        with self._lock:
            self._counts[call] += 1
            log_path = os.environ.get(LOG_VARIABLE)
            if log_path and self._counts[call] == 1:
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write(call.as_json() + "\n")

    def calls(self) -> frozenset[Call]:
        with self._lock:
            return frozenset(self._counts)

    def count(self, where: Callable[[Call], bool]) -> int:
        """How many requests made a call for which `where(call)` holds."""
        with self._lock:
            return sum(count for call, count in self._counts.items() if where(call))


#: The calls of this pytest process, across every emulator.
CALLS = CallLog()


def current_test() -> str:
    """The node id of the pytest test running now (setup, call or teardown), else ""."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


def record_request(request: Any) -> None:
    """The emulator's hook: record a `kmock.Request` about to be served, from the HTTP request
    it was parsed from (method, path and query as the client sent them)."""
    raw = request._raw_request
    query = parse_qs(raw.query_string, keep_blank_values=True)
    CALLS.record(request_call(raw.method, raw.path, query, raw.headers.get("User-Agent", ""),
                              current_test()))
