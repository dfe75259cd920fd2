"""Run a kopf operator (any `kopf.OperatorRegistry`) against the emulator, in its own thread.

A stopping `kopf.operator()` cancels every task created after it in its event loop, so kopf
gets a thread and a loop of its own and is stopped with `stop_flag` (a `threading.Event`).
It logs in with credentials handed over in a pre-filled vault (the emulator's URL): the
registry's own login handlers are not called, and the registry is not modified.

    with run_kopf(registry, emulator, ["default"], configure=lambda s: ...) as operator:
        emulator.create(SCHEMA_MIGRATIONS, "default", {...})
        emulator.wait_for(...)
    # leaving the block stops kopf and re-raises anything that crashed it
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence

import kopf
from kopf._cogs.structs.credentials import Vault  # kopf.operator(vault=...) is public

from tests.k8s.emulator import Emulator

Configure = Callable[[kopf.OperatorSettings], None]


@dataclasses.dataclass
class KopfThread:
    """A running operator: `ready` once startup handlers are done; `error` if it crashed."""

    thread: threading.Thread
    stop_flag: threading.Event
    ready_flag: threading.Event
    settings: kopf.OperatorSettings
    error: BaseException | None = None

    def stop(self, timeout: float) -> None:
        self.stop_flag.set()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError(f"kopf did not stop within {timeout}s")


def fast_settings(settings: kopf.OperatorSettings) -> None:
    """Defaults that keep tests fast and quiet; `configure` can override any of them."""
    settings.watching.reconnect_backoff = 0.1
    settings.watching.server_timeout = 60
    settings.queueing.exit_timeout = 2.0
    settings.queueing.idle_timeout = 1.0
    settings.scanning.disabled = True  # the resources are known up front; no CRD watching
    settings.networking.request_timeout = 10


@contextlib.contextmanager
def run_kopf(registry: kopf.OperatorRegistry, emulator: Emulator,
             namespaces: Sequence[str] = ("default",), *,
             configure: Configure | Sequence[Configure] = (),
             settings: kopf.OperatorSettings | None = None,
             memo: object | None = None,
             startup_timeout: float = 10.0, stop_timeout: float = 15.0) -> Iterator[KopfThread]:
    settings = settings if settings is not None else kopf.OperatorSettings()
    fast_settings(settings)
    for hook in [configure] if callable(configure) else configure:
        hook(settings)
    handle = KopfThread(threading.Thread(name="kopf", daemon=True), threading.Event(),
                        threading.Event(), settings)

    async def operate() -> None:
        vault = Vault({"emulator": kopf.ConnectionInfo(server=emulator.url,
                                                       default_namespace=namespaces[0])})
        await kopf.operator(registry=registry, settings=settings, namespaces=list(namespaces),
                            standalone=True, stop_flag=handle.stop_flag,
                            ready_flag=handle.ready_flag, vault=vault, memo=memo)

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(operate())
        except BaseException as exc:  # noqa: BLE001 - handed over to the test thread
            handle.error = exc
        finally:
            handle.ready_flag.set()  # unblock the caller if kopf died during startup
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    handle.thread = threading.Thread(target=main, name="kopf", daemon=True)
    handle.thread.start()
    try:
        if not handle.ready_flag.wait(startup_timeout):
            raise TimeoutError(f"kopf did not become ready within {startup_timeout}s")
        if handle.error is not None:
            raise RuntimeError("kopf failed to start") from handle.error
        yield handle
    finally:
        handle.stop(stop_timeout)
    if handle.error is not None:
        raise RuntimeError("kopf crashed while the test ran") from handle.error
