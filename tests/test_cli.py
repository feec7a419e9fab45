"""The terminal entry point, run as a real process, and crash-resume on the same Postgres."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from creative_studio.graph.builder import build_graph
from creative_studio.services.runner import ConversationRunner
from creative_studio.store.database import Database
from creative_studio.store.repository import StudioRepository
from creative_studio.tools.models import AssignmentProvider

CLI = [sys.executable, "-m", "creative_studio.api.cli"]
UUID = re.compile(r"Conversation ([0-9a-f-]{36})")


def cli_env(delay: float) -> dict[str, str]:
    return {
        **os.environ,
        "CREATIVE_STUDIO_SCRIPTED_DELAY": str(delay),
        "COLUMNS": "120",
        "TERM": "dumb",
    }


async def test_chat_streams_the_discussion_takes_an_interjection_and_shows_the_plan(
    fresh_db_url: str, tmp_path: Path
):
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "--database-url",
        fresh_db_url,
        "--data-dir",
        str(tmp_path),
        "chat",
        "a cyberpunk street at night, neon signs",
        "--model",
        "scripted",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cli_env(0.02),
    )
    assert process.stdin and process.stdout
    seen = ""
    while "Luna (style):" not in seen:
        seen += (await asyncio.wait_for(process.stdout.read(200), 30)).decode()
    process.stdin.write(b"Frame, try a low camera angle\n")
    await process.stdin.drain()
    # No ComfyUI here: the chat stays for the queued generation until the person quits.
    while "Waiting for the generation" not in seen:
        seen += (await asyncio.wait_for(process.stdout.readline(), 120)).decode()
    process.stdin.write(b"quit\n")
    await process.stdin.drain()
    process.stdin.close()
    rest, _ = await asyncio.wait_for(process.communicate(), 120)
    output = seen + rest.decode()
    assert process.returncode == 0, output[-2000:]
    for label in (
        "Luna (style):",
        "Frame (composition):",
        "Saga (story):",
        "Pixel (technical):",
        "Lens (critic):",
    ):
        assert label in output
    assert "(interrupted)" in output or "was interrupted)" in output
    assert "I'll keep the framing" in output  # Frame answered the interjection
    assert "phase: synthesis" in output and "phase: review" in output
    # No ComfyUI in tests: the generation waits for it and the conversation stays there.
    assert "phase: generating" in output and "The generation is queued" in output
    assert "Pixel (technical): Template txt2img" in output and "Prompt: a cyberpunk" in output
    assert "Continue later with: creative-studio chat --conversation" in output


async def test_a_killed_process_loses_no_completed_message_and_the_next_one_continues(
    fresh_db_url: str, tmp_path: Path
):
    process = await asyncio.create_subprocess_exec(
        *[
            *CLI,
            "--database-url",
            fresh_db_url,
            "--data-dir",
            str(tmp_path),
            "chat",
            "a lighthouse in a storm",
            "--model",
            "scripted",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cli_env(0.03),
    )
    assert process.stdout
    first_line = await asyncio.wait_for(process.stdout.readline(), 30)
    match = UUID.search(first_line.decode())
    assert match, first_line
    cid = match.group(1)
    database = await Database.open(fresh_db_url, tmp_path)
    try:
        repository = StudioRepository(database.pool)
        deadline = asyncio.get_running_loop().time() + 60
        while await repository.count_messages(cid) < 6:  # request + a few turns stored
            assert asyncio.get_running_loop().time() < deadline, "the CLI stored no turns"
            await asyncio.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # mid-stream: a turn is being written
        await asyncio.wait_for(process.wait(), 10)
        before = await repository.list_messages(cid)
        assert len(before) >= 6

        graph = build_graph(database.checkpointer, provider=AssignmentProvider())
        runner = ConversationRunner(
            graph, database, extra_configurable={"default_model": "scripted"}
        )
        state = (await graph.aget_state({"configurable": {"thread_id": cid}})).values
        assert [str(m.id) for m in state["messages"]] == [r.message_id for r in before]
        await runner.resume(cid)
        await runner.wait_idle(cid)
        after = await repository.list_messages(cid)
        assert [r.message_id for r in after][: len(before)] == [r.message_id for r in before]
        final = (await graph.aget_state({"configurable": {"thread_id": cid}})).values
        assert final["phase"] == "complete"
        assert [str(m.id) for m in final["messages"]] == [r.message_id for r in after]
        assert "lighthouse" in final["plan"]["positive_prompt"]
    finally:
        if process.returncode is None:
            process.kill()
        await database.close()
