"""Frame, the composition specialist: camera, lens, framing, focal point.

The persona (voice, focus, the router's precise questions) is data in
graph/prompts/personas.toml; this node is the turn itself.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig

from creative_studio.graph.state import StudioState
from creative_studio.nodes.speaking import speak

ROLE = "composition"


async def composition(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Frame takes the turn the router scheduled for him."""
    return await speak(ROLE, state, config)
