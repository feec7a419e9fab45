"""The idle pause: a discussion stops when its person left, and goes on when they are back.

With several workers the person may watch on one worker while another runs the
conversation, so a worker writes where it saw the person (store/presence.py) every
``FLUSH_S`` seconds, and the worker running a conversation pauses it only when nobody was
seen for the session's ``pause_after_idle_seconds`` on any worker - nobody watching the
stream, nothing sent. The pause is shared too: the person coming back on any worker (a
message, opening the stream, POST resume) continues the run there, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from creative_studio.core.errors import StudioError
from creative_studio.services.runner import ConversationRunner
from creative_studio.store.eventlog import EventLog
from creative_studio.store.presence import PresenceStore
from creative_studio.store.repository import StudioRepository

log = logging.getLogger(__name__)

FLUSH_S = 5.0

__all__ = ["FLUSH_S", "IdleWatch"]


class IdleWatch:
    """This worker's view of the person's presence, and the pauses it decides."""

    def __init__(
        self,
        runner: ConversationRunner,
        events: EventLog,
        repository: StudioRepository,
        store: PresenceStore,
    ) -> None:
        self.runner = runner
        self.events = events
        self.repository = repository
        self.store = store
        self.last_seen: dict[str, float] = {}  # conversation -> person activity (monotonic)
        self._unsaid: set[str] = set()  # seen here since the last flush

    def touch(self, conversation_id: str) -> None:
        """The person is here (sent something, or is watching the stream)."""
        self.last_seen[conversation_id] = time.monotonic()
        self._unsaid.add(conversation_id)

    async def flush(self) -> None:
        """Tell the other workers where the person was seen (streams open here count)."""
        for conversation_id in self.events.watched():
            self.touch(conversation_id)
        seen, self._unsaid = self._unsaid, set()
        try:
            await self.store.seen(seen)
        except Exception:
            self._unsaid |= seen  # said next time
            raise

    async def person_is_back(self, conversation_id: str) -> None:
        self.touch(conversation_id)
        if await self.store.take_paused(conversation_id):
            with contextlib.suppress(StudioError):
                await self.runner.resume(conversation_id)
                await self.events.publish_status(conversation_id, "resumed")

    async def unpause(self, conversation_id: str) -> None:
        """An explicit resume: whatever paused the run is over."""
        self.touch(conversation_id)
        await self.store.take_paused(conversation_id)

    async def pause_idle(self) -> list[str]:
        """Pause the discussions this worker runs whose person left (on every worker)."""
        candidates = []
        for conversation_id in self.runner.running_ids():
            if self.events.listeners(conversation_id):
                self.touch(conversation_id)  # someone is watching the stream here
            else:
                candidates.append(conversation_id)
        if not candidates:
            return []
        elsewhere = await self.store.away_for(candidates)
        now = time.monotonic()
        paused = []
        for conversation_id in candidates:
            here = self.last_seen.get(conversation_id)
            aways = [] if here is None else [now - here]
            if conversation_id in elsewhere:
                aways.append(elsewhere[conversation_id])
            if not aways:
                continue  # never seen: nothing to judge by
            limit = await self._idle_limit(conversation_id)
            if limit is None or min(aways) <= limit:
                continue
            await self.store.mark_paused(conversation_id)
            await self.runner.cancel(conversation_id)
            await self.runner.wait_idle(conversation_id)
            await self.events.publish_status(conversation_id, "paused")
            paused.append(conversation_id)
        return paused

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
                await self.pause_idle()
            except Exception as error:  # e.g. the database is away: try again next time
                log.warning("idle check failed: %s", error)

    async def _idle_limit(self, conversation_id: str) -> float | None:
        try:
            conversation = await self.repository.get_conversation(conversation_id)
            session = await self.repository.get_session(conversation.session_id)
        except StudioError:
            return None
        value: Any = session.preferences.get("pause_after_idle_seconds")
        return float(value) if value else None
