"""On the offline default model for real: the plan is the person's request plus their words.

One whole conversation (bench/quality.py's driver): a request, an interjection right after
the first specialist turn, then the plan. Its prompt must cover the request's subject,
keep the interjection, and carry nothing of the prompt examples the studio used to ship.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.quality import converse
from creative_studio.tools.embedded import embedded_available

pytestmark = pytest.mark.skipif(
    not embedded_available(), reason="make setup installs llama-cpp-python and the model"
)


@pytest.fixture(scope="session")
def models_dir(pytestconfig: pytest.Config) -> Path:
    return Path(pytestconfig.cache.mkdir("creative-studio-models"))


async def test_an_embedded_conversation_plans_the_request_with_the_interjection(models_dir: Path):
    result = await converse(
        "embedded",
        "An old lighthouse keeper feeding a stray cat on a stormy evening",
        "the cat should be orange",
        models_dir,
    )
    transcript = "\n".join(result.transcript)
    assert result.plan_prompt, transcript
    assert result.subject_share == 1.0, (result.plan_prompt, transcript)
    assert result.direction_kept, (result.plan_prompt, transcript)
    assert result.leaks == [], transcript
    answers = [line for line in result.transcript if "orange" in line.lower()]
    assert len(answers) >= 2, transcript  # the person's words are answered, then planned
