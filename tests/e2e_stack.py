"""The stack the web app's end-to-end tests and screenshots run against.

Starts the ComfyUI test double (tests/comfyui_double.py) when it is importable, then
``creative-studio serve`` on a free port with the scripted team, a fresh data directory
and the double as ComfyUI; prints one JSON line with the URLs when both answer; stops both
on SIGTERM/SIGINT (or when its standard input closes, if ``--stdin`` is given). SIGHUP
restarts the studio server on the same port and data directory (a server restart
mid-conversation, for the reconnection tests); it prints {"restarted": true} when back.

    .venv/bin/python tests/e2e_stack.py [--delay 0.03] [--data-dir DIR] [--web-dir web/out]

Output: {"url": "http://127.0.0.1:PORT", "comfyui_url": "...", "comfyui": true, "data_dir": "..."}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except Exception as error:  # not up yet
            last = error
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s: {last}")


def start_comfyui(step_delay: float) -> Any:
    """The ComfyUI double, or None when it cannot be imported here."""
    sys.path.insert(0, str(ROOT))  # the doubles import each other as ``tests.*``
    try:
        from tests.comfyui_double import ComfyUIDouble
    except Exception as error:
        print(f"e2e_stack: no ComfyUI double ({error})", file=sys.stderr)
        return None
    return ComfyUIDouble(step_delay=step_delay).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.03, help="scripted seconds per word")
    parser.add_argument("--step-delay", type=float, default=0.05, help="ComfyUI seconds per step")
    parser.add_argument("--data-dir", type=Path, help="default: a fresh temporary directory")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-comfyui", action="store_true", help="do not start the double")
    parser.add_argument("--stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="cs-e2e-"))
    owns_data = args.data_dir is None
    comfyui = None if args.no_comfyui else start_comfyui(args.step_delay)
    comfyui_url = comfyui.url if comfyui is not None else "http://127.0.0.1:9"
    port = args.port or free_port()
    env = {
        **os.environ,
        "CREATIVE_STUDIO_MODEL": "scripted",
        "CREATIVE_STUDIO_SCRIPTED_DELAY": str(args.delay),
        "OLLAMA_HOST": os.environ.get("E2E_OLLAMA_HOST", "http://127.0.0.1:9"),
    }
    exe = ROOT / ".venv" / "bin" / "creative-studio"
    command = [
        str(exe) if exe.exists() else "creative-studio",
        "--data-dir",
        str(data_dir),
        "serve",
        "--port",
        str(port),
        "--comfyui-url",
        comfyui_url,
    ]

    def launch() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)

    server = launch()
    stopping = threading.Event()
    restart = threading.Event()

    def stop(*_: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda *_: restart.set())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/sessions?limit=1", 120, server)
        print(
            json.dumps(
                {
                    "url": url,
                    "comfyui_url": comfyui_url,
                    "comfyui": comfyui is not None,
                    "data_dir": str(data_dir),
                    "pid": server.pid,
                }
            ),
            flush=True,
        )
        if args.stdin:

            def watch_stdin() -> None:
                sys.stdin.read()
                stopping.set()

            threading.Thread(target=watch_stdin, daemon=True).start()
        while not stopping.is_set() and server.poll() is None:
            stopping.wait(0.2)
            if restart.is_set():
                restart.clear()
                server.terminate()
                server.wait(30)
                server = launch()
                wait_http(f"{url}/api/sessions?limit=1", 120, server)
                print(json.dumps({"restarted": True}), flush=True)
        return 0 if server.poll() is None else 1
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        if comfyui is not None:
            comfyui.stop()
        if owns_data:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
