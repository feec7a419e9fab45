"""Generation results that end while no graph node waits for them.

A generation that ends while no graph node waits for it (it waited for ComfyUI, a
previous process started it, the person cancelled it) reaches the conversation through
``ConversationRunner.deliver_result``: the conversation's worker writes it into the thread
as the ComfyUI node's result (between runs, never during one), so the state, the
transcript and the event stream all tell it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from creative_studio.core.events import EventKind
from creative_studio.nodes.comfyui_outcome import late_update
from creative_studio.services.conversation_state import Live
from creative_studio.workflows.run import GenerationOutcome

Emit = Callable[[str, EventKind, dict[str, Any]], Awaitable[None]]
Store = Callable[[str, AnyMessage], Awaitable[dict[str, Any]]]


class LateResults:
    """The late results of each conversation, queued for its worker until it writes them."""

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        *,
        wake: Callable[[str], None],
        emit: Emit,
        store: Store,
    ) -> None:
        """``wake`` starts the conversation's worker unless it runs; ``emit`` and ``store``
        announce and store a message, as the runner does for everything it says."""
        self.graph = graph
        self._wake = wake
        self._emit = emit
        self._store = store
        # Per conversation: (outcome, known, done).
        self._queued: dict[str, list[tuple[GenerationOutcome, bool, asyncio.Future[bool]]]] = {}

    def __contains__(self, cid: str) -> bool:
        """Results are queued for the conversation."""
        return bool(self._queued.get(cid))

    async def deliver(
        self, cid: str, outcome: GenerationOutcome, *, known: bool, wait: bool
    ) -> bool:
        """Queue the result to the conversation's worker (after the run in progress, if any);
        with ``wait``, returns once it is written (True) or found to have no place (False)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(cid, []).append((outcome, known, done))
        self._wake(cid)
        return await asyncio.shield(done) if wait else False

    async def apply(self, cid: str, live: Live, config: RunnableConfig) -> None:
        """Write the queued results into the thread, as the ComfyUI node's result.

        While the conversation is "generating" the update is applied as the node's own
        write and the router runs after it (deterministic, no model), so the thread ends
        exactly as if the node had waited. A discussion that went on meanwhile only gets
        the line in its transcript: its state is the discussion's.
        """
        for outcome, known, done in self._queued.pop(cid, []):
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


__all__ = ["LateResults"]
