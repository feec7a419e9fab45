"""The database going away under a running studio, and coming back.

* A real ``serve`` with the scripted team: its embedded PostgreSQL is killed (kill -9 of the
  postmaster) mid-conversation. While it is down the API answers 503 with its error body,
  never a bare 500; the studio restarts the server, reconnects, and the conversation
  finishes with every message once - without a restart of ``serve``.
* An external database (DATABASE_URL) that disappears: the studio says it is unavailable,
  does not try to restart it, and reconnects by itself once it is back.
* The mapping of database errors to HTTP answers, unit by unit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from creative_studio.api.app import create_app
from creative_studio.api.routes.health import database_health
from creative_studio.core.errors import DatabaseUnavailableError
from creative_studio.store.availability import DatabaseDown, is_connection_error
from creative_studio.store.database import Database
from creative_studio.store.embedded_postgres import start_embedded_postgres, stop_embedded_postgres
from creative_studio.store.repository import StudioRepository
from tests.comfyui_double import ComfyUIDouble
from tests.studio_process import (
    alive,
    checkpoint_messages,
    eventually,
    handle_pids,
    new_conversation,
    postgres_gone,
    postmaster_pid,
    start_serve,
    stored_messages,
)
from tests.test_runner import make_runner, state_of

REQUEST = "a lighthouse in a storm"


def unavailable(response: httpx.Response) -> bool:
    """The API's answer while the database is away: 503 with the usual error body."""
    if response.status_code != 503:
        return False
    body = response.json()
    assert body["error"]["code"] == "database_unavailable", body
    assert "database is unavailable" in body["error"]["message"]
    assert response.headers.get("retry-after")
    return True


# ------------------------------------------------------------------ a real serve, embedded


async def test_a_killed_postgres_mid_conversation_is_restarted_and_the_conversation_finishes(
    tmp_path: Path,
) -> None:
    comfyui = ComfyUIDouble(step_delay=0.01).start()
    studio = await start_serve(tmp_path, delay=0.02, extra=("--comfyui-url", comfyui.url, "-v"))
    try:
        async with studio.client() as client:
            cid = await new_conversation(client, REQUEST)

            async def some_turns() -> bool:
                return len(await stored_messages(client, cid)) >= 4

            await eventually(some_turns, 60, "the team stores its first turns")
            before = await stored_messages(client, cid)
            first_postmaster = postmaster_pid(tmp_path)
            os.kill(first_postmaster or 0, signal.SIGKILL)

            answers: list[httpx.Response] = []
            health: list[dict[str, Any]] = []

            async def finished() -> bool:
                for path in ("/api/health", f"/api/conversations/{cid}", "/api/sessions"):
                    response = await client.get(path)
                    answers.append(response)
                    if path == "/api/health":
                        health.append(response.json()["database"])
                detail = answers[-2]
                return (
                    detail.status_code == 200
                    and detail.json()["phase"] == "complete"
                    and not detail.json()["running"]
                )

            await eventually(finished, 90, "the conversation finishes after the outage")

            # Never a bare 500: every answer was a success or the 503 with its error body.
            assert all(r.status_code == 200 or unavailable(r) for r in answers), [
                (r.status_code, r.text[:200]) for r in answers if r.status_code != 200
            ]
            assert all(r.status_code == 200 for r in answers if r.url.path == "/api/health")
            down = [h["detail"] for h in health if not h["ok"]]
            assert all("unavailable" in detail for detail in down), down
            assert health[-1]["ok"] and "restarted 1x" in health[-1]["detail"]
            # The server was restarted by the studio itself (a new postmaster, same serve).
            assert postmaster_pid(tmp_path) != first_postmaster and not alive(first_postmaster)
            assert studio.process.returncode is None

            after = await stored_messages(client, cid)
            ids = [m["message_id"] for m in after]
            assert len(set(ids)) == len(ids), "a message was stored twice"
            assert ids[: len(before)] == [m["message_id"] for m in before]
            assert len(after) > len(before)
            # What the team remembers is exactly what was stored: nothing lost, nothing twice.
            assert [m["message_id"] for m in await checkpoint_messages(client, cid)] == ids
            assert after[-1]["role"] == "system"  # the generation's result closes it
            detail = (await client.get(f"/api/conversations/{cid}")).json()
            assert detail["generation"]["status"] == "complete"

        # A clean stop after the restart still stops the (new) server and forgets the pid.
        studio.process.send_signal(signal.SIGTERM)
        assert await studio.wait_exit() == 128 + signal.SIGTERM
        await eventually(lambda: postgres_gone(tmp_path), 30, "postgres stops with serve")
        assert handle_pids(tmp_path) == []
    finally:
        await studio.close()
        comfyui.stop()


# ------------------------------------------------------------------ an external database


async def test_an_external_database_that_goes_away_is_reconnected_when_it_is_back(
    tmp_path: Path,
) -> None:
    server_dir = tmp_path / "external"  # stands for Supabase: a server that is not ours
    url = await start_embedded_postgres(server_dir)
    database = await Database.open(url, tmp_path / "studio", max_pool_size=4)
    recovered = asyncio.Event()

    async def on_recovered() -> None:
        recovered.set()

    database.on_recovered(on_recovered)
    repository = StudioRepository(database.pool)
    try:
        session = await repository.create_session(name="before")
        postmaster = postmaster_pid(server_dir)
        os.kill(postmaster or 0, signal.SIGKILL)
        await eventually(lambda: not alive(postmaster), 10, "the server is gone")

        # The first use fails (on a pooled connection whose server is gone, or at checkout),
        # well before the pool's 30 s timeout, with an error that says the database is away.
        with pytest.raises(psycopg.OperationalError) as info:
            await asyncio.wait_for(repository.get_session(session.id), 20)
        assert is_connection_error(info.value)
        await eventually(lambda: not database.available, 10, "the studio knows it is down")
        assert "unavailable" in database.monitor.message()
        with pytest.raises(DatabaseDown) as down:  # from now on it fails at once
            await repository.get_session(session.id)
        assert isinstance(down.value, DatabaseUnavailableError) and down.value.status_code == 503
        await asyncio.sleep(1.5)  # several watch intervals: nobody restarts a server not ours
        assert postmaster_pid(server_dir) == postmaster and not alive(postmaster)
        assert database.monitor.restarts == 0

        await start_embedded_postgres(server_dir)  # its owner brings it back

        async def works() -> bool:
            try:
                return (await repository.get_session(session.id)).name == "before"
            except DatabaseUnavailableError:
                return False

        await eventually(works, 30, "the studio reconnects")
        await asyncio.wait_for(recovered.wait(), 10)
        assert database.available and database.monitor.outages == 1
        assert (await repository.create_session(name="after")).name == "after"
    finally:
        await database.close()
        await stop_embedded_postgres(server_dir)


async def test_connections_killed_under_a_run_are_replaced_and_the_run_goes_on(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The server stays up but every connection of the studio dies (a failover, a pooler
    restart, pg_terminate_backend): no outage is announced, the run still continues."""
    caplog.set_level(logging.WARNING, logger="creative_studio.services.runner")
    runner, cid, _, _ = await make_runner(database, delay=0.01)
    await runner.send(cid, REQUEST)

    async def some_turns() -> bool:
        return await runner.repository.count_messages(cid) >= 4

    await eventually(some_turns, 60, "the team stores its first turns")
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as admin:
        await admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
        )
    await asyncio.wait_for(runner.wait_idle(cid), 60)
    state = await state_of(runner, cid)
    assert state["phase"] == "complete"
    ids = [row.message_id for row in await runner.repository.list_messages(cid)]
    assert ids == [str(m.id) for m in state["messages"]] and len(set(ids)) == len(ids)
    assert "waits for the database" in caplog.text  # the run was cut, and went on
    await runner.aclose()


# ------------------------------------------------------------------ the 503 mapping


def raising(error: BaseException) -> Callable[[], Awaitable[None]]:
    async def route() -> None:
        raise error

    return route


def app_raising(errors: dict[str, BaseException]) -> FastAPI:
    app = create_app(web_dir=None)
    for name, error in errors.items():
        app.add_api_route(f"/api/raise/{name}", raising(error), methods=["GET"])
    return app


async def test_database_errors_are_503_with_the_error_body_and_others_stay_500() -> None:
    app = app_raising(
        {
            "down": DatabaseDown("The database is unavailable right now (restarting)."),
            "studio": DatabaseUnavailableError("The database is unavailable right now."),
            "lost": psycopg.OperationalError("server closed the connection unexpectedly"),
            "shutdown": pg_errors.AdminShutdown("terminating connection"),
            "timeout": PoolTimeout("couldn't get a connection after 5.00 sec"),
            "unique": pg_errors.UniqueViolation("duplicate key value"),
            "cancelled": pg_errors.QueryCanceled("canceling statement due to statement timeout"),
        }
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for name in ("down", "studio", "lost", "shutdown", "timeout"):
            response = await client.get(f"/api/raise/{name}")
            assert unavailable(response), (name, response.status_code, response.text)
        for name in ("unique", "cancelled"):  # a query that is wrong, not a database away
            response = await client.get(f"/api/raise/{name}")
            assert response.status_code == 500, (name, response.text)
    assert "503" in app.openapi()["paths"]["/api/sessions"]["post"]["responses"]  # documented


def test_connection_errors_are_told_from_query_errors() -> None:
    lost = psycopg.OperationalError("consuming input failed")
    wrapped = RuntimeError("the run failed")
    wrapped.__cause__ = lost
    assert is_connection_error(lost) and is_connection_error(wrapped)
    assert is_connection_error(ExceptionGroup("tasks", [ValueError(), PoolTimeout()]))
    assert is_connection_error(pg_errors.CannotConnectNow("starting up"))
    assert not is_connection_error(pg_errors.QueryCanceled("statement timeout"))
    assert not is_connection_error(pg_errors.CheckViolation("check"))
    assert not is_connection_error(ValueError("nothing to do with it"))


async def test_health_reports_the_database_down_with_its_reason() -> None:
    monitor = SimpleNamespace(up=False, reason="the embedded PostgreSQL stopped; restarting it")
    studio: Any = SimpleNamespace(database=SimpleNamespace(embedded=True, monitor=monitor))
    report = await database_health(studio)
    assert not report.ok
    assert report.detail == (
        "embedded PostgreSQL is unavailable: the embedded PostgreSQL stopped; restarting it"
    )


SPEAKERS = ("style", "composition", "story")


@pytest.mark.parametrize("lost_write", ["checkpoint", "task writes"])
async def test_a_turn_said_before_its_step_was_checkpointed_is_said_once(
    database: Database, monkeypatch: pytest.MonkeyPatch, lost_write: str
) -> None:
    """The database goes away after the runner stored and announced a specialist's turn,
    before LangGraph wrote that step's checkpoint (it then replays the task's saved writes)
    or even the task's writes (it runs the node again). Either way the turn is said once,
    as it was: one message with one text in the history and the checkpoint, announced once,
    and the model is not asked again."""
    runner, cid, recorder, _ = await make_runner(database, delay=0.001)
    saver = database.checkpointer
    lost: list[str] = []

    async def said_then_lost(saying: bool) -> None:
        if not saying or lost:
            return
        seen = len(recorder.of("message"))
        for _ in range(50):  # the runner stores and announces what the node said
            if len(recorder.of("message")) > seen:
                break
            await asyncio.sleep(0.01)
        newest = recorder.of("message")[-1]
        if newest["role"] in SPEAKERS:
            lost.append(newest["message_id"])
            raise psycopg.OperationalError("the connection to the server was lost")

    put, put_writes = saver.aput, saver.aput_writes

    async def aput(config: Any, checkpoint: Any, metadata: Any, versions: Any) -> Any:
        await said_then_lost(lost_write == "checkpoint" and "messages" in versions)
        return await put(config, checkpoint, metadata, versions)

    async def aput_writes(config: Any, writes: Any, task_id: str, task_path: str = "") -> Any:
        speaking = any(
            channel == "messages"
            and any(m.additional_kwargs.get("role") in SPEAKERS for m in value)
            for channel, value in writes
        )
        await said_then_lost(lost_write == "task writes" and speaking)
        return await put_writes(config, writes, task_id, task_path)

    monkeypatch.setattr(saver, "aput", aput)
    monkeypatch.setattr(saver, "aput_writes", aput_writes)
    await runner.send(cid, REQUEST)
    await eventually(lambda: _done(runner, cid), 60, "the run goes on and finishes")
    await asyncio.wait_for(runner.wait_idle(cid), 60)
    state = await state_of(runner, cid)
    assert lost and state["phase"] == "complete"
    rows = await runner.repository.list_messages(cid)
    assert [r.message_id for r in rows] == [str(m.id) for m in state["messages"]]
    assert [r.content for r in rows] == [m.text for m in state["messages"]]
    assert lost[0] in {str(m.id) for m in state["messages"]}  # kept as it was said
    announced = [d["message_id"] for d in recorder.of("message")]
    assert len(announced) == len(set(announced))
    await runner.aclose()


async def _done(runner: Any, cid: str) -> bool:
    return (await state_of(runner, cid)).get("phase") == "complete"
