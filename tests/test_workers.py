"""Two real ``serve`` processes on one embedded PostgreSQL behave as one studio.

Events of a conversation that worker A runs reach an SSE client on worker B live, in order,
exactly once (LISTEN/NOTIFY, store/notify.py + store/eventlog.py), and Last-Event-ID resumes
on either worker; a message posted to B reaches the turn A is running, as an interjection,
in arrival order, with its images (store/inbox.py); a worker that starts while another runs
a conversation leaves it to that worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_server import Sse, sse_events
from tests.studio_process import (
    Studio,
    checkpoint_messages,
    eventually,
    start_serve,
    stored_messages,
)
from tests.test_images import image_bytes, upload

REQUEST = "a lighthouse on a cliff at dusk, stormy sea"
DONE = {"complete", "waiting", "idle"}


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[tuple[Studio, Studio]]:
    """A and B: the same data directory, so the same embedded PostgreSQL (B reuses it)."""
    a = await start_serve(tmp_path, delay=0.01, extra=("-v",))
    try:
        b = await start_serve(tmp_path, delay=0.01, extra=("-v",))
    except BaseException:
        await a.close()
        raise
    try:
        yield a, b
    finally:
        await b.kill()
        await a.close()


async def empty_conversation(client: httpx.AsyncClient) -> str:
    session = (await client.post("/api/sessions", json={"name": "workers"})).json()
    created = await client.post(f"/api/sessions/{session['id']}/conversations", json={})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def full_log(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        after = events[-1]["id"] if events else 0
        response = await client.get(
            f"/api/conversations/{cid}/events/log", params={"after": after, "limit": 500}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page)
        if len(page) < 500:
            return events


def ends_the_run(event: Sse, seen_running: bool) -> bool:
    return seen_running and event.event == "status" and event.data.get("state") in DONE


async def follow_to_end(client: httpx.AsyncClient, cid: str, into: list[Sse]) -> None:
    """Follow one stream from the start until the run's final status."""
    running = False
    async for event in sse_events(client, f"/api/conversations/{cid}/events"):
        into.append(event)
        running = running or (event.event == "status" and event.data.get("state") == "running")
        if ends_the_run(event, running):
            return


async def hop_to_end(clients: list[httpx.AsyncClient], cid: str, into: list[Sse]) -> None:
    """Follow the stream, reconnecting to the other worker with Last-Event-ID every 25 events."""
    running = False
    hop = 0
    while True:
        client = clients[hop % len(clients)]
        last = into[-1].id if into else None
        taken = 0
        async for event in sse_events(
            client, f"/api/conversations/{cid}/events", last_event_id=last
        ):
            into.append(event)
            taken += 1
            running = running or (event.event == "status" and event.data.get("state") == "running")
            if ends_the_run(event, running):
                return
            if taken == 25:
                break
        hop += 1


async def test_a_conversation_run_by_a_streams_live_to_b_in_order_exactly_once(
    workers: tuple[Studio, Studio],
):
    a, b = workers
    async with a.client() as on_a, b.client() as on_b, b.client() as hopping_b:
        cid = await empty_conversation(on_a)
        on_b_stream: list[Sse] = []
        hopped: list[Sse] = []
        follower = asyncio.create_task(follow_to_end(on_b, cid, on_b_stream))
        hopper = asyncio.create_task(hop_to_end([hopping_b, on_a], cid, hopped))
        # Both streams are open (the first read of an empty log is done) before A starts.
        await asyncio.sleep(0.5)
        sent = await on_a.post(f"/api/conversations/{cid}/messages", json={"content": REQUEST})
        assert sent.status_code == 202, sent.text
        await asyncio.wait_for(asyncio.gather(follower, hopper), 240)

        log = await full_log(on_a, cid)
        assert await full_log(on_b, cid) == log  # one log, whichever worker reads it
        upto = [e for e in log if e["id"] <= on_b_stream[-1].id]
        ids = [e.id for e in on_b_stream]
        assert ids == sorted(set(ids)), "out of order or repeated"
        assert ids == [e["id"] for e in upto], "B's live stream is not the log"
        assert [e.event for e in on_b_stream] == [e["kind"] for e in upto]
        assert [e.data for e in on_b_stream] == [e["data"] for e in upto]
        kinds = {e.event for e in on_b_stream}
        assert {"message", "token", "phase", "status"} <= kinds
        assert sum(e.event == "token" for e in on_b_stream) > 50  # streamed, not summarised
        # Reconnecting back and forth between the workers loses nothing and repeats nothing.
        hop_ids = [e.id for e in hopped]
        assert hop_ids == [e["id"] for e in log if e["id"] <= hop_ids[-1]]
        assert len(hop_ids) > 50  # it did hop several times
        # A ran it: B never held the conversation (it only streamed it).
        assert f"conversation {cid} runs in" not in b.log_tail(10**7)


async def test_a_message_posted_to_b_reaches_the_turn_a_is_running(tmp_path: Path):
    a = await start_serve(tmp_path, delay=0.08, extra=("-v",))
    b: Studio | None = None
    try:
        b = await start_serve(tmp_path, delay=0.08, extra=("-v",))
        async with a.client() as on_a, b.client() as on_b:
            cid = await empty_conversation(on_a)
            sent = await on_a.post(f"/api/conversations/{cid}/messages", json={"content": REQUEST})
            assert sent.status_code == 202, sent.text
            async for event in sse_events(on_a, f"/api/conversations/{cid}/events"):
                if event.event == "token":  # A's specialist is mid-turn
                    break
            first = await on_b.post(
                f"/api/conversations/{cid}/messages", json={"content": "make it rain heavily"}
            )
            second = await on_b.post(
                f"/api/conversations/{cid}/messages", json={"content": "add a red umbrella"}
            )
            assert first.status_code == 202 and second.status_code == 202
            wanted = ["make it rain heavily", "add a red umbrella"]

            async def both_taken_in() -> bool:
                said = [m["content"] for m in await checkpoint_messages(on_a, cid)]
                return all(text in said for text in wanted)

            await eventually(both_taken_in, 120, "A's run takes both messages in")
            said = [m["content"] for m in await checkpoint_messages(on_a, cid)]
            assert [s for s in said if s in wanted] == wanted  # once each, in arrival order
            assert said.index(wanted[0]) > said.index(REQUEST)

            log = await full_log(on_b, cid)
            kinds = [e["kind"] for e in log]
            assert "error" not in kinds, [e for e in log if e["kind"] == "error"]
            person = [
                e["id"]
                for e in log
                if e["kind"] == "message" and e["data"].get("content") in wanted
            ]
            assert len(person) == 2
            # The turn A was running was cut when the message arrived: what its specialist
            # had said so far is kept, marked interrupted, and it came from A's run.
            cut = [
                e for e in log if e["kind"] == "message" and e["data"].get("interrupted") is True
            ]
            assert cut and cut[0]["id"] > min(e["id"] for e in log if e["kind"] == "token"), (
                "no running turn was interrupted"
            )
            # B handed the messages to A (the lease holder) instead of running them itself.
            assert f"conversation {cid} runs in" in b.log_tail(10**7)
            assert "handed it" in b.log_tail(10**7)
    finally:
        if b is not None:
            await b.kill()
        await a.close()


async def test_an_image_posted_to_b_reaches_the_run_of_a_and_b_starting_leaves_the_run_to_a(
    tmp_path: Path,
):
    """B starts while A runs the conversation: B's start (which continues conversations a
    dead process left "running") leaves it to A, whose lease is live. A message with an
    uploaded image posted to B reaches A's run as the very message B stored - its images
    included - and Pixel starts from the image (img2img)."""
    a = await start_serve(tmp_path, delay=0.08, extra=("-v",))
    b: Studio | None = None
    try:
        async with a.client() as on_a:
            cid = await empty_conversation(on_a)
            sent = await on_a.post(f"/api/conversations/{cid}/messages", json={"content": REQUEST})
            assert sent.status_code == 202, sent.text
            async for event in sse_events(on_a, f"/api/conversations/{cid}/events"):
                if event.event == "token":  # A's team is talking
                    break
            b = await start_serve(tmp_path, delay=0.08, extra=("-v",))
            async with b.client() as on_b:
                assert (await on_b.get(f"/api/conversations/{cid}")).json()["running"] is True
                sid = (await on_b.get(f"/api/conversations/{cid}")).json()["session_id"]
                image = (await upload(on_b, sid, image_bytes(96, 64))).json()
                posted = await on_b.post(
                    f"/api/conversations/{cid}/messages",
                    json={"content": "keep it close to my photo", "images": [image["ref"]]},
                )
                assert posted.status_code == 202, posted.text
                message_id = posted.json()["message"]["message_id"]

                async def taken_in() -> bool:
                    said = await checkpoint_messages(on_a, cid)
                    return any(m["message_id"] == message_id for m in said)

                await eventually(taken_in, 120, "A's run takes the message in")
                stored = next(
                    m for m in await stored_messages(on_b, cid) if m["message_id"] == message_id
                )
                remembered = next(
                    m for m in await checkpoint_messages(on_a, cid) if m["message_id"] == message_id
                )
                fields = (
                    "message_id",
                    "role",
                    "content",
                    "phase",
                    "kind",
                    "interrupted",
                    "metadata",
                )
                assert {k: remembered[k] for k in fields} == {k: stored[k] for k in fields}
                assert remembered["metadata"]["images"][0]["ref"] == image["ref"]

                async def planned() -> bool:
                    detail = (await on_a.get(f"/api/conversations/{cid}")).json()
                    return detail["plan"] is not None and not detail["running"]

                await eventually(planned, 240, "A's team plans the picture and stops")
                detail = (await on_a.get(f"/api/conversations/{cid}")).json()
                assert detail["plan"]["template"] == "img2img"  # Pixel starts from the photo
                log = await full_log(on_b, cid)
            assert "error" not in [e["kind"] for e in log], [e for e in log if e["kind"] == "error"]
            announced = [e["data"]["message_id"] for e in log if e["kind"] == "message"]
            assert len(announced) == len(set(announced)), "a message was announced twice"
            starts = [e for e in log if e["kind"] == "status" and e["data"]["state"] == "running"]
            b_log = b.log_tail(10**7)
            # B handed the message over; at its start it left A's live conversation alone.
            assert "handed it 1 message(s)" in b_log
            assert f"conversation {cid} runs in live worker" in b_log
            assert "lease taken" not in b_log
            assert "lease lost" not in a.log_tail(10**7)
            assert "lost the lease" not in a.log_tail(10**7)
            assert len(starts) >= 2  # A's run, and A's run after the interjection
    finally:
        if b is not None:
            await b.kill()
        await a.close()


async def test_kill_9_of_a_mid_turn_b_takes_over_and_the_stream_on_b_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A dies mid-turn; B's sweep finds A's expired lease (any host: only the expiry is
    used) and continues from the last checkpoint; B's SSE client sees the conversation go
    on with no event lost or repeated, and no message announced twice."""
    monkeypatch.setenv("CREATIVE_STUDIO_LEASE_TTL_S", "3")
    a = await start_serve(tmp_path, delay=0.03, extra=("-v",))
    b: Studio | None = None
    try:
        b = await start_serve(tmp_path, delay=0.03, extra=("-v",))
        async with a.client() as on_a, b.client() as on_b:
            cid = await empty_conversation(on_a)
            seen: list[Sse] = []
            tokens = asyncio.Event()
            killed_at: list[float] = []
            loop = asyncio.get_running_loop()

            async def follow() -> None:
                running = 0
                async for event in sse_events(on_b, f"/api/conversations/{cid}/events"):
                    seen.append(event)
                    if event.event == "token" and sum(e.event == "token" for e in seen) > 30:
                        tokens.set()
                    if event.event == "status" and event.data.get("state") == "running":
                        running += 1
                    state = event.data.get("state") if event.event == "status" else None
                    if killed_at and running >= 2 and state in DONE:
                        return

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.5)
            sent = await on_a.post(f"/api/conversations/{cid}/messages", json={"content": REQUEST})
            assert sent.status_code == 202, sent.text
            await asyncio.wait_for(tokens.wait(), 120)
            # B knows the conversation runs (on A) though B does not run it.
            detail = (await on_b.get(f"/api/conversations/{cid}")).json()
            assert detail["running"] is True
            before_kill = len(seen)
            await a.kill()
            killed_at.append(loop.time())
            await asyncio.wait_for(follower, 240)
            after_kill = [e for e in seen[before_kill:] if e.event in {"status", "message"}]
            assert after_kill, "nothing came after the kill"

        async with b.client() as on_b:
            log = await full_log(on_b, cid)
            ids = [e.id for e in seen]
            assert ids == sorted(set(ids)), "out of order or repeated"
            assert ids == [e["id"] for e in log if e["id"] <= ids[-1]], "the stream is not the log"
            assert [e.data for e in seen] == [e["data"] for e in log if e["id"] <= ids[-1]]
            announced = [e["data"]["message_id"] for e in log if e["kind"] == "message"]
            assert len(announced) == len(set(announced)), "a message was announced twice"
            said = await checkpoint_messages(on_b, cid)
            said_ids = [m.get("id") or m.get("message_id") for m in said]
            assert len(said_ids) == len(set(said_ids)), "the team said something twice"
            # B ran the rest: its status "running" came after the kill, then the end.
            starts = [e for e in log if e["kind"] == "status" and e["data"]["state"] == "running"]
            assert len(starts) >= 2
            assert "taking over conversation" in b.log_tail(10**7)
            # What A's specialist had streamed when it died stays, under the id the clients
            # saw its tokens of, marked interrupted (unless A died between two turns).
            streamed = {e["data"]["message_id"] for e in log if e["kind"] == "token"}
            assert streamed <= set(announced), "tokens of a message that never ended"
            final = await on_b.get(f"/api/conversations/{cid}")
            assert final.json()["running"] is False
            assert final.json()["status"] in DONE
    finally:
        if b is not None:
            await b.kill()
        await a.close()


async def test_cancel_posted_to_b_stops_the_turn_a_is_running(tmp_path: Path):
    a = await start_serve(tmp_path, delay=0.08, extra=("-v",))
    b: Studio | None = None
    try:
        b = await start_serve(tmp_path, delay=0.08, extra=("-v",))
        async with a.client() as on_a, b.client() as on_b:
            cid = await empty_conversation(on_a)
            sent = await on_a.post(f"/api/conversations/{cid}/messages", json={"content": REQUEST})
            assert sent.status_code == 202, sent.text
            async for event in sse_events(on_b, f"/api/conversations/{cid}/events"):
                if event.event == "token":
                    break
            assert (await on_b.get(f"/api/conversations/{cid}")).json()["running"] is True
            cancelled = await on_b.post(f"/api/conversations/{cid}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["cancelled"] is True

            async def stopped() -> bool:
                return (await on_b.get(f"/api/conversations/{cid}")).json()["running"] is False

            await eventually(stopped, 60, "A stops the run B was asked to cancel")
            log = await full_log(on_b, cid)
            assert any(e["kind"] == "message" and e["data"].get("interrupted") for e in log)
            assert "forwarded the cancel" in b.log_tail(10**7)
            assert "error" not in [e["kind"] for e in log]
    finally:
        if b is not None:
            await b.kill()
        await a.close()
