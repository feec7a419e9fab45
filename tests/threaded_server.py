"""A test double's app on a real socket: uvicorn on 127.0.0.1 in a background thread.

The Ollama, ComfyUI and Supabase Storage doubles all serve this way, so the code under test
talks HTTP (and websockets) exactly as it would to the real servers.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_in_thread(
    app: Any, *, name: str, port: int = 0, **options: Any
) -> tuple[uvicorn.Server, threading.Thread, int]:
    """Start ``app``; returns once it accepts connections (or raises naming the double)."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.005)
    return server, thread, port


def stop_in_thread(server: uvicorn.Server | None, thread: threading.Thread | None) -> None:
    if server is not None:
        server.should_exit = True
    if thread is not None:
        thread.join(timeout=10)
