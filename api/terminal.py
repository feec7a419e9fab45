"""What the terminal chat shows: each specialist in their colour, tokens as they stream.

Renders the studio's events (core/events.py) with rich; api/cli.py drives it.

A turn is stored as the studio settled it (nodes/speaking.py: cut back to its last full
sentence, out of a loop, without a planted word or an echo), which can differ from what
streamed. The web replaces the streamed bubble with the stored message; here, on a
terminal, the streamed turn is redrawn as stored, and when the output is not a terminal
(a log, a pipe) the stored text follows it, so what the person reads is what the team
and the history hold.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from creative_studio.core.events import StudioEvent
from creative_studio.graph.prompting import personas
from creative_studio.workflows.plan import TechnicalPlan

ROLE_COLOURS = {role: p.colour for role, p in personas().items()} | {
    "user": "bright_white",
    "system": "bright_black",
}


class TerminalView:
    """Renders studio events: tokens inline, whole messages, phases and questions."""

    def __init__(self, console: Console, echo_user: bool = False) -> None:
        self.console = console
        self.echo_user = echo_user  # show the person's lines when they were not typed here
        self.streaming: str | None = None  # message id being streamed
        self.shown: set[str] = set()
        self.streamed: set[str] = set()  # ids whose text is already on screen
        self.stream_head = ""  # the header of the message being streamed ("Luna (style): ")
        self.stream_text = ""  # and what it streamed
        self.question: dict[str, Any] | None = None
        self.status = "idle"
        self.result_shown = False
        self.progress_shown = -1
        self.last_generation_status: str | None = None
        self.changed = asyncio.Event()
        # A generation waits for ComfyUI: the chat stays until it ends (or the person quits).
        self.generation_waiting = False
        self._generation_settled = asyncio.Event()

    def _header(self, role: str, speaker: str, *, blank_line: bool = True) -> str:
        colour = ROLE_COLOURS.get(role, "white")
        label = f"{speaker} ({role})" if role in personas() else speaker
        self.console.print(f"{chr(10) if blank_line else ''}[bold {colour}]{label}:[/] ", end="")
        return f"{label}: "

    def _end_stream(self) -> None:
        if self.streaming is not None:
            self.console.print()
            self.streaming = None

    async def on_event(self, event: StudioEvent) -> None:
        data = event.data
        if event.kind == "token":
            if self.streaming != data["message_id"]:
                self._end_stream()
                self.stream_head = self._header(data["role"], data["speaker"])
                self.stream_text = ""
                self.streaming = data["message_id"]
                self.streamed.add(data["message_id"])
            self.stream_text += data["text"]
            self.console.print(data["text"], end="", markup=False, highlight=False)
        elif event.kind == "message":
            self._message(data)
        elif event.kind == "phase":
            self._end_stream()
            self.console.rule(f"[bold]phase: {data['phase']}[/]", style="bright_black")
        elif (
            event.kind == "typing"
            and data.get("active")
            and data["role"] in ("technical", "critic")
        ):
            self._end_stream()
            self.console.print(f"[dim]{data['speaker']} is working…[/]")
        elif event.kind == "interrupt":
            self._end_stream()
            self.question = data["question"]
            self._show_question(data["question"])
        elif event.kind == "error":
            self._end_stream()
            self.console.print(f"[bold red]Error:[/] {data.get('message')}")
        elif event.kind == "generation_progress":
            self._progress(data)
            self._follow_generation(str(data.get("status") or ""), data.get("connection"))
        elif event.kind == "generation_done":
            self._follow_generation("complete", None)
            self._end_stream()
            for output in data.get("outputs") or []:
                where = output.get("storage_url") or output.get("url") or output.get("path")
                self.console.print(f"[bold green]Result:[/] {where}")
        elif event.kind == "status":
            self.status = data["state"]
            if self.status == "running":
                self.result_shown = False
        self.changed.set()

    def expect_generation(self) -> None:
        """The conversation's generation waits for ComfyUI (told by the state at start)."""
        self.generation_waiting = True
        self._generation_settled.clear()

    def _follow_generation(self, status: str, connection: Any) -> None:
        if status == "queued" and connection == "unreachable":
            self.expect_generation()
        elif status in ("complete", "failed", "cancelled"):
            self.generation_waiting = False
            self._generation_settled.set()

    async def generation_settled(self) -> None:
        """Until the generation that waited for ComfyUI has ended."""
        if self.generation_waiting:
            await self._generation_settled.wait()

    def _progress(self, data: dict[str, Any]) -> None:
        """'Generating... 45%', at most one line per tenth, so a long run stays readable."""
        tenth = int(float(data.get("progress") or 0) * 10)
        if tenth == self.progress_shown and data.get("status") == "running":
            return
        self.progress_shown = tenth
        self._end_stream()
        status = data.get("status") or "running"
        if status == "running":
            self.console.print(f"[dim]Generating... {float(data.get('progress') or 0):.0%}[/]")
        elif data.get("error") or status in ("queued", "failed"):
            # The service's own words say why ("ComfyUI is not reachable at ..."); a bare
            # "queued" (just submitted) is shown once, without an empty colon.
            detail = data.get("message") or data.get("error") or data.get("note")
            if detail:
                self.console.print(f"[dim]Generation {status}: {detail}[/]")
            elif status != self.last_generation_status:
                self.console.print(f"[dim]Generation {status}.[/]")
        self.last_generation_status = status

    def _message(self, data: dict[str, Any]) -> None:
        message_id = data["message_id"]
        if message_id in self.shown:
            return
        self.shown.add(message_id)
        if data["role"] == "user" and not self.echo_user:
            return  # the person just typed it
        if self.streaming == message_id:
            if not data.get("interrupted"):
                self._settle(data)
            else:
                self.console.print(" [dim italic](interrupted)[/]", end="")
            self._end_stream()
            return
        if message_id in self.streamed:  # already on screen; the person's message came between
            if data.get("interrupted"):
                self._end_stream()
                self.console.print(f"[dim italic]({data['speaker']} was interrupted)[/]")
            return
        self._end_stream()
        self._header(data["role"], data["speaker"])
        style = "dim" if data["role"] == "system" else ""
        self.console.print(data["content"], style=style, markup=False, highlight=False)

    def _settle(self, data: dict[str, Any]) -> None:
        """The streamed turn as it was stored, when that differs from what streamed."""
        final = str(data.get("content") or "")
        if " ".join(final.split()) == " ".join(self.stream_text.split()):
            return
        if not self.console.is_terminal:
            self.console.print()
            self.console.print(
                f"[dim]↳ kept as: {escape(final)}[/]", highlight=False, soft_wrap=True
            )
            self.streaming = None
            return
        # Back to the start of the streamed turn (the terminal wrapped it at its width),
        # clear from there down, and write the turn again as stored.
        width = max(1, self.console.width)
        lines = (self.stream_head + self.stream_text).split("\n")
        rows = sum(max(1, -(-cell_len(line) // width)) for line in lines)
        up = f"\x1b[{rows - 1}F" if rows > 1 else "\r"
        self.console.file.write(up + "\x1b[J")  # rich has no "clear to the end of screen"
        self.console.file.flush()
        self._header(data["role"], data["speaker"], blank_line=False)
        self.console.print(final, end="", markup=False, highlight=False, soft_wrap=True)

    def _show_question(self, question: dict[str, Any]) -> None:
        if question.get("type") == "approve_plan" and question.get("plan"):
            self.show_plan(question["plan"])
            self.console.print("[bold]Generate this plan?[/] (yes / no, and what to change)")
        else:
            self.console.print(Panel(question.get("question", ""), title="The team asks you"))

    def show_plan(self, plan: dict[str, Any]) -> None:
        parsed = TechnicalPlan.model_validate(plan)
        table = Table(title="Pixel's plan", show_header=False, title_style="bold green")
        for key, value in parsed.model_dump(exclude={"rationale"}).items():
            if value not in (None, [], ""):
                table.add_row(key, str(value))
        self.console.print(table)


QUIT_WORDS = ("/quit", "/exit", "quit", "exit")


async def expect_parked(view: TerminalView, graph: Any, conversation_id: str) -> None:
    """A conversation opened again whose generation still waits for ComfyUI: wait for it."""
    state = (await graph.aget_state({"configurable": {"thread_id": conversation_id}})).values
    generation = (state or {}).get("generation") or {}
    if generation.get("waiting_for_server") and generation.get("status") in ("queued", "running"):
        view.expect_generation()


async def wait_for_generation(view: TerminalView, lines: asyncio.Queue[str | None]) -> bool:
    """The team is idle and the generation waits for ComfyUI: stay until it ends.

    Typing talks to the team as always (True: the caller sends the line); "quit" or Ctrl-C
    leaves (False; the generation stays queued and the studio runs it when it next starts).
    A closed input (``chat < file``) does not end the wait: only the generation does.
    """
    view.console.print(
        "[dim]Waiting for the generation: it starts by itself when ComfyUI is back "
        "(type quit or press Ctrl-C to leave; it will still run later).[/]"
    )
    settled = asyncio.ensure_future(view.generation_settled())
    getter = asyncio.ensure_future(lines.get())
    try:
        done, _ = await asyncio.wait({settled, getter}, return_when=asyncio.FIRST_COMPLETED)
        if settled in done:
            return True  # the result arrives as the team's message; the loop shows it
        line = getter.result()
        if line is None:  # no more input: wait for the generation alone
            await settled
            await lines.put(None)  # then end as a closed input does
            return True
        if line.strip().lower() in QUIT_WORDS:
            return False
        await lines.put(line)  # handled by the next turn of the loop, as any message
        return True
    finally:
        for waiting in (settled, getter):
            if not waiting.done():
                waiting.cancel()
