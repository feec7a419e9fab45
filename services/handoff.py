"""Handing the person's messages and cancels to the worker that runs a conversation.

With a ``notifier`` (several workers on one database), a message that arrives while
another worker holds the lease is handed to that worker (store/inbox.py), which queues it
into its running turn; without one, that case is an error as before. A cancel is
forwarded the same way (``cancel_elsewhere``). The runner (services/runner.py) owns the
queues; this is only the way between workers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from langchain_core.messages import HumanMessage

from creative_studio.core.errors import ConversationBusyError
from creative_studio.services.conversation_state import Live, stored_person_message
from creative_studio.store.database import Database
from creative_studio.store.inbox import HandedMessage, Inbox
from creative_studio.store.notify import Notifier

log = logging.getLogger(__name__)


class Handoff:
    """This worker's side of the way between workers: it hands on what arrives here for a
    conversation another worker runs, and takes in what others hand on to it."""

    def __init__(
        self,
        database: Database,
        notifier: Notifier | None,
        *,
        lives: dict[str, Live],
        kick: Callable[[str], None],
        cancel: Callable[[str], Awaitable[object]],
    ) -> None:
        """``lives`` and ``kick`` are the runner's: its conversations and how to wake one;
        ``cancel`` stops a conversation and its generation (the person pressed cancel)."""
        self.leases = database.leases
        self._lives = lives
        self._kick = kick
        self._cancel = cancel
        # Messages other workers received for conversations this one runs.
        self.inbox = (
            Inbox(notifier, database.pool, self.leases.owner, self._take, cancel=self._cancelled)
            if notifier is not None
            else None
        )

    async def running_elsewhere(self, conversation_id: str) -> bool:
        """Another worker holds the conversation's lease (it is running it there)."""
        holder = await self.leases.holder(conversation_id)
        return holder is not None and holder != self.leases.owner

    async def cancel_elsewhere(self, conversation_id: str) -> bool:
        """The person pressed cancel on a worker that does not run the conversation: the
        holder is told (store/inbox.py) and stops it, and its generation, there."""
        cid = str(conversation_id)
        holder = await self.leases.holder(cid)
        if self.inbox is None or holder is None or holder == self.leases.owner:
            return False
        await self.inbox.send_cancel(holder, cid)
        log.info("conversation %s runs in %s: forwarded the cancel", cid, holder)
        return True

    async def hand_off(self, cid: str, live: Live, *, taking_over: bool) -> bool:
        """Another worker holds the lease: send it the person's queued messages, in order.

        False when nobody holds it any more (it was released meanwhile). A continuation
        (``Resume``) queued here is dropped: the holder is running the conversation.
        ``taking_over``: this worker meant to take the conversation over (``take_over``).
        """
        assert self.inbox is not None
        holder = await self.leases.holder(cid)
        if holder is None:
            return False
        if holder == self.leases.owner:  # our own lease, taken by another task
            raise ConversationBusyError(f"Conversation {cid} is already running here.")
        ids = [str(m.id) for m in live.pending if isinstance(m, HumanMessage)]
        if ids:
            await self.inbox.hand_off(holder, cid, ids)
            log.info("conversation %s runs in %s: handed it %d message(s)", cid, holder, len(ids))
        if taking_over:  # a live worker holds and renews it: not ours to take
            log.info("conversation %s runs in live worker %s: left to it", cid, holder)
        live.pending.clear()
        return True

    async def close(self) -> None:
        if self.inbox is not None:
            await self.inbox.close()

    async def _cancelled(self, conversation_id: str) -> None:
        await self._cancel(conversation_id)

    async def _take(self, handed: HandedMessage) -> None:
        """A message another worker received for a conversation this worker runs: queued as
        the same HumanMessage that worker would have queued (rebuilt from the stored row,
        images and all)."""
        cid = handed.conversation_id
        live = self._lives.setdefault(cid, Live())
        if any(isinstance(m, HumanMessage) and m.id == handed.message_id for m in live.pending):
            return
        live.pending.append(stored_person_message(dataclasses.asdict(handed)))
        self._kick(cid)


__all__ = ["Handoff"]
