"""The health endpoints: the full check for people, the cheap one for load balancers."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tests.api_server import ApiServer


async def test_the_load_balancers_check_needs_no_token_and_asks_nobody(
    fresh_db_url: str, tmp_path: Path
):
    """``/api/health/live``: 200 without the token (scripts/Caddyfile checks it every 2 s
    on workers that require one), 503 while the database is away; everything else still
    needs the token."""
    api = await ApiServer(fresh_db_url, tmp_path, api_token="s3cret").start()
    try:
        async with api.client() as client:
            live = await client.get("/api/health/live")
            assert live.status_code == 200 and live.json() == {"ok": True, "database": "external"}
            assert (await client.get("/api/health")).status_code == 401
            assert (await client.get("/api/sessions")).status_code == 401
            monitor = api.studio.database.monitor
            monitor.up, monitor.reason = False, "the server was stopped"
            down = await client.get("/api/health/live")
            monitor.up = True
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "database_unavailable"
            assert "stopped" in down.json()["error"]["message"]
    finally:
        await api.stop()


async def test_health_checks_load_no_ca_bundle_per_request(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Each check used to build two HTTP clients, each loading the CA bundle (~40 ms of CPU
    on the event loop, a stall of every stream); they share the process's TLS context."""
    loads: list[object] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        load(self, *args, **kwargs)  # type: ignore[arg-type]

    api = await ApiServer(fresh_db_url, tmp_path).start()
    try:
        async with api.client() as client:
            assert (await client.get("/api/health")).status_code == 200  # builds it, once
            monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
            for _ in range(3):
                health = (await client.get("/api/health")).json()
                assert health["database"]["ok"] and not health["ollama"]["ok"]
            assert (await client.get("/api/models")).status_code == 200
    finally:
        await api.stop()
    assert loads == []
