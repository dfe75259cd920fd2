"""Logs for people: one INFO line per meaningful step, kopf's routine chatter at DEBUG.

kopf writes ``Handler 'job_event' succeeded.`` at INFO after every watch event it hands to a
handler: dozens of lines for one migration. The operator logs its own steps (Job created,
migrated a→b, failed with a reason, waiting for an earlier Job); kopf's routine lines are
demoted to DEBUG, so ``--verbose`` / a DEBUG level still shows them.
"""

from __future__ import annotations

import logging
import re

#: kopf's per-event lines (kopf/_core/actions/execution.py and processing).
_ROUTINE = re.compile(r"^Handler '[^']+' succeeded\.$")
KOPF_OBJECT_LOGGER = "kopf.objects"


class DemoteRoutine(logging.Filter):
    """Rewrites kopf's routine INFO records to DEBUG; drops them unless DEBUG is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _ROUTINE.match(record.getMessage()):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_kopf() -> None:
    """Install the filter once on kopf's per-object logger."""
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    if not any(isinstance(f, DemoteRoutine) for f in logger.filters):
        logger.addFilter(DemoteRoutine())

