"""Models through the API: what Ollama has, pulling one with progress, switching a role."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api_server import ApiServer
from tests.ollama_double import OllamaDouble


@pytest.fixture
def ollama():
    double = OllamaDouble(models=["llama3.2:3b"]).start()
    yield double
    double.stop()


@pytest.fixture
async def server(fresh_db_url: str, tmp_path: Path, ollama: OllamaDouble):
    api = await ApiServer(fresh_db_url, tmp_path, ollama_host=ollama.url).start()
    yield api
    await api.stop()


async def test_models_pull_and_switch_a_role_to_an_installed_model(server: ApiServer, ollama):
    async with server.client() as client:
        models = (await client.get("/api/models")).json()
        assert models["ollama_reachable"] is True
        assert [m["assignment"] for m in models["installed"]] == ["ollama:llama3.2:3b"]
        assert models["auto"] == "ollama:llama3.2:3b" and models["embedded_available"] is True
        async with client.stream(
            "POST", "/api/models/pull", json={"name": "qwen2.5:7b"}
        ) as response:
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) async for line in response.aiter_lines() if line]
        assert lines[0]["status"] == "pulling manifest" and lines[-1]["status"] == "success"
        assert any(0 < (line["fraction"] or 0) < 1 for line in lines)
        installed = [m["name"] for m in (await client.get("/api/models")).json()["installed"]]
        assert "qwen2.5:7b" in installed
        session = (await client.post("/api/sessions", json={"name": "s"})).json()
        updated = await client.put(
            f"/api/sessions/{session['id']}/settings",
            json={"model_assignments": {"technical": "ollama:qwen2.5:7b"}},
        )
        body = updated.json()
        assert body["resolved_models"]["technical"] == "ollama:qwen2.5:7b"
        assert body["resolved_models"]["style"] == "ollama:qwen2.5:7b"  # auto: the preferred one
        failed = await client.post("/api/models/pull", json={"name": "no-such-model"})
        last = [json.loads(line) for line in failed.text.splitlines() if line][-1]
        assert last["status"] == "error" and "no-such-model" in last["error"]
        assert (
            await client.post("/api/models/pull", json={"name": "bad name!"})
        ).status_code == 422


async def test_pulling_without_ollama_is_a_clear_503(fresh_db_url: str, tmp_path: Path):
    api = await ApiServer(fresh_db_url, tmp_path).start()
    try:
        async with api.client() as client:
            response = await client.post("/api/models/pull", json={"name": "llama3.2:3b"})
            assert response.status_code == 503
            assert (
                "cannot reach Ollama at http://127.0.0.1:9" in response.json()["error"]["message"]
            )
            models = (await client.get("/api/models")).json()
            assert models["ollama_reachable"] is False and models["auto"] == "embedded"
    finally:
        await api.stop()
