"""Tests never reach the person's own ComfyUI (:8188) or Ollama (:11434).

Three layers, all installed by tests/conftest.py before any test module is imported:

* the environment points COMFYUI_URL and OLLAMA_HOST at a port nothing listens on, so
  every studio process a test starts (CLI, ``serve``, ``langgraph dev``) inherits it;
* in this process, a connection to those ports raises ForbiddenServiceError naming the
  test, whatever client library makes it (they all end in ``socket.connect``);
* canary listeners on those ports (when they are free, i.e. no real service runs here)
  record any connection a child process makes; the test that was running then fails.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

GUARDED_PORTS = {8188: "ComfyUI", 11434: "Ollama"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}


class ForbiddenServiceError(ConnectionRefusedError):
    """A test tried to connect to the person's own ComfyUI or Ollama."""


def current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)").rsplit(" ", 1)[0]


# The discard port: below the ephemeral range, so no double (they bind port 0) can ever
# be handed it, and nothing listens there on the machines this studio is made for.
CLOSED_URL = "http://127.0.0.1:9"


def _guarded(address: Any) -> int | None:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = str(address[0]), address[1]
        if port in GUARDED_PORTS and (host in _LOOPBACK or host.startswith("127.")):
            return int(port)
    return None


def install_connect_guard() -> None:
    """Make every in-process connection to a guarded port fail loudly."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def refuse(port: int) -> ForbiddenServiceError:
        return ForbiddenServiceError(
            f"{current_test()} tried to connect to 127.0.0.1:{port} "
            f"(the person's own {GUARDED_PORTS[port]}); point it at a double or a closed port"
        )

    def connect(self: socket.socket, address: Any) -> None:
        port = _guarded(address)
        if port is not None:
            raise refuse(port)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        port = _guarded(address)
        if port is not None:
            raise refuse(port)
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


class Canary:
    """Listens on a guarded port and remembers which test a connection came during."""

    def __init__(self, port: int, test_name: Callable[[], str]) -> None:
        self.port = port
        self.test_name = test_name
        self.hits: list[str] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"canary-{port}")
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits.append(self.test_name())
            conn.close()

    def close(self) -> None:
        self.sock.close()


def start_canaries(test_name: Callable[[], str]) -> list[Canary]:
    """A canary on each guarded port that is free (a real service there keeps its port)."""
    canaries = []
    for port in GUARDED_PORTS:
        try:
            canaries.append(Canary(port, test_name))
        except OSError:
            continue  # the person's own service runs here: the other guards still hold
    return canaries
