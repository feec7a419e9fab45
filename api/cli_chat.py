"""``creative-studio chat``: a conversation in the terminal.

Every specialist streams in their own colour (api/terminal.py renders the events), anything
you type while they talk is an interjection (it wins), questions from the team are answered
inline, and the final plan is shown at the end. Type more to iterate; an empty line,
``/quit`` or Ctrl-D ends the session. The studio's services are set up here for one
process, without the HTTP server, which is why this command is a module of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from rich.console import Console

from creative_studio.api.cli_parser import parse_assignments
from creative_studio.api.signals import read_lines
from creative_studio.api.terminal import TerminalView, expect_parked, wait_for_generation
from creative_studio.api.terminal_images import IMAGE_COMMAND, TerminalImages
from creative_studio.core.errors import StudioError
from creative_studio.core.events import StudioEvent
from creative_studio.graph.builder import build_graph
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.prompting import personas
from creative_studio.services.generation import GenerationService
from creative_studio.services.runner import ConversationRunner
from creative_studio.store.database import Database
from creative_studio.store.repository import StudioRepository
from creative_studio.tools.comfyui import ComfyUIClient, persistent_client_id
from creative_studio.tools.models import EMBEDDED_NOTE, AssignmentProvider
from creative_studio.tools.ollama_stream import close_sessions
from creative_studio.tools.settings import StudioSettings
from creative_studio.tools.storage import storage_from_env

__all__ = ["chat"]

QUIT = ("/quit", "/exit")


async def _handle_line(
    runner: ConversationRunner,
    view: TerminalView,
    cid: str,
    line: str,
    images: TerminalImages | None = None,
) -> None:
    try:
        command, _, argument = line.strip().partition(" ")
        if images is not None and command == IMAGE_COMMAND:
            image = await images.attach(argument.strip())
            view.console.print(
                f"[dim]Attached {image['name']} ({image['width']}x{image['height']}); it goes "
                "with your next message.[/]"
            )
            return
        await runner.send(cid, line, images=images.take() if images is not None else None)
    except StudioError as error:
        view.console.print(f"[bold red]{error.message}[/]")


async def _step(
    runner: ConversationRunner,
    view: TerminalView,
    cid: str,
    lines: asyncio.Queue[str | None],
    interactive: bool,
    images: TerminalImages | None = None,
) -> bool:
    """One turn of the terminal loop; False when the person is done."""
    getter = asyncio.create_task(lines.get())
    idle = asyncio.create_task(runner.wait_idle(cid))
    done, _ = await asyncio.wait({getter, idle}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:  # the person typed while the team works: an interjection
        idle.cancel()
        line = getter.result()
        if line is None or line.strip() in QUIT:
            if line is not None:
                await runner.cancel(cid)
            await runner.wait_idle(cid)
            return False
        if line.strip():
            await _handle_line(runner, view, cid, line, images)
        return True
    getter.cancel()
    await asyncio.wait({getter})  # never swallows a cancellation of this task itself
    if view.generation_waiting and view.status != "complete":
        return await wait_for_generation(view, lines)
    if view.status == "complete":
        await _show_result(view, runner, cid)
        if interactive:
            view.console.print("[dim]Type to iterate, or press Enter / Ctrl-D to finish.[/]")
    line = await lines.get()  # the team is idle: wait for the person
    if line is None or line.strip() in QUIT or not line.strip():
        return False
    await _handle_line(runner, view, cid, line, images)
    return True


async def chat(args: argparse.Namespace, settings: StudioSettings) -> int:
    console = Console(highlight=False, soft_wrap=True)
    view = TerminalView(console, echo_user=not sys.stdin.isatty())
    assignments = parse_assignments(args.model, args.assign or [])
    provider = AssignmentProvider(settings.ollama_host, data_dir=settings.data_dir)
    async with Database.open(settings.database_url, settings.data_dir) as database:
        graph = build_graph(database.checkpointer, provider=provider)
        comfyui = ComfyUIClient(
            settings.comfyui_url, client_id=persistent_client_id(settings.data_dir, "chat")
        )

        async def late_event(cid: str | None, kind: str, data: dict[str, Any]) -> None:
            if cid:
                await view.on_event(
                    StudioEvent.model_validate({"kind": kind, "conversation_id": cid, "data": data})
                )

        storage = storage_from_env(settings.data_dir)
        generations = GenerationService(
            StudioRepository(database.pool),
            comfyui,
            storage,
            on_event=late_event,
            ollama_host=settings.ollama_host,
        )
        await generations.start()
        runner = ConversationRunner(
            graph,
            database,
            sink=view.on_event,
            extra_configurable={"generation_service": generations},
        )
        repo = runner.repository
        prefs = {"approve_plans": True} if args.approve_plans else {}
        if args.conversation:
            conversation = await repo.get_conversation(args.conversation)
            session = await repo.get_session(conversation.session_id)
            if assignments or prefs:
                await repo.update_session_settings(
                    session.id,
                    model_assignments={**session.model_assignments, **assignments},
                    preferences=prefs or None,
                )
        else:
            session = await repo.create_session(
                name=(args.request or "Terminal session")[:80],
                model_assignments=assignments,
                preferences=prefs,
            )
            conversation = await repo.create_conversation(session.id, title=args.request)
        cid = str(conversation.id)
        await expect_parked(view, graph, cid)
        console.print(f"[dim]Conversation {cid} · type to interject, Ctrl-D to finish[/]")
        await provider.ensure_ready()
        _show_models(console, provider, Configuration.model_validate(await runner.settings(cid)))
        request = args.request
        if not request and sys.stdin.isatty():
            request = console.input("[bold]What should the team make?[/] ")
        images = TerminalImages(storage, str(session.id))
        for path in args.image or []:
            try:
                attached = await images.attach(path)
            except StudioError as error:
                console.print(f"[bold red]{error.message}[/]")
                return 2
            console.print(
                f"[dim]Image {attached['name']} ({attached['width']}x{attached['height']}) "
                "goes with your first message.[/]"
            )
        if request:
            await runner.send(cid, request, images=images.take())
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        read_lines(lines)
        interactive = sys.stdin.isatty()
        try:
            while await _step(runner, view, cid, lines, interactive, images):
                pass
            if view.status == "complete" and not view.result_shown:
                await _show_result(view, runner, cid)
        finally:  # also on Ctrl-C and SIGTERM: the conversation is kept either way
            await runner.aclose()
            await close_sessions()  # the Ollama turns' connections
            await generations.aclose()
            await comfyui.aclose()
            console.print(
                f"\n[dim]Saved. Continue later with: creative-studio chat --conversation {cid}[/]"
            )
    return 0


def _show_models(console: Console, provider: AssignmentProvider, config: Configuration) -> None:
    """Tell the person which model each specialist uses (and when it is the tiny fallback)."""
    assignments = provider.assignments(config)
    line = " · ".join(f"{personas()[role].name} {model}" for role, model in assignments.items())
    console.print(f"[dim]Models: {line}[/]")
    if "embedded" in assignments.values():
        reason = f" ({provider.auto_reason})" if provider.auto_reason else ""
        console.print(f"[yellow]Note{reason}: {EMBEDDED_NOTE}.[/]")


async def _show_result(view: TerminalView, runner: ConversationRunner, cid: str) -> None:
    view.result_shown = True
    state = (await runner.graph.aget_state({"configurable": {"thread_id": cid}})).values
    if state.get("plan"):
        view.console.print()
        view.show_plan(state["plan"])
    generation = state.get("generation") or {}
    if generation:
        view.console.print(f"[bold]Generation:[/] {generation.get('status')}")
