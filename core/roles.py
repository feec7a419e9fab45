"""Who speaks in a conversation: the person, the five specialists and the studio itself.

Shared by every layer (the model providers assign a model per role, the API validates
role names), so it lives at the bottom with the other shared data types.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["user", "style", "composition", "story", "technical", "critic", "system"]
SpecialistRole = Literal["style", "composition", "story", "technical", "critic"]
SPECIALISTS: tuple[SpecialistRole, ...] = ("style", "composition", "story", "technical", "critic")
CREATIVES: tuple[SpecialistRole, ...] = ("style", "composition", "story")

__all__ = ["CREATIVES", "SPECIALISTS", "Role", "SpecialistRole"]
