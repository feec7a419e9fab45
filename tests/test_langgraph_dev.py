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
from typing import Any
from uuid import uuid4

import httpx
import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.pregel.remote import RemoteGraph
from langgraph.types import Command
from langgraph_sdk import get_client

from creative_studio.graph.remote import remote_team_node, remote_thread_id
from tests.comfyui_double import ComfyUIDouble

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def comfyui():
    double = ComfyUIDouble()
    double.start()
    yield double
    double.stop()


@pytest.fixture(scope="module")
def langgraph_dev(tmp_path_factory, comfyui):
    """Start `langgraph dev` on a free port in the repository, stop it afterwards.

    Its ComfyUI is the wire double: the graph's ComfyUI node generates by itself there.
    One server for the module (starting it takes seconds); every test uses its own thread.
    """
    tmp_path = tmp_path_factory.mktemp("langgraph-dev")
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


def _human(text: str) -> dict[str, Any]:
    return {"messages": [{"type": "human", "content": text, "id": str(uuid4())}]}


@pytest.mark.slow
async def test_studio_sees_every_schema_with_the_typed_context(langgraph_dev):
    client = get_client(url=langgraph_dev)
    (assistant,) = await client.assistants.search(graph_id="creative_studio")
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    for key in ("input_schema", "output_schema", "state_schema", "context_schema"):
        assert schemas[key], key
    assert list(schemas["input_schema"]["properties"]) == ["messages"]
    assert "brief" in schemas["state_schema"]["properties"]
    context = schemas["context_schema"]["properties"]
    for field in ("style_model", "critic_model", "default_model", "comfyui_url"):
        assert context[field]["type"] == "string", field
    assert context["approve_plans"]["type"] == "boolean"
    assert context["max_rounds"]["maximum"] == 10
    # The allowed model forms are in the schema, so Studio's form can check them.
    assert "embedded:gemma3-270m" in context["style_model"]["examples"]
    assert context["default_model"]["pattern"].startswith("^(auto|scripted|embedded")


@pytest.mark.slow
async def test_an_events_stream_runs_a_whole_turn_with_context_and_named_messages(
    langgraph_dev,
):
    client = get_client(url=langgraph_dev)
    thread = (await client.threads.create())["thread_id"]
    kinds: set[str] = set()
    async for part in client.runs.stream(
        thread,
        "creative_studio",
        input=_human("a lighthouse in a storm at dusk"),
        stream_mode="events",
        context={"style_model": "scripted"},
    ):
        assert part.event != "error", part.data
        if part.event == "events":
            kinds.add(part.data["event"])
    assert {"on_chain_start", "on_chat_model_stream"} <= kinds
    state = await client.threads.get_state(thread)
    assert state["values"]["phase"] == "complete"  # more than 25 steps, no recursion error
    named = {
        (m["name"], m["additional_kwargs"]["role"])
        for m in state["values"]["messages"]
        if m["type"] == "ai" and m["name"] != "system"
    }
    assert {("Luna", "style"), ("Frame", "composition"), ("Pixel", "technical")} <= named


@pytest.mark.slow
async def test_the_approval_question_is_a_message_and_the_interrupt_resumes(langgraph_dev):
    client = get_client(url=langgraph_dev)
    thread = (await client.threads.create())["thread_id"]
    context = {"approve_plans": True}
    await client.runs.wait(thread, "creative_studio", input=_human("a red fox"), context=context)
    paused = await client.threads.get_state(thread)
    (question,) = paused["interrupts"]
    assert question["value"]["type"] == "approve_plan"
    last = paused["values"]["messages"][-1]
    assert last["additional_kwargs"]["kind"] == "question"
    assert last["content"] == question["value"]["question"]
    await client.runs.wait(
        thread, "creative_studio", command={"resume": {"approved": True}}, context=context
    )
    done = await client.threads.get_state(thread)
    assert not done["interrupts"] and done["values"]["phase"] == "complete"
    assert done["values"]["generation"]["status"] == "complete"


class AppState(MessagesState):
    team_plan: dict[str, Any] | None
    team_images: list[dict[str, Any]]


@pytest.mark.slow
async def test_a_remote_team_in_a_parent_graph_resumes_its_interrupt(langgraph_dev):
    remote = RemoteGraph("creative_studio", url=langgraph_dev)
    builder = StateGraph(AppState)
    builder.add_node("creative_team", remote_team_node(remote))
    builder.add_edge(START, "creative_team")
    builder.add_edge("creative_team", END)
    app = builder.compile(checkpointer=InMemorySaver())
    parent_thread = str(uuid4())
    config = {"configurable": {"thread_id": parent_thread}}
    context = {"approve_plans": True}

    request = HumanMessage("a lighthouse in a storm at dusk", id=str(uuid4()))
    await app.ainvoke({"messages": [request]}, config, context=context)
    paused = await app.aget_state(config)
    assert [i.value["type"] for i in paused.interrupts] == ["approve_plan"]

    await app.ainvoke(Command(resume={"approved": True}), config, context=context)
    done = await app.aget_state(config)
    assert not done.interrupts
    (image,) = done.values["team_images"]
    assert image["url"].startswith("http://127.0.0.1:")
    assert done.values["messages"][-1].text.startswith("The team generated 1 image:")
    # The answer reached the remote thread once: the team asked once and went on.
    remote_state = await get_client(url=langgraph_dev).threads.get_state(
        remote_thread_id(parent_thread)
    )
    assert not remote_state["interrupts"] and remote_state["values"]["phase"] == "complete"
    answers = [m for m in remote_state["values"]["messages"] if m["type"] == "human"]
    assert [m["content"] for m in answers] == [request.text, "Approved."]


@pytest.mark.slow
async def test_a_fork_mid_conversation_with_an_edited_message_plans_without_the_old_words(
    langgraph_dev,
):
    """Studio's time travel: go back to before a direction, say something else instead."""
    client = get_client(url=langgraph_dev)
    thread = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread, "creative_studio", input=_human("a lighthouse in a storm"))
    await client.runs.wait(thread, "creative_studio", input=_human("make it more melancholic"))
    first = await client.threads.get_state(thread)
    assert "melancholic" in first["values"]["plan"]["positive_prompt"]
    history = await client.threads.get_history(thread, limit=200)
    before = next(  # newest first: the last checkpoint before the direction was said
        h
        for h in history
        if h["values"].get("phase") == "complete"
        and not any("melancholic" in str(m["content"]) for m in h["values"]["messages"])
    )
    forked = await client.threads.update_state(
        thread,
        {"messages": [{"type": "human", "content": "make it bright and joyful", "id": "e1"}]},
        checkpoint_id=before["checkpoint"]["checkpoint_id"],
        as_node="__start__",  # the edit is the person's input: the router takes it from there
    )
    await client.runs.wait(
        thread,
        "creative_studio",
        input=None,
        checkpoint_id=forked["checkpoint"]["checkpoint_id"],
    )
    state = await client.threads.get_state(thread)
    prompt = state["values"]["plan"]["positive_prompt"]
    assert "bright and joyful" in prompt and "melancholic" not in prompt
    assert "lighthouse" in prompt and state["values"]["phase"] == "complete"
    said = [str(m["content"]) for m in state["values"]["messages"] if m["type"] == "human"]
    assert said == ["a lighthouse in a storm", "make it bright and joyful"]
