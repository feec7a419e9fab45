"""`langgraph dev` serves the studio graph offline, as LangGraph Studio would use it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.comfyui_double import ComfyUIDouble

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def comfyui():
    double = ComfyUIDouble()
    double.start()
    yield double
    double.stop()


@pytest.fixture
def langgraph_dev(tmp_path, comfyui):
    """Start `langgraph dev` on a free port in the repository, stop it afterwards.

    Its ComfyUI is the wire double: the graph's ComfyUI node generates by itself there.
    """
    cli = Path(sys.executable).parent / "langgraph"
    if not cli.exists():
        cli = Path(shutil.which("langgraph") or "langgraph")
    port = _free_port()
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "CREATIVE_STUDIO_MODEL": "scripted",
        "COMFYUI_URL": comfyui.url,
    }
    log = (tmp_path / "langgraph-dev.log").open("w")
    process = subprocess.Popen(
        [str(cli), "dev", "--port", str(port), "--no-browser", "--no-reload"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError((tmp_path / "langgraph-dev.log").read_text()[-3000:])
        try:
            if httpx.get(f"{base}/ok", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        raise AssertionError("langgraph dev did not start within 60 s")
    yield base
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


@pytest.mark.slow
def test_langgraph_dev_serves_the_graph_and_streams_a_run(langgraph_dev):
    with httpx.Client(base_url=langgraph_dev, timeout=60) as client:
        assistants = client.post("/assistants/search", json={"graph_id": "creative_studio"}).json()
        assert [a["graph_id"] for a in assistants] == ["creative_studio"]
        thread = client.post("/threads", json={}).json()["thread_id"]
        request = {
            "assistant_id": assistants[0]["assistant_id"],
            "input": {
                "messages": [{"type": "human", "content": "a lighthouse in a storm at dusk"}]
            },
            "stream_mode": ["updates"],
        }
        events: list[tuple[str, dict]] = []
        with client.stream("POST", f"/threads/{thread}/runs/stream", json=request) as response:
            assert response.status_code == 200
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "updates":
                    events.append((event, json.loads(line.removeprefix("data: "))))
        nodes = [next(iter(data)) for _, data in events]
        assert {"router", "style", "composition", "story", "technical", "critic"} <= set(nodes)
        state = client.get(f"/threads/{thread}/state").json()
        assert state["values"]["phase"] == "complete"
        generation = state["values"]["generation"]
        assert generation["status"] == "complete", generation
        assert generation["outputs"][0]["url"].startswith("http://127.0.0.1:")
        assert "lighthouse" in state["values"]["plan"]["positive_prompt"]
