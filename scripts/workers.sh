#!/usr/bin/env bash
# Run N studio workers against one PostgreSQL, on consecutive ports, until Ctrl-C.
#
#   scripts/workers.sh 2                 # embedded PostgreSQL in the data directory
#   CREATIVE_STUDIO_DATABASE_URL=postgresql://... scripts/workers.sh 3   # Supabase/any
#
# The first worker starts (and, embedded, creates) the database; the others join it. Any
# worker serves any request: point a load balancer (or the web client) at any of them.
# With Supabase use the session connection (port 5432): the transaction pooler (6543)
# cannot LISTEN, and the workers find each other's events through LISTEN/NOTIFY.
#
# Environment: PORT (first port, default 8420), HOST (default 127.0.0.1),
# CREATIVE_STUDIO_DATA_DIR, CREATIVE_STUDIO_LEASE_TTL_S, and every serve setting.
set -euo pipefail

count="${1:-2}"
shift || true
if ! [[ "$count" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N [serve options...]   (N: how many workers, >= 1)" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
studio="${CREATIVE_STUDIO_BIN:-$here/.venv/bin/creative-studio}"
[ -x "$studio" ] || studio="creative-studio"
port="${PORT:-8420}"
host="${HOST:-127.0.0.1}"
pids=()

stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

wait_healthy() {  # $1: port, $2: pid
  for _ in $(seq 1 300); do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "worker on port $1 exited" >&2
      return 1
    fi
    if curl -fsS "http://127.0.0.1:$1/api/health/live" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "worker on port $1 did not answer /api/health/live within 60 s" >&2
  return 1
}

for i in $(seq 0 $((count - 1))); do
  p=$((port + i))
  "$studio" serve --host "$host" --port "$p" "$@" &
  pids+=("$!")
  wait_healthy "$p" "$!"  # one at a time: the first one brings the database up
  echo "worker $((i + 1))/$count on http://$host:$p"
done
echo "$count workers on one database; Ctrl-C stops them all."
wait  # a worker that dies leaves the others running (they take its conversations over)
