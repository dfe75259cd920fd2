"""The one door to the Kubernetes API: every call the operator makes goes through here.

A small async client on aiohttp (which kopf already uses), built from a ``kopf.ConnectionInfo``.
Absences (404) and conflicts on create (409) are handled here, once: ``get_*`` return None and
:meth:`KubeAPI.create_job` returns the Job that already exists. Secret values are never read:
there is no method that could.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from umt_migrations.api_names import GROUP, PLURAL, VERSION

Body = dict[str, Any]


class KubeError(Exception):
    """An API call failed for a reason the caller can't fix by retrying at once."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API error {status}: {message}")
        self.status = status
        #: The API server's own message (its Status object's ``message``).
        self.message = message


class KubeAPI:
    """The operator's API calls (namespaced Jobs, Pods and SchemaMigration status)."""

    def __init__(self, info: kopf.ConnectionInfo, *, timeout: float = 30.0) -> None:
        self._server = info.server.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "umt-schema-operator",
                   **info.as_http_headers()}
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=_ssl_context(info), limit=32),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def close(self) -> None:
        await self._session.close()

    # -- SchemaMigrations ----------------------------------------------------------------------

    def _smig_path(self, namespace: str, name: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        return f"{path}/{name}" if name else path

    async def get_schema_migration(self, namespace: str, name: str) -> Body | None:
        return await self._request("GET", self._smig_path(namespace, name), absent_ok=True)

    async def patch_status(self, namespace: str, name: str,
                           status: Mapping[str, Any]) -> Body | None:
        """Merge-patch the status subresource; None when the resource is gone."""
        return await self._request(
            "PATCH",
            self._smig_path(namespace, name) + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
            absent_ok=True,
        )

    # -- Jobs and Pods -------------------------------------------------------------------------

    async def get_job(self, namespace: str, name: str) -> Body | None:
        return await self._request(
            "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", absent_ok=True
        )

    async def create_job(self, namespace: str, job: Body) -> tuple[Body, bool]:
        """Create ``job``; if one of that name exists, return it instead. (job, created?)"""
        try:
            created = await self._request(
                "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=job
            )
            return created or job, True
        except KubeError as exc:
            if exc.status != 409:
                raise
        existing = await self.get_job(namespace, job["metadata"]["name"])
        if existing is None:  # deleted between the two calls: let the next event retry
            raise kopf.TemporaryError("the Job was deleted while being created", delay=1)
        return existing, False

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its pods; an absent Job is fine."""
        await self._request(
            "DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            absent_ok=True,
        )

    async def list_jobs(self, namespace: str, selector: str) -> list[Body]:
        found = await self._request(
            "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs", params={"labelSelector": selector}
        )
        return list((found or {}).get("items") or [])

    async def list_pods(self, namespace: str, job_name: str) -> list[Body]:
        found = await self._request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods",
            params={"labelSelector": f"batch.kubernetes.io/job-name={job_name}"},
        )
        return list((found or {}).get("items") or [])

    async def read_pod_log(self, namespace: str, pod: str, container: str,
                           limit_bytes: int) -> str | None:
        """The container's log (at most ``limit_bytes``); None when the pod or log is gone.

        Only for the plan Job's pod, whose stdout is the plan (see review_jobs.py).
        """
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        params = {"container": container, "limitBytes": str(limit_bytes)}
        try:
            async with self._session.get(self._server + path, params=params,
                                         headers={"Accept": "text/plain"}) as response:
                if response.status in (400, 404):  # gone, or the container never started
                    return None
                if response.status >= 400:
                    raise KubeError(response.status, _error_message(await response.text()))
                return await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise kopf.TemporaryError(f"Kubernetes API unreachable: {exc}", delay=5) from exc

    # -- ConfigMaps (the review's plan, see review_jobs.py) -------------------------------------

    async def put_config_map(self, namespace: str, config_map: Body) -> None:
        """Create ``config_map``, or merge-patch the one of that name into it."""
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        try:
            await self._request("POST", path, body=config_map)
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
        await self._request("PATCH", f"{path}/{config_map['metadata']['name']}",
                            body=config_map, content_type="application/merge-patch+json")

    # -- Leases (leader election, see leader.py) ----------------------------------------------
    # Writes are create (POST) and replace (PUT) with the resourceVersion last read: a stale
    # one gets 409 Conflict, raised as KubeError, so two replicas can never both take a Lease.

    def _lease_path(self, namespace: str, name: str = "") -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        return f"{path}/{name}" if name else path

    async def get_lease(self, namespace: str, name: str) -> Body | None:
        return await self._request("GET", self._lease_path(namespace, name), absent_ok=True)

    async def create_lease(self, namespace: str, lease: Body) -> Body:
        return await self._request("POST", self._lease_path(namespace), body=lease) or lease

    async def replace_lease(self, namespace: str, name: str, lease: Body) -> Body:
        return await self._request("PUT", self._lease_path(namespace, name), body=lease) or lease

    # -- plumbing ------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        absent_ok: bool = False,
    ) -> Body | None:
        headers = {"Content-Type": content_type} if body is not None else None
        try:
            async with self._session.request(
                method, self._server + path, json=body, params=params, headers=headers
            ) as response:
                if response.status == 404 and absent_ok:
                    return None
                if response.status >= 400:
                    raise KubeError(response.status, _error_message(await response.text()))
                data: dict[str, Any] | None = await response.json(content_type=None)
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise kopf.TemporaryError(f"Kubernetes API unreachable: {exc}", delay=5) from exc


def _error_message(text: str) -> str:
    try:
        return str(json.loads(text).get("message") or text)[:500]
    except ValueError:
        return text[:500]


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    """kopf's own TLS set-up for its ConnectionInfo (CA, client certificate, ``insecure``).

    Python's :mod:`ssl` loads a client certificate and key only from files: for inline data
    (a kind kubeconfig), kopf writes them to temporary files that are deleted before
    :meth:`kopf.ConnectionInfo.as_ssl_context` returns, so no key material stays on disk.
    """
    if not info.server.startswith("https"):
        return False
    return info.as_ssl_context()
