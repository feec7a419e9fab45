"""The SSE response itself: what a frame says, and a client that stops reading."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from creative_studio.api import sse
from creative_studio.core.events import StudioEvent
from creative_studio.store.eventlog import EventLog
from tests.api_server import ApiServer, sse_events
from tests.fakes import make_provider


def test_a_frame_is_sse_with_one_line_of_json_and_what_json_cannot_say_as_text():
    when = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    cid = UUID("12345678-1234-5678-1234-567812345678")
    text = sse.encode(
        [
            ("7", "token", {"text": 'néon ⏱ "quoted"\nline', "n": 1.5}),
            ("8", "status", {"at": when, "id": cid, 3: "int key", "set": {1}}),
        ]
    ).decode()
    frames = text.split("\r\n\r\n")
    assert frames[-1] == "" and len(frames) == 3
    first = frames[0].split("\r\n")
    assert first[:2] == ["id: 7", "event: token"] and len(first) == 3
    assert json.loads(first[2].removeprefix("data: ")) == {
        "text": 'néon ⏱ "quoted"\nline',
        "n": 1.5,
    }
    second = json.loads(frames[1].split("\r\n")[2].removeprefix("data: "))
    assert second == {
        "at": "2026-12-01T12:00:00+00:00",
        "id": str(cid),
        "3": "int key",
        "set": "{1}",
    }
    assert sse.encode([]) == sse.PING


async def _listened(events: EventLog, cid: str, count: int) -> None:
    for _ in range(500):
        if events.listeners(cid) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} streams did not start")


async def test_a_client_that_stops_reading_is_let_go_and_the_others_go_on(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A stuck send ends that stream after SEND_TIMEOUT (it reconnects with Last-Event-ID);
    a client that reads the same conversation keeps getting every event."""
    monkeypatch.setattr(sse, "SEND_TIMEOUT", 0.5)
    monkeypatch.setattr(sse, "WATCH_EVERY", 0.1)
    provider, _ = make_provider(delay=0.002)
    api = await ApiServer(fresh_db_url, tmp_path, provider=provider).start()
    try:
        async with api.client() as client:
            session = (await client.post("/api/sessions", json={"name": "t"})).json()
            cid = (
                await client.post(f"/api/sessions/{session['id']}/conversations", json={})
            ).json()["id"]
            stuck = socket.socket()
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.setblocking(False)
            await asyncio.get_running_loop().sock_connect(stuck, ("127.0.0.1", api.port))
            stuck.send(
                f"GET /api/conversations/{cid}/events HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{api.port}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            events = api.studio.events
            await _listened(events, cid, 1)
            received: list[int] = []

            async def read() -> None:
                async for event in sse_events(client, f"/api/conversations/{cid}/events"):
                    received.append(event.data["n"])
                    if event.data["n"] == 199:
                        return

            reader = asyncio.create_task(read())
            await _listened(events, cid, 2)
            big = "x" * 50_000  # 200 events of 50 KB: far more than the socket buffers hold
            for n in range(200):
                await events.publish(
                    StudioEvent(kind="status", conversation_id=cid, data={"n": n, "pad": big})
                )
            await asyncio.wait_for(reader, 30)
            assert received == list(range(200))
            for _ in range(100):  # the stuck client's stream ended; nobody else's did
                if events.listeners(cid) == 0:
                    break
                await asyncio.sleep(0.05)
            assert events.listeners(cid) == 0
            stuck.close()
    finally:
        await api.stop()
