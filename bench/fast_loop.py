"""The event loop the bench's helper processes run on: uvloop where it is installed (it
comes with uvicorn[standard], as the studio's server uses it), else asyncio's own.

The model server and the load clients share the measured machine with the studio; on
uvloop they take less of it (bench/api.py: "clients that are not themselves the limit").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # not on every platform
        asyncio.run(main)
    else:
        uvloop.run(main)
