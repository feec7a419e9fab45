"""The FastAPI application: the API under /api, the built web app at /.

``create_app(settings)`` wires the routers, the error handlers (every error is
``{"error": {"code", "message"}}`` with a fitting status), a request-size limit, the
Host/Origin guard and CORS (api/security.py), the token check for non-local binds, and the
web app's static export when it was built.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creative_studio import __version__
from creative_studio.api.deps import Studio, require_token
from creative_studio.api.routes import (
    conversations,
    generations,
    health,
    history,
    images,
    models,
    sessions,
    templates,
    workflows,
)
from creative_studio.api.schemas import ErrorResponse
from creative_studio.api.security import HttpSecuritySettings
from creative_studio.api.security import install as install_http_security
from creative_studio.core.errors import DatabaseUnavailableError, StudioError
from creative_studio.store.availability import describe, is_connection_error
from creative_studio.tools.models import ModelProvider
from creative_studio.tools.settings import StudioSettings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "out"
RETRY_AFTER_S = 2  # what a 503 tells clients: the studio reconnects by itself


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def database_error_response(request: Request, error: psycopg.Error) -> JSONResponse:
    """A query that failed because the database went away: 503, and have the studio look.

    Errors raised at checkout are already ``DatabaseUnavailableError`` (store/availability.py);
    this covers a connection that died during its query. Other database errors (a bug, a
    refused value the repository did not translate) stay 500s.
    """
    if not is_connection_error(error):
        raise error
    studio = getattr(request.app.state, "studio", None)
    if studio is not None:
        studio.database.monitor.suspect()
    unavailable = DatabaseUnavailableError(
        f"The database is unavailable right now ({describe(error)}). The studio reconnects "
        "by itself; try again in a few seconds."
    )
    return _error(unavailable.status_code, unavailable.code, unavailable.message)


class BodyLimit:
    """Refuse request bodies over MAX_BODY_BYTES with 413, before anyone parses them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # An image upload may be larger (its route checks the image itself).
        path = str(scope.get("path") or "")
        upload = scope.get("method") == "POST" and path.endswith("/images")
        limit = images.UPLOAD_BODY_LIMIT if upload else MAX_BODY_BYTES
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = _error(413, "too_large", f"The request body is over {limit // 1024} KB.")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_big(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await too_big(scope, receive, send)


class _TooLarge(Exception):
    pass


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {item.get('msg')}")
    return "; ".join(parts) or "The request is not valid."


def create_app(
    settings: StudioSettings | None = None,
    *,
    provider: ModelProvider | None = None,
    web_dir: Path | None = WEB_DIR,
    security: HttpSecuritySettings | None = None,
) -> FastAPI:
    """``security`` defaults to CREATIVE_STUDIO_ALLOWED_HOSTS / _CORS_ORIGINS (api/security.py)."""
    settings = settings or StudioSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.studio = await Studio.start(settings, provider=provider)
        try:
            yield
        finally:
            await app.state.studio.stop()

    app = FastAPI(
        title="Creative Studio",
        version=__version__,
        description="A local-first AI creative team: sessions, live chat over SSE, generations, "
        "settings and time travel.",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse, "description": "A foreign Origin may not change this."},
            404: {"model": ErrorResponse},
            409: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse, "description": "The database is unavailable."},
        },
    )
    app.state.settings = settings
    app.add_middleware(BodyLimit)
    install_http_security(app, bind_host=settings.host, security=security)  # outermost

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, error: StudioError) -> JSONResponse:
        return _error(error.status_code, error.code, error.message)

    @app.exception_handler(psycopg.Error)
    async def database_error(request: Request, error: psycopg.Error) -> JSONResponse:
        return database_error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_input", _validation_message(error))

    api = APIRouter(prefix="/api", dependencies=[Depends(require_token)])
    for module in (
        sessions,
        images,
        conversations,
        history,
        generations,
        models,
        health,
        workflows,
        templates,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.live_router, prefix="/api")  # no token: see its docstring
    _mount_web(app, web_dir)
    return app


def _mount_web(app: FastAPI, web_dir: Path | None) -> None:
    """Serve the static export of web/ (see DESIGN section 9 for the dynamic chat route)."""
    if web_dir is None or not (web_dir / "index.html").exists():

        @app.get("/", include_in_schema=False)
        async def no_web() -> dict[str, Any]:
            return {
                "name": "Creative Studio API",
                "docs": "/docs",
                "web": "the web app is not built (make web)",
            }

        return
    root = web_dir.resolve()

    def file_for(path: str) -> Path | None:
        if path.startswith("chat/") and path != "chat/_":
            rest = path.split("/", 2)
            if len(rest) == 2:  # /chat/{id} or /chat/{id}.txt
                path = "chat/_.txt" if rest[1].endswith(".txt") else "chat/_"
            else:  # /chat/{id}/{name}: the router's payload requests
                path = f"chat/_/{rest[2]}"
        candidates = [root / path, root / f"{path}.html", root / path / "index.html"]
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved.is_file() and resolved.is_relative_to(root):
                return resolved
        return None

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def web(path: str) -> Response:
        if path.startswith("api/"):
            return _error(404, "not_found", f"No API route /{path}.")
        found = file_for(path.strip("/") or "index.html")
        if found is None:
            missing = root / "404.html"
            if missing.is_file():
                return FileResponse(missing, status_code=404)
            return _error(404, "not_found", f"/{path} does not exist.")
        return FileResponse(found)
