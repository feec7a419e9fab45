-- One writer per conversation (tools/leases.py): a lease row with an owner and an expiry,
-- renewed while a run lasts. Keyed by text (the conversation's uuid, lower case) without a
-- foreign key, so a lease can be taken before or without a conversations row.
create table if not exists public.conversation_leases (
  conversation_id text primary key,
  owner           text not null,
  acquired_at     timestamptz not null default now(),
  expires_at      timestamptz not null
);

alter table public.conversation_leases enable row level security;
