-- Workflows people exported from ComfyUI ("Save (API)") and dropped into the studio
-- (tools/workflow_store.py). A plan uses one as its template with `custom:<name>`, so the
-- name is the key people and plans refer to: unique, and held to the same characters the
-- plan's template pattern allows. `parameters` is the mapping detected at upload
-- (parameter -> ["node_id.input", ...]), kept so the workflow is filled exactly the way the
-- person was shown, even if detection improves later.
create table if not exists public.user_workflows (
  id          uuid primary key default gen_random_uuid(),
  name        text not null
    constraint user_workflows_name_key unique
    constraint user_workflows_name_check
    check (name ~ '^[A-Za-z0-9 _.-]{1,80}$'),
  workflow    jsonb not null
    constraint user_workflows_workflow_check
    check (jsonb_typeof(workflow) = 'object'),
  parameters  jsonb not null default '{}'::jsonb
    constraint user_workflows_parameters_check
    check (jsonb_typeof(parameters) = 'object'),
  created_at  timestamptz not null default now()
);

create index if not exists user_workflows_created_at_idx
  on public.user_workflows (created_at desc);

-- Same policy as the other tables: the studio connects as the owner / service role (which
-- bypasses RLS); Supabase's anon and authenticated roles see nothing until someone writes a
-- policy on purpose.
alter table public.user_workflows enable row level security;
