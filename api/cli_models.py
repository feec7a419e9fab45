"""``creative-studio models``: Ollama's installed models, or one pulled with a progress bar.

A command of its own (it talks to Ollama only, no database): what ``auto`` resolves to on
this machine is the first thing to check when the team's models disappoint.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from creative_studio.tools.models import EMBEDDED_NOTE
from creative_studio.tools.ollama import OllamaService, resolve_auto
from creative_studio.tools.settings import StudioSettings

__all__ = ["models_command"]


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
