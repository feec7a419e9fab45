"""The conversation runner: one writer per conversation, the person always first.

The graph knows how the team talks; the runner knows how a *conversation* runs:

* A message from the person is stored at once, then handed to the graph. If the team
  is mid-run, the run is cancelled at a safe point (while a node is working, i.e.
  after the previous step's checkpoint is written - runs use ``durability="sync"``),
  and the same thread continues from its last checkpoint with the new message.
* Messages that arrive while a run is being cancelled or started are queued and
  handed over together, in arrival order: nothing is dropped or reordered.
* A run's stream is told as events and stored messages (services/turns.py), and what a
  cancelled specialist had streamed stays, marked ``interrupted``.
* A lease row in Postgres (store/leases.py) makes this process the only writer of the
  conversation; it holds no connection while the conversation runs.
* When the database goes away mid-run, the conversation waits for it (nothing is retried
  against a dead server) and continues from its last checkpoint as soon as the database is
  back (``Database.on_recovered``), in the same process, without a restart.
* A generation that ends while no graph node waits for it is written into the thread
  between runs (``deliver_result``, services/late_results.py).
* Several workers on one database hand each other the person's messages and cancels
  (``running_elsewhere``, ``cancel_elsewhere``, services/handoff.py), and take over the
  conversations of a worker that died (``take_over``, services/takeover.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from creative_studio.core.errors import (
    ConversationBusyError,
    InvalidInputError,
    InvalidStateError,
)
from creative_studio.core.events import EventKind, EventSink, StudioEvent
from creative_studio.graph.configuration import Configuration
from creative_studio.services.conversation_state import (
    MAX_MESSAGE_CHARS,
    Live,
    Resume,
    validate_message,
)
from creative_studio.services.handoff import Handoff
from creative_studio.services.late_results import LateResults
from creative_studio.services.outage import OutageWaiter
from creative_studio.services.takeover import LeaseLost, RunnerTakeover
from creative_studio.services.transcript import store_message
from creative_studio.services.turns import STREAM_MODES, Turns
from creative_studio.store.availability import is_connection_error
from creative_studio.store.database import Database
from creative_studio.store.eventlog import EventLog
from creative_studio.store.notify import Notifier
from creative_studio.store.repository import StudioRepository
from creative_studio.workflows.run import GenerationOutcome

__all__ = ["MAX_MESSAGE_CHARS", "STREAM_MODES", "ConversationRunner", "validate_message"]

log = logging.getLogger(__name__)


class ConversationRunner:
    """Runs conversations of one compiled studio graph against the studio database."""

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        database: Database,
        *,
        sink: EventSink | None = None,
        extra_configurable: dict[str, Any] | None = None,
        notifier: Notifier | None = None,
        events: EventLog | None = None,
    ) -> None:
        self.graph = graph
        self.database = database
        self.repository = StudioRepository(database.pool)
        self.sink = sink
        self.extra_configurable = extra_configurable or {}
        self._live: dict[str, Live] = {}
        self._closing = False
        # Conversations whose run the database cut short; continued when it is back.
        self._outage = OutageWaiter(database, self._go_on_after_outage)
        cancel = functools.partial(self.cancel, stop_generation=True)
        self._handoff = Handoff(
            database, notifier, lives=self._live, kick=self._kick, cancel=cancel
        )
        # Taking over a dead worker's conversations (services/takeover.py).
        self.events = events
        self._takeover = RunnerTakeover(events)
        self._turns = Turns(
            graph,
            self.repository,
            config=self._config,
            emit=self._emit,
            store=self._store,
            wait_run=self._takeover.wait_run,
            announced=self._takeover.announced,
        )
        self._late = LateResults(graph, wake=self._wake, emit=self._emit, store=self._store)
        listen = getattr(
            self.extra_configurable.get("generation_service"), "add_result_listener", None
        )
        if listen is not None:
            listen(self.deliver_result)

    # ----------------------------------------------------------------- public API

    async def send(
        self, conversation_id: str, text: str, *, images: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Store the person's message and hand it to the team; returns the stored message.

        ``images`` (checked refs, api/routes/images.py) travel in the message's
        ``additional_kwargs["images"]``: the team hears of them, Pixel starts from them."""
        body = validate_message(text)
        conversation = await self.repository.get_conversation(conversation_id)
        cid = str(conversation.id)
        extra = {"images": list(images)} if images else {}
        message = HumanMessage(content=body, name="user", id=str(uuid4()), additional_kwargs=extra)
        payload = await self._store(cid, message)
        await self._emit(cid, "message", payload)
        live = self._live.setdefault(cid, Live())
        live.pending.append(message)
        self._kick(cid)
        return payload

    async def resume(self, conversation_id: str, answer: Any = None) -> None:
        """Answer the team's question (an interrupt), or continue a run a crash cut short."""
        conversation = await self.repository.get_conversation(conversation_id)
        cid = str(conversation.id)
        live = self._live.setdefault(cid, Live())
        if live.worker is not None and not live.worker.done():
            raise InvalidStateError("The team is already working on this conversation.")
        snapshot = await self.graph.aget_state(self._config(cid, {}))
        if snapshot.interrupts:
            if answer is None or (isinstance(answer, str) and not answer.strip()):
                raise InvalidInputError("The team asked you a question: answer it to continue.")
            value = await self._turns.answer_payload(cid, answer)
            live.pending.append(Resume(Command(resume=value)))
        elif snapshot.next or snapshot.tasks:
            # A run was cut short. ``tasks`` also lists a step whose node finished and
            # saved its writes just before the crash (it is not in ``next`` any more).
            live.pending.append(Resume(None))
        else:
            raise InvalidStateError(
                "Nothing to resume: the team is not working on this conversation. "
                "Send a message to continue it."
            )
        self._kick(cid)

    async def cancel(self, conversation_id: str, *, stop_generation: bool = False) -> bool:
        """Stop the current run at a safe point. True if something was running.

        With ``stop_generation`` (the person pressed cancel) the conversation's generation
        stops too, in ComfyUI, and the conversation leaves "generating" before this
        returns, with "Generation cancelled." in the chat. Without it (the person left, or
        interjected) a generation goes on: it costs the person nothing to get the image.
        """
        cid = str((await self.repository.get_conversation(conversation_id)).id)
        live = self._live.get(cid)
        running = live is not None and live.run is not None and not live.run.done()
        if running:
            assert live is not None
            self._interject(live)
        if not stop_generation:
            return running
        service = self.extra_configurable.get("generation_service")
        stop = getattr(service, "cancel_conversation", None)
        stopped: list[GenerationOutcome] = await stop(cid) if stop is not None else []
        for outcome in stopped:
            await self.deliver_result(cid, outcome, known=True, wait=True)
        if stopped:
            await self.wait_idle(cid)  # its final status is written and announced
        return running or bool(stopped)

    async def deliver_result(
        self,
        conversation_id: str,
        outcome: GenerationOutcome,
        *,
        known: bool = False,
        wait: bool = False,
    ) -> bool:
        """A generation ended with no node waiting: write it into the conversation.

        Queued to the conversation's worker (after the run in progress, if any); with
        ``wait``, returns once it is written (True) or found to have no place (False).
        ``known``: the caller knows the thread is generating it (see late_update).
        """
        if self._closing:
            return False
        return await self._late.deliver(str(conversation_id), outcome, known=known, wait=wait)

    def is_running(self, conversation_id: str) -> bool:
        live = self._live.get(conversation_id)
        return bool(live and live.worker and not live.worker.done())

    def running_ids(self) -> list[str]:
        """The conversations this worker is running now."""
        return [cid for cid in list(self._live) if self.is_running(cid)]

    def waits_for_database(self, conversation_id: str) -> bool:
        return conversation_id in self._outage

    async def wait_idle(self, conversation_id: str) -> None:
        """Wait until the conversation has no run and no queued message.

        A run the database cut short is not idle: it continues once the database is back.
        """
        while True:
            live = self._live.get(conversation_id)
            if live and live.worker and not live.worker.done():
                await asyncio.wait({live.worker})
            elif conversation_id in self._outage and not self._closing:
                await self._outage.wait()
            else:
                return

    async def aclose(self) -> None:
        """Stop every run (at shutdown); checkpoints keep everything already done."""
        self._closing = True
        await self._outage.close()
        await self._handoff.close()
        workers = [lv.worker for lv in self._live.values() if lv.worker and not lv.worker.done()]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker

    async def settings(self, conversation_id: str) -> dict[str, Any]:
        """The conversation's configurable values, from its session's settings.

        ``model_assignments`` in ``extra_configurable`` (``serve --assign``) are defaults per
        role: a role the session assigns itself keeps the session's model."""
        conversation = await self.repository.get_conversation(conversation_id)
        session = await self.repository.get_session(str(conversation.session_id))
        prefs = {k: v for k, v in session.preferences.items() if k in Configuration.model_fields}
        defaults = self.extra_configurable.get("model_assignments") or {}
        return {**prefs, "model_assignments": {**defaults, **session.model_assignments}}

    # ----------------------------------------------------------------- internals

    def _config(self, cid: str, configurable: dict[str, Any]) -> RunnableConfig:
        return {"configurable": {**self.extra_configurable, **configurable, "thread_id": cid}}

    def _kick(self, cid: str) -> None:
        live = self._live[cid]
        if live.worker is None or live.worker.done():
            self._wake(cid)
        elif live.run is not None and not live.run.done():
            self._interject(live)

    def _wake(self, cid: str) -> None:
        """Start the conversation's worker, unless one runs."""
        live = self._live.setdefault(cid, Live())
        if live.worker is None or live.worker.done():
            live.worker = asyncio.create_task(self._work(cid), name=f"conversation-{cid}")

    @staticmethod
    def _interject(live: Live) -> None:
        if live.run is None or live.run.done():
            return
        if live.working:
            live.run.cancel()  # a node is running: the previous checkpoint is complete
        else:
            live.cancel_pending = True  # between steps: stop when the next node starts

    def _go_on_after_outage(self, cid: str) -> None:
        """The database is back: continue the run it cut short, from its last checkpoint."""
        live = self._live.get(cid)
        if live is None or self._closing:
            return
        if not live.pending:
            live.pending.append(Resume(None))
        self._kick(cid)

    async def _work(self, cid: str) -> None:
        """The conversation's single worker: runs queued input until there is none."""
        live = self._live[cid]
        waiting = False
        locked = False
        elsewhere = False  # another worker runs it: what was queued here went there
        again = False  # input that arrived while this worker was ending: a new one runs it
        try:
            try:
                async with self.database.writer_lock(cid) as lock:
                    locked = True
                    self._takeover.holding(cid, lock.lost_event)
                    configurable = await self.settings(cid)
                    if cid in self._takeover.taking_over:
                        config = self._config(cid, {})
                        await self._takeover.pick_up(
                            cid, live, self.graph, config, self._turns.keep_partials
                        )
                    while live.pending or cid in self._late:
                        if cid in self._late:
                            await self._late.apply(cid, live, self._config(cid, configurable))
                            continue
                        run_input = await self._turns.next_input(cid, live, configurable)
                        await self._turns.run(cid, live, run_input, configurable)
            except ConversationBusyError:
                if locked or self._handoff.inbox is None:
                    raise
                taking_over = cid in self._takeover.taking_over
                elsewhere = await self._handoff.hand_off(cid, live, taking_over=taking_over)
                again = not elsewhere  # the lease was let go meanwhile: take it now
            except LeaseLost:
                elsewhere = True  # whoever took the lease over continues it
                self._takeover.stopped(cid, live)
            else:
                again = True
        except asyncio.CancelledError:
            # The process is shutting down: stop the run, keep what was streamed, and leave
            # the status "running" so the next start continues this conversation.
            if live.run is not None and not live.run.done():
                live.run.cancel()
                await asyncio.wait({live.run})
            await asyncio.shield(self._turns.keep_partials(cid, live))
            raise
        except Exception as error:
            if is_connection_error(error):
                # Nothing to report to a log that is in the same database: wait for it.
                waiting = True
                self._outage.add(cid)
                log.warning("conversation %s waits for the database: %s", cid, error)
            else:
                log.exception("conversation %s failed", cid)
                await self._emit(cid, "error", {"message": getattr(error, "message", str(error))})
        finally:
            self._takeover.released(cid)
            again = again and bool(live.pending or cid in self._late) and not self._closing
            if not self._closing and not waiting and not elsewhere and not again:
                await self._turns.finish(cid, live)
            if again:
                live.worker = asyncio.create_task(self._work(cid), name=f"conversation-{cid}")

    async def take_over(self, conversation_id: str) -> bool:
        """Continue a conversation whose worker died (its lease expired while "running"), or
        that a previous process left "running" (at start, api/deps.py).

        False when it already runs here. The lease decides whether it is ours: free, expired
        or held by a dead process on this host, it is taken; held by a live worker, it is
        left to that worker (``Handoff.hand_off``). The run continues from its last
        checkpoint without repeating what the previous worker announced
        (``RunnerTakeover.pick_up``); when there is nothing left to run, the conversation's
        final status is written.
        """
        cid = str(conversation_id)
        live = self._live.setdefault(cid, Live())
        if self._closing or (live.worker is not None and not live.worker.done()):
            return False
        snapshot = await self.graph.aget_state(self._config(cid, {}))
        if (snapshot.next or snapshot.tasks) and not snapshot.interrupts and not live.pending:
            live.pending.append(Resume(None))
        self._takeover.taking_over.add(cid)
        self._wake(cid)
        return True

    async def running_elsewhere(self, conversation_id: str) -> bool:
        """Another worker holds the conversation's lease (it is running it there)."""
        return await self._handoff.running_elsewhere(conversation_id)

    async def cancel_elsewhere(self, conversation_id: str) -> bool:
        """Forward the person's cancel to the worker that runs the conversation, if another
        does (services/handoff.py); False when none does."""
        return await self._handoff.cancel_elsewhere(conversation_id)

    async def _store(self, cid: str, message: AnyMessage) -> dict[str, Any]:
        return await store_message(self.repository, cid, message)

    async def _emit(self, cid: str, kind: EventKind, data: dict[str, Any]) -> None:
        if self.sink is None:
            return
        try:
            # Our own values (every token passes here): built without validation.
            # Every field given: a missing one would run pydantic's default-factory machinery
            # (a signature inspection per event, ~10 % of a streaming worker's CPU).
            event = StudioEvent.model_construct(
                kind=kind, conversation_id=cid, data=data, at=datetime.now(UTC)
            )
            await self.sink(event)
        except Exception as error:  # a broken client must never break the conversation
            if is_connection_error(error):  # the event log is in the database that is away
                log.debug("event %s of %s not stored: %s", kind, cid, error)
            else:
                log.exception("event sink failed")
