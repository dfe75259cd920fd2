"""What the stand-ins (the fake Job controller, the fake kubelet) share: they run as tasks in
the emulator's event loop, started and stopped from the test thread."""

from __future__ import annotations

import asyncio
from typing import Self

from tests.k8s.emulator import Emulator


class LoopWorker:
    """Tasks in the emulator's loop: `start()` creates them (`_start`), `stop()` or the
    emulator's own stop cancels them and the tasks `_children()` names."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.store = emulator.store
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Self:
        self.emulator.call(self._start)
        self.emulator.add_stop_callback(self._shutdown)
        return self

    def stop(self) -> None:
        if self._tasks:
            self.emulator.submit(self._shutdown()).result(timeout=15)

    def _start(self) -> None:
        raise NotImplementedError

    def _children(self) -> list[asyncio.Task[None]]:
        """Tasks started along the way (one per Job, one per pod) to cancel with the rest."""
        return []

    async def _shutdown(self) -> None:
        tasks = [*self._tasks, *self._children()]
        self._tasks = []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
