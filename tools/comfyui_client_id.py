"""The studio's ComfyUI client_id, kept on disk so it is the same after a restart.

Separate from the client because it is about the data directory, not about talking to
ComfyUI: the app and the terminal pick their id here and hand it to ``ComfyUIClient``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from uuid import UUID, uuid4

__all__ = ["CLIENT_ID_FILE", "persistent_client_id"]


CLIENT_ID_FILE = "comfyui_client_id"


def persistent_client_id(data_dir: Path, process: str = "serve") -> str:
    """The studio's websocket client_id, the same after a restart (``data_dir/comfyui_client_id``).

    ComfyUI sends a prompt's progress only to the client_id that queued it. A new random id
    per process meant a studio restarted mid-generation got no live progress for the run it
    resumed (only the final result, from /history). Kept beside the database, the id survives
    restarts. ComfyUI keeps one socket per client_id (a second connection replaces the
    first), so each kind of studio process on a data directory (``serve``, the terminal's
    ``chat``) has its own id.
    """
    suffix = "" if process == "serve" else f".{process}"
    path = Path(data_dir) / f"{CLIENT_ID_FILE}{suffix}"
    with contextlib.suppress(OSError, ValueError):
        return str(UUID(path.read_text().strip()))
    client_id = str(uuid4())
    with contextlib.suppress(OSError):  # a read-only data dir still gets a working id
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(client_id + "\n")
        partial.replace(path)
    return client_id
