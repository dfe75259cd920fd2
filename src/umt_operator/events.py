"""Events about a SchemaMigration, posted against its full object reference.

``kubectl describe smig NAME`` finds a resource's Events by their ``involvedObject`` (kind,
name, namespace and uid, server-side field selectors): an Event whose reference lacks
``apiVersion`` or ``kind`` is listed by ``kubectl get events`` as ``<none>`` and never shown
by ``describe``. Every Event the operator posts goes through :func:`post`, which builds the
reference from the resource's identity alone, whatever partial body the caller holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from umt_migrations.api_names import API_VERSION, KIND
from umt_operator.status import one_line

NORMAL, WARNING = "Normal", "Warning"


def object_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body kopf turns into the Event's ``involvedObject``: apiVersion, kind, identity."""
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {key: meta.get(key) for key in ("name", "namespace", "uid")},
    }


def post(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post an Event (queued by kopf) on the SchemaMigration ``body``; the message one line."""
    # kopf annotates its own Body class; any mapping of a Kubernetes object is what it reads.
    kopf.event(object_reference(body), type=type_, reason=reason,  # type: ignore[arg-type]
               message=one_line(message))
