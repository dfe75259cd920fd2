"""The chart's RBAC is what the operator does, no more, no less.

The API emulator records every call it serves (tests/k8s/audit.py: verb, group, resource, name,
as the apiserver's authorizer sees them, and who sent it). The calls the operator sent during
its own scenarios (tests/integration/test_operator*.py and the HA tests) are checked against the
chart's rules through an RBAC authorizer written after Kubernetes' own: every call must be
allowed, every rule must be used by some call, and nothing reaches Secrets. The cluster-wide
ClusterRole and the namespaced Roles (watchNamespaces) are checked separately.

The recording comes from this pytest session when it ran those scenarios before this file (the
full suite does: files run in order); otherwise (this file alone, or `-k`) the scenarios are
run here, in a pytest subprocess that hands its recording over (UMT_API_CALLS_LOG).
"""

from __future__ import annotations

import ast
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.k8s.audit import CALLS, LOG_VARIABLE, Call, request_call
from tests.k8s.emulator import CONFIGMAPS, Emulator

CHART = REPO_ROOT / "charts" / "umt-migrations-operator"
SCENARIO_FILES = ("tests/integration/test_operator.py",
                  "tests/integration/test_operator_pod_trouble.py",
                  "tests/integration/test_operator_refusals.py",
                  "tests/integration/test_operator_tenancy.py",
                  "tests/integration/test_ha.py",
                  "tests/integration/test_review_operator.py")
#: How the scenarios run the operator: in namespace "default", with the Lease of the default
#: name; the chart is rendered for the same namespace and (fullnameOverride) the same Lease.
NAMESPACE, LEASE = "default", "umt-schema-operator"
#: What the operator cannot work without: a recording missing one of them is not the
#: operator's (the comparison below must not pass on an empty or partial recording).
MAIN_CALLS = {
    ("watch", "migrations.umt.dev", "schemamigrations"),
    ("patch", "migrations.umt.dev", "schemamigrations/status"),
    ("create", "batch", "jobs"),
    ("watch", "batch", "jobs"),
    ("delete", "batch", "jobs"),
    ("list", "", "pods"),
    ("watch", "", "pods"),
    ("create", "", "events"),
    ("watch", "", "events"),  # the Job controller's FailedCreate Events (PodRejected)
    ("get", "coordination.k8s.io", "leases"),
    ("update", "coordination.k8s.io", "leases"),
}
#: Discovery needs no rule of ours: the built-in ClusterRole system:discovery, bound to every
#: authenticated user, allows GET on these (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/
#: policy.go in kubernetes/kubernetes).
DISCOVERY_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/", "/api", "/api/*",
                  "/apis", "/apis/*", "/openapi", "/openapi/*")

pytestmark = pytest.mark.timeout(1200)  # may run the operator scenarios itself


# --- where the recording comes from --------------------------------------------------------


def scenario_names(path: str) -> set[str]:
    tree = ast.parse((REPO_ROOT / path).read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def scenarios_ran_before(session: pytest.Session) -> bool:
    """Whether every scenario test function was selected in this session and ran before
    this file's first test."""
    here = Path(__file__).relative_to(REPO_ROOT).as_posix()
    first = next(i for i, item in enumerate(session.items) if item.nodeid.startswith(here))
    earlier = session.items[:first]
    seen = {(item.nodeid.split("::")[0], item.originalname) for item in earlier
            if isinstance(item, pytest.Function)}
    return all((path, name) in seen for path in SCENARIO_FILES for name in scenario_names(path))


def run_scenarios(log: Path) -> frozenset[Call]:
    env = {**os.environ, LOG_VARIABLE: str(log)}
    env.pop("PYTEST_CURRENT_TEST", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *SCENARIO_FILES], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=1100)
    assert result.returncode == 0, "the operator scenarios failed:\n" + result.stdout[-6000:]
    return frozenset(Call.from_json(line) for line in log.read_text().splitlines())


@pytest.fixture(scope="module")
def recording(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if scenarios_ran_before(request.session):
        return {"calls": CALLS.calls(), "source": "this session"}
    log = tmp_path_factory.mktemp("api-calls") / "calls.jsonl"
    return {"calls": run_scenarios(log), "source": "a run of the scenarios"}


@pytest.fixture(scope="module")
def operator_calls(recording: dict[str, Any]) -> set[Call]:
    calls = {call for call in recording["calls"] if call.by_operator
             and call.test.split("::")[0] in SCENARIO_FILES}
    assert calls, f"no call from the operator was recorded (from {recording['source']})"
    return calls


def resource_calls(calls: Iterable[Call]) -> set[Call]:
    return {call for call in calls if call.is_resource_request}


# --- an RBAC authorizer, after Kubernetes' own ---------------------------------------------
# plugin/pkg/auth/authorizer/rbac/rbac.go (RBACAuthorizer.Authorize, RuleAllows) and
# pkg/apis/rbac/v1/evaluation_helpers.go (VerbMatches, APIGroupMatches, ResourceMatches,
# ResourceNameMatches): a rule allows a request when the verb, the group, the resource
# ("resource/subresource") and, if the rule lists resourceNames, the name all match; "*"
# matches anything. A ClusterRoleBinding applies its rules in every namespace, a RoleBinding
# only to requests in its own namespace.


def rule_allows(rule: dict[str, Any], call: Call) -> bool:
    def matches(values: list[str], wanted: str) -> bool:
        return "*" in values or wanted in values

    subresource = call.resource.partition("/")[2]
    resources = rule.get("resources") or []
    return (matches(rule.get("verbs") or [], call.verb)
            and matches(rule.get("apiGroups") or [], call.group)
            and (matches(resources, call.resource)
                 or (bool(subresource) and f"*/{subresource}" in resources))
            and (not rule.get("resourceNames") or call.name in rule["resourceNames"]))


class Grants:
    """The rules bound to one ServiceAccount in a set of rendered objects, with their scope."""

    def __init__(self, objects: list[dict[str, Any]], account: str, namespace: str) -> None:
        roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
                 for o in objects if o["kind"] in ("Role", "ClusterRole")}
        subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        #: (scope, rule): scope None is every namespace (a ClusterRoleBinding)
        self.scoped_rules: list[tuple[str | None, dict[str, Any]]] = []
        for binding in objects:
            if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding") \
                    or subject not in binding.get("subjects", []):
                continue
            scope = binding["metadata"].get("namespace") \
                if binding["kind"] == "RoleBinding" else None
            ref = binding["roleRef"]
            role = roles[(ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])]
            self.scoped_rules += [(scope, rule) for rule in role["rules"]]

    def allow(self, call: Call) -> bool:
        return any((scope is None or scope == call.namespace) and rule_allows(rule, call)
                   for scope, rule in self.scoped_rules)

    def unused(self, calls: set[Call]) -> list[str]:
        """Each (verb, group, resource[, name]) a rule grants that no recorded call used.

        The same rule granted in several watched namespaces (one Role each) counts as used
        when a call used it in any of them: the scenarios need not create a Job everywhere.
        """
        scopes: dict[tuple[str, str, str, str], list[str | None]] = {}
        for scope, rule in self.scoped_rules:
            for grant in itertools.product(rule["verbs"], rule["apiGroups"], rule["resources"],
                                           rule.get("resourceNames") or [""]):
                scopes.setdefault(grant, []).append(scope)
        unused = []
        for (verb, group, resource, name), where in scopes.items():
            if not any(call.verb == verb and call.group == group
                       and call.resource == resource and (not name or call.name == name)
                       and (None in where or call.namespace in where) for call in calls):
                unused.append(f"{verb} {group or 'core'}/{resource}"
                              f"{' ' + name if name else ''} in {where}")
        return unused


def render(helm: Path, *values: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(helm), "template", "umt", str(CHART), "--namespace", NAMESPACE,
         "--set", f"fullnameOverride={LEASE}", *values],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


#: The scenarios watch NAMESPACE, and the tenancy tests another tenant's namespace too.
OTHER_NAMESPACE = "evil"
RBAC_VARIANTS = {"cluster-wide": [], "namespaced": [
    "--set", f"watchNamespaces={{{NAMESPACE},{OTHER_NAMESPACE}}}"]}


@pytest.fixture(params=sorted(RBAC_VARIANTS))
def grants(request: pytest.FixtureRequest, helm_binary: Path) -> Grants:
    objects = render(helm_binary, *RBAC_VARIANTS[request.param])
    kinds = {o["kind"] for o in objects}
    assert ("ClusterRole" in kinds) == (request.param == "cluster-wide")
    return Grants(objects, account=LEASE, namespace=NAMESPACE)


# --- the comparison ------------------------------------------------------------------------


@pytest.mark.integration
def test_the_recording_holds_the_operators_main_calls(operator_calls: set[Call]) -> None:
    used = {(call.verb, call.group, call.resource) for call in operator_calls}
    assert used >= MAIN_CALLS, f"not recorded: {sorted(MAIN_CALLS - used)}"
    assert {call.test.split("::")[0] for call in operator_calls} == set(SCENARIO_FILES)


@pytest.mark.integration
def test_the_chart_grants_every_call_the_operator_makes(
        grants: Grants, operator_calls: set[Call]) -> None:
    denied = sorted({f"{c.verb} {c.group or 'core'}/{c.resource} {c.name} in {c.namespace}"
                     for c in resource_calls(operator_calls) if not grants.allow(c)})
    assert denied == [], f"the chart's RBAC would refuse these calls of the operator: {denied}"


@pytest.mark.integration
def test_the_chart_grants_nothing_the_operator_never_uses(
        grants: Grants, operator_calls: set[Call]) -> None:
    unused = grants.unused(resource_calls(operator_calls))
    assert unused == [], f"the chart grants calls the operator never made: {unused}"


@pytest.mark.integration
def test_secrets_stay_out_of_reach(grants: Grants, operator_calls: set[Call]) -> None:
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert not grants.allow(Call(verb, "", "secrets", NAMESPACE, "umt-db")), verb
    assert not [call for call in operator_calls if call.resource.startswith("secrets")]


@pytest.mark.integration
def test_discovery_stays_within_what_every_account_may_read(operator_calls: set[Call]) -> None:
    def allowed(path: str) -> bool:
        return any(path == url or (url.endswith("*") and path.startswith(url[:-1]))
                   for url in DISCOVERY_URLS)

    outside = {(c.verb, c.path) for c in operator_calls
               if not c.is_resource_request and not (c.verb == "get" and allowed(c.path))}
    assert outside == set()


@pytest.mark.integration
def test_each_client_is_told_apart(emulator: Emulator, kubectl: Any) -> None:
    """The User-Agents the recording relies on, as each client really sends them: kubectl and
    the `kubernetes` client are never taken for the operator; direct store writes (the tests'
    blocking API, the fake kubelet) are not requests at all."""
    import asyncio

    import kopf
    import kubernetes.client

    from umt_operator.kube import KubeAPI

    def calls_made_by(action: Callable[[], object]) -> set[Call]:
        before = CALLS.calls()
        action()
        return set(CALLS.calls() - before)

    def client_lists() -> None:
        with emulator.k8s_client() as client:
            kubernetes.client.CoreV1Api(client).list_namespaced_config_map(NAMESPACE)

    async def operator_reads() -> None:
        api = KubeAPI(kopf.ConnectionInfo(server=emulator.url))
        try:
            await api.list_pods(NAMESPACE, "direct")
        finally:
            await api.close()

    assert not [c for c in calls_made_by(lambda: emulator.create(
        CONFIGMAPS, NAMESPACE, {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "direct"}})) if c.name == "direct"]

    (by_kubectl,) = [c for c in calls_made_by(
        lambda: kubectl("get", "configmaps", "direct", "-o", "name"))
        if c.resource == "configmaps"]
    assert by_kubectl.user_agent.startswith("kubectl") and not by_kubectl.by_operator
    assert (by_kubectl.verb, by_kubectl.name) == ("get", "direct")

    (by_client,) = calls_made_by(client_lists)
    assert by_client.user_agent.startswith("OpenAPI-Generator/") and not by_client.by_operator

    (by_operator,) = calls_made_by(lambda: asyncio.run(operator_reads()))
    assert by_operator.by_operator and by_operator.user_agent == "umt-schema-operator"


# --- how requests become calls (k8s.io/apiserver's requestinfo.go) -------------------------

REQUESTS = [
    ("GET", "/apis/batch/v1/namespaces/ns/jobs", {}, ("list", "batch", "jobs", "ns", "")),
    ("GET", "/apis/batch/v1/namespaces/ns/jobs", {"watch": ["true"]},
     ("watch", "batch", "jobs", "ns", "")),
    ("GET", "/apis/batch/v1/jobs", {"watch": ["1"]}, ("watch", "batch", "jobs", "", "")),
    ("GET", "/apis/batch/v1/namespaces/ns/jobs", {"watch": ["false"]},
     ("list", "batch", "jobs", "ns", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"fieldSelector": ["metadata.name=p1"]},
     ("list", "", "pods", "ns", "p1")),
    ("GET", "/api/v1/namespaces/ns/pods/p1", {}, ("get", "", "pods", "ns", "p1")),
    ("GET", "/api/v1/namespaces/ns/pods/p1/log", {}, ("get", "", "pods/log", "ns", "p1")),
    ("PATCH", "/apis/migrations.umt.dev/v1alpha1/namespaces/ns/schemamigrations/a/status", {},
     ("patch", "migrations.umt.dev", "schemamigrations/status", "ns", "a")),
    ("POST", "/api/v1/namespaces/ns/events", {}, ("create", "", "events", "ns", "")),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", {},
     ("update", "coordination.k8s.io", "leases", "ns", "l")),
    ("DELETE", "/apis/batch/v1/namespaces/ns/jobs/j", {}, ("delete", "batch", "jobs", "ns", "j")),
    ("DELETE", "/apis/batch/v1/namespaces/ns/jobs", {},
     ("deletecollection", "batch", "jobs", "ns", "")),
    # a namespace is in its own namespace, for the authorizer
    ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "namespaces", "ns", "ns")),
    ("PUT", "/api/v1/namespaces/ns/finalize", {},
     ("update", "", "namespaces/finalize", "ns", "ns")),
    ("GET", "/api/v1/watch/namespaces/ns/pods", {}, ("watch", "", "pods", "ns", "")),
]


@pytest.mark.unit
@pytest.mark.parametrize(("method", "path", "query", "expected"), REQUESTS,
                         ids=[f"{r[0]} {r[1]} {r[2]}" for r in REQUESTS])
def test_requests_become_the_calls_the_apiserver_authorizes(
        method: str, path: str, query: dict[str, list[str]],
        expected: tuple[str, ...]) -> None:
    call = request_call(method, path, query)
    assert (call.verb, call.group, call.resource, call.namespace, call.name) == expected
    assert call.is_resource_request


@pytest.mark.unit
@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/batch", "/apis/batch/v1",
                                  "/version", "/healthz"])
def test_discovery_and_other_paths_are_non_resource_requests(path: str) -> None:
    call = request_call("GET", path, {})
    assert (call.verb, call.path, call.is_resource_request) == ("get", path, False)
