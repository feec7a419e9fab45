-- Creative Studio: initial schema.
--
-- The same file is applied by the Supabase CLI (`supabase db push` / `supabase start`) and by
-- the studio itself (creative_studio.tools.database.apply_migrations) against the embedded
-- Postgres or any DATABASE_URL. Both may run it against the same database, so every
-- statement is idempotent: running it twice, or after the CLI already applied it, changes
-- nothing.
--
-- LangGraph's checkpoint tables are NOT created here: AsyncPostgresSaver.setup() owns them
-- and their own migration history, so upgrading langgraph never fights this file.

-- ---------------------------------------------------------------------------------------
-- updated_at bookkeeping
-- ---------------------------------------------------------------------------------------
-- A trigger rather than application code, so rows changed by hand in the Supabase dashboard
-- or psql still tell the truth about when they last changed. search_path is pinned because
-- Supabase's linter (rightly) flags trigger functions with a mutable search_path.
create or replace function public.studio_set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := pg_catalog.now();
  return new;
end;
$$;

-- ---------------------------------------------------------------------------------------
-- sessions: a person's workspace; owns its conversations and generations.
-- ---------------------------------------------------------------------------------------
create table if not exists public.sessions (
  id                uuid primary key default gen_random_uuid(),
  name              text not null,
  -- role -> model name, e.g. {"style": "ollama:qwen3:8b"}; empty means "studio defaults".
  model_assignments jsonb not null default '{}'::jsonb,
  preferences       jsonb not null default '{}'::jsonb,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now()
);

create index if not exists sessions_created_at_idx on public.sessions (created_at desc);

create or replace trigger sessions_set_updated_at
  before update on public.sessions
  for each row execute function public.studio_set_updated_at();

-- ---------------------------------------------------------------------------------------
-- conversations: one LangGraph thread each (id = thread_id), so the checkpointer and the
-- readable history share a key without a mapping table.
-- ---------------------------------------------------------------------------------------
create table if not exists public.conversations (
  id                     uuid primary key default gen_random_uuid(),
  session_id             uuid not null references public.sessions (id) on delete cascade,
  title                  text,
  -- A fork (time travel) remembers where it came from; deleting the parent keeps the fork.
  parent_id              uuid references public.conversations (id) on delete set null,
  forked_from_checkpoint text,
  status                 text not null default 'idle'
    constraint conversations_status_check
    check (status in ('idle', 'running', 'waiting', 'complete')),
  created_at             timestamptz not null default now(),
  updated_at             timestamptz not null default now()
);

create index if not exists conversations_session_id_idx
  on public.conversations (session_id, created_at);
-- Without it, deleting a conversation scans the table to null out its forks' parent_id.
create index if not exists conversations_parent_id_idx
  on public.conversations (parent_id) where parent_id is not null;

create or replace trigger conversations_set_updated_at
  before update on public.conversations
  for each row execute function public.studio_set_updated_at();

-- ---------------------------------------------------------------------------------------
-- messages: the readable history, written as each message completes so a crash mid-run
-- loses nothing the person already saw. The checkpoint holds the graph's own copy; this
-- table is what the UI lists and what survives checkpoint trimming.
-- ---------------------------------------------------------------------------------------
create table if not exists public.messages (
  id              uuid primary key default gen_random_uuid(),
  -- One global, gap-tolerant order: timestamps collide within a transaction, seq never does.
  seq             bigint generated always as identity,
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  -- The LangChain message id; with the unique constraint below it makes writes idempotent,
  -- so replaying a node after a crash cannot duplicate a message.
  message_id      text not null,
  role            text not null
    constraint messages_role_check
    check (role in ('user', 'style', 'composition', 'story', 'technical', 'critic', 'system')),
  speaker         text not null,
  content         text not null,
  phase           text,
  kind            text,
  -- True when the turn was cancelled mid-stream: LangGraph drops partial output, we keep it.
  interrupted     boolean not null default false,
  metadata        jsonb not null default '{}'::jsonb,
  created_at      timestamptz not null default now(),
  constraint messages_conversation_message_key unique (conversation_id, message_id)
);

create index if not exists messages_conversation_seq_idx
  on public.messages (conversation_id, seq);

-- ---------------------------------------------------------------------------------------
-- generations: one ComfyUI job each. Kept after the conversation is deleted (set null):
-- the images are the person's work, the chat that led to them is not.
-- ---------------------------------------------------------------------------------------
create table if not exists public.generations (
  id              uuid primary key default gen_random_uuid(),
  session_id      uuid not null references public.sessions (id) on delete cascade,
  conversation_id uuid references public.conversations (id) on delete set null,
  status          text not null default 'queued'
    constraint generations_status_check
    check (status in ('queued', 'running', 'complete', 'failed', 'cancelled')),
  progress        real not null default 0
    constraint generations_progress_check
    check (progress >= 0 and progress <= 1),
  -- Deterministic ComfyUI prompt_id: the idempotency key that lets a restarted studio find
  -- (or resubmit) the job instead of queueing it twice.
  prompt_id       text,
  template        text,
  workflow_json   jsonb,
  parameters      jsonb not null default '{}'::jsonb,
  -- [{"filename": ..., "path": "{session_id}/{generation_id}/{filename}", ...}]
  outputs         jsonb not null default '[]'::jsonb,
  error           text,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  started_at      timestamptz,
  completed_at    timestamptz
);

create index if not exists generations_session_created_idx
  on public.generations (session_id, created_at desc);
create index if not exists generations_created_idx
  on public.generations (created_at desc);
create index if not exists generations_conversation_idx
  on public.generations (conversation_id) where conversation_id is not null;

create or replace trigger generations_set_updated_at
  before update on public.generations
  for each row execute function public.studio_set_updated_at();

-- ---------------------------------------------------------------------------------------
-- Row level security. The studio talks to the database as the owner / service role, which
-- bypasses RLS; enabling it with no policies means Supabase's anon and authenticated API
-- roles see nothing until someone writes a policy on purpose. Plain Postgres accepts the
-- statements and, for the owner, behaves exactly as before.
-- ---------------------------------------------------------------------------------------
alter table public.sessions      enable row level security;
alter table public.conversations enable row level security;
alter table public.messages      enable row level security;
alter table public.generations   enable row level security;

-- ---------------------------------------------------------------------------------------
-- Supabase Storage bucket for generated files ({session_id}/{generation_id}/{filename}).
-- Only where the storage schema exists: plain Postgres (the embedded server) skips it and the
-- studio stores files in a local directory instead. Dynamic SQL so the statement is not even
-- planned when storage.buckets is absent.
-- ---------------------------------------------------------------------------------------
do $$
begin
  if to_regclass('storage.buckets') is not null then
    execute $sql$
      insert into storage.buckets (id, name, public)
      values ('generations', 'generations', false)
      on conflict (id) do nothing
    $sql$;
  end if;
end;
$$;
