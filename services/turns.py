"""One turn of a conversation: its input taken off the queue (the person's answer shaped
and stored), run through the graph, its stream told as the studio's events and stored
messages, and the conversation's status once nothing is left to run (services/runner.py
decides when a conversation runs; this is what a run does).

* Text a cancelled specialist had already streamed is kept as a message marked
  ``interrupted`` (LangGraph discards a cancelled node's output), so what the person
  saw stays in the history and in the team's transcript.
* Completed messages are written to the messages table as soon as their node ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast
from uuid import uuid4

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StreamMode

from creative_studio.core.events import CUT_KEY, REPLAY_KEY, TOKEN_SINK_KEY, EventKind
from creative_studio.core.roles import SPECIALISTS
from creative_studio.graph.events import display_name
from creative_studio.services.conversation_state import (
    Interjected,
    Live,
    Partial,
    Resume,
    validate_message,
)
from creative_studio.store.availability import is_connection_error
from creative_studio.store.records import ConversationStatus
from creative_studio.store.repository import StudioRepository

log = logging.getLogger(__name__)

STREAM_MODES: list[StreamMode] = ["updates", "tasks", "custom"]
"""No "messages": the specialists stream their tokens to the run's token sink
(core/events.py TokenSink), not through LangGraph's stream (several times the CPU)."""


class Turns:
    """What a run of one of the runner's conversations does; the runner's worker calls it,
    one run at a time per conversation (services/runner.py ``_work``)."""

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        repository: StudioRepository,
        *,
        config: Callable[[str, dict[str, Any]], RunnableConfig],
        emit: Callable[[str, EventKind, dict[str, Any]], Awaitable[None]],
        store: Callable[[str, AnyMessage], Awaitable[dict[str, Any]]],
        wait_run: Callable[[str, asyncio.Task[None]], Awaitable[None]],
        announced: dict[str, set[str]],
    ) -> None:
        """The runner's: the thread's config, how it announces and stores what is said,
        how it waits for a run (under its lease), and the message ids a previous worker
        already announced (services/takeover.py: a replayed step does not say them again)."""
        self.graph = graph
        self.repository = repository
        self._config = config
        self._emit = emit
        self._store = store
        self._wait_run = wait_run
        self._announced = announced

    async def answer_payload(self, cid: str, answer: Any) -> dict[str, Any]:
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

    async def next_input(self, cid: str, live: Live, configurable: dict[str, Any]) -> Any:
        """The next input for the graph, taken off the conversation's queue: a continuation,
        or every message of the person's queued up to it, together, in arrival order."""
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

    async def run(self, cid: str, live: Live, run_input: Any, configurable: dict[str, Any]) -> None:
        """One run of the graph; an interjection ends it (what was streamed stays), the
        database going away ends it with the input queued again for when it is back."""
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
            await self.keep_partials(cid, live)
        elif is_connection_error(error := live.run.exception()):
            # Once a node started, the input is in a checkpoint: continue from there (the
            # cut node runs again; its half-streamed text was never stored). Before that,
            # the same input is handed over again.
            live.pending.insert(0, Resume(None if live.started else run_input))
            live.run = None
            live.working.clear()
            live.cut |= set(live.partial)  # the re-run turn takes another id
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
        live.said.clear()  # the run's steps are checkpointed: nothing of it runs again
        live.cut.clear()

    async def _stream(
        self, cid: str, live: Live, run_input: Any, configurable: dict[str, Any]
    ) -> None:
        config = self._config(cid, configurable)
        config["configurable"][TOKEN_SINK_KEY] = functools.partial(self._on_token, cid, live)
        config["configurable"][REPLAY_KEY] = dict(live.said)
        config["configurable"][CUT_KEY] = set(live.cut)
        if run_input is None:
            await self._address_cut_step(config)
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

    async def _address_cut_step(self, config: RunnableConfig) -> None:
        """Continue a cut run by running its cut step again, not by reusing its writes.

        A task cancelled at shutdown keeps the writes its node had made (LangGraph saves
        them with the task's CancelledError), and a run continued from the thread's latest
        checkpoint hands them back as if the node had finished: a router cut after its
        update but before its edge to the next speaker ended the continued run at once,
        mid-discussion. Addressed at that checkpoint (its id in the config), LangGraph runs
        the step again on a fork of it instead (time travel's replay). A cut task's update
        was never streamed (LangGraph tells only finished tasks), so nothing is said twice."""
        snapshot = await self.graph.aget_state(config)
        if any(task.error is not None and task.result for task in snapshot.tasks):
            checkpoint_id = snapshot.config["configurable"]["checkpoint_id"]
            log.warning("continuing at checkpoint %s: its step was cut", checkpoint_id)
            config["configurable"]["checkpoint_id"] = checkpoint_id

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
                message_id = str(message.id)
                live.partial.pop(message_id, None)
                if message_id in self._announced.get(cid, ()) or message_id in live.said:
                    continue  # a replayed step: said already, here or by the worker before us
                await self._emit(cid, "message", await self._store(cid, message))
                if message.additional_kwargs.get("role") in SPECIALISTS:
                    live.said[message_id] = message.text

    async def keep_partials(self, cid: str, live: Live) -> None:
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

    async def finish(self, cid: str, live: Live) -> None:
        """The conversation's worker has nothing left to run: its status, written and told."""
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


__all__ = ["STREAM_MODES", "Turns"]
