"""What the fake kubelet derives from a pod spec, without running anything: the container's
environment (resolved from Secrets and ConfigMaps, with the kubelet's error messages), its
termination message, and the successive `status` stanzas of a one-container pod.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.k8s.apimachinery import field_value, now_rfc3339

MAX_MESSAGE_BYTES = 4096  # the kubelet keeps at most this much of a termination message file
LOG_TAIL_LINES, LOG_TAIL_BYTES = 80, 2048  # FallbackToLogsOnError: the kubelet's log tail
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")

#: `lookup(kind, namespace, name)`: the Secret or ConfigMap object, or None when absent.
Lookup = Callable[[str, str, str], "dict[str, Any] | None"]


class ContainerConfigError(Exception):
    """The container cannot start yet: `CreateContainerConfigError` with this message."""


def resolve_env(pod: dict[str, Any], container: dict[str, Any],
                lookup: Lookup) -> dict[str, str]:
    """The container's environment, resolved as the kubelet does (envFrom, then env)."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, ref in (("Secret", source.get("secretRef")),
                          ("ConfigMap", source.get("configMapRef"))):
            if ref is None:
                continue
            data = _config_data(lookup, kind, ns, ref["name"], bool(ref.get("optional")))
            env.update({f"{prefix}{key}": value for key, value in (data or {}).items()})
    for item in container.get("env") or []:
        value = _env_value(pod, ns, item, env, lookup)
        if value is not None:
            env[item["name"]] = value
    return env


def _env_value(pod: dict[str, Any], ns: str, item: dict[str, Any], env: dict[str, str],
               lookup: Lookup) -> str | None:
    if "valueFrom" not in item:
        return expand(str(item.get("value", "")), env)
    source = item["valueFrom"]
    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        if key in source:
            ref = source[key]
            optional = bool(ref.get("optional"))
            data = _config_data(lookup, kind, ns, ref["name"], optional)
            if data is None or ref["key"] in data:
                return None if data is None else data[ref["key"]]
            if optional:
                return None
            raise ContainerConfigError(
                f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}")
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (pod["metadata"].get(match[1]) or {}).get(match[2], "")
        return field_value(pod, path) or ""
    return None


def _config_data(lookup: Lookup, kind: str, ns: str, name: str,
                 optional: bool) -> dict[str, str] | None:
    obj = lookup(kind, ns, name)
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    if kind == "Secret":
        return {key: base64.b64decode(value).decode() for key, value in
                (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` references in env values, commands and args."""
    return _VAR_REF.sub(lambda m: env.get(m[1], m[0]), text)


def termination_message(path: Path, output: str, exit_code: int, policy: str) -> str:
    data = path.read_bytes()[-MAX_MESSAGE_BYTES:] if path.exists() else b""
    if not data and exit_code != 0 and policy == "FallbackToLogsOnError":
        tail = "\n".join(output.splitlines()[-LOG_TAIL_LINES:])
        data = tail.encode()[-LOG_TAIL_BYTES:]
    return data.decode(errors="replace")


def _without_nones(value: Any) -> Any:
    """Drop unset fields (the apiserver's `omitempty`), also inside lists, which a merge
    patch would otherwise store as explicit nulls."""
    if isinstance(value, dict):
        return {key: _without_nones(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nones(item) for item in value]
    return value


class PodStatus:
    """Builds the successive `status` stanzas a kubelet writes for a one-container pod."""

    def __init__(self, container: dict[str, Any], pod_ip: str) -> None:
        self.container = container
        self.image = str(container.get("image", ""))
        self.pod_ip = pod_ip
        self.start_time = now_rfc3339()
        self.started_at: str | None = None
        digest = hashlib.sha256(self.image.encode()).hexdigest()
        self.image_id = f"{self.image.split(':')[0]}@sha256:{digest}"
        self.container_id = f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}"

    def _stanza(self, phase: str, ready: bool, state: dict[str, Any], *, pulled: bool,
                reason: str | None) -> dict[str, Any]:
        now = now_rfc3339()
        name = self.container["name"]
        not_ready = None if ready else (reason or "ContainersNotReady")
        message = None if ready or reason else f"containers with unready status: [{name}]"
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": str(ready), "reason": not_ready, "message": message},
            {"type": "ContainersReady", "status": str(ready), "reason": not_ready,
             "message": message},
            {"type": "PodScheduled", "status": "True"},
        ]
        for condition in conditions:
            condition["lastTransitionTime"] = now
        return _without_nones({
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "qosClass": "BestEffort",
            "containerStatuses": [{
                "name": name,
                "image": self.image,
                "imageID": self.image_id if pulled else "",
                "containerID": self.container_id if self.started_at else None,
                "ready": ready,
                "started": ready,
                "restartCount": 0,
                "state": state,
                "lastState": {},
            }],
        })

    def waiting(self, reason: str, message: str | None = None) -> dict[str, Any]:
        state = {"waiting": {"reason": reason, "message": message}}
        return self._stanza("Pending", False, state, pulled=False, reason=None)

    def running(self) -> dict[str, Any]:
        self.started_at = now_rfc3339()
        state = {"running": {"startedAt": self.started_at}}
        return self._stanza("Running", True, state, pulled=True, reason=None)

    def terminated(self, exit_code: int, reason: str | None, message: str) -> dict[str, Any]:
        state = {"terminated": {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "message": message or None,
            "startedAt": self.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": self.container_id,
        }}
        phase = "Succeeded" if exit_code == 0 else "Failed"
        return self._stanza(phase, False, state, pulled=True, reason="PodCompleted")
