"""Host, Origin and CORS rules over a real socket (api/security.py): a web page the person
visits can neither read the studio through DNS rebinding nor drive it cross-site."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from creative_studio.api.security import split_host
from tests.api_server import ApiServer, sse_events
from tests.fakes import make_provider

EVIL = "http://evil.example"
APP = "http://app.example:5173"


@pytest.fixture
async def server(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[ApiServer]:
    provider, _ = make_provider(delay=0.002)
    api = await ApiServer(fresh_db_url, tmp_path, provider=provider).start()
    yield api
    await api.stop()


@pytest.fixture
async def configured(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ApiServer]:
    """A studio whose operator added host names and a CORS origin through the environment."""
    monkeypatch.setenv("CREATIVE_STUDIO_ALLOWED_HOSTS", "studio.lan, *.example.com")
    monkeypatch.setenv("CREATIVE_STUDIO_CORS_ORIGINS", APP)
    provider, _ = make_provider(delay=0.002)
    api = await ApiServer(fresh_db_url, tmp_path, provider=provider).start()
    yield api
    await api.stop()


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


async def session_names(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/api/sessions")
    assert response.status_code == 200, response.text
    return [s["name"] for s in response.json()["items"]]


async def test_a_foreign_host_is_refused_everywhere(server: ApiServer):
    async with server.client() as client:
        await client.post("/api/sessions", json={"name": "private"})
        for host in ("evil.example", f"evil.example:{server.port}", "0.0.0.0", "127.0.0.1.nip.io"):
            for path in ("/api/sessions", "/api/health", "/", "/docs"):
                response = await client.get(path, headers={"Host": host})
                message = assert_error(response, 400, "host_not_allowed")
                assert "CREATIVE_STUDIO_ALLOWED_HOSTS" in message
                assert "private" not in response.text
        refused = await client.post(
            "/api/sessions", json={"name": "planted"}, headers={"Host": "evil.example"}
        )
        assert_error(refused, 400, "host_not_allowed")
        assert await session_names(client) == ["private"]


async def test_loopback_hosts_are_served_with_or_without_port(server: ApiServer):
    port = server.port
    async with server.client() as client:
        for host in (
            f"127.0.0.1:{port}",
            "127.0.0.1",
            f"localhost:{port}",
            "localhost",
            "LocalHost.",
            f"[::1]:{port}",
            "[::1]",
            "127.0.0.2",
        ):
            response = await client.get("/api/sessions", headers={"Host": host})
            assert response.status_code == 200, (host, response.text)


async def test_the_event_stream_obeys_the_host_rule_and_still_streams(server: ApiServer):
    async with server.client() as client:
        session = (await client.post("/api/sessions", json={"name": "s"})).json()
        created = await client.post(
            f"/api/sessions/{session['id']}/conversations", json={"message": "a foggy harbour"}
        )
        cid = created.json()["id"]
        path = f"/api/conversations/{cid}/events"
        refused = await client.get(path, headers={"Host": "evil.example"})
        assert_error(refused, 400, "host_not_allowed")
    headers = {"Host": f"localhost:{server.port}", "Origin": EVIL}  # a GET changes nothing
    async with server.client(headers=headers) as client:
        async for event in sse_events(client, path):
            assert event.id > 0
            break


async def test_a_configured_host_is_served_and_others_still_refused(configured: ApiServer):
    async with configured.client() as client:
        for host in ("studio.lan", f"studio.lan:{configured.port}", "gallery.example.com"):
            response = await client.get("/api/sessions", headers={"Host": host})
            assert response.status_code == 200, (host, response.text)
        for host in ("example.com", "studio.lan.evil.example", "evil.example"):
            response = await client.get("/api/sessions", headers={"Host": host})
            assert_error(response, 400, "host_not_allowed")


async def test_a_write_from_a_foreign_origin_is_refused(server: ApiServer):
    other_port = f"http://127.0.0.1:{server.port + 1}"  # another port is another site
    async with server.client() as client:
        kept = (await client.post("/api/sessions", json={"name": "kept"})).json()
        for origin in (EVIL, "null", other_port, f"{EVIL}:{server.port}"):
            headers = {"Origin": origin}
            response = await client.post("/api/sessions", json={"name": "x"}, headers=headers)
            message = assert_error(response, 403, "origin_not_allowed")
            assert "CREATIVE_STUDIO_CORS_ORIGINS" in message
            deleted = await client.delete(f"/api/sessions/{kept['id']}", headers=headers)
            assert_error(deleted, 403, "origin_not_allowed")
            renamed = await client.patch(
                f"/api/sessions/{kept['id']}", json={"name": "y"}, headers=headers
            )
            assert_error(renamed, 403, "origin_not_allowed")
            assert "access-control-allow-origin" not in response.headers
        assert await session_names(client) == ["kept"]


async def test_same_origin_and_origin_less_writes_are_accepted(server: ApiServer):
    port = server.port
    async with server.client() as client:
        same = await client.post(
            "/api/sessions", json={"name": "web app"}, headers={"Origin": server.url}
        )
        assert same.status_code == 201, same.text
        by_name = await client.post(
            "/api/sessions",
            json={"name": "by name"},
            headers={"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
        )
        assert by_name.status_code == 201, by_name.text
        # `next dev` proxies /api from :3000; the page's origin is the proxy's Host.
        proxied = await client.post(
            "/api/sessions",
            json={"name": "dev server"},
            headers={"Origin": "http://127.0.0.1:3000", "X-Forwarded-Host": "127.0.0.1:3000"},
        )
        assert proxied.status_code == 201, proxied.text
        plain = await client.post("/api/sessions", json={"name": "terminal"})  # no Origin
        assert plain.status_code == 201, plain.text
        # A forwarded host the studio does not serve is no excuse for a foreign origin.
        spoofed = await client.post(
            "/api/sessions",
            json={"name": "spoofed"},
            headers={"Origin": EVIL, "X-Forwarded-Host": "evil.example"},
        )
        assert_error(spoofed, 403, "origin_not_allowed")
        assert sorted(await session_names(client)) == [
            "by name",
            "dev server",
            "terminal",
            "web app",
        ]


async def test_cors_is_closed_unless_configured(server: ApiServer):
    async with server.client() as client:
        preflight = await client.options(
            "/api/sessions",
            headers={
                "Origin": EVIL,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert not any(h.startswith("access-control-") for h in preflight.headers)
        read = await client.get("/api/sessions", headers={"Origin": EVIL})
        assert read.status_code == 200
        assert "access-control-allow-origin" not in read.headers


async def test_a_configured_cors_origin_works_and_only_that_one(configured: ApiServer):
    async with configured.client() as client:
        preflight = await client.options(
            "/api/sessions",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == APP
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        created = await client.post("/api/sessions", json={"name": "app"}, headers={"Origin": APP})
        assert created.status_code == 201, created.text
        assert created.headers["access-control-allow-origin"] == APP
        foreign = await client.options(
            "/api/sessions",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in foreign.headers
        refused = await client.post("/api/sessions", json={"name": "x"}, headers={"Origin": EVIL})
        assert_error(refused, 403, "origin_not_allowed")
        assert await session_names(client) == ["app"]


async def test_the_token_rule_still_applies_behind_the_guard(fresh_db_url: str, tmp_path: Path):
    api = await ApiServer(fresh_db_url, tmp_path, api_token="s3cret").start()
    try:
        async with api.client() as client:
            same_origin = {"Origin": api.url}
            assert_error(await client.get("/api/sessions"), 401, "unauthorized")
            missing = await client.post("/api/sessions", json={"name": "x"}, headers=same_origin)
            assert_error(missing, 401, "unauthorized")
            auth = {"Authorization": "Bearer s3cret"}
            foreign = await client.post(
                "/api/sessions", json={"name": "x"}, headers={**auth, "Origin": EVIL}
            )
            assert_error(foreign, 403, "origin_not_allowed")
            ok = await client.post(
                "/api/sessions", json={"name": "x"}, headers={**auth, **same_origin}
            )
            assert ok.status_code == 201, ok.text
    finally:
        await api.stop()


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("localhost:8420", ("localhost", 8420)),
        ("[::1]:8420", ("::1", 8420)),
        ("Studio.LAN.", ("studio.lan", None)),
        ("::1", None),  # IPv6 without brackets is not a Host
        ("[::1]x", None),
        ("host:99999", None),
        ("user@host", None),
        ("", None),
    ],
)
def test_host_headers_are_parsed_strictly(authority: str, expected: tuple[str, int | None] | None):
    assert split_host(authority) == expected
