"""Luna, the style specialist: palette, light, texture, artistic references.

The persona (voice, focus, the router's precise questions) is data in
graph/prompts/personas.toml; this node is the turn itself.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig

from creative_studio.graph.state import StudioState
from creative_studio.nodes.speaking import speak

ROLE = "style"


async def style(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Luna takes the turn the router scheduled for her."""
    return await speak(ROLE, state, config)
