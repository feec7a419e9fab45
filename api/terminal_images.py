"""Images in the terminal: ``chat --image PATH`` and the ``/image PATH`` command.

The terminal runs the studio in-process, so an image goes the same way as through the API
(checked by content in tools/images.py, stored under the session at
``{session_id}/uploads/...``) and rides with the person's next message; Pixel then starts
from it (img2img) or upscales it when the message says so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from creative_studio.api.routes.images import image_ref
from creative_studio.core.errors import InvalidInputError
from creative_studio.tools.images import MAX_IMAGE_BYTES, TooLargeImageError, inspect_image
from creative_studio.tools.storage import Storage, upload_path

__all__ = ["IMAGE_COMMAND", "TerminalImages"]

IMAGE_COMMAND = "/image"


class TerminalImages:
    """Images attached in the terminal, waiting for the message they go with."""

    def __init__(self, storage: Storage, session_id: str) -> None:
        self.storage = storage
        self.session_id = session_id
        self.pending: list[dict[str, Any]] = []

    async def attach(self, path: str) -> dict[str, Any]:
        """Check and store the file at ``path``; it goes with the next message."""
        data, name = await asyncio.to_thread(_read, path)
        info = inspect_image(data)
        ref = upload_path(self.session_id, info.stored_name)
        await self.storage.put(ref, data, info.content_type)
        image = {**image_ref(ref, info), "name": name}
        self.pending.append(image)
        return image

    def take(self) -> list[dict[str, Any]]:
        """The attached images, handed to one message (then none are pending)."""
        taken, self.pending = self.pending, []
        return taken


def _read(path: str) -> tuple[bytes, str]:
    """The file's bytes (off the event loop), refusing a missing or oversized file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidInputError(f"No image file at {file}.")
    if file.stat().st_size > MAX_IMAGE_BYTES:
        raise TooLargeImageError(f"{file.name} is over the {MAX_IMAGE_BYTES / 1e6:.0f} MB limit.")
    return file.read_bytes(), file.name
