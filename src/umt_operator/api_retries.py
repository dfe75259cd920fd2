"""How soon the operator notices that an unreachable Kubernetes API server is back.

kopf retries a failed API request (connection refused, 5xx, a timeout) after each delay of
``settings.networking.error_backoffs``, by default 1, 1, 2, 3, 5, 8, 13 and 21 s, then gives up
and its watch starts over. Seen on a real cluster: kube-apiserver crashed for 15 s in the
middle of a migration, and the resource was Ready only 33 s after the server was back, the
watches being asleep in those long back-offs. Capping the delays at :data:`MAX_BACKOFF` keeps
the same patience (about a minute of retries before a request gives up, as kopf's 54 s) while
a returning server is noticed within :data:`MAX_BACKOFF` seconds plus one connection attempt,
itself bounded by :data:`CONNECT_TIMEOUT` (kopf's default is its 5-minute request timeout, which
a server that drops packets instead of refusing them would make the operator wait out).
"""

from __future__ import annotations

from typing import Final

import kopf

#: The longest pause between two tries of an API request, in seconds.
MAX_BACKOFF: Final = 2.0
#: Pauses between tries: quick at first, then every :data:`MAX_BACKOFF` seconds; 30 tries,
#: about a minute in all, before a request gives up (a watch then starts over at once).
ERROR_BACKOFFS: Final = (0.5, 1.0, *([MAX_BACKOFF] * 28))
#: Longest a TCP connection to the API server may take to open, in seconds.
CONNECT_TIMEOUT: Final = 5.0


def cap_api_backoffs(settings: kopf.OperatorSettings) -> None:
    """Apply the capped back-offs and the connect timeout to kopf's API client and watches."""
    settings.networking.error_backoffs = ERROR_BACKOFFS
    settings.networking.connect_timeout = CONNECT_TIMEOUT
    settings.watching.connect_timeout = CONNECT_TIMEOUT
