"""The ``creative-studio`` command.

``creative-studio chat "a cyberpunk street at night"`` runs a conversation in the
terminal (api/cli_chat.py), ``serve`` the API and the web app (api/cli_serve.py),
``models`` and ``templates`` list what Ollama and ComfyUI offer (api/cli_models.py,
api/cli_templates.py); the options are in api/cli_parser.py. This module is the entry
point: it turns the options into the process's settings, runs the command, and ends it.

SIGTERM stops ``serve`` and ``chat`` like Ctrl-C does: runs stop at a safe point, the pool
closes, and the embedded PostgreSQL the studio started is stopped when no other studio
process uses it (its atexit hook runs). The exit status is 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from rich.console import Console

from creative_studio.api.cli_chat import chat
from creative_studio.api.cli_models import models_command
from creative_studio.api.cli_parser import build_parser, parse_assignments
from creative_studio.api.cli_serve import is_loopback, serve
from creative_studio.api.cli_templates import templates_command
from creative_studio.api.signals import Terminated, raise_terminated, run_async
from creative_studio.core.errors import StudioError
from creative_studio.tools.models import validate_assignment
from creative_studio.tools.settings import StudioSettings

__all__ = [
    "build_parser",
    "chat",
    "is_loopback",
    "main",
    "models_command",
    "parse_assignments",
    "serve",
    "studio_settings",
    "templates_command",
]


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


def studio_settings(args: argparse.Namespace) -> StudioSettings:
    """The process's settings: the environment's, overridden by the options given.

    ``serve --model`` and ``serve --assign`` are the server's defaults (a session's own
    assignments win, api/deps.py); ``chat`` stores its models in the session instead.
    Bad model options raise InvalidInputError (exit 2, see ``_main``).
    """
    serving = args.command == "serve"
    model = getattr(args, "model", None) if serving else None
    if model:
        # The same as CREATIVE_STUDIO_MODEL, so every part of the process (the per-session
        # settings view included) agrees on the default.
        model = os.environ["CREATIVE_STUDIO_MODEL"] = validate_assignment(model)
    assignments = parse_assignments(None, getattr(args, "assign", None) or []) if serving else {}
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
            "model_assignments": assignments or None,
        }.items()
        if value is not None
    }
    return StudioSettings(**overrides)


def _run_command(args: argparse.Namespace) -> int:
    settings = studio_settings(args)
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
