"""The conversation runner: one writer per conversation, the person always first.

The graph knows how the team talks; the runner knows how a *conversation* runs:

* A message from the person is stored at once, then handed to the graph. If the team
  is mid-run, the run is cancelled at a safe point (while a node is working, i.e.
  after the previous step's checkpoint is written - runs use ``durability="sync"``),
  and the same thread continues from its last checkpoint with the new message.
* Messages that arrive while a run is being cancelled or started are queued and
  handed over together, in arrival order: nothing is dropped or reordered.
* Text a cancelled specialist had already streamed is kept as a message marked
  ``interrupted`` (LangGraph discards a cancelled node's output), so what the person
  saw stays in the history and in the team's transcript.
* Completed messages are written to the messages table as soon as their node ends.
* A lease row in Postgres (store/leases.py) makes this process the only writer of the
  conversation; it holds no connection while the conversation runs.
* When the database goes away mid-run, the conversation waits for it (nothing is retried
  against a dead server) and continues from its last checkpoint as soon as the database is
  back (``Database.on_recovered``), in the same process, without a restart.
* A generation that ends while no graph node waits for it (it waited for ComfyUI, a
  previous process started it, the person cancelled it) reaches the conversation through
  ``deliver_result``: the conversation's worker writes it into the thread as the ComfyUI
  node's result (between runs, never during one), so the state, the transcript and the
  event stream all tell it.
* With a ``notifier`` (several workers on one database), a message that arrives while
  another worker holds the lease is handed to that worker (store/inbox.py), which queues it
  into its running turn; without one, that case is an error as before. A cancel is
  forwarded the same way (``cancel_elsewhere``).
* A worker that died mid-run stops renewing its leases; another worker's sweep
  (services/takeover.py) calls ``take_over``, which continues the run from its last
  checkpoint without repeating or losing what the dead worker had put in the event log.
  A worker that could not renew a lease for a whole ttl stops its run (``LeaseLost``):
  another may have taken it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from typing import Any, cast
from uuid import uuid4

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StreamMode

from creative_studio.core.errors import (
    ConversationBusyError,
    InvalidInputError,
    InvalidStateError,
)
from creative_studio.core.events import TOKEN_SINK_KEY, EventKind, EventSink, StudioEvent
from creative_studio.core.roles import SPECIALISTS
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.events import display_name
from creative_studio.nodes.comfyui_outcome import late_update
from creative_studio.services.conversation_state import (
    MAX_MESSAGE_CHARS,
    Interjected,
    Live,
    Partial,
    Resume,
    stored_person_message,
    validate_message,
)
from creative_studio.services.outage import OutageWaiter
from creative_studio.services.takeover import read_leftovers
from creative_studio.services.transcript import store_message
from creative_studio.store.availability import is_connection_error
from creative_studio.store.database import Database
from creative_studio.store.eventlog import EventLog
from creative_studio.store.inbox import HandedMessage, Inbox
from creative_studio.store.notify import Notifier
from creative_studio.store.records import ConversationStatus
from creative_studio.store.repository import StudioRepository
from creative_studio.workflows.run import GenerationOutcome

__all__ = ["MAX_MESSAGE_CHARS", "STREAM_MODES", "ConversationRunner", "validate_message"]

log = logging.getLogger(__name__)

STREAM_MODES: list[StreamMode] = ["updates", "tasks", "custom"]
"""No "messages": the specialists stream their tokens to the run's token sink
(core/events.py TokenSink), not through LangGraph's stream (several times the CPU)."""


class LeaseLost(Exception):
    """This worker's lease of a conversation lapsed mid-run: another worker may run it now."""


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
        # Messages other workers received for conversations this one runs.
        self._inbox = (
            Inbox(
                notifier,
                database.pool,
                database.leases.owner,
                self._take_handed,
                cancel=self._cancel_handed,
            )
            if notifier is not None
            else None
        )
        # Taking over a dead worker's conversations (services/takeover.py).
        self.events = events
        self._taking_over: set[str] = set()
        self._announced: dict[str, set[str]] = {}  # message ids the dead worker announced
        self._lost: dict[str, asyncio.Event] = {}  # per conversation run here: lease lapsed
        # Generation results no node waited for, per conversation: (outcome, known, done).
        self._late: dict[str, list[tuple[GenerationOutcome, bool, asyncio.Future[bool]]]] = {}
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
            value = await self._answer_payload(cid, answer)
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
        cid = str(conversation_id)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._late.setdefault(cid, []).append((outcome, known, done))
        live = self._live.setdefault(cid, Live())
        if live.worker is None or live.worker.done():
            live.worker = asyncio.create_task(self._work(cid), name=f"conversation-{cid}")
        return await asyncio.shield(done) if wait else False

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
        if self._inbox is not None:
            await self._inbox.close()
        workers = [lv.worker for lv in self._live.values() if lv.worker and not lv.worker.done()]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker

    async def settings(self, conversation_id: str) -> dict[str, Any]:
        """The conversation's configurable values, from its session's settings."""
        conversation = await self.repository.get_conversation(conversation_id)
        session = await self.repository.get_session(str(conversation.session_id))
        prefs = {k: v for k, v in session.preferences.items() if k in Configuration.model_fields}
        return {**prefs, "model_assignments": dict(session.model_assignments)}

    # ----------------------------------------------------------------- internals

    def _config(self, cid: str, configurable: dict[str, Any]) -> RunnableConfig:
        return {"configurable": {**self.extra_configurable, **configurable, "thread_id": cid}}

    def _kick(self, cid: str) -> None:
        live = self._live[cid]
        if live.worker is None or live.worker.done():
            live.worker = asyncio.create_task(self._work(cid), name=f"conversation-{cid}")
        elif live.run is not None and not live.run.done():
            self._interject(live)

    @staticmethod
    def _interject(live: Live) -> None:
        if live.run is None or live.run.done():
            return
        if live.working:
            live.run.cancel()  # a node is running: the previous checkpoint is complete
        else:
            live.cancel_pending = True  # between steps: stop when the next node starts

    async def _answer_payload(self, cid: str, answer: Any) -> dict[str, Any]:
        """Store the person's answer as their message and shape the resume value."""
        value = dict(answer) if isinstance(answer, dict) else {"text": str(answer)}
        text = str(value.get("text") or value.get("feedback") or value.get("choice") or "").strip()
        if "approved" in value and not text:
            text = "Approved." if value["approved"] else "Not approved."
        text = validate_message(text)
        message = HumanMessage(content=text, name="user", id=str(uuid4()))
        await self._emit(cid, "message", await self._store(cid, message))
        value.update(text=text, message_id=message.id)
        return value

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
                    self._lost[cid] = lock.lost_event
                    configurable = await self.settings(cid)
                    if cid in self._taking_over:
                        await self._pick_up(cid, live)
                    while live.pending or self._late.get(cid):
                        if self._late.get(cid):
                            await self._apply_late(cid, live, configurable)
                            continue
                        run_input = await self._next_input(cid, live, configurable)
                        await self._run(cid, live, run_input, configurable)
            except ConversationBusyError:
                if locked or self._inbox is None:
                    raise
                elsewhere = await self._hand_off(cid, live)
                again = not elsewhere  # the lease was let go meanwhile: take it now
            except LeaseLost:
                elsewhere = True  # whoever took the lease over continues it
                log.error("conversation %s: lease lost mid-run, run stopped here", cid)
                live.pending.clear()
                live.partial.clear()  # the log has it: the new holder keeps it
                live.working.clear()
                live.run = None
            else:
                again = True
        except asyncio.CancelledError:
            # The process is shutting down: stop the run, keep what was streamed, and leave
            # the status "running" so the next start continues this conversation.
            if live.run is not None and not live.run.done():
                live.run.cancel()
                await asyncio.wait({live.run})
            await asyncio.shield(self._keep_partials(cid, live))
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
            self._taking_over.discard(cid)
            self._lost.pop(cid, None)
            again = again and bool(live.pending or self._late.get(cid)) and not self._closing
            if not self._closing and not waiting and not elsewhere and not again:
                await self._finish(cid)
            if again:
                live.worker = asyncio.create_task(self._work(cid), name=f"conversation-{cid}")

    async def take_over(self, conversation_id: str) -> bool:
        """Continue a conversation whose worker died (its lease expired while "running"), or
        that a previous process left "running" (at start, api/deps.py).

        False when it already runs here. The lease decides whether it is ours: free, expired
        or held by a dead process on this host, it is taken; held by a live worker, it is
        left to that worker (``_hand_off``). The run continues from its last checkpoint
        without repeating what the previous worker announced (``_pick_up``); when there is
        nothing left to run, the conversation's final status is written.
        """
        cid = str(conversation_id)
        live = self._live.setdefault(cid, Live())
        if self._closing or (live.worker is not None and not live.worker.done()):
            return False
        snapshot = await self.graph.aget_state(self._config(cid, {}))
        if (snapshot.next or snapshot.tasks) and not snapshot.interrupts and not live.pending:
            live.pending.append(Resume(None))
        self._taking_over.add(cid)
        live.worker = asyncio.create_task(self._work(cid), name=f"conversation-{cid}")
        return True

    async def _pick_up(self, cid: str, live: Live) -> None:
        """Under the lease just taken over: keep the dead worker's half-said text, and
        remember what it announced so the replayed step does not announce it again."""
        log.info("conversation %s: lease taken, continuing from its last checkpoint", cid)
        if self.events is None:
            return
        leftovers = await read_leftovers(self.events, cid)
        self._announced[cid] = leftovers.announced
        cut = set(leftovers.partial) - set(live.partial)
        live.partial.update({k: v for k, v in leftovers.partial.items() if k in cut})
        live.phase = live.phase or leftovers.phase
        await self._keep_partials(cid, live)
        snapshot = await self.graph.aget_state(self._config(cid, {}))
        known = {str(m.id) for m in (snapshot.values or {}).get("messages", [])}
        known |= {str(m.id) for m in live.pending if isinstance(m, HumanMessage)}
        for stored in leftovers.person:  # handed to it, never checkpointed
            if str(stored["message_id"]) not in known:
                live.pending.append(stored_person_message(stored))
        # The node that was cut runs again from the checkpoint: its text is not carried in.
        live.carry = [m for m in live.carry if str(m.id) not in cut]

    async def _wait_run(self, cid: str, run: asyncio.Task[None]) -> None:
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

    async def running_elsewhere(self, conversation_id: str) -> bool:
        """Another worker holds the conversation's lease (it is running it there)."""
        holder = await self.database.leases.holder(conversation_id)
        return holder is not None and holder != self.database.leases.owner

    async def cancel_elsewhere(self, conversation_id: str) -> bool:
        """The person pressed cancel on a worker that does not run the conversation: the
        holder is told (store/inbox.py) and stops it, and its generation, there."""
        cid = str(conversation_id)
        holder = await self.database.leases.holder(cid)
        if self._inbox is None or holder is None or holder == self.database.leases.owner:
            return False
        await self._inbox.send_cancel(holder, cid)
        log.info("conversation %s runs in %s: forwarded the cancel", cid, holder)
        return True

    async def _cancel_handed(self, conversation_id: str) -> None:
        await self.cancel(conversation_id, stop_generation=True)

    async def _hand_off(self, cid: str, live: Live) -> bool:
        """Another worker holds the lease: send it the person's queued messages, in order.

        False when nobody holds it any more (it was released meanwhile). A continuation
        (``Resume``) queued here is dropped: the holder is running the conversation.
        """
        assert self._inbox is not None
        holder = await self.database.leases.holder(cid)
        if holder is None:
            return False
        if holder == self.database.leases.owner:  # our own lease, taken by another task
            raise ConversationBusyError(f"Conversation {cid} is already running here.")
        ids = [str(m.id) for m in live.pending if isinstance(m, HumanMessage)]
        if ids:
            await self._inbox.hand_off(holder, cid, ids)
            log.info("conversation %s runs in %s: handed it %d message(s)", cid, holder, len(ids))
        if cid in self._taking_over:  # a live worker holds and renews it: not ours to take
            log.info("conversation %s runs in live worker %s: left to it", cid, holder)
        live.pending.clear()
        return True

    async def _take_handed(self, handed: HandedMessage) -> None:
        """A message another worker received for a conversation this worker runs: queued as
        the same HumanMessage that worker would have queued (rebuilt from the stored row,
        images and all)."""
        cid = handed.conversation_id
        live = self._live.setdefault(cid, Live())
        if any(isinstance(m, HumanMessage) and m.id == handed.message_id for m in live.pending):
            return
        live.pending.append(stored_person_message(dataclasses.asdict(handed)))
        self._kick(cid)

    async def _apply_late(self, cid: str, live: Live, configurable: dict[str, Any]) -> None:
        """Write late generation results into the thread, as the ComfyUI node's result.

        While the conversation is "generating" the update is applied as the node's own
        write and the router runs after it (deterministic, no model), so the thread ends
        exactly as if the node had waited. A discussion that went on meanwhile only gets
        the line in its transcript: its state is the discussion's.
        """
        config = self._config(cid, configurable)
        for outcome, known, done in self._late.pop(cid, []):
            applied = False
            try:
                snapshot = await self.graph.aget_state(config)
                values = snapshot.values or {}
                update = late_update(values, outcome, known=known)
                if update is not None:
                    applied = True
                    if values.get("phase") == "generating" and not snapshot.interrupts:
                        await self.graph.aupdate_state(config, update, as_node="comfyui")
                        await self.graph.ainvoke(None, config, durability="sync")
                    if update.get("phase") and update["phase"] != live.phase:
                        live.phase = update["phase"]
                        await self._emit(cid, "phase", {"phase": update["phase"]})
                    for message in update["messages"]:
                        await self._emit(cid, "message", await self._store(cid, message))
            finally:
                if not done.done():
                    done.set_result(applied)

    async def _next_input(self, cid: str, live: Live, configurable: dict[str, Any]) -> Any:
        first = live.pending[0]
        if isinstance(first, Resume):
            live.pending.pop(0)
            return first.value
        # Read the state before taking messages off the queue: if the database fails here,
        # they are still queued for when it is back.
        snapshot = await self.graph.aget_state(self._config(cid, configurable))
        batch: list[HumanMessage] = []
        while live.pending and isinstance(live.pending[0], HumanMessage):
            batch.append(live.pending.pop(0))  # type: ignore[arg-type]
        if snapshot.interrupts:
            # The team was waiting for the person: the first message is the answer.
            answer, rest = batch[0], batch[1:]
            live.pending[:0] = rest
            return Command(resume={"text": answer.text, "message_id": answer.id})
        carried, live.carry = live.carry, []
        return {"messages": [*carried, *batch]}

    async def _run(
        self, cid: str, live: Live, run_input: Any, configurable: dict[str, Any]
    ) -> None:
        try:
            await self.repository.set_conversation_status(cid, "running")
        except Exception as unavailable:
            if is_connection_error(unavailable):
                live.pending.insert(0, Resume(run_input))  # run it once the database is back
            raise
        await self._emit(cid, "status", {"state": "running"})
        live.cancel_pending = False
        live.started = False
        live.run = asyncio.create_task(self._stream(cid, live, run_input, configurable))
        await self._wait_run(cid, live.run)
        interjected = live.run.cancelled() or isinstance(live.run.exception(), Interjected)
        if interjected:
            await self._keep_partials(cid, live)
        elif is_connection_error(error := live.run.exception()):
            # Once a node started, the input is in a checkpoint: continue from there (the
            # cut node runs again; its half-streamed text was never stored). Before that,
            # the same input is handed over again.
            live.pending.insert(0, Resume(None if live.started else run_input))
            live.run = None
            live.working.clear()
            live.partial.clear()
            assert error is not None
            raise error
        elif error is not None:
            log.error("run of %s failed: %r", cid, error)
            await self._emit(
                cid, "error", {"message": f"The team hit an error: {error}", "recoverable": True}
            )
        live.run = None
        live.working.clear()
        live.partial.clear()

    async def _stream(
        self, cid: str, live: Live, run_input: Any, configurable: dict[str, Any]
    ) -> None:
        config = self._config(cid, configurable)
        config["configurable"][TOKEN_SINK_KEY] = functools.partial(self._on_token, cid, live)
        stream = self.graph.astream(
            run_input,
            config,
            stream_mode=STREAM_MODES,
            durability="sync",
        )
        async for part in stream:
            mode, chunk = cast(tuple[str, Any], part)
            if mode == "tasks":
                await self._on_task(cid, live, chunk)
            elif mode == "updates":
                await self._on_update(cid, live, chunk)
            elif mode == "custom" and isinstance(chunk, dict) and chunk.get("kind"):
                await self._emit(cid, chunk["kind"], chunk.get("data") or {})

    async def _on_task(self, cid: str, live: Live, task: dict[str, Any]) -> None:
        name = task.get("name", "")
        if "input" in task:  # a node starts: everything before it is checkpointed
            if live.cancel_pending:
                raise Interjected
            live.started = True
            live.working.add(task["id"])
            if name in SPECIALISTS:
                await self._emit(
                    cid, "typing", {"role": name, "speaker": display_name(name), "active": True}
                )
        else:
            live.working.discard(task.get("id", ""))
            if name in SPECIALISTS:
                await self._emit(
                    cid, "typing", {"role": name, "speaker": display_name(name), "active": False}
                )

    async def _on_token(self, cid: str, live: Live, role: str, message_id: str, text: str) -> None:
        """A specialist's token (the run's token sink): kept as partial text, sent on."""
        partial = live.partial.get(message_id)
        if partial is None:
            turn = live.turn or {}
            partial = Partial(role=role, phase=live.phase, kind=turn.get("kind"))
            live.partial[message_id] = partial
        partial.text += text
        await self._emit(
            cid,
            "token",
            {"message_id": message_id, "role": role, "speaker": display_name(role), "text": text},
        )

    async def _on_update(self, cid: str, live: Live, chunk: dict[str, Any]) -> None:
        for node, update in chunk.items():
            if node == "__interrupt__":
                for item in update:
                    await self._emit(
                        cid, "interrupt", {"interrupt_id": item.id, "question": item.value}
                    )
                continue
            if not isinstance(update, dict):
                continue
            if "current" in update:
                live.turn = update["current"]
            phase = update.get("phase")
            if phase and phase != live.phase:  # announce the phase before what is said in it
                live.phase = phase
                await self._emit(cid, "phase", {"phase": phase})
            for message in update.get("messages") or []:
                live.partial.pop(str(message.id), None)
                if str(message.id) in self._announced.get(cid, ()):
                    continue  # a replayed step the worker before us had announced
                await self._emit(cid, "message", await self._store(cid, message))

    async def _keep_partials(self, cid: str, live: Live) -> None:
        """What a cancelled specialist already streamed stays, marked interrupted."""
        for message_id, partial in list(live.partial.items()):
            if not partial.text.strip():
                continue
            message = AIMessage(
                content=partial.text.strip(),
                name=display_name(partial.role),
                id=message_id,
                additional_kwargs={
                    "role": partial.role,
                    "speaker": partial.role,
                    "phase": partial.phase,
                    "kind": partial.kind,
                    "interrupted": True,
                },
            )
            live.carry.append(message)
            await self._emit(cid, "message", await self._store(cid, message))
        live.partial.clear()

    async def _finish(self, cid: str) -> None:
        live = self._live.get(cid)
        if live is not None:
            live.run = None
            live.working.clear()
        try:
            snapshot = await self.graph.aget_state(self._config(cid, {}))
        except Exception:  # the database went away at shutdown: nothing more to report
            log.warning("could not read the final state of %s", cid, exc_info=True)
            return
        status: ConversationStatus
        if snapshot.interrupts:
            status = "waiting"
        elif (snapshot.values or {}).get("phase") == "complete":
            status = "complete"
        else:
            status = "idle"
        with contextlib.suppress(Exception):
            await self.repository.set_conversation_status(cid, status)
        await self._emit(cid, "status", {"state": status})

    async def _store(self, cid: str, message: AnyMessage) -> dict[str, Any]:
        return await store_message(self.repository, cid, message)

    async def _emit(self, cid: str, kind: EventKind, data: dict[str, Any]) -> None:
        if self.sink is None:
            return
        try:
            await self.sink(StudioEvent(kind=kind, conversation_id=cid, data=data))
        except Exception as error:  # a broken client must never break the conversation
            if is_connection_error(error):  # the event log is in the database that is away
                log.debug("event %s of %s not stored: %s", kind, cid, error)
            else:
                log.exception("event sink failed")
