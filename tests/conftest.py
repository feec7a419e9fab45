"""Shared fixtures: one real embedded PostgreSQL for the whole run, one database per test.

Starting a server costs ~0.5 s (initdb) but creating a database on a running one costs a few
milliseconds, so tests get full isolation (their own schema, advisory locks scoped by key) at
almost no cost, against the same PostgreSQL the studio runs in production. No mocks.

Fixture names are a contract other test modules rely on: ``pg_server_url``, ``fresh_db_url``,
``database``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import psycopg
import pytest

from creative_studio.store.database import Database
from creative_studio.store.embedded_postgres import start_embedded_postgres, stop_embedded_postgres
from creative_studio.tools.ollama_stream import close_sessions
from tests.comfyui_double import ComfyUIDouble
from tests.service_guard import (
    CLOSED_URL,
    GUARDED_PORTS,
    Canary,
    current_test,
    install_connect_guard,
    start_canaries,
)

# Before any test module is imported: every URL of the person's own services points at a
# closed port, and connecting to those services fails (tests/service_guard.py).
os.environ["COMFYUI_URL"] = CLOSED_URL
os.environ["OLLAMA_HOST"] = CLOSED_URL
os.environ.pop("CREATIVE_STUDIO_COMFYUI_URL", None)
os.environ.pop("CREATIVE_STUDIO_OLLAMA_HOST", None)
install_connect_guard()
_CANARIES: list[Canary] = start_canaries(current_test)


@pytest.fixture(autouse=True)
def _no_connection_to_the_persons_services() -> Iterator[None]:
    """Fail the test during which a child process reached :8188 or :11434."""
    before = [len(c.hits) for c in _CANARIES]
    yield
    for canary, seen in zip(_CANARIES, before, strict=True):
        if len(canary.hits) > seen:
            pytest.fail(
                f"a process started by this test connected to 127.0.0.1:{canary.port} "
                f"(the person's own {GUARDED_PORTS[canary.port]}): point it at a double",
                pytrace=False,
            )


def database_url(server_url: str, dbname: str) -> str:
    """The server URI with another database name (keeps the socket ``host=`` query)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@pytest.fixture(scope="session", autouse=True)
async def _ollama_sessions_closed() -> AsyncIterator[None]:
    """The streamed Ollama turns' shared session (tools/ollama_stream.py) is closed at the
    end of the run, as the studio closes it at shutdown."""
    yield
    await close_sessions()


@pytest.fixture(scope="session")
async def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """Base URI (database ``postgres``) of the one embedded server of this test run."""
    data_dir = tmp_path_factory.mktemp("pg-server")
    url = await start_embedded_postgres(data_dir)
    yield url
    await stop_embedded_postgres(data_dir)


@pytest.fixture
async def fresh_db_url(pg_server_url: str) -> AsyncIterator[str]:
    """URI of a new, empty (unmigrated) database, dropped after the test."""
    dbname = f"studio_test_{uuid4().hex[:16]}"
    async with await psycopg.AsyncConnection.connect(pg_server_url, autocommit=True) as conn:
        await conn.execute(f'create database "{dbname}"')
    yield database_url(pg_server_url, dbname)
    with contextlib.suppress(psycopg.Error):
        async with await psycopg.AsyncConnection.connect(pg_server_url, autocommit=True) as conn:
            # force: a test that leaked a connection must not fail the next one.
            await conn.execute(f'drop database if exists "{dbname}" with (force)')


@pytest.fixture
async def database(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """An opened, migrated :class:`Database` (checkpointer set up) on a fresh database."""
    db = await Database.open(fresh_db_url, tmp_path, max_pool_size=5)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def doubles() -> Iterator[Callable[..., ComfyUIDouble]]:
    """Start ComfyUI doubles with ``doubles(**options)``; all are stopped after the test."""
    started: list[ComfyUIDouble] = []

    def start(**options: Any) -> ComfyUIDouble:
        double = ComfyUIDouble(**options).start()
        started.append(double)
        return double

    yield start
    for double in started:
        double.hold = False  # a held run must not keep the server from stopping
        double.stop()
