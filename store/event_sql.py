"""The event log's batch statement (store/eventlog.py writes every batch with it).

The batch is one call of ``studio_log_events`` (supabase/migrations/
0007_event_log_batch_function.sql): it takes the conversations' advisory locks, inserts the
rows in order, reads each event's previous id and NOTIFYs the other workers, in one
statement on an autocommit connection - one round trip, and no pipeline (psycopg polls a
pipeline's socket while it waits: ~3.3 ms of CPU per batch, against ~0.5 ms for this).

The other workers hear of the batch in a few NOTIFYs, not one per event: each payload is
``instance|[[cid, id, previous, kind, at, data], ...]`` with the events in id order, in
groups of about GROUP_BYTES (a payload must stay under 8,000 bytes). An event whose data is
over INLINE_BYTES goes without it (``data`` null): a follower reads it from the table. The
two figures are written in the function; they are here for the readers of the payloads.
"""

from __future__ import annotations

import json

from creative_studio.core.events import StudioEvent

__all__ = ["GROUP_BYTES", "INLINE_BYTES", "INSERT_BATCH", "rows_document"]

INLINE_BYTES = 3000
GROUP_BYTES = 4000  # a group is at most GROUP_BYTES plus one event: under 8,000 bytes
INSERT_BATCH = (
    "select id, previous from studio_log_events("
    "%(lock_class)s, %(keys)s::int[], %(rows)s::jsonb, %(channel)s::text, %(instance)s::text)"
)


def rows_document(events: list[StudioEvent]) -> str:
    """The batch as one JSON array of [conversation, kind, data, created_at] rows."""
    return json.dumps(
        [[e.conversation_id, e.kind, e.data, e.at.isoformat()] for e in events], default=str
    )
