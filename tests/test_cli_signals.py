"""Process hygiene of the ``creative-studio`` command, with real processes.

SIGTERM and SIGINT stop ``serve`` and ``chat`` cleanly, the embedded PostgreSQL they started
included (no postgres left on the data directory, no dead pid in ``.handle_pids.json``);
a ``kill -9`` leaves the server running for the next start to reuse; the global options
work before and after the command.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from creative_studio.api.cli import build_parser
from tests.studio_process import (
    CLI,
    alive,
    eventually,
    handle_pids,
    new_conversation,
    postgres_gone,
    postgres_processes,
    postmaster_pid,
    start_serve,
    stop_leftover_postgres,
    studio_env,
)

REQUEST = "a lighthouse in a storm"
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


async def assert_postgres_stopped(data_dir: Path, pid: int | None, studio_pid: int) -> None:
    await eventually(lambda: not alive(pid), 30, "the postmaster stops")
    await eventually(lambda: postgres_gone(data_dir), 30, "no postgres left on the data dir")
    assert studio_pid not in handle_pids(data_dir)
    assert handle_pids(data_dir) == []


@pytest.mark.parametrize("signum", SIGNALS)
async def test_a_signal_stops_serve_and_the_postgres_it_started(
    tmp_path: Path, signum: signal.Signals
) -> None:
    studio = await start_serve(tmp_path, delay=0.03)
    try:
        postmaster = postmaster_pid(tmp_path)
        assert alive(postmaster) and handle_pids(tmp_path) == [studio.pid]
        async with studio.client() as client:
            cid = await new_conversation(client, REQUEST)

            async def talking() -> bool:  # mid-run: a specialist is streaming
                detail = (await client.get(f"/api/conversations/{cid}")).json()
                return bool(detail["running"] and detail["last_event_id"] > 5)

            await eventually(talking, 30, "the team talks")
            # A follower of the event stream must not hold the shutdown up.
            async with client.stream("GET", f"/api/conversations/{cid}/events") as stream:
                assert stream.status_code == 200
                studio.process.send_signal(signum)
                assert await studio.wait_exit() == 128 + signum, studio.log_tail()
        await assert_postgres_stopped(tmp_path, postmaster, studio.pid)
        assert "Traceback" not in studio.log_tail(), studio.log_tail()
        # The open stream was ended at the signal, not cut when uvicorn gave up waiting.
        assert "graceful shutdown exceeded" not in studio.log_tail(), studio.log_tail()
    finally:
        await studio.close()


@pytest.mark.parametrize("signum", SIGNALS)
async def test_a_signal_stops_chat_and_the_postgres_it_started(
    tmp_path: Path, signum: signal.Signals
) -> None:
    # The global option after the command (it used to be "unrecognized arguments").
    process = await asyncio.create_subprocess_exec(
        *[*CLI, "chat", REQUEST, "--model", "scripted", "--data-dir", str(tmp_path)],
        stdin=subprocess.PIPE,  # open: the person could still type
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=studio_env(0.03),
    )
    assert process.stdout is not None
    try:
        seen = ""
        while "Luna (style):" not in seen:
            chunk = await asyncio.wait_for(process.stdout.read(200), 60)
            assert chunk, seen
            seen += chunk.decode()
        postmaster = postmaster_pid(tmp_path)
        assert alive(postmaster) and handle_pids(tmp_path) == [process.pid]
        process.send_signal(signum)
        rest = await asyncio.wait_for(process.stdout.read(), 30)
        assert await asyncio.wait_for(process.wait(), 30) == 128 + signum
        output = seen + rest.decode()
        assert "Saved. Continue later with: creative-studio chat --conversation" in output
        assert "Traceback" not in output, output
        await assert_postgres_stopped(tmp_path, postmaster, process.pid)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await stop_leftover_postgres(tmp_path)


async def test_a_killed_serve_leaves_postgres_running_and_the_next_start_reuses_it(
    tmp_path: Path,
) -> None:
    try:
        first = await start_serve(tmp_path, options_first=False)
        postmaster = postmaster_pid(tmp_path)
        await first.kill()  # kill -9
        assert alive(postmaster), "pg_ctl daemonised the postmaster: it outlives the studio"
        assert handle_pids(tmp_path) == [first.pid]  # the dead user is still listed

        second = await start_serve(tmp_path)
        try:
            assert postmaster_pid(tmp_path) == postmaster  # reused, not restarted
            assert handle_pids(tmp_path) == [second.pid]  # the dead pid was forgotten
            async with second.client() as client:
                # serve --model: the default of every role a session did not assign.
                session = (await client.post("/api/sessions", json={"name": "d"})).json()
                settings = (await client.get(f"/api/sessions/{session['id']}/settings")).json()
            assert settings["model_assignments"] == {}  # nothing stored in the session
            assert set(settings["resolved_models"].values()) == {"scripted"}
            second.process.send_signal(signal.SIGTERM)
            assert await second.wait_exit() == 128 + signal.SIGTERM
            await assert_postgres_stopped(tmp_path, postmaster, second.pid)
        finally:
            await second.close()
    finally:
        await stop_leftover_postgres(tmp_path)
    assert not postgres_processes(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["--data-dir", "X", "--database-url", "U", "--ollama-host", "H", "-v", "chat", "hi"],
        ["chat", "hi", "--data-dir", "X", "--database-url", "U", "--ollama-host", "H", "-v"],
        ["--data-dir", "X", "-v", "chat", "--database-url", "U", "hi", "--ollama-host", "H"],
    ],
)
def test_global_options_work_before_and_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.request) == ("chat", "hi")
    assert (str(args.data_dir), args.database_url, args.ollama_host, args.verbose) == (
        "X",
        "U",
        "H",
        True,
    )


@pytest.mark.parametrize("command", ["serve", "models"])
def test_every_command_takes_the_global_options_on_either_side(command: str) -> None:
    before = build_parser().parse_args(["--data-dir", "A", "-v", command])
    after = build_parser().parse_args([command, "--data-dir", "A", "-v"])
    unset = build_parser().parse_args([command])
    assert (before.data_dir, before.verbose) == (after.data_dir, after.verbose) == (Path("A"), True)
    assert (unset.data_dir, unset.database_url, unset.ollama_host, unset.verbose) == (
        None,
        None,
        None,
        False,
    )
    # Given on both sides, the one after the command wins (it is the more specific).
    both = build_parser().parse_args(["--data-dir", "A", command, "--data-dir", "B"])
    assert both.data_dir == Path("B")


def test_serve_takes_model() -> None:
    args = build_parser().parse_args(["serve", "--model", "scripted", "--port", "1"])
    assert (args.model, args.port) == ("scripted", 1)
