"""Garbage-collector settings for a serving process.

Streaming allocates small objects at a high rate (a few per token: message chunks, event
dicts, SSE lines), and CPython's default thresholds (700, 10, 10) then collect the young
generation hundreds of times a second and, every few seconds, the whole heap: measured in
bench/api.py's server at 100 conversations, full collections of the ~180,000 objects an
imported studio holds took up to 0.3 s each, a pause every stream in the process feels
(docs/benchmarks.md). So a server process, once everything is imported:

* freezes what exists (``gc.freeze``): modules, classes and the studio's long-lived objects
  move to a permanent generation no collection walks again;
* collects the young generation every 50,000 allocations, not 700: fewer, similar-sized
  collections (their cost follows the survivors, not the allocations).

Reference counting still frees almost everything at once; only cycles wait longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (20, 20)

__all__ = ["tune_for_serving"]


def tune_for_serving() -> None:
    """Freeze what is alive now and space out collections (call once, before serving)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
