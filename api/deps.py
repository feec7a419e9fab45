"""Everything a route needs, in one place, handed out with FastAPI's ``Depends``.

The ``Studio`` object is built once at start (lifespan) and lives on ``app.state``: the
database, the graph and its conversation runner, the event log, the model provider.
Routes stay thin: they validate, call a service, shape the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Header, Query, Request

from creative_studio.core.errors import StudioError
from creative_studio.core.events import StudioEvent
from creative_studio.graph.builder import build_graph
from creative_studio.services.generation import GenerationService
from creative_studio.services.presence import IdleWatch
from creative_studio.services.runner import ConversationRunner
from creative_studio.services.takeover import TakeoverSweep
from creative_studio.store.database import Database
from creative_studio.store.eventlog import EventLog
from creative_studio.store.notify import Notifier
from creative_studio.store.presence import PresenceStore
from creative_studio.store.repository import StudioRepository
from creative_studio.tools.comfyui import ComfyUIClient, persistent_client_id
from creative_studio.tools.comfyui_pool import ComfyUIPool
from creative_studio.tools.models import AssignmentProvider, ModelProvider
from creative_studio.tools.ollama_stream import close_sessions
from creative_studio.tools.settings import StudioSettings
from creative_studio.tools.storage import Storage, storage_from_env

log = logging.getLogger(__name__)


class UnauthorizedError(StudioError):
    status_code = 401
    code = "unauthorized"


class OutputLinks:
    """Outputs are always fetched through the API (GET /api/generations/{id}/outputs/{name}).

    Storage hands out file paths (local) or expiring signed URLs (Supabase); neither is
    what a browser should keep. Every output that leaves the API gets the API's link, with
    the storage's own address kept as ``storage_url``.
    """

    @staticmethod
    def link(generation_id: str, output: dict[str, Any]) -> dict[str, Any]:
        filename = str(output.get("filename") or "")
        return {
            **output,
            "storage_url": output.get("storage_url") or output.get("url"),
            "url": f"/api/generations/{generation_id}/outputs/{quote(filename)}",
        }

    def rewrite(self, generation_id: str, outputs: list[Any]) -> list[Any]:
        return [self.link(generation_id, o) if isinstance(o, dict) else o for o in outputs]

    def rewrite_event(self, event: StudioEvent) -> StudioEvent:
        data = event.data
        if event.kind == "generation_done" and data.get("outputs") and data.get("generation_id"):
            outputs = self.rewrite(str(data["generation_id"]), list(data["outputs"]))
            return event.model_copy(update={"data": {**data, "outputs": outputs}})
        if event.kind == "message":
            extra = data.get("metadata") or {}
            generation = extra.get("generation") or {}
            if extra.get("outputs") and generation.get("generation_id"):
                outputs = self.rewrite(str(generation["generation_id"]), list(extra["outputs"]))
                metadata = {**extra, "outputs": outputs}
                return event.model_copy(update={"data": {**data, "metadata": metadata}})
        return event


@dataclass
class Studio:
    """The running studio's services."""

    settings: StudioSettings
    database: Database
    provider: ModelProvider
    runner: ConversationRunner
    events: EventLog
    repository: StudioRepository
    storage: Storage
    generations: GenerationService
    comfyui: ComfyUIClient
    outputs: OutputLinks
    idle: IdleWatch  # the person's presence (shared by the workers) and the idle pause
    notifier: Notifier | None = None  # LISTEN/NOTIFY between workers on one database
    takeover: TakeoverSweep | None = None  # continues conversations of workers that died
    _watchdog: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, settings: StudioSettings, *, provider: ModelProvider | None = None
    ) -> Studio:
        database = await Database.open(settings.database_url, settings.data_dir)
        provider = provider or AssignmentProvider(settings.ollama_host, data_dir=settings.data_dir)
        # Other workers on the same database: their events and hand-offs wake this one.
        notifier = Notifier(lambda: database.monitor.url)
        events = EventLog(database.pool, notifier=notifier)
        await events.start()
        repository = StudioRepository(database.pool)
        storage = storage_from_env(settings.data_dir)
        # The same client_id after a restart: ComfyUI routes a run's progress by it.
        client_id = persistent_client_id(settings.data_dir)
        comfyui = ComfyUIClient(settings.comfyui_url, client_id=client_id)
        # COMFYUI_URL may list several servers: generations go to the least-loaded one.
        pool = ComfyUIPool(
            [comfyui, *(ComfyUIClient(u, client_id=client_id) for u in settings.comfyui_urls[1:])]
        )
        outputs = OutputLinks()

        async def publish(event: StudioEvent) -> None:
            await events.publish(outputs.rewrite_event(event))

        async def generation_event(cid: str | None, kind: str, data: dict[str, Any]) -> None:
            """Events of generations that outlive their node (ComfyUI came back later)."""
            if cid:
                await publish(
                    StudioEvent.model_validate({"kind": kind, "conversation_id": cid, "data": data})
                )

        generations = GenerationService(
            repository,
            comfyui,
            storage,
            on_event=generation_event,
            ollama_host=settings.ollama_host,
            pool=pool,
        )
        await generations.start()
        graph = build_graph(database.checkpointer, provider=provider)
        configurable: dict[str, Any] = {"generation_service": generations}
        if "model" in settings.model_fields_set:  # serve --model / CREATIVE_STUDIO_MODEL
            # The default for roles a session did not assign; a session's own settings win.
            configurable["default_model"] = settings.model
        if settings.model_assignments:  # serve --assign: per role, under the session's own
            configurable["model_assignments"] = dict(settings.model_assignments)
        runner = ConversationRunner(
            graph,
            database,
            sink=publish,
            extra_configurable=configurable,
            notifier=notifier,
            events=events,
        )
        await notifier.start()  # listening before any stream or run begins
        studio = cls(
            settings=settings,
            database=database,
            provider=provider,
            runner=runner,
            events=events,
            repository=repository,
            storage=storage,
            generations=generations,
            comfyui=comfyui,
            outputs=outputs,
            notifier=notifier,
            takeover=TakeoverSweep(database.leases, runner.take_over),
            idle=IdleWatch(runner, events, repository, PresenceStore(database.pool)),
        )
        await studio.resume_unfinished()
        assert studio.takeover is not None
        studio.takeover.start()
        studio._watchdog = asyncio.create_task(studio.idle.run(), name="idle-watchdog")
        return studio

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self.takeover is not None:
            await self.takeover.stop()
        await self.runner.aclose()
        await close_sessions()  # the Ollama turns' connections
        await self.generations.aclose()
        await self.generations.pool.aclose()  # every server's client (the primary too)
        close_storage = getattr(self.storage, "aclose", None)
        if close_storage is not None:
            await close_storage()
        await self.events.stop()
        if self.notifier is not None:
            await self.notifier.stop()
        await self.database.close()

    async def resume_unfinished(self) -> None:
        """Conversations a previous process left mid-run continue by themselves.

        The same path as the takeover sweep (``take_over``): the lease decides, so a
        conversation another live worker runs is left to it, and one a dead process left
        (kill -9, a restart) continues from its last checkpoint without saying again what
        that process had put in the event log. One with nothing left to run gets its final
        status (waiting, complete or idle).
        """
        for conversation in await self.repository.conversations_with_status("running"):
            cid = str(conversation.id)
            try:
                if await self.runner.take_over(cid):
                    log.info("conversation %s was left running: taking it over", cid)
            except Exception as error:  # e.g. an unreadable checkpoint: left as it is
                log.warning("could not continue conversation %s: %s", cid, error)

    async def delete_session_files(self, session_id: str) -> None:
        """Stored outputs go with their session (``{session_id}/...`` in the bucket)."""
        await self.storage.delete_prefix(session_id)

    def touch(self, conversation_id: str) -> None:
        """The person is here (sent something, or is watching the stream)."""
        self.idle.touch(conversation_id)

    async def person_is_back(self, conversation_id: str) -> None:
        await self.idle.person_is_back(conversation_id)

    async def pause_idle(self) -> list[str]:
        """Pause discussions whose person left (preference pause_after_idle_seconds)."""
        return await self.idle.pause_idle()


def studio(request: Request) -> Studio:
    studio: Studio = request.app.state.studio
    return studio


StudioDep = Annotated[Studio, Depends(studio)]


def require_token(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    access_token: Annotated[
        str | None, Query(description="For EventSource clients, which cannot set headers.")
    ] = None,
) -> None:
    """Every API request carries the token when the server has one (non-local binds)."""
    expected: str | None = request.app.state.settings.api_token
    if not expected:
        return
    given = access_token
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    if not given or not secrets.compare_digest(given, expected):
        raise UnauthorizedError(
            "This studio needs an API token: send 'Authorization: Bearer <token>'."
        )
