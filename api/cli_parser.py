"""The ``creative-studio`` command line: its options, and the model options' values checked.

Separate from the commands so the whole grammar (which command takes what, and which
options every command takes on either side of its name) reads in one place, and so the
checks of ``--model`` / ``--assign`` serve ``chat`` and ``serve`` alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from creative_studio.api.terminal_images import IMAGE_COMMAND
from creative_studio.core.errors import InvalidInputError
from creative_studio.core.roles import SPECIALISTS
from creative_studio.tools.models import validate_assignment

__all__ = ["MODEL_HELP", "build_parser", "parse_assignments"]

DESCRIPTION = "The ``creative-studio`` command."
MODEL_HELP = "model for every role: ollama:<name>, embedded, scripted or auto"
ASSIGN_HELP = "model for one role, e.g. technical=ollama:qwen2.5:7b (repeatable)"


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="creative-studio", description=DESCRIPTION)
    _global_options(parser, after_command=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, after_command=True)
    commands = parser.add_subparsers(dest="command", required=True)
    chat_cmd = commands.add_parser(
        "chat", parents=[common], help="run a conversation in the terminal"
    )
    chat_cmd.add_argument("request", nargs="?", help="what the team should make")
    chat_cmd.add_argument("--model", help=f"{MODEL_HELP} (stored in the session)")
    chat_cmd.add_argument("--assign", action="append", metavar="ROLE=MODEL", help=ASSIGN_HELP)
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
    serve_cmd.add_argument(
        "--assign",
        action="append",
        metavar="ROLE=MODEL",
        help=f"{ASSIGN_HELP}; the default for that role in sessions that did not assign it",
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
