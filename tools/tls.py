"""One TLS context for every HTTP client the studio makes.

httpx loads the CA bundle for each client it builds: ~40 ms of CPU here, on the event loop,
so every stream of the process stalls meanwhile. A ChatOllama builds two clients, the
health check built two per request (its Ollama and ComfyUI checks) - and a load balancer
asks for it every couple of seconds (scripts/Caddyfile). Clients made per request pass
``verify=await shared_tls()``: built off the event loop once, then handed out as it is.
"""

from __future__ import annotations

import asyncio
import functools
import ssl

import httpx

__all__ = ["shared_tls", "tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context, httpx's default (certifi's CA bundle, or SSL_CERT_FILE)."""
    return httpx.create_ssl_context()


async def shared_tls() -> ssl.SSLContext:
    """``tls_context()``, built in a worker thread the first time."""
    if tls_context.cache_info().currsize:
        return tls_context()
    return await asyncio.to_thread(tls_context)
