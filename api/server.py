"""uvicorn, told to stop, first ends the open event streams.

uvicorn shuts down by waiting for open connections to close (up to the graceful timeout)
before the app's lifespan ends: an SSE stream never closes by itself, so every stop took
the whole timeout and printed a cancelled task. Asked to exit (Ctrl-C, SIGTERM), this server
ends every live event stream at once; clients reconnect with Last-Event-ID to the next
server and miss nothing (the log is in Postgres).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.main import STARTUP_FAILURE

__all__ = ["run_server"]


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        studio = getattr(getattr(self.config.app, "state", None), "studio", None)
        if studio is None:
            return
        with contextlib.suppress(RuntimeError):  # no loop running: nothing is streaming
            asyncio.get_running_loop().call_soon_threadsafe(studio.events.end_streams)


def run_server(app: Any, **options: Any) -> None:
    """``uvicorn.run(app, **options)`` for one process, with the stream ending above."""
    server = _Server(uvicorn.Config(app, **options))
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)  # e.g. the port is taken; uvicorn said why
