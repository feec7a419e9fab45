"""Background tasks the studio's services run (listeners, sweeps) and how they end."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_task(task: asyncio.Task[object] | None) -> None:
    """Cancel a background task and wait until it has ended (a cancelled task is no error)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["cancel_task"]
