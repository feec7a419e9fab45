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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast
from uuid import uuid4

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StreamMode

from creative_studio.core.errors import InvalidInputError, InvalidStateError
from creative_studio.core.events import EventKind, EventSink, StudioEvent
from creative_studio.core.roles import SPECIALISTS
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.events import display_name
from creative_studio.services.conversation_state import (
    MAX_MESSAGE_CHARS,
    Interjected,
    Live,
    Partial,
    Resume,
    validate_message,
)
from creative_studio.services.outage import OutageWaiter
from creative_studio.services.transcript import store_message
from creative_studio.store.availability import is_connection_error
from creative_studio.store.database import Database
from creative_studio.store.records import ConversationStatus
from creative_studio.store.repository import StudioRepository

__all__ = ["MAX_MESSAGE_CHARS", "STREAM_MODES", "ConversationRunner", "validate_message"]

log = logging.getLogger(__name__)

STREAM_MODES: list[StreamMode] = ["messages", "updates", "tasks", "custom"]


class ConversationRunner:
    """Runs conversations of one compiled studio graph against the studio database."""

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        database: Database,
        *,
        sink: EventSink | None = None,
        extra_configurable: dict[str, Any] | None = None,
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

    # ----------------------------------------------------------------- public API

    async def send(self, conversation_id: str, text: str) -> dict[str, Any]:
        """Store the person's message and hand it to the team; returns the stored message."""
        body = validate_message(text)
        conversation = await self.repository.get_conversation(conversation_id)
        cid = str(conversation.id)
        message = HumanMessage(content=body, name="user", id=str(uuid4()))
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

    async def cancel(self, conversation_id: str) -> bool:
        """Stop the current run at a safe point. True if something was running."""
        cid = str((await self.repository.get_conversation(conversation_id)).id)
        live = self._live.get(cid)
        if live is None or live.run is None or live.run.done():
            return False
        self._interject(live)
        return True

    def is_running(self, conversation_id: str) -> bool:
        live = self._live.get(conversation_id)
        return bool(live and live.worker and not live.worker.done())

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
        try:
            async with self.database.writer_lock(cid):
                configurable = await self.settings(cid)
                while live.pending:
                    run_input = await self._next_input(cid, live, configurable)
                    await self._run(cid, live, run_input, configurable)
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
            if not self._closing and not waiting:
                await self._finish(cid)

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
        await asyncio.wait({live.run})
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
        stream = self.graph.astream(
            run_input,
            self._config(cid, configurable),
            stream_mode=STREAM_MODES,
            durability="sync",
        )
        async for part in stream:
            mode, chunk = cast(tuple[str, Any], part)
            if mode == "tasks":
                await self._on_task(cid, live, chunk)
            elif mode == "messages":
                await self._on_token(cid, live, chunk)
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

    async def _on_token(self, cid: str, live: Live, chunk: Any) -> None:
        message, metadata = chunk
        role = metadata.get("langgraph_node")
        text = message.text if hasattr(message, "text") else ""
        if role not in SPECIALISTS or not text or message.type != "AIMessageChunk":
            return
        message_id = str(message.id)
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
                await self._emit(cid, "message", await self._store(cid, message))

    async def _keep_partials(self, cid: str, live: Live) -> None:
        """What a cancelled specialist already streamed stays, marked interrupted."""
        for message_id, partial in list(live.partial.items()):
            if not partial.text.strip():
                continue
            message = AIMessage(
                content=partial.text.strip(),
                name=partial.role,
                id=message_id,
                additional_kwargs={
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
