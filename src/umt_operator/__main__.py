"""``python -m umt_operator``: run the operator with its ``UMT_OPERATOR_*`` settings.

Equivalent to ``kopf run -m umt_operator.handlers --standalone`` with the namespaces and the
liveness port taken from the settings, which are validated before anything starts. kopf's own
peering stays off (``standalone``): with ``UMT_OPERATOR_LEADER_ELECTION`` on, replicas elect
one leader through a Lease instead (see ``leader.py``); a standby waits in the startup handler
and a leader that loses its Lease exits with status 1.
"""

from __future__ import annotations

import sys
import warnings

import kopf
from kopf._core.engines.activities import ActivityError  # not exported by kopf

from umt_operator.settings import HEALTH_PATH, Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import umt_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=False)
    # kopf leaves its authenticator coroutine unawaited when the startup fails for good (no
    # credentials): the warning would be the last line a user reads, instead of the reason.
    warnings.filterwarnings("ignore", "coroutine 'authenticator' was never awaited",
                            RuntimeWarning)
    try:
        kopf.run(
            standalone=True,
            clusterwide=settings.cluster_wide,
            namespaces=list(settings.namespaces),
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}{HEALTH_PATH}",
            memo=kopf.Memo(settings=settings),
        )
    except ActivityError:  # a startup handler failed for good (no credentials...): logged above
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
