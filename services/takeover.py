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

The runner's side (``RunnerTakeover``, used by services/runner.py): a worker that died
mid-run stops renewing its leases; another worker's sweep calls the runner's ``take_over``,
which continues the run from its last checkpoint without repeating or losing what the dead
worker had put in the event log (``pick_up``). A worker that could not renew a lease for a
whole ttl stops its run (``LeaseLost``): another may have taken it over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from creative_studio.core.roles import SPECIALISTS
from creative_studio.core.tasks import cancel_task
from creative_studio.services.conversation_state import Live, Partial, stored_person_message
from creative_studio.store.eventlog import EventLog
from creative_studio.store.leases import Leases

log = logging.getLogger(__name__)

SWEEP_S = 1.0  # at most this long between an expiry and the takeover starting


@dataclass
class Leftovers:
    """What the cut run had already told the clients."""

    announced: set[str] = field(default_factory=set)  # ids of its "message" events
    said: dict[str, str] = field(default_factory=dict)  # its specialists' turns: id -> text
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
            elif data.get("role") in SPECIALISTS and isinstance(data.get("content"), str):
                found.said[str(data["message_id"])] = data["content"]
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


class LeaseLost(Exception):
    """This worker's lease of a conversation lapsed mid-run: another worker may run it now."""


class RunnerTakeover:
    """The runner's side: the conversations it is taking over, what their previous worker
    announced, and the lease-lost signal of each conversation it runs."""

    def __init__(self, events: EventLog | None) -> None:
        self.events = events
        self.taking_over: set[str] = set()
        self.announced: dict[str, set[str]] = {}  # message ids the dead worker announced
        self._lost: dict[str, asyncio.Event] = {}  # per conversation run here: lease lapsed

    def holding(self, cid: str, lost: asyncio.Event) -> None:
        """The conversation's lease is held here; ``lost`` is set if it lapses."""
        self._lost[cid] = lost

    def released(self, cid: str) -> None:
        """The conversation's worker ends: it is no longer taken over nor held here."""
        self.taking_over.discard(cid)
        self._lost.pop(cid, None)

    async def pick_up(
        self,
        cid: str,
        live: Live,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        config: RunnableConfig,
        keep_partials: Callable[[str, Live], Awaitable[None]],
    ) -> None:
        """Under the lease just taken over: keep the dead worker's half-said text, and
        remember what it announced so the replayed step does not announce it again."""
        log.info("conversation %s: lease taken, continuing from its last checkpoint", cid)
        if self.events is None:
            return
        leftovers = await read_leftovers(self.events, cid)
        self.announced[cid] = leftovers.announced
        cut = set(leftovers.partial) - set(live.partial)
        live.partial.update({k: v for k, v in leftovers.partial.items() if k in cut})
        # A step LangGraph runs again says the dead worker's turns as they were; one it had
        # cut mid-stream (kept below as interrupted) is said anew under another id.
        live.said.update(leftovers.said)
        live.cut |= cut
        live.phase = live.phase or leftovers.phase
        await keep_partials(cid, live)
        snapshot = await graph.aget_state(config)
        known = {str(m.id) for m in (snapshot.values or {}).get("messages", [])}
        known |= {str(m.id) for m in live.pending if isinstance(m, HumanMessage)}
        for stored in leftovers.person:  # handed to it, never checkpointed
            if str(stored["message_id"]) not in known:
                live.pending.append(stored_person_message(stored))
        # The node that was cut runs again from the checkpoint: its text is not carried in.
        live.carry = [m for m in live.carry if str(m.id) not in cut]

    async def wait_run(self, cid: str, run: asyncio.Task[None]) -> None:
        """Until the run ends; stops it (``LeaseLost``) when the lease lapsed meanwhile."""
        lost = self._lost.get(cid)
        if lost is None:
            await asyncio.wait({run})
            return
        watch = asyncio.create_task(lost.wait())
        try:
            await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if not run.done():
            run.cancel()
            await asyncio.wait({run})
            raise LeaseLost(cid)

    @staticmethod
    def stopped(cid: str, live: Live) -> None:
        """The run stopped on ``LeaseLost``: whoever took the lease over continues it."""
        log.error("conversation %s: lease lost mid-run, run stopped here", cid)
        live.pending.clear()
        live.partial.clear()  # the log has it: the new holder keeps it
        live.working.clear()
        live.run = None


__all__ = [
    "SWEEP_S",
    "LeaseLost",
    "Leftovers",
    "RunnerTakeover",
    "TakeoverSweep",
    "read_leftovers",
]
