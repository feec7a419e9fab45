"""``creative-studio templates``: every template and whether the connected ComfyUI runs it.

A command of its own (it talks to ComfyUI only, no database); the listing itself is the
API's (api/routes/templates.py ``gather``), so the terminal and ``GET /api/templates`` agree.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from creative_studio.tools.comfyui import ComfyUIClient
from creative_studio.tools.settings import StudioSettings

__all__ = ["templates_command"]


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
