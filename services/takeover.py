"""Taking over the conversations of a worker that died.

A worker renews the leases of the conversations it runs every ``ttl / 3`` (store/leases.py).
One that was killed (kill -9, a lost machine) stops renewing; its rows expire after
``ttl``. Every worker runs a ``TakeoverSweep``: about once a second it asks for expired
leases of conversations still marked "running" and hands them to its runner, which takes
the lease (only one worker wins the upsert) and continues the run from the last checkpoint.

Continuing from the checkpoint re-runs the node that was cut; what the dead worker had
already put in the event log must neither be lost nor said twice. ``Leftovers`` reads the
log of the cut run (everything after its "running" status):

* messages it already announced are not announced again (LangGraph replays the updates of
  a step whose writes were saved before the crash, and they carry the same message ids);
* text a specialist had streamed when the worker died stays, stored as that message marked
  ``interrupted`` - the same message id the clients saw the tokens of - exactly as an
  interjection keeps it; the re-run node then speaks as a new message;
* the person's messages of that run (sent to it, or handed to it by another worker) that
  the dead worker had not yet put into a checkpoint are queued again, in order, with their
  images and other metadata (the announced payload is the stored message).

A worker that starts continues the conversations a previous process left "running" the
same way (api/deps.py ``resume_unfinished`` calls ``take_over``): the lease decides, so a
conversation whose lease is free, expired or held by a dead process on this host is taken,
and one a live worker holds and renews is left to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from creative_studio.core.tasks import cancel_task
from creative_studio.services.conversation_state import Partial
from creative_studio.store.eventlog import EventLog
from creative_studio.store.leases import Leases

log = logging.getLogger(__name__)

SWEEP_S = 1.0  # at most this long between an expiry and the takeover starting


@dataclass
class Leftovers:
    """What the cut run had already told the clients."""

    announced: set[str] = field(default_factory=set)  # ids of its "message" events
    partial: dict[str, Partial] = field(default_factory=dict)  # streamed, never finished
    phase: str | None = None
    # The person's messages, as announced (the stored payload: text, images, ...).
    person: list[dict[str, Any]] = field(default_factory=list)


async def read_leftovers(events: EventLog, conversation_id: str) -> Leftovers:
    """The event log of the conversation's last run, as the worker that died left it."""
    found = Leftovers()
    for event in await events.read_last_run(conversation_id):
        data = event.data
        if event.kind == "message" and data.get("message_id"):
            found.announced.add(str(data["message_id"]))
            found.partial.pop(str(data["message_id"]), None)
            if data.get("role") == "user" and data.get("content"):
                found.person.append(dict(data))
        elif event.kind == "phase" and data.get("phase"):
            found.phase = str(data["phase"])
        elif event.kind == "token" and data.get("message_id") and data.get("role"):
            message_id = str(data["message_id"])
            if message_id in found.announced:
                continue
            partial = found.partial.get(message_id)
            if partial is None:
                partial = Partial(role=str(data["role"]), phase=found.phase)
                found.partial[message_id] = partial
            partial.text += str(data.get("text") or "")
    return found


class TakeoverSweep:
    """This worker's look-out for conversations whose worker stopped renewing its lease."""

    def __init__(
        self,
        leases: Leases,
        take_over: Callable[[str], Awaitable[bool]],
        *,
        interval: float | None = None,
    ) -> None:
        self.leases = leases
        self._take_over = take_over
        self.interval = interval if interval is not None else min(SWEEP_S, leases.ttl / 3)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="takeover-sweep")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    async def sweep(self) -> list[str]:
        """One look; returns the conversations this worker started to take over."""
        taken = []
        for conversation_id, owner in await self.leases.expired_running():
            if await self._take_over(conversation_id):
                log.warning(
                    "taking over conversation %s: the lease of %s expired", conversation_id, owner
                )
                taken.append(conversation_id)
        return taken

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception as error:  # the database is away: the next look tries again
                log.debug("takeover sweep failed: %s", error)


__all__ = ["SWEEP_S", "Leftovers", "TakeoverSweep", "read_leftovers"]
