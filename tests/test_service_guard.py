"""The guard that keeps tests away from the person's own ComfyUI and Ollama works."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from tests.service_guard import CLOSED_URL, ForbiddenServiceError


@pytest.mark.parametrize("port", [8188, 11434])
def test_a_direct_connection_to_a_guarded_port_fails_naming_the_test(port: int) -> None:
    with socket.socket() as sock, pytest.raises(ForbiddenServiceError) as caught:
        sock.connect(("127.0.0.1", port))
    assert "test_a_direct_connection_to_a_guarded_port_fails_naming_the_test" in str(caught.value)


def _chain(error: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        group = getattr(error, "exceptions", None)
        if group:
            for inner in group:
                seen.extend(_chain(inner))
        error = error.__cause__ or error.__context__
    return seen


async def test_an_async_http_client_is_stopped_too() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get("http://127.0.0.1:8188/object_info")
    assert any(isinstance(e, ForbiddenServiceError) for e in _chain(caught.value))


def test_the_environment_points_at_a_closed_port() -> None:
    assert os.environ["COMFYUI_URL"] == CLOSED_URL
    assert os.environ["OLLAMA_HOST"] == CLOSED_URL


def test_other_loopback_ports_are_not_affected() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
