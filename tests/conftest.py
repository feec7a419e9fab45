"""Shared fixtures: one real embedded PostgreSQL for the whole run, one database per test.

Starting a server costs ~0.5 s (initdb) but creating a database on a running one costs a few
milliseconds, so tests get full isolation (their own schema, advisory locks scoped by key) at
almost no cost, against the same PostgreSQL the studio runs in production. No mocks.

Fixture names are a contract other test modules rely on: ``pg_server_url``, ``fresh_db_url``,
``database``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import psycopg
import pytest

from creative_studio.tools.database import (
    Database,
    start_embedded_postgres,
    stop_embedded_postgres,
)


def database_url(server_url: str, dbname: str) -> str:
    """The server URI with another database name (keeps the socket ``host=`` query)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


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
