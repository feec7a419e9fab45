"""The event log's batch statement (store/eventlog.py writes every batch with it).

The batch is one call of ``studio_log_events`` (supabase/migrations/
0007_event_log_batch_function.sql): it takes the conversations' advisory locks, inserts the
rows in order, reads each event's previous id and NOTIFYs the other workers, in one
statement on an autocommit connection - one round trip, and no pipeline (psycopg polls a
pipeline's socket while it waits: ~3.3 ms of CPU per batch, against ~0.5 ms for this).

The other workers hear of the batch in a few NOTIFYs, not one per event: each payload is
``instance|[[cid, id, previous, kind, at, data], ...]`` with the events in id order, in
groups of about 4,000 bytes (a payload must stay under 8,000). An event whose data is over
3,000 bytes goes without it (``data`` null): a follower reads it from the table. Both
figures live in the function only (store/event_notices.py reads payloads of any size).
"""

from __future__ import annotations

import orjson

from creative_studio.core.events import StudioEvent

__all__ = ["INSERT_BATCH", "rows_document"]

INSERT_BATCH = (
    "select id, previous from studio_log_events("
    "%(lock_class)s, %(keys)s::int[], %(rows)s::jsonb, %(channel)s::text, %(instance)s::text)"
)


def rows_document(events: list[StudioEvent]) -> str:
    """The batch as one JSON array of [conversation, kind, data, created_at] rows (what
    JSON cannot say is written as its ``str``, as the API's own encoding does)."""
    return orjson.dumps(
        [[e.conversation_id, e.kind, e.data, e.at] for e in events],
        default=str,
        option=orjson.OPT_NON_STR_KEYS,
    ).decode()
