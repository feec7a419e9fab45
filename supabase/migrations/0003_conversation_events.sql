-- The SSE event log (tools/eventlog.py): every event a conversation emitted, with an id that
-- only grows. A client that reconnects with Last-Event-ID gets exactly the events after it,
-- also after a server restart, because an event reaches clients only once it is stored here.
create table if not exists public.conversation_events (
  id              bigint generated always as identity primary key,
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  kind            text not null,
  data            jsonb not null default '{}'::jsonb,
  created_at      timestamptz not null default now()
);

create index if not exists conversation_events_conversation_idx
  on public.conversation_events (conversation_id, id);

alter table public.conversation_events enable row level security;
