-- Where the person is, across workers (several `serve` processes on one database;
-- store/presence.py). A worker whose clients watch a conversation or send to it writes
-- last_seen_at (one statement every few seconds for all of them); the worker running the
-- conversation pauses it only when nobody was seen anywhere for the session's
-- pause_after_idle_seconds, and sets paused_at. The person coming back on any worker clears
-- paused_at - once: that worker continues the run. Its own table, so watching does not
-- touch conversations.updated_at.
create table if not exists public.conversation_presence (
  conversation_id uuid primary key references public.conversations (id) on delete cascade,
  last_seen_at    timestamptz,
  paused_at       timestamptz
);

alter table public.conversation_presence enable row level security;
