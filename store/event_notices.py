"""What another worker's NOTIFY says about the events it stored (store/event_sql.py).

A payload is ``instance|[[cid, id, previous, kind, at, data], ...]``: the events of one
group of a batch, in id order, ``data`` null for an event too large to travel (a follower
reads that one from the table). A worker from before per-batch payloads said one event:
``instance|cid|id|previous|kind|at|data`` or just ``instance|cid|id``; both are understood,
so workers of two versions can share a database during an upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

__all__ = ["LoggedEvent", "Notice", "read_notice"]


@dataclass(slots=True)
class LoggedEvent:
    """A stored event, as the log hands it to followers. A plain slotted class: one is made
    for every token (a pydantic model cost ~5 µs each, construction unvalidated included)."""

    id: int
    conversation_id: str
    kind: str
    data: dict[str, Any]
    created_at: datetime | None = None


@dataclass(slots=True)
class Notice:
    """One stored event as announced: with ``event`` it can be sent from memory (when it
    follows ``previous``); without, it says only that the table has rows up to ``id``."""

    conversation_id: str
    id: int
    previous: int = 0
    event: LoggedEvent | None = None


def read_notice(payload: str, instance: str, wanted: Container[str]) -> list[Notice]:
    """The announced events of conversations in ``wanted``; nothing for our own payloads
    (``instance``: already delivered here) or for what is not ours to understand."""
    sender, _, rest = payload.partition("|")
    if sender == instance:
        return []
    if not rest.startswith("["):
        return _single(rest, wanted)
    try:
        items = orjson.loads(rest)
    except ValueError:
        return []
    notices = []
    for item in items:
        try:
            cid, event_id, previous, kind, at, data = item
            if cid not in wanted:
                continue
            if data is None:
                notices.append(Notice(cid, int(event_id)))
                continue
            event = LoggedEvent(  # the sender's own values
                id=int(event_id),
                conversation_id=cid,
                kind=kind,
                data=data,
                created_at=datetime.fromisoformat(at),
            )
        except (TypeError, ValueError):  # the table has it, whatever it is
            try:
                if item[0] in wanted:
                    notices.append(Notice(item[0], int(item[1])))
            except (TypeError, ValueError, IndexError, KeyError):
                pass
            continue
        notices.append(Notice(cid, event.id, int(previous), event))
    return notices


def _single(rest: str, wanted: Container[str]) -> list[Notice]:
    parts = rest.split("|", 5)
    if len(parts) < 2 or parts[0] not in wanted or not parts[1].isdigit():
        return []
    cid, last = parts[0], int(parts[1])
    if len(parts) == 6 and parts[2].isdigit():
        try:
            event = LoggedEvent(
                id=last,
                conversation_id=cid,
                kind=parts[3],
                data=json.loads(parts[5]),
                created_at=datetime.fromisoformat(json.loads(parts[4])),
            )
        except ValueError:
            return [Notice(cid, last)]
        return [Notice(cid, last, int(parts[2]), event)]
    return [Notice(cid, last)]
