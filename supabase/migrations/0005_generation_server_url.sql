-- Which ComfyUI server runs a generation (COMFYUI_URL may list several: tools/comfyui_pool.py).
-- Progress, /history and /view outputs come from that server; when it dies the job moves to
-- another one and this column follows it. NULL: the only (or primary) server, as before.
alter table public.generations add column if not exists server_url text;
