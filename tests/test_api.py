"""The HTTP API over a real socket: uvicorn, httpx, SSE, the real Postgres, fake models."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.api_server import ApiServer, Sse, sse_events
from tests.comfyui_double import ComfyUIDouble
from tests.fakes import make_provider

REQUEST = "a cyberpunk street at night, neon signs"
DONE = {"complete", "waiting", "idle"}
_COMFY: list[ComfyUIDouble] = []


@pytest.fixture(scope="module", autouse=True)
def _comfyui():
    """A ComfyUI (the wire double) for the module, so conversations end with their image."""
    double = ComfyUIDouble()
    double.start()
    _COMFY.append(double)
    yield double
    double.stop()
    _COMFY.clear()


def comfy_url() -> str:
    return _COMFY[0].url


@pytest.fixture
async def server(fresh_db_url: str, tmp_path: Path):
    provider, _ = make_provider(delay=0.002)
    api = await ApiServer(
        fresh_db_url, tmp_path, comfyui_url=comfy_url(), provider=provider
    ).start()
    yield api
    await api.stop()


async def new_conversation(client, message: str | None = REQUEST, **settings: Any) -> str:
    session = (await client.post("/api/sessions", json={"name": "test", **settings})).json()
    body = {"message": message} if message else {}
    response = await client.post(f"/api/sessions/{session['id']}/conversations", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def collect_until_done(client, cid: str, last_event_id: int | None = None) -> list[Sse]:
    """Follow the stream until the team stops (a final status event)."""
    events: list[Sse] = []
    running = False
    async for event in sse_events(
        client, f"/api/conversations/{cid}/events", last_event_id=last_event_id
    ):
        events.append(event)
        if event.event == "status":
            if event.data["state"] == "running":
                running = True
            elif running and event.data["state"] in DONE:
                return events
    return events


async def full_log(client, cid: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (
            await client.get(f"/api/conversations/{cid}/events/log", params={"after": after})
        ).json()
        if not page:
            return events
        events += page
        after = page[-1]["id"]


async def test_whole_flow_over_http_and_sse(server: ApiServer):
    async with server.client() as client:
        cid = await new_conversation(client)
        events = await asyncio.wait_for(collect_until_done(client, cid), 60)
        kinds = {e.event for e in events}
        assert {"message", "token", "phase", "typing", "status"} <= kinds
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert [e.data["phase"] for e in events if e.event == "phase"][-1] == "complete"
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        assert detail["phase"] == "complete" and detail["plan"]["seed"] == 42
        assert detail["running"] is False and detail["status"] == "complete"
        assert detail["last_event_id"] == ids[-1]
        messages = (
            await client.get(f"/api/conversations/{cid}/messages", params={"limit": 200})
        ).json()
        streamed = [e.data for e in events if e.event == "message"]
        assert [m["message_id"] for m in messages] == [m["message_id"] for m in streamed]
        assert messages[0]["role"] == "user" and messages[0]["content"] == REQUEST
        page = (
            await client.get(
                f"/api/conversations/{cid}/messages", params={"after_seq": messages[4]["seq"]}
            )
        ).json()
        assert [m["seq"] for m in page] == [m["seq"] for m in messages[5:]]
        # An iteration on the same conversation.
        posted = await client.post(
            f"/api/conversations/{cid}/messages", json={"content": "make the neon brighter"}
        )
        assert posted.status_code == 202 and posted.json()["message"]["role"] == "user"
        more = await asyncio.wait_for(collect_until_done(client, cid, last_event_id=ids[-1]), 60)
        assert more[0].id > ids[-1]
        assert [e.data["phase"] for e in more if e.event == "phase"][-1] == "complete"


async def test_reconnecting_with_last_event_id_loses_nothing_and_repeats_nothing(server: ApiServer):
    rng = random.Random(7)
    async with server.client() as client:
        cid = await new_conversation(client)
        received: list[Sse] = []
        last: int | None = None
        finished = False
        while not finished:
            cut = rng.randint(1, 25)  # drop the connection after a random number of events
            stream = sse_events(client, f"/api/conversations/{cid}/events", last_event_id=last)
            try:
                async for event in stream:
                    received.append(event)
                    last = event.id
                    if (
                        event.event == "status"
                        and event.data["state"] in DONE
                        and len(received) > 3
                    ):
                        finished = True
                        break
                    cut -= 1
                    if cut == 0:
                        break
            finally:
                await stream.aclose()
        log = await full_log(client, cid)
        assert [e.id for e in received] == [e["id"] for e in log]
        assert [e.event for e in received] == [e["kind"] for e in log]


async def test_an_unknown_or_malformed_last_event_id_is_refused(server: ApiServer):
    async with server.client() as client:
        cid = await new_conversation(client, message=None)
        response = await client.get(
            f"/api/conversations/{cid}/events", headers={"Last-Event-ID": "999999"}
        )
        assert (
            response.status_code == 422
            and "not an event of conversation" in response.json()["error"]["message"]
        )
        response = await client.get(
            f"/api/conversations/{cid}/events", headers={"Last-Event-ID": "abc"}
        )
        assert response.status_code == 422 and "integer" in response.json()["error"]["message"]


async def test_a_restart_mid_conversation_continues_and_the_stream_catches_up(
    fresh_db_url: str, tmp_path: Path
):
    provider, _ = make_provider(delay=0.02)
    first = await ApiServer(
        fresh_db_url, tmp_path, comfyui_url=comfy_url(), provider=provider
    ).start()
    async with first.client() as client:
        cid = await new_conversation(client)
        seen: list[Sse] = []
        async for event in sse_events(client, f"/api/conversations/{cid}/events"):
            seen.append(event)
            if sum(1 for e in seen if e.event == "message") >= 4:
                break
    await first.stop()  # mid-stream: Saga or Frame is talking
    second = await ApiServer(
        fresh_db_url, tmp_path, comfyui_url=comfy_url(), provider=provider, port=first.port
    ).start()
    try:
        async with second.client() as client:
            rest = await asyncio.wait_for(
                collect_until_done(client, cid, last_event_id=seen[-1].id), 60
            )
            log = await full_log(client, cid)
            assert [e.id for e in seen + rest] == [e["id"] for e in log][: len(seen) + len(rest)]
            detail = (await client.get(f"/api/conversations/{cid}")).json()
            assert detail["phase"] == "complete"
            messages = (
                await client.get(f"/api/conversations/{cid}/messages", params={"limit": 200})
            ).json()
            before = [e.data["message_id"] for e in seen if e.event == "message"]
            assert [m["message_id"] for m in messages][: len(before)] == before
    finally:
        await second.stop()


async def test_fifty_rapid_fire_messages_are_all_processed_in_order(server: ApiServer):
    async with server.client() as client:
        cid = await new_conversation(client, message=None)
        texts = [f"idea number {i}: add a detail {i}" for i in range(50)]
        responses = await asyncio.gather(
            *(
                client.post(f"/api/conversations/{cid}/messages", json={"content": t})
                for t in texts[:1]
            )
        )
        for text in texts[1:]:
            responses.append(
                await client.post(f"/api/conversations/{cid}/messages", json={"content": text})
            )
        assert all(r.status_code == 202 for r in responses)
        for _ in range(300):
            detail = (await client.get(f"/api/conversations/{cid}")).json()
            if not detail["running"] and detail["status"] != "running":
                break
            await asyncio.sleep(0.1)
        messages = (
            await client.get(f"/api/conversations/{cid}/messages", params={"limit": 200})
        ).json()
        assert [m["content"] for m in messages if m["role"] == "user"] == texts
        assert detail["phase"] == "complete"


async def test_input_limits_get_a_4xx_with_a_clear_message(server: ApiServer):
    async with server.client() as client:
        cid = await new_conversation(client, message=None)
        cases = [
            (
                "post",
                f"/api/conversations/{cid}/messages",
                {"content": "x" * 100_000},
                413,
                "over 64 KB",
            ),
            (
                "post",
                f"/api/conversations/{cid}/messages",
                {"content": "x" * 9000},
                422,
                "at most 8000",
            ),
            ("post", f"/api/conversations/{cid}/messages", {"content": ""}, 422, "at least 1"),
            ("post", f"/api/conversations/{cid}/messages", {"content": "   "}, 422, "empty"),
            ("post", f"/api/conversations/{cid}/messages", {"text": "hi"}, 422, "content"),
            (
                "post",
                "/api/conversations/not-a-uuid/messages",
                {"content": "hi"},
                404,
                "not-a-uuid",
            ),
            (
                "post",
                "/api/conversations/00000000-0000-0000-0000-000000000000/messages",
                {"content": "hi"},
                404,
                "No conversation with id",
            ),
            ("get", "/api/sessions?limit=1000", None, 422, "limit"),
            ("get", "/api/sessions?offset=-1", None, 422, "offset"),
            ("get", "/api/sessions/123", None, 404, "123"),
            ("post", "/api/sessions", {"name": "x", "preferences": {"bogus": 1}}, 422, "bogus"),
            (
                "post",
                "/api/sessions",
                {"name": "x", "model_assignments": {"style": "gpt-9"}},
                422,
                "Unknown model assignment",
            ),
            (
                "post",
                "/api/sessions",
                {"name": "x", "model_assignments": {"poet": "embedded"}},
                422,
                "unknown roles",
            ),
            ("post", f"/api/conversations/{cid}/resume", None, 409, "Nothing to resume"),
            ("post", f"/api/conversations/{cid}/answer", {}, 422, "answer"),
        ]
        for method, path, body, status, words in cases:
            response = await client.request(method.upper(), path, json=body)
            assert response.status_code == status, (
                path,
                body and str(body)[:60],
                response.text[:300],
            )
            error = response.json()["error"]
            assert words in error["message"], (path, error)
        # Nothing was stored by any of them.
        assert (await client.get(f"/api/conversations/{cid}/messages")).json() == []


async def test_sessions_crud_settings_and_cascading_delete(server: ApiServer):
    async with server.client() as client:
        created = [
            (await client.post("/api/sessions", json={"name": f"s{i}"})).json() for i in range(3)
        ]
        page = (await client.get("/api/sessions", params={"limit": 2})).json()
        assert [s["name"] for s in page["items"]] == ["s2", "s1"]  # newest first
        assert [
            s["name"]
            for s in (await client.get("/api/sessions", params={"offset": 2})).json()["items"]
        ] == ["s0"]
        sid = created[0]["id"]
        renamed = (await client.patch(f"/api/sessions/{sid}", json={"name": "Neon"})).json()
        assert renamed["name"] == "Neon"
        settings = await client.put(
            f"/api/sessions/{sid}/settings",
            json={
                "model_assignments": {"style": "scripted"},
                "preferences": {"approve_plans": True, "max_rounds": 4},
            },
        )
        assert settings.status_code == 200, settings.text
        body = settings.json()
        assert body["model_assignments"] == {"style": "scripted"}
        assert (
            body["preferences"]["approve_plans"] is True and body["preferences"]["max_rounds"] == 4
        )
        assert body["resolved_models"] == {}  # a fixed provider: nothing to resolve
        conversation = (
            await client.post(f"/api/sessions/{sid}/conversations", json={"title": "t"})
        ).json()
        assert (await client.delete(f"/api/sessions/{sid}")).status_code == 204
        assert (await client.get(f"/api/sessions/{sid}")).status_code == 404
        assert (await client.get(f"/api/conversations/{conversation['id']}")).status_code == 404


async def test_the_teams_question_is_answered_through_the_api(server: ApiServer):
    async with server.client() as client:
        cid = await new_conversation(client, preferences={"approve_plans": True})
        events = await asyncio.wait_for(collect_until_done(client, cid), 60)
        interrupt = next(e for e in events if e.event == "interrupt")
        assert interrupt.data["question"]["type"] == "approve_plan"
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        assert detail["question"]["type"] == "approve_plan" and detail["status"] == "waiting"
        response = await client.post(f"/api/conversations/{cid}/answer", json={"approved": True})
        assert response.status_code == 202
        await asyncio.wait_for(collect_until_done(client, cid, last_event_id=events[-1].id), 60)
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        assert detail["phase"] == "complete" and detail["question"] is None


async def test_history_lists_checkpoints_shows_one_and_forks(server: ApiServer):
    async with server.client() as client:
        cid = await new_conversation(client)
        await asyncio.wait_for(collect_until_done(client, cid), 60)
        checkpoints = (
            await client.get(f"/api/conversations/{cid}/checkpoints", params={"limit": 500})
        ).json()
        assert checkpoints[0]["phase"] == "complete"
        first = min((c for c in checkpoints if c["message_count"] == 1), key=lambda c: c["step"])
        state = (
            await client.get(f"/api/conversations/{cid}/checkpoints/{first['checkpoint_id']}")
        ).json()
        assert state["values"]["messages"][0]["content"] == REQUEST
        forked = await client.post(
            f"/api/conversations/{cid}/fork",
            json={"checkpoint_id": first["checkpoint_id"], "content": "a quiet forest at dawn"},
        )
        assert forked.status_code == 201, forked.text
        branch = forked.json()
        assert branch["parent_id"] == cid
        await asyncio.wait_for(collect_until_done(client, branch["id"]), 60)
        detail = (await client.get(f"/api/conversations/{branch['id']}")).json()
        assert (
            detail["brief"]["request"] == "a quiet forest at dawn" and detail["phase"] == "complete"
        )
        bad = await client.get(f"/api/conversations/{cid}/checkpoints/nope")
        assert bad.status_code == 404


async def test_cancel_stops_the_team_and_resume_continues(server: ApiServer):
    async with server.client() as client:
        cid = await new_conversation(client)
        async for event in sse_events(client, f"/api/conversations/{cid}/events"):
            if event.event == "token":
                break
        cancelled = (await client.post(f"/api/conversations/{cid}/cancel")).json()
        assert cancelled["cancelled"] is True
        for _ in range(100):
            if not (await client.get(f"/api/conversations/{cid}")).json()["running"]:
                break
            await asyncio.sleep(0.05)
        assert (await client.post(f"/api/conversations/{cid}/resume")).status_code == 202
        for _ in range(300):
            detail = (await client.get(f"/api/conversations/{cid}")).json()
            if detail["phase"] == "complete" and not detail["running"]:
                break
            await asyncio.sleep(0.1)
        assert detail["phase"] == "complete"


async def test_health_reports_each_component(fresh_db_url: str, tmp_path: Path):
    api = await ApiServer(fresh_db_url, tmp_path).start()  # no ComfyUI, no Ollama there
    try:
        async with api.client() as client:
            health = (await client.get("/api/health")).json()
    finally:
        await api.stop()
    assert health["database"]["ok"] is True
    assert health["ollama"]["ok"] is False and "127.0.0.1:9" in health["ollama"]["detail"]
    assert health["comfyui"]["ok"] is False and "queued" in health["comfyui"]["detail"]


async def test_a_token_protects_every_api_request(fresh_db_url: str, tmp_path: Path):
    provider, _ = make_provider()
    api = await ApiServer(
        fresh_db_url, tmp_path, comfyui_url=comfy_url(), provider=provider, api_token="s3cret"
    ).start()
    try:
        async with api.client() as client:
            refused = await client.get("/api/sessions")
            assert refused.status_code == 401 and "token" in refused.json()["error"]["message"]
            assert (
                await client.get("/api/sessions", headers={"Authorization": "Bearer nope"})
            ).status_code == 401
            ok = await client.get("/api/sessions", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200
            assert (
                await client.get("/api/health", params={"access_token": "s3cret"})
            ).status_code == 200
    finally:
        await api.stop()


def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path: Path):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "creative_studio.api.cli",
            "--data-dir",
            str(tmp_path),
            "serve",
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "without an API token" in result.stderr


async def _age_presence(db_url: str, studio: Any, cid: str, seconds: float) -> None:
    """As if the person was last seen ``seconds`` earlier, here and on every worker."""
    if cid in studio.idle.last_seen:
        studio.idle.last_seen[cid] -= seconds
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "update conversation_presence set last_seen_at = last_seen_at"
            " - make_interval(secs => %s) where conversation_id = %s",
            (seconds, cid),
        )


async def test_a_person_watching_on_another_worker_keeps_the_discussion_going(
    fresh_db_url: str, tmp_path: Path
):
    """Two workers on one database: A runs the conversation, the person watches on B. A
    must not pause it for want of a local viewer; once the person left B too, A pauses it,
    and the person coming back on B continues it there."""
    provider, _ = make_provider(delay=0.05)
    a = await ApiServer(
        fresh_db_url, tmp_path / "a", comfyui_url=comfy_url(), provider=provider
    ).start()
    b = await ApiServer(
        fresh_db_url, tmp_path / "b", comfyui_url=comfy_url(), provider=provider
    ).start()
    try:
        async with a.client() as on_a, b.client() as on_b:
            cid = await new_conversation(on_a, preferences={"pause_after_idle_seconds": 30})
            assert a.studio.runner.is_running(cid)

            async def watch() -> None:
                async for _ in sse_events(on_b, f"/api/conversations/{cid}/events"):
                    pass

            watching = asyncio.create_task(watch())
            for _ in range(200):
                if b.studio.events.listeners(cid):
                    break
                await asyncio.sleep(0.02)
            await a.studio.idle.flush()
            await _age_presence(fresh_db_url, a.studio, cid, 31)
            await b.studio.idle.flush()  # B's open stream: the person is here, now
            assert await a.studio.pause_idle() == []
            assert a.studio.runner.is_running(cid)

            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            for _ in range(200):
                if not b.studio.events.listeners(cid):
                    break
                await asyncio.sleep(0.02)
            await b.studio.idle.flush()
            await _age_presence(fresh_db_url, a.studio, cid, 31)
            await _age_presence(fresh_db_url, b.studio, cid, 31)
            assert await a.studio.pause_idle() == [cid]
            assert not a.studio.runner.is_running(cid)
            log = await full_log(on_a, cid)
            assert log[-1]["kind"] == "status" and log[-1]["data"]["state"] == "paused"

            events = await asyncio.wait_for(
                collect_until_done(on_b, cid, last_event_id=log[-1]["id"]), 90
            )
            assert events[0].event == "status" and events[0].data["state"] in ("resumed", "running")
            assert (await on_b.get(f"/api/conversations/{cid}")).json()["phase"] == "complete"
            assert not a.studio.runner.is_running(cid)  # B ran the rest
    finally:
        await b.stop()
        await a.stop()


async def test_an_absent_person_pauses_the_discussion_until_they_are_back(
    fresh_db_url: str, tmp_path: Path
):
    provider, _ = make_provider(delay=0.05)
    api = await ApiServer(
        fresh_db_url, tmp_path, comfyui_url=comfy_url(), provider=provider
    ).start()
    try:
        async with api.client() as client:
            cid = await new_conversation(client, preferences={"pause_after_idle_seconds": 30})
            await asyncio.sleep(0.5)
            studio = api.studio
            await studio.idle.flush()
            await _age_presence(fresh_db_url, studio, cid, 31)  # away half a minute, unwatched
            assert await studio.pause_idle() == [cid]
            for _ in range(100):
                if not (await client.get(f"/api/conversations/{cid}")).json()["running"]:
                    break
                await asyncio.sleep(0.05)
            log = await full_log(client, cid)
            assert log[-1]["kind"] == "status" and log[-1]["data"]["state"] == "paused"
            # Opening the stream again brings the person back: the team continues.
            events = await asyncio.wait_for(
                collect_until_done(client, cid, last_event_id=log[-1]["id"]), 90
            )
            assert events[0].event == "status" and events[0].data["state"] in ("resumed", "running")
            assert (await client.get(f"/api/conversations/{cid}")).json()["phase"] == "complete"
    finally:
        await api.stop()
