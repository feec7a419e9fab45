"""Write one benchmark's figures into its own section of docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
from datetime import date
from pathlib import Path

import psutil

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nFigures written by the scripts in `bench/` (`make bench`); each section is replaced when its script runs again.\n"


def machine() -> str:
    cpus = psutil.cpu_count(logical=True)
    memory = psutil.virtual_memory().total / 2**30
    return f"{platform.processor() or platform.machine()}, {cpus} cores, {memory:.0f} GiB, Python {platform.python_version()}"


def update_section(title: str, body: str) -> None:
    """Replace (or append) the section ``## title`` with ``body`` and a dated machine line."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    section = f"## {title}\n\nMeasured {date.today().isoformat()} on {machine()}.\n\n{body}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS.parent.mkdir(exist_ok=True)
    BENCHMARKS.write_text(text.rstrip("\n") + "\n")
