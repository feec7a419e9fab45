"""Ollama specialists through the real langchain-ollama client against a wire-format double."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import operator
import re
import socket
import threading
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from creative_studio.graph.builder import build_graph
from creative_studio.nodes import speaking
from creative_studio.tools.models import AssignmentProvider
from creative_studio.tools.ollama import (
    OllamaModelMissingError,
    OllamaService,
    resolve_auto,
)
from tests.fakes import APPROVE_JSON, PLAN_JSON, run_turns
from tests.ollama_double import OllamaDouble, closed_port

REQUEST = "a cyberpunk street at night, neon signs"
LINES = {
    "Luna": "Magenta and cyan neon over wet asphalt.",
    "Frame": "A low angle down the street, signs towering overhead.",
    "Saga": "A courier pauses under a ramen sign as the rain stops.",
    "Pixel": "SDXL at 1216x832 will carry it.",
    "Lens": "Keep one clear focal point.",
}


def scripted_reply(body: dict[str, Any]) -> str:
    """What the double answers: JSON for structured requests, a persona's line otherwise."""
    schema = body.get("format")
    if isinstance(schema, dict):
        return PLAN_JSON if schema.get("title") == "TechnicalPlan" else APPROVE_JSON
    last = body["messages"][-1]["content"]
    if "Turn: vote" in last or "Turn: plan_check" in last:
        return "READY - agreed."
    for name, line in LINES.items():
        if last.startswith(f"You are {name}"):
            return line
    return "Noted."


@pytest.fixture
def ollama():
    double = OllamaDouble(models=["llama3.2:3b"], reply=scripted_reply).start()
    yield double
    double.stop()


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(speaking, "RETRY_DELAYS", (0.01, 0.01))


def graph_for(host: str):
    return build_graph(
        InMemorySaver(), provider=AssignmentProvider(ollama_host=host, auto="embedded")
    )


def config(**settings: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid4()), **settings}}


def request_message() -> dict[str, Any]:
    return {"messages": [HumanMessage(REQUEST, name="user", id=str(uuid4()))]}


def studio_notes(state: dict[str, Any]) -> list[str]:
    return [m.text for m in state["messages"] if m.additional_kwargs.get("kind") == "unavailable"]


# Streamed turns through LangGraph's "messages" stream (LangGraph Studio, no token sink) and
# through the runner's token sink (the studio: tools/ollama_stream.py reads the NDJSON).
PATHS = pytest.mark.parametrize("sink", [False, True], ids=["messages-stream", "token-sink"])


@PATHS
async def test_ollama_specialists_stream_tokens_and_keep_ollamas_counters(ollama, sink):
    graph = graph_for(ollama.url)
    cfg = config(default_model="ollama:llama3.2:3b")
    trace = await run_turns(graph, request_message(), cfg, sink=sink)
    state = (await graph.aget_state(cfg)).values
    assert state["phase"] == "complete" and state["plan"]["seed"] == 42
    # Tokens arrived one NDJSON line at a time, per speaker node.
    luna_tokens = [text for node, text in trace.tokens if node == "style"]
    assert "".join(luna_tokens[:7]).startswith("Magenta and cyan neon")
    assert len(luna_tokens) > 5
    luna = next(m for m in state["messages"] if m.additional_kwargs.get("role") == "style")
    meta = luna.additional_kwargs["metadata"]
    assert meta["eval_count"] == len(LINES["Luna"].split())
    assert meta["prompt_eval_count"] > 50 and meta["total_duration"] == 4883583458
    assert meta["usage"]["output_tokens"] == meta["eval_count"]
    chats = [r for r in ollama.requests if r["path"] == "/api/chat"]
    # Keep-alive and context size go with every request.
    assert {r["keep_alive"] for r in chats} == {"10m"}
    assert {r["options"]["num_ctx"] for r in chats} == {8192}
    # Structured turns ask Ollama for the schema; others stream plain text.
    formats = [r["format"]["title"] for r in chats if isinstance(r.get("format"), dict)]
    assert formats == ["TechnicalPlan", "CriticVerdict"]
    # Prefix-first: consecutive speakers share the preamble and the transcript so far (the
    # next prompt only appends to it); the brief and the persona come after it.
    first, second = chats[0]["messages"], chats[1]["messages"]
    assert first[0] == second[0]
    transcript = first[1]["content"].split("\n\nCreative brief")[0]
    assert second[1]["content"].startswith(transcript + "\nLuna (style): Magenta")
    assert first[-1]["content"].startswith("You are Luna") and second[-1]["content"].startswith(
        "You are Frame"
    )


@PATHS
async def test_a_missing_model_is_named_with_the_pull_command_and_the_others_go_on(ollama, sink):
    graph = graph_for(ollama.url)
    cfg = config(
        default_model="ollama:llama3.2:3b", model_assignments={"story": "ollama:llama3.1:8b"}
    )
    await run_turns(graph, request_message(), cfg, sink=sink)
    state = (await graph.aget_state(cfg)).values
    notes = studio_notes(state)
    assert notes, "Saga's failure should be noted in the chat"
    assert notes[0] == (
        f"Saga is unavailable: the model 'llama3.1:8b' is not installed on Ollama at {ollama.url}. "
        "Run `ollama pull llama3.1:8b`, or assign an installed model to this role in settings"
    )
    assert {m.additional_kwargs.get("role") for m in state["messages"] if m.type == "ai"} >= {
        "style",
        "composition",
        "technical",
    }
    assert state["phase"] == "complete"


@PATHS
async def test_an_unreachable_server_is_named_and_the_conversation_is_kept(fast_retries, sink):
    host = closed_port()
    graph = graph_for(host)
    cfg = config(default_model="ollama:llama3.2:3b")
    await run_turns(graph, request_message(), cfg, sink=sink)
    state = (await graph.aget_state(cfg)).values
    notes = studio_notes(state)
    assert len(notes) == 5  # five failures in a row: the team stops and waits
    assert f"cannot reach Ollama at {host}" in notes[0] and "ollama serve" in notes[0]
    assert state["awaiting_person"] is True
    assert state["messages"][0].text == REQUEST  # nothing the person said is lost


@PATHS
async def test_a_dropped_connection_is_retried_before_the_gap_is_noted(fast_retries, sink):
    """A server that accepts and hangs up: each turn is tried three times."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    attempts = 0
    stop = threading.Event()

    def serve() -> None:
        nonlocal attempts
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            attempts += 1
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        graph = graph_for(host)
        cfg = config(default_model="ollama:llama3.2:3b", max_rounds=1)
        await run_turns(graph, request_message(), cfg, sink=sink)
        notes = studio_notes((await graph.aget_state(cfg)).values)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert len(notes) == 5
    assert attempts == 5 * 3
    assert f"cannot reach Ollama at {host}" in notes[0]


@PATHS
async def test_a_slow_model_times_out_with_a_hint_to_pick_a_smaller_one(ollama, sink):
    ollama.hang_seconds = 1.0
    graph = graph_for(ollama.url)
    cfg = config(
        default_model="ollama:llama3.2:3b",
        role_timeouts={
            role: 0.3 for role in ("style", "composition", "story", "technical", "critic")
        },
    )
    await run_turns(graph, request_message(), cfg, sink=sink)
    notes = studio_notes((await graph.aget_state(cfg)).values)
    assert notes[0].startswith(
        "Luna is unavailable: ollama:llama3.2:3b did not answer within 0.3 s"
    )
    assert "smaller model" in notes[0]


async def test_installed_models_show_and_pull_with_progress(ollama):
    service = OllamaService(ollama.url)
    status = await service.status()
    assert status.reachable and [m.name for m in status.models] == ["llama3.2:3b"]
    assert status.models[0].parameter_size == "3.2B"
    shown = await service.show("llama3.2:3b")
    assert "completion" in shown["capabilities"]
    with pytest.raises(OllamaModelMissingError, match=re.escape("ollama pull qwen2.5:7b")):
        await service.show("qwen2.5:7b")
    progress = [p async for p in service.pull("qwen2.5:7b")]
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    fractions = [p.fraction for p in progress if p.fraction is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "qwen2.5:7b" in [m.name for m in await service.installed()]
    with pytest.raises(Exception, match="could not pull 'no-such-model'"):
        _ = [p async for p in service.pull("no-such-model")]


async def test_status_of_a_server_that_is_down_names_the_host():
    host = closed_port()
    status = await OllamaService(host).status()
    assert status.reachable is False and host in (status.error or "")


async def test_auto_picks_the_best_installed_model_or_falls_back_to_embedded(ollama):
    ollama.models = ["phi4-mini:latest", "qwen2.5:7b", "llama3.2:3b"]
    assert (await resolve_auto(ollama.url))[0] == "ollama:qwen2.5:7b"
    ollama.models = []
    assignment, why = await resolve_auto(ollama.url)
    assert assignment == "embedded" and "no chat model" in why
    host = closed_port()
    assignment, why = await resolve_auto(host)
    assert assignment == "embedded" and host in why


async def test_auto_is_resolved_once_before_the_first_turn(ollama):
    provider = AssignmentProvider(ollama_host=ollama.url)
    graph = build_graph(InMemorySaver(), provider=provider)
    cfg = config(max_rounds=1)
    await run_turns(graph, request_message(), cfg)
    assert provider.auto == "ollama:llama3.2:3b"
    assert sum(1 for r in ollama.requests if r["path"] == "/api/tags") == 1
    chats = [r for r in ollama.requests if r["path"] == "/api/chat"]
    assert chats and {r["model"] for r in chats} == {"llama3.2:3b"}


async def test_unload_asks_ollama_to_free_the_model(ollama):
    await OllamaService(ollama.url).unload("llama3.2:3b")
    unloads = [r for r in ollama.requests if r["path"] == "/api/generate"]
    assert unloads and unloads[0]["keep_alive"] == 0 and unloads[0]["model"] == "llama3.2:3b"


def test_double_speaks_ndjson_with_a_final_done_line(ollama):
    import httpx

    with httpx.stream(
        "POST",
        f"{ollama.url}/api/chat",
        json={"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}]},
    ) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"] is True
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] == len(lines) - 1
    missing = httpx.post(f"{ollama.url}/api/chat", json={"model": "x", "messages": []})
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "x" not found, try pulling it first'}


async def test_the_aiohttp_path_sends_what_chatollama_sends_and_reads_the_same_reply(ollama):
    """tools/ollama_stream.py against plain ChatOllama (ollama-python's httpx client) on the
    same messages (an image among them): the same request body on the wire for a streamed
    turn, ``astream``, ``ainvoke`` and a ``format``-constrained call, the same text and the
    same counters."""
    from langchain_core.messages import SystemMessage
    from langchain_ollama import ChatOllama

    from creative_studio.tools.ollama_stream import StreamingChatOllama

    pixel = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    messages = [
        SystemMessage("You are Luna."),
        HumanMessage(
            content=[
                {"type": "text", "text": "Start from this photo."},
                {"type": "image_url", "image_url": f"data:image/png;base64,{pixel}"},
            ]
        ),
    ]
    ollama.reply = lambda body: LINES["Luna"]
    settings: dict[str, Any] = {
        "model": "llama3.2:3b",
        "base_url": ollama.url,
        "keep_alive": "10m",
        "num_ctx": 8192,
        "seed": 7,
    }
    plain, model = ChatOllama(**settings), StreamingChatOllama(**settings)
    chunks = [chunk async for chunk in plain.astream(messages)]
    pieces = [piece async for piece in model.astream_text(messages)]
    by_chatollama, by_stream = ollama.requests[-2], ollama.requests[-1]
    assert by_stream == by_chatollama
    assert by_stream["messages"][1]["images"] == [pixel]
    texts = [p for p in pieces if isinstance(p, str)]
    assert "".join(texts) == "".join(c.text for c in chunks) and len(texts) > 3
    end = pieces[-1]
    assert isinstance(end, dict)
    final = functools.reduce(operator.add, chunks)  # ChatOllama's reply, as one message
    for key in ("eval_count", "prompt_eval_count", "total_duration", "model_name"):
        assert end["response_metadata"][key] == final.response_metadata[key]
    assert end["usage_metadata"] == dict(final.usage_metadata or {})

    ours = [chunk async for chunk in model.astream(messages)]
    assert ollama.requests[-1] == by_chatollama
    assert [c.text for c in ours] == [c.text for c in chunks]
    schema = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    for call in (lambda m: m.ainvoke(messages), lambda m: m.bind(format=schema).ainvoke(messages)):
        theirs = await call(plain)
        sent = ollama.requests[-1]
        mine = await call(model)
        assert ollama.requests[-1] == sent
        assert mine.text == theirs.text and mine.usage_metadata == theirs.usage_metadata
        assert mine.response_metadata["eval_count"] == theirs.response_metadata["eval_count"]
    assert ollama.requests[-1]["format"] == schema


async def test_an_error_line_mid_reply_is_ollamas_error(ollama):
    """A model server that reports an error mid-reply fails the call as ChatOllama's does:
    ``ResponseError``, its text named, on the streamed path and through ``ainvoke``."""
    from ollama import ResponseError

    from creative_studio.tools.ollama_stream import StreamingChatOllama

    model = StreamingChatOllama(model="llama3.2:3b", base_url=ollama.url)
    ollama.error_line = "model ran out of memory"
    with pytest.raises(ResponseError, match="out of memory"):
        await model.ainvoke([HumanMessage("hi")])
    with pytest.raises(ResponseError, match="out of memory"):
        [p async for p in model.astream_text([HumanMessage("hi")])]


async def _saying_hi(heads: list[bytes]) -> tuple[asyncio.Server, int]:
    """A raw HTTP server on loopback that keeps each request's head and answers "hi"."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        line = b'{"message": {"role": "assistant", "content": "hi"}, "done": true}\n'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(line), line)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_the_token_sink_path_keeps_a_base_url_prefix_and_the_clients_headers():
    """Ollama behind a reverse proxy at a path: the request goes where ChatOllama's goes."""
    from creative_studio.tools.ollama_stream import StreamingChatOllama

    heads: list[bytes] = []
    server, port = await _saying_hi(heads)
    async with server:
        model = StreamingChatOllama(
            model="llama3.2:3b",
            base_url=f"http://127.0.0.1:{port}/ollama",
            client_kwargs={"headers": {"Authorization": "Bearer t0ken"}},
        )
        pieces = [p async for p in model.astream_text([HumanMessage("hi")])]
    assert pieces[0] == "hi"
    head = heads[0].decode()
    assert head.startswith("POST /ollama/api/chat HTTP/1.1")
    assert "authorization: bearer t0ken" in head.lower()


async def test_the_token_sink_path_names_a_missing_model_and_a_closed_port(ollama):
    import httpx
    from ollama import ResponseError

    from creative_studio.tools.ollama_stream import StreamingChatOllama

    missing = StreamingChatOllama(model="llama3.1:8b", base_url=ollama.url)
    with pytest.raises(ResponseError) as raised:
        [p async for p in missing.astream_text([HumanMessage("hi")])]
    assert raised.value.status_code == 404 and "not found" in str(raised.value.error)
    closed = StreamingChatOllama(model="llama3.2:3b", base_url=closed_port())
    with pytest.raises(httpx.ConnectError):
        [p async for p in closed.astream_text([HumanMessage("hi")])]
    # The client's own read timeout (the role's) reads as httpx's, as on ChatOllama's path.
    ollama.hang_seconds = 1.0
    slow = StreamingChatOllama(
        model="llama3.2:3b", base_url=ollama.url, client_kwargs={"timeout": 0.3}
    )
    with pytest.raises(httpx.ReadTimeout):
        [p async for p in slow.astream_text([HumanMessage("hi")])]


async def test_streamed_turns_share_a_kept_alive_connection_and_a_cut_turn_closes_its_own():
    """Turn after turn goes over one connection (no connect, DNS or proxy lookup per turn);
    a turn the studio stops early closes its connection, so Ollama stops generating."""
    from creative_studio.tools.ollama_stream import StreamingChatOllama

    connections: list[asyncio.Event] = []  # each set once the studio closes it

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closed = asyncio.Event()
        connections.append(closed)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
                long = "long" in body["messages"][-1]["content"]
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for k in range(200 if long else 3):
                    line = json.dumps({"message": {"content": f"t{k} "}, "done": False}) + "\n"
                    writer.write(b"%x\r\n%s\r\n" % (len(line), line.encode()))
                    await writer.drain()
                    await asyncio.sleep(0.01 if long else 0)
                done = json.dumps({"message": {"content": ""}, "done": True}) + "\n"
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done.encode()))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        closed.set()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        model = StreamingChatOllama(model="llama3.2:3b", base_url=f"http://127.0.0.1:{port}")
        for _ in range(3):
            pieces = [p async for p in model.astream_text([HumanMessage("hi")])]
            assert pieces[:3] == ["t0 ", "t1 ", "t2 "]
        assert len(connections) == 1 and not connections[0].is_set()
        stream = model.astream_text([HumanMessage("a long one")])
        async with contextlib.aclosing(stream):
            assert await anext(stream) == "t0 "  # the person interjects here
        await asyncio.wait_for(connections[0].wait(), 5)  # the server saw it go
        pieces = [p async for p in model.astream_text([HumanMessage("hi")])]
        assert pieces[0] == "t0 " and len(connections) == 2


async def test_the_token_sink_path_goes_through_the_proxy_httpx_would_use(monkeypatch):
    """HTTP_PROXY as httpx reads it (ChatOllama's client trusts the environment): the
    request reaches the proxy in absolute form; NO_PROXY hosts are asked directly."""
    from creative_studio.tools.ollama_stream import StreamingChatOllama

    heads: list[bytes] = []
    server, port = await _saying_hi(heads)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    async with server:
        model = StreamingChatOllama(model="llama3.2:3b", base_url="http://ollama.studio:11434")
        pieces = [p async for p in model.astream_text([HumanMessage("hi")])]
        assert pieces[0] == "hi"
        assert heads[-1].startswith(b"POST http://ollama.studio:11434/api/chat HTTP/1.1")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = StreamingChatOllama(model="llama3.2:3b", base_url=f"http://127.0.0.1:{port}")
        pieces = [p async for p in direct.astream_text([HumanMessage("hi")])]
        assert pieces[0] == "hi"
        assert heads[-1].startswith(b"POST /api/chat HTTP/1.1")
