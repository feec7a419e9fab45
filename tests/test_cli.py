"""The terminal entry point, run as a real process, and crash-resume on the same Postgres;
``serve --assign``: refused when wrong, the server's default per role when right."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from creative_studio.api.cli import build_parser, studio_settings
from creative_studio.api.deps import Studio
from creative_studio.api.routes.sessions import get_settings
from creative_studio.graph.builder import build_graph
from creative_studio.graph.configuration import Configuration
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


@pytest.mark.parametrize(
    ("assign", "message"),
    [
        ("painter=scripted", "--assign 'painter=scripted': use role=model with a role of style"),
        ("technical", "--assign 'technical': use role=model with a role of style"),
        ("technical=", "--assign 'technical=': use role=model with a role of style"),
        ("critic=gpt-4", "Unknown model assignment 'gpt-4': use 'ollama:<model>'"),
        ("story=embedded:nope", "Unknown embedded model in 'embedded:nope'"),
    ],
)
def test_serve_refuses_a_bad_assign_before_starting_anything(
    tmp_path: Path, assign: str, message: str
):
    done = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path), "serve", "--port", "9", "--assign", assign],
        capture_output=True,
        text=True,
        env=cli_env(0),
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in " ".join(done.stderr.split())  # rich may wrap a long message
    assert "Creative Studio on" not in done.stdout
    assert not any(tmp_path.iterdir())  # no database was started, nothing was written


async def test_serve_assign_is_the_default_for_roles_a_session_did_not_assign(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CREATIVE_STUDIO_MODEL", "auto")  # serve --model sets it: restored after
    args = build_parser().parse_args(
        [
            *("--database-url", fresh_db_url, "--data-dir", str(tmp_path), "serve"),
            *("--model", "scripted"),
            *("--assign", "critic=embedded:gemma3-270m", "--assign", "technical=scripted"),
            *("--assign", "critic=ollama:llama3.2:3b"),  # the last one of a role wins
        ]
    )
    settings = studio_settings(args)
    assert settings.model_assignments == {
        "critic": "ollama:llama3.2:3b",
        "technical": "scripted",
    }
    studio = await Studio.start(settings)
    try:
        own = await studio.repository.create_session(
            name="own", model_assignments={"technical": "ollama:qwen2.5:7b"}
        )
        bare = await studio.repository.create_session(name="bare")
        models: dict[str, dict[str, str]] = {}
        for session in (own, bare):
            conversation = await studio.repository.create_conversation(session.id, title="x")
            # What a run of it reads: the runner's configurable under the session's settings.
            configurable = {
                **studio.runner.extra_configurable,
                **await studio.runner.settings(str(conversation.id)),
            }
            config = Configuration.from_runnable_config({"configurable": configurable})
            models[session.name] = {
                r: config.model_for(r) for r in ("style", "technical", "critic")
            }
        # The session's own assignment wins; serve --assign beats serve --model for its role.
        assert models["own"] == {
            "style": "scripted",
            "technical": "ollama:qwen2.5:7b",
            "critic": "ollama:llama3.2:3b",
        }
        assert models["bare"] == {
            "style": "scripted",
            "technical": "scripted",
            "critic": "ollama:llama3.2:3b",
        }
        # The web's Settings say the same, and keep the session's own assignments apart.
        view = await get_settings(str(own.id), studio)
        assert view.model_assignments == {"technical": "ollama:qwen2.5:7b"}
        assert (view.resolved_models["technical"], view.resolved_models["critic"]) == (
            "ollama:qwen2.5:7b",
            "ollama:llama3.2:3b",
        )
        assert view.resolved_models["style"] == "scripted"
    finally:
        await studio.stop()
