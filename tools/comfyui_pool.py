"""Several ComfyUI servers as one: which are up, how busy each is, which one runs a job.

``COMFYUI_URL`` may list several servers (comma-separated). A generation goes to the
least-loaded live server that has what it needs; the generation service judges "what it
needs" (it builds and validates the workflow against each server's own /object_info) and
this pool orders the servers and remembers what it handed out:

* load is the server's queue (GET /queue: running + pending), or the jobs this process has
  given it and not yet seen in that queue, whichever is larger — two generations chosen
  at the same moment do not both land on the server that looked idle;
* a server that does not answer its queue within ``probe_timeout`` is left out of this
  choice (a dead host must not hold the choice up for a full HTTP timeout);
* the server a job ran on before is tried first when it is up (after a studio restart it
  may still run, or have finished, that job: its /history has the result);
* with one server nothing is probed: the service behaves exactly as with a single client.

No graph or database here: the service passes a ``fit`` callable and stores the choice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from creative_studio.tools.comfyui import ComfyUIClient, ComfyUIUnreachableError

__all__ = ["ComfyUIPool", "Fit"]

T = TypeVar("T")


@dataclass(frozen=True)
class Fit(Generic[T]):
    """How well a server suits a job: ``exact`` when it has every model the plan names."""

    value: T
    exact: bool = True


class ComfyUIPool:
    """The ComfyUI servers of this studio; the first is the primary (templates, health)."""

    def __init__(
        self,
        clients: Sequence[ComfyUIClient],
        *,
        probe_timeout: float = 3.0,
        failover_grace: float = 10.0,
    ) -> None:
        if not clients:
            raise ValueError("A ComfyUI pool needs at least one server.")
        self.clients = list(clients)
        self.probe_timeout = probe_timeout
        # With another server to go to, a silent one is given up sooner than a lone
        # server (whose restart the studio simply waits out).
        self.failover_grace = failover_grace
        self._handed_out: dict[str, int] = {c.url: 0 for c in self.clients}
        self._choosing = asyncio.Lock()

    @property
    def primary(self) -> ComfyUIClient:
        return self.clients[0]

    @property
    def urls(self) -> list[str]:
        return [c.url for c in self.clients]

    @property
    def several(self) -> bool:
        return len(self.clients) > 1

    def client_for(self, url: str | None) -> ComfyUIClient:
        """The client of ``url`` (a job row's ``server_url``); unknown or None: the primary."""
        for client in self.clients:
            if url is not None and client.url == url.rstrip("/"):
                return client
        return self.primary

    def add_listener(self, handler: Callable[..., None]) -> None:
        for client in self.clients:
            client.add_listener(handler)

    async def aclose(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.aclose()

    # ------------------------------------------------------------------ health and load

    async def load(self, client: ComfyUIClient) -> int | None:
        """Running + pending prompts on the server (at least what we handed it); None: down."""
        try:
            queue = await asyncio.wait_for(client.queue(), self.probe_timeout)
        except (ComfyUIUnreachableError, TimeoutError):
            return None
        except Exception:  # answers, but not like ComfyUI: not a place for a job
            return None
        remote = len(queue.get("queue_running") or []) + len(queue.get("queue_pending") or [])
        return max(remote, self._handed_out.get(client.url, 0))

    async def live(self) -> list[tuple[ComfyUIClient, int]]:
        """The servers that answer, least loaded first (ties: in the configured order)."""
        loads = await asyncio.gather(*(self.load(c) for c in self.clients))
        found = [(c, n) for c, n in zip(self.clients, loads, strict=True) if n is not None]
        return sorted(found, key=lambda pair: pair[1])  # sorted() is stable: list order

    async def reachable(self) -> bool:
        """Any server answers (with one server: exactly ``client.reachable()``)."""
        if not self.several:
            return await self.primary.reachable()
        results = await asyncio.gather(*(c.reachable() for c in self.clients))
        return any(results)

    async def others_live(self, client: ComfyUIClient) -> bool:
        """Another server than ``client`` answers: a job lost there can move."""
        return any(c is not client for c, _ in await self.live())

    def release(self, client: ComfyUIClient) -> None:
        """The job handed to ``client`` ended there (or left it)."""
        if self._handed_out.get(client.url, 0) > 0:
            self._handed_out[client.url] -= 1

    # ------------------------------------------------------------------ the choice

    async def select(
        self,
        fit: Callable[[ComfyUIClient], Awaitable[Fit[T]]],
        *,
        prefer: str | None = None,
        avoid: ComfyUIClient | None = None,
    ) -> tuple[ComfyUIClient, T]:
        """The server a job goes to, and what ``fit`` made for it there.

        ``fit`` prepares the job for one server (its object_info, its uploaded image, the
        validated workflow) and raises when the job cannot run there. The least-loaded
        server with an exact fit wins; else the least-loaded one where it fits at all
        (the plan adapted to what that server has, as with a single server). A server that
        turns out unreachable is skipped. None fits: the error of the least-loaded server;
        none answers: ComfyUIUnreachableError. ``prefer`` (the server the job ran on) goes
        first when it is up; ``avoid`` (the server that just lost the job) goes last.
        The caller calls ``release`` when the job leaves the chosen server.
        """
        if not self.several:
            only = self.primary
            return only, (await fit(only)).value
        async with self._choosing:
            ranked = [c for c, _ in await self.live()]
            if not ranked:
                raise ComfyUIUnreachableError(
                    f"None of the {len(self.clients)} ComfyUI servers answers "
                    f"({', '.join(self.urls)}). Start one, or fix COMFYUI_URL."
                )
            ranked.sort(key=lambda c: (c is avoid, c.url != (prefer or "").rstrip("/")))
            fallback: tuple[ComfyUIClient, T] | None = None
            first_error: Exception | None = None
            for client in ranked:
                try:
                    found = await fit(client)
                except ComfyUIUnreachableError:
                    continue
                except Exception as error:  # it cannot run here: try the next server
                    first_error = first_error or error
                    continue
                if found.exact:
                    return self._hand_out(client, found.value)
                fallback = fallback or (client, found.value)
            if fallback is not None:
                return self._hand_out(*fallback)
            if first_error is not None:
                raise first_error
            raise ComfyUIUnreachableError(
                f"Every ComfyUI server stopped answering ({', '.join(self.urls)})."
            )

    def _hand_out(self, client: ComfyUIClient, value: T) -> tuple[ComfyUIClient, T]:
        self._handed_out[client.url] = self._handed_out.get(client.url, 0) + 1
        return client, value
