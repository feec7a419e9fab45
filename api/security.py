"""What a browser may do with the studio: which Host names it serves, which Origins may change
things, and CORS (closed unless configured).

The studio listens on 127.0.0.1, but a web page the person visits can still reach it: through
DNS rebinding (evil.example first resolves to the attacker, then to 127.0.0.1, so the page's
requests arrive with ``Host: evil.example`` and the browser lets the page read the answers,
Ollama's CVE-2024-28224), or by posting cross-site to http://127.0.0.1:8420 (no answer to read
is needed to start a conversation or delete a session). So:

* **Host**: only loopback names (``localhost``, ``127.0.0.1`` and the rest of 127/8, ``[::1]``,
  any port), the address ``serve`` was bound to when it is a specific IP, and the names listed
  in ``CREATIVE_STUDIO_ALLOWED_HOSTS`` are served; anything else gets 400 ``host_not_allowed``.
  A rebinding attacker cannot choose the Host a browser sends: it is their own domain.
* **Origin**: a request that may change something (every method but GET, HEAD and OPTIONS)
  whose ``Origin`` is present must come from the studio's own origin (the host:port it was
  addressed as, or that a proxy in front says it was, ``X-Forwarded-Host``) or from one of
  ``CREATIVE_STUDIO_CORS_ORIGINS``; anything else gets 403 ``origin_not_allowed``. Requests
  without ``Origin`` (curl, scripts, httpx) are not from a web page and pass. Trusting
  ``X-Forwarded-Host`` for this comparison is safe: a cross-origin page cannot set that header
  without a CORS preflight, which fails for it.
* **CORS**: no ``Access-Control-Allow-*`` header at all unless ``CREATIVE_STUDIO_CORS_ORIGINS``
  names origins (Starlette's ``CORSMiddleware`` then answers them, and only them).

The token rule for non-loopback binds (``api/cli.py``, ``api/deps.py``) is separate and stays.
Everything here is pure ASGI and only looks at request headers, so streamed responses (SSE)
pass through untouched.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
CORS_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID"]


def _split(value: Any) -> Any:
    """Comma-separated in the environment, a list in code."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class HttpSecuritySettings(BaseSettings):
    """The operator's additions, from ``CREATIVE_STUDIO_ALLOWED_HOSTS`` and
    ``CREATIVE_STUDIO_CORS_ORIGINS`` (both comma-separated)."""

    model_config = SettingsConfigDict(env_prefix="CREATIVE_STUDIO_", extra="ignore")

    # Host names served besides loopback: "studio.lan", "*.example.com", or "*" (any, for a
    # proxy in front that checks Host itself). A port given with a name is ignored.
    allowed_hosts: Annotated[list[str], NoDecode] = []
    # Origins ("https://app.example.com") that get CORS answers and may change things.
    cors_origins: Annotated[list[str], NoDecode] = []

    _split_lists = field_validator("allowed_hosts", "cors_origins", mode="before")(_split)


def split_host(authority: str) -> tuple[str, int | None] | None:
    """``"Localhost.:8420"`` -> ``("localhost", 8420)``; ``None`` when it is not a host[:port]."""
    authority = authority.strip().lower()
    if authority.startswith("["):  # [v6]:port
        name, bracket, rest = authority[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, colon, port_text = authority.rpartition(":")
        if not colon:
            name, port_text = authority, ""
        elif ":" in name:  # a bare IPv6 address is not a valid Host
            return None
    if port_text and not (port_text.isdigit() and int(port_text) < 65536):
        return None
    name = name.rstrip(".")  # "localhost." resolves like "localhost"
    if not name or any(c in name for c in "/\\@ ?#"):
        return None
    return name, int(port_text) if port_text else None


def origin_authority(origin: str) -> tuple[str, str, int] | None:
    """``"http://LOCALHOST:3000"`` -> ``("http", "localhost", 3000)``; ``None`` for ``null``."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return None
    split = split_host(parts.netloc)
    if split is None:
        return None
    name, port = split
    return parts.scheme, name, port or DEFAULT_PORTS[parts.scheme]


def is_loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HttpPolicy:
    """The decisions, apart from ASGI: which hosts are served, which origins may write."""

    def __init__(self, security: HttpSecuritySettings, *, bind_host: str = "127.0.0.1") -> None:
        self.any_host = "*" in security.allowed_hosts
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        for entry in security.allowed_hosts:
            if entry == "*":
                continue
            if entry.startswith("*."):
                self.suffixes.append(entry[1:].lower())  # ".example.com"
                continue
            split = split_host(entry)
            if split is not None:
                self.names.add(split[0])
        bound = split_host(bind_host)
        if bound is not None and _is_specific_address(bound[0]):
            self.names.add(bound[0])  # the address it was bound to is its own
        self.cors_origins = [o.rstrip("/") for o in security.cors_origins]
        self.trusted_origins = {
            found for found in map(origin_authority, self.cors_origins) if found is not None
        }

    def host_allowed(self, name: str) -> bool:
        return (
            self.any_host
            or is_loopback_name(name)
            or name in self.names
            or any(name.endswith(suffix) for suffix in self.suffixes)
        )

    def origin_allowed(self, origin: str, addressed_as: list[str]) -> bool:
        """Is the page at ``origin`` the studio itself (or a configured origin)?

        ``addressed_as`` are the authorities the request names (Host, X-Forwarded-Host); the
        origin must be one of them, port included (another port is another web site).
        """
        found = origin_authority(origin)
        if found is None:  # "null" (sandboxed frames, file://) or garbage
            return False
        if found in self.trusted_origins:
            return True
        scheme, name, port = found
        for authority in addressed_as:
            split = split_host(authority)
            if split is None or not self.host_allowed(split[0]):
                continue
            if split[0] == name and (split[1] or DEFAULT_PORTS[scheme]) == port:
                return True
        return False


def _is_specific_address(name: str) -> bool:
    try:
        return not ipaddress.ip_address(name).is_unspecified
    except ValueError:
        return False


class HostAndOriginGuard:
    """Refuse foreign Host headers (400) and cross-site writes (403) with the usual JSON error."""

    def __init__(self, app: ASGIApp, policy: HttpPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect; closing before accept answers 403
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[2]})
        else:
            status, code, message = refusal
            body = {"error": {"code": code, "message": message}}
            await JSONResponse(body, status_code=status)(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        split = split_host(host)
        if split is None or not self.policy.host_allowed(split[0]):
            shown = host[:100] or "(none)"
            return (
                400,
                "host_not_allowed",
                f"This studio does not serve the host name {shown!r}. Address it as localhost or "
                "127.0.0.1, or add the name to CREATIVE_STUDIO_ALLOWED_HOSTS.",
            )
        origin = headers.get("origin")
        method = scope.get("method", "GET")
        if origin is None or (scope["type"] == "http" and method in SAFE_METHODS):
            return None
        addressed_as = [host, *_forwarded_hosts(headers)]
        if self.policy.origin_allowed(origin, addressed_as):
            return None
        return (
            403,
            "origin_not_allowed",
            f"A page from {origin[:100]!r} may not change this studio. Use the studio's own "
            "address, or add the origin to CREATIVE_STUDIO_CORS_ORIGINS.",
        )


def _forwarded_hosts(headers: Headers) -> list[str]:
    return [
        part.strip() for value in headers.getlist("x-forwarded-host") for part in value.split(",")
    ]


def install(
    app: Any, *, bind_host: str, security: HttpSecuritySettings | None = None
) -> HttpPolicy:
    """Wrap ``app`` (a FastAPI/Starlette app) in CORS (when configured) and the guard, outermost.

    Starlette runs the middleware added last first, so the guard sees every request before
    anything else does, and a refused request never reaches CORS, the routes or a body parser.
    """
    policy = HttpPolicy(security or HttpSecuritySettings(), bind_host=bind_host)
    if policy.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=policy.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=CORS_HEADERS,
            expose_headers=["Retry-After"],
        )
    app.add_middleware(HostAndOriginGuard, policy=policy)
    return policy
