-- Demo data for `supabase db reset` and local development: one session, one conversation a
-- few turns into ideation. Fixed ids and `on conflict do nothing` make it safe to run twice.
-- The conversation has no LangGraph checkpoint: opening it shows this history, and the next
-- message from the person starts a fresh run on the same thread id.

insert into public.sessions (id, name, model_assignments, preferences)
values (
  '00000000-0000-4000-8000-000000000001',
  'Demo: lighthouse at dusk',
  '{}'::jsonb,
  '{"media": "image", "aspect_ratio": "3:2"}'::jsonb
)
on conflict (id) do nothing;

insert into public.conversations (id, session_id, title, status)
values (
  '00000000-0000-4000-8000-000000000002',
  '00000000-0000-4000-8000-000000000001',
  'A lonely lighthouse',
  'idle'
)
on conflict (id) do nothing;

insert into public.messages
  (conversation_id, message_id, role, speaker, content, phase, kind, metadata)
values
  ('00000000-0000-4000-8000-000000000002', 'seed-msg-1', 'user', 'You',
   'A lonely lighthouse on a cliff at dusk, storm coming in.', 'ideation', 'user', '{}'),
  ('00000000-0000-4000-8000-000000000002', 'seed-msg-2', 'style', 'Luna',
   'Moody oil-painting look: deep teal sea, bruised violet sky, one warm amber beam.',
   'ideation', 'explore', '{}'),
  ('00000000-0000-4000-8000-000000000002', 'seed-msg-3', 'composition', 'Frame',
   'Low angle, lighthouse on the right third, the beam cutting diagonally across the frame.',
   'ideation', 'explore', '{}'),
  ('00000000-0000-4000-8000-000000000002', 'seed-msg-4', 'story', 'Saga',
   'A single lit window in the keeper''s house says someone is still waiting up.',
   'ideation', 'explore', '{}')
on conflict (conversation_id, message_id) do nothing;
