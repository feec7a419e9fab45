-- One batch of the SSE event log (store/eventlog.py, store/event_sql.py) in one statement.
--
-- A batch used to be a pipelined transaction (begin, lock, insert, commit). psycopg waits
-- for a pipeline's results by polling its always-writable socket, so every batch kept the
-- writer's CPU busy for the whole round trip: ~3.3 ms of CPU per batch against ~0.5 ms for
-- this one statement in autocommit (measured on the embedded server). The semantics are the
-- pipeline's: the conversations' advisory locks are taken first, and the insert is a later
-- statement of this volatile function, so under READ COMMITTED its snapshot is taken after
-- the locks and sees the previous holder's rows: per conversation, ids follow commit order.
-- The locks are transaction-level: held until the statement's own transaction commits.
--
-- rows: one JSON array of [conversation, kind, data, created_at] rows, stored in its order.
-- Each new event's previous id is the one before it in this batch, else the conversation's
-- last stored id. When channel is not null, the batch is announced on it in a few NOTIFYs,
-- each ``instance|[[cid, id, previous, kind, at, data], ...]`` with the events in id order,
-- in groups of about 4,000 bytes (a payload must stay under 8,000); an event whose data is
-- over 3,000 bytes goes without it (data null): a follower reads it from the table.
create or replace function public.studio_log_events(
  lock_class int, lock_keys int[], rows jsonb, channel text, instance text
) returns table (id bigint, previous bigint)
language plpgsql
set search_path = public
as $fn$
#variable_conflict use_column
begin
  perform pg_advisory_xact_lock(lock_class, k) from unnest(lock_keys) k order by k;
  return query
  with batch as (
    select (e->>0)::uuid as c, e->>1 as k, e->2 as d, (e->>3)::timestamptz as t, n
    from jsonb_array_elements(rows) with ordinality as r(e, n)
  ), ins as (
    insert into conversation_events (conversation_id, kind, data, created_at)
    select c, k, d, t from batch order by n
    returning id, conversation_id, kind, data, created_at
  ), before as (
    select c, (select max(x.id) from conversation_events x where x.conversation_id = c) as last
    from (select distinct c from batch) d
  ), told as (
    select i.id, i.conversation_id, i.kind, i.data, i.created_at,
      coalesce(lag(i.id) over (partition by i.conversation_id order by i.id), b.last, 0)
        as previous
    from ins i join before b on b.c = i.conversation_id
  ), items as (
    select t.id, json_build_array(t.conversation_id, t.id, t.previous, t.kind, t.created_at,
      case when octet_length(t.data::text) <= 3000 then t.data end)::text as j
    from told t where channel is not null
  ), grouped as (
    select items.id, j, sum(octet_length(j) + 1) over (order by items.id) / 4000 as g
    from items
  ), notified as (
    select count(*) as n from (
      select pg_notify(channel, instance || '|[' || string_agg(j, ',' order by grouped.id) || ']')
      from grouped group by g
    ) x
  )
  select t.id, t.previous from told t cross join notified order by t.id;
end
$fn$;
