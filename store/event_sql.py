"""The event log's batch statement (store/eventlog.py writes every batch with it)."""

from __future__ import annotations

import json

from creative_studio.core.events import StudioEvent

__all__ = ["GROUP_BYTES", "INLINE_BYTES", "INSERT_BATCH", "rows_document"]

# The batch in one statement: the rows come as one JSON document (psycopg would quote every
# element of four arrays in Python; json.dumps is C) and go in in its order, so sorted ids
# follow the events'. "before" reads each conversation's last id in the statement's snapshot
# (taken after the lock: it sees the previous holder's rows, not this insert's); each new
# event's previous id is the one before it in this batch, else that.
#
# The other workers hear of the batch in a few NOTIFYs, not one per event: each payload is
# ``instance|[[cid, id, previous, kind, at, data], ...]`` with the events in id order, in
# groups of about GROUP_BYTES (a payload must stay under 8,000 bytes). An event whose data
# is over INLINE_BYTES goes without it (``data`` null): a follower reads it from the table.
INLINE_BYTES = 3000
GROUP_BYTES = 4000  # a group is at most GROUP_BYTES plus one event: under 8,000 bytes
INSERT_BATCH = f"""
with rows as (
  select (e->>0)::uuid as c, e->>1 as k, e->2 as d, (e->>3)::timestamptz as t, n
  from jsonb_array_elements(%(rows)s::jsonb) with ordinality as r(e, n)
), ins as (
  insert into conversation_events (conversation_id, kind, data, created_at)
  select c, k, d, t from rows order by n
  returning id, conversation_id, kind, data, created_at
), before as (
  select c, (select max(id) from conversation_events x where x.conversation_id = c) as last
  from (select distinct c from rows) d
), told as (
  select i.id, i.conversation_id, i.kind, i.data, i.created_at,
    coalesce(lag(i.id) over (partition by i.conversation_id order by i.id), b.last, 0)
      as previous
  from ins i join before b on b.c = i.conversation_id
), items as (
  select t.id, json_build_array(t.conversation_id, t.id, t.previous, t.kind, t.created_at,
    case when octet_length(t.data::text) <= {INLINE_BYTES} then t.data end)::text as j
  from told t where %(channel)s::text is not null
), grouped as (
  select id, j, sum(octet_length(j) + 1) over (order by id) / {GROUP_BYTES} as g from items
), notified as (
  select count(*) as n from (
    select pg_notify(%(channel)s, %(instance)s || '|[' || string_agg(j, ',' order by id) || ']')
    from grouped group by g
  ) x
)
select t.id, t.previous, (select n from notified) as notified from told t order by t.id
"""


def rows_document(events: list[StudioEvent]) -> str:
    """The batch as one JSON array of [conversation, kind, data, created_at] rows."""
    return json.dumps(
        [[e.conversation_id, e.kind, e.data, e.at.isoformat()] for e in events], default=str
    )
