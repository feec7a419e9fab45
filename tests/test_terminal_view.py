"""What the terminal chat shows, read off a VT100 screen (pyte) and off a plain log."""

from __future__ import annotations

import io

import pyte
import pytest
from rich.console import Console

from creative_studio.api.terminal import TerminalView
from creative_studio.core.events import StudioEvent

STREAMED = (
    "For the feeling, relief and joy as the fox crosses. The feeling of calm and "
    "peace, the feeling of pleasure and joy, the feeling of calm and peace, the"
)
KEPT = "For the feeling, relief and joy as the fox crosses. The feeling of calm and peace."


async def _turn(view: TerminalView, *, kept: str, interrupted: bool = False) -> None:
    who = {"message_id": "m1", "role": "story", "speaker": "Saga"}
    for word in STREAMED.split(" "):
        await view.on_event(StudioEvent(kind="token", conversation_id="c", data={**who, "text": word + " "}))  # fmt: skip
    done = {**who, "content": kept, "interrupted": interrupted}
    await view.on_event(StudioEvent(kind="message", conversation_id="c", data=done))
    await view.on_event(StudioEvent(kind="phase", conversation_id="c", data={"phase": "synthesis"}))


def _screen(output: str, width: int) -> list[str]:
    screen = pyte.Screen(width, 24)
    stream = pyte.Stream(screen)
    stream.feed(output.replace("\n", "\r\n"))  # a tty's output processing
    return [line.rstrip() for line in screen.display if line.strip()]


@pytest.mark.parametrize("width", [40, 57, 120])
async def test_on_a_terminal_the_streamed_turn_is_redrawn_as_it_was_stored(width: int):
    out = io.StringIO()
    view = TerminalView(Console(file=out, force_terminal=True, width=width, color_system=None))
    await _turn(view, kept=KEPT)
    lines = _screen(out.getvalue(), width)
    squeezed = "".join(lines).replace(" ", "")  # the terminal wrapped it at its width
    assert f"Saga (story): {KEPT}".replace(" ", "") in squeezed
    assert "pleasure" not in squeezed and squeezed.count("Thefeelingofcalm") == 1
    assert "phase: synthesis" in lines[-1]  # what comes next follows the redrawn turn


async def test_in_a_log_the_stored_turn_follows_what_streamed():
    out = io.StringIO()
    view = TerminalView(Console(file=out, force_terminal=False, width=80))
    await _turn(view, kept=KEPT)
    text = out.getvalue()
    assert STREAMED in text and f"↳ kept as: {KEPT}" in text


async def test_a_turn_stored_as_it_streamed_or_interrupted_is_not_repeated():
    for kept, interrupted in ((STREAMED, False), (STREAMED[:40], True)):
        out = io.StringIO()
        view = TerminalView(Console(file=out, force_terminal=False, width=80))
        await _turn(view, kept=kept, interrupted=interrupted)
        assert "kept as" not in out.getvalue() and out.getvalue().count("For the feeling") == 1
