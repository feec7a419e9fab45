"""Token frames: consecutive tokens of one message, waiting together, become one frame.

The event log (store/eventlog.py) stores and sends frames, not single tokens, when several
tokens wait for the same commit; a frame's ``text`` is their texts joined, so a client that
appends each token's text shows the same thing, and a reconnecting client reads the same
frames back from the table.
"""

from __future__ import annotations

from creative_studio.core.events import StudioEvent

__all__ = ["coalesce"]

_TOKEN_KEYS = {"message_id", "role", "speaker", "text"}


def coalesce(events: list[StudioEvent]) -> tuple[list[StudioEvent], list[int]]:
    """Merge each run of consecutive tokens of one message (per conversation) into one frame.

    Returns the frames, in order, and for every input event the index of its frame. Only
    tokens of the same message with nothing of their conversation in between are joined,
    so every conversation's sequence of frames says exactly what its events said. A frame
    of several tokens is built once, at the end (texts joined, the first token's fields).
    """
    frames: list[StudioEvent] = []
    texts: dict[int, list[str]] = {}  # frame index -> its tokens' texts, when more than one
    carriers: list[int] = []
    open_token: dict[str, int] = {}  # conversation -> its last frame, while that is a token
    for event in events:
        cid = event.conversation_id
        index = open_token.get(cid)
        if index is not None and event.kind == "token" and _joins(frames[index], event):
            texts.setdefault(index, [frames[index].data["text"]]).append(event.data["text"])
            carriers.append(index)
            continue
        frames.append(event)
        carriers.append(len(frames) - 1)
        if event.kind == "token" and event.data.keys() == _TOKEN_KEYS:
            open_token[cid] = len(frames) - 1
        else:
            open_token.pop(cid, None)
    for index, parts in texts.items():
        first = frames[index]
        frames[index] = StudioEvent.model_construct(
            kind=first.kind,
            conversation_id=first.conversation_id,
            data={**first.data, "text": "".join(parts)},
            at=first.at,
        )
    return frames, carriers


def _joins(frame: StudioEvent, token: StudioEvent) -> bool:
    data, more = frame.data, token.data
    return (
        more.keys() == _TOKEN_KEYS
        and isinstance(more["text"], str)
        and isinstance(data["text"], str)
        and data["message_id"] == more["message_id"]
        and data["role"] == more["role"]
        and data["speaker"] == more["speaker"]
    )
