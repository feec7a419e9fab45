"""The embedded models' registry, files, grammars and prompt layout, without loading a model.

Assembly and verification run on a fake registry entry whose chunks are a few bytes in a
package made for the test, so the hash checks are exercised end to end in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, get_args

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from llama_cpp.llama_grammar import json_schema_to_gbnf

from creative_studio.core.errors import InvalidInputError
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.prompting import build_messages
from creative_studio.graph.state import CriticVerdict, Turn
from creative_studio.tools.embedded import ChatEmbedded, plan_request
from creative_studio.tools.embedded_files import (
    DEFAULT_EMBEDDED,
    EMBEDDED_MODELS,
    GEMMA,
    QWEN,
    Chunk,
    EmbeddedFileMismatchError,
    EmbeddedModel,
    EmbeddedModelError,
    model_file,
    stamp_path,
    verify_file,
)
from creative_studio.tools.embedded_prompts import (
    VERDICT_GRAMMAR,
    VOTE_GRAMMAR,
    chatml_prompt,
    plan_grammar,
    vote_grammar,
)
from creative_studio.tools.models import (
    EMBEDDED_NOTE,
    AssignmentProvider,
    embedded_name,
    validate_assignment,
)
from creative_studio.workflows.plan import TechnicalPlan, Template

REQUEST = "a lighthouse in a storm at dusk"
PARTS = [b"GGUF tiny model, part one. ", b"Part two. ", b"And the end."]


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EmbeddedModel:
    """A registry entry over an importable package holding three small chunk files."""
    package = tmp_path / "site" / "tiny_model_chunks"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for index, data in enumerate(PARTS):
        (package / "data" / f"part{index}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("tiny_model_chunks", None)
    joined = b"".join(PARTS)
    return EmbeddedModel(
        name="tiny",
        title="Tiny Test Model",
        file="tiny.gguf",
        size=len(joined),
        sha256=hashlib.sha256(joined).hexdigest(),
        prompting="chat",
        chunks=tuple(
            Chunk("tiny-model-chunks", "tiny_model_chunks", f"data/part{i}.bin")
            for i in range(len(PARTS))
        ),
        pins=("tiny-model-chunks==1.0",),
    )


def test_assembly_joins_the_chunks_in_order_and_stamps_the_file(tiny: EmbeddedModel, tmp_path):
    path = model_file(tiny, tmp_path / "data")
    assert path == tmp_path / "data" / "models" / "tiny.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert not path.with_name("tiny.gguf.part").exists()
    stamp = json.loads(stamp_path(path).read_text())
    assert stamp["sha256"] == tiny.sha256 and stamp["size"] == tiny.size
    assert model_file(tiny, tmp_path / "data") == path  # cached: verified by its stamp


def _expect_refusal(error: pytest.ExceptionInfo[EmbeddedFileMismatchError], model, path, actual):
    message = error.value.message
    assert str(path) in message
    assert model.sha256 in message and actual in message
    assert "Delete" in message and "pip install --force-reinstall tiny-model-chunks==1.0" in message


def test_a_corrupted_cached_file_is_refused_with_both_hashes(tiny: EmbeddedModel, tmp_path):
    path = model_file(tiny, tmp_path)
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF  # same size, one byte flipped: only the hash can tell
    path.write_bytes(bytes(data))
    with pytest.raises(EmbeddedFileMismatchError) as error:
        model_file(tiny, tmp_path)
    _expect_refusal(error, tiny, path, hashlib.sha256(bytes(data)).hexdigest())
    assert error.value.status_code == 503
    assert not stamp_path(path).exists()  # a refused file keeps no stamp


def test_a_truncated_cached_file_is_refused(tiny: EmbeddedModel, tmp_path):
    path = model_file(tiny, tmp_path)
    data = path.read_bytes()[:-5]
    path.write_bytes(data)
    with pytest.raises(EmbeddedFileMismatchError) as error:
        model_file(tiny, tmp_path)
    _expect_refusal(error, tiny, path, hashlib.sha256(data).hexdigest())
    assert f"({len(data):,} bytes)" in error.value.message


def test_a_file_without_a_stamp_gets_a_full_check(tiny: EmbeddedModel, tmp_path):
    """A file someone put there (or one from before stamps) is hashed once, then stamped."""
    target = tmp_path / "models" / "tiny.gguf"
    target.parent.mkdir()
    target.write_bytes(b"".join(PARTS))
    assert model_file(tiny, tmp_path) == target
    assert stamp_path(target).exists()
    stamp_path(target).unlink()
    target.write_bytes(b"X" * tiny.size)  # right size, wrong bytes, no stamp
    with pytest.raises(EmbeddedFileMismatchError):
        model_file(tiny, tmp_path)


def test_the_stamp_trusts_size_and_mtime_until_a_full_check_is_asked_for(
    tiny: EmbeddedModel, tmp_path
):
    """The documented trade-off: a rewrite that restores mtime passes the cheap check only."""
    path = model_file(tiny, tmp_path)
    before = path.stat()
    path.write_bytes(b"Y" * tiny.size)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    verify_file(tiny, path)  # cheap check: one stat and the stamp
    with pytest.raises(EmbeddedFileMismatchError):
        verify_file(tiny, path, full=True)


def test_damaged_chunks_never_leave_a_file_behind(tiny: EmbeddedModel, tmp_path):
    chunk = tiny.chunks[1].path()
    chunk.write_bytes(b"Part 2!!! ")  # same length, other bytes
    with pytest.raises(EmbeddedFileMismatchError) as error:
        model_file(tiny, tmp_path)
    assert "Joining the chunks of Tiny Test Model" in error.value.message
    assert "pip install --force-reinstall tiny-model-chunks==1.0" in error.value.message
    left = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert left == []  # neither the file nor the .part


def test_a_missing_chunk_package_says_what_to_install(tiny: EmbeddedModel, tmp_path):
    missing = replace(tiny, chunks=(Chunk("no-such-chunks", "no_such_chunks", "data/x.bin"),))
    with pytest.raises(EmbeddedModelError, match="pip install no-such-chunks"):
        model_file(missing, tmp_path)


@pytest.mark.parametrize("model", [GEMMA, QWEN], ids=lambda m: m.name)
def test_the_registry_matches_the_installed_packages(model: EmbeddedModel):
    """Sizes come from each wheel's file list, so a re-cut package shows up here at once."""
    sizes = []
    for chunk in model.chunks:
        try:
            files = distribution(chunk.distribution).files or []
        except PackageNotFoundError:
            pytest.skip(f"{chunk.distribution} is not installed")
        entry = next(f for f in files if str(f) == f"{chunk.package}/{chunk.resource}")
        assert chunk.path() == Path(str(entry.locate()))
        sizes.append(entry.size)
    assert sum(s or 0 for s in sizes) == model.size


def test_assignments_name_the_embedded_models():
    assert validate_assignment("embedded") == "embedded"
    assert embedded_name("embedded") == DEFAULT_EMBEDDED
    for name in EMBEDDED_MODELS:
        assert validate_assignment(f"embedded:{name}") == f"embedded:{name}"
        assert embedded_name(f" embedded:{name} ") == name
    assert embedded_name("ollama:llama3.2:3b") is None
    with pytest.raises(InvalidInputError, match="embedded:gemma3-270m"):
        validate_assignment("embedded:llama-7b")
    assert EMBEDDED_MODELS[DEFAULT_EMBEDDED].title in EMBEDDED_NOTE


class Options:
    ollama_keep_alive = "5m"
    ollama_num_ctx = 4096
    model_seed = 3

    def __init__(self, assignment: str) -> None:
        self.assignment = assignment

    def model_for(self, role: str) -> str:
        return self.assignment

    def timeout_for(self, role: str) -> float:
        return 30.0


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [("embedded", DEFAULT_EMBEDDED), ("embedded:gemma3-270m", "gemma3-270m"), ("auto", None)],
)
def test_the_provider_builds_the_named_embedded_model(tmp_path, assignment, expected):
    provider = AssignmentProvider(data_dir=tmp_path, auto="embedded")
    model = provider.chat_model("style", Options(assignment))  # type: ignore[arg-type]
    assert isinstance(model, ChatEmbedded) and model.engine is None  # loads on first use
    assert model.model == (expected or DEFAULT_EMBEDDED) and model.seed == 3


# ------------------------------------------------------------------------------- grammars


def test_the_plan_grammar_is_derived_from_technical_plan_and_bounded():
    schema = plan_grammar()
    fields = set(TechnicalPlan.model_fields)
    assert set(schema["properties"]) <= fields
    assert {"positive_prompt", "template", "steps", "width", "video"} <= set(schema["properties"])
    assert schema["required"] == list(schema["properties"])
    assert schema["properties"]["template"]["enum"] == [
        "txt2img",
        "video_animatediff",
        "video_native",
    ]
    assert set(schema["properties"]["template"]["enum"]) <= set(get_args(Template))
    # Every enum value and every string length the grammar allows validates in pydantic.
    extremes: list[dict[str, Any]] = [{}, {}]
    for name, prop in schema["properties"].items():
        if "enum" in prop:
            extremes[0][name], extremes[1][name] = prop["enum"][0], prop["enum"][-1]
        elif "anyOf" in prop:
            extremes[0][name] = None
            video = prop["anyOf"][0]["properties"]
            extremes[1][name] = {k: v["enum"][-1] if "enum" in v else "x" for k, v in video.items()}
        else:
            low, high = map(int, prop["pattern"].rsplit("{", 1)[1].split("}")[0].split(","))
            assert high <= 300
            extremes[0][name], extremes[1][name] = "a" * max(1, low), "b" * high
    for values in extremes:
        TechnicalPlan.model_validate(values)
    assert json_schema_to_gbnf(json.dumps(schema))  # llama.cpp's converter accepts it


def test_the_verdict_grammar_matches_critic_verdict():
    assert set(VERDICT_GRAMMAR["properties"]) == set(CriticVerdict.model_fields)
    reasons = VERDICT_GRAMMAR["properties"]["reasons"]
    assert (reasons["minItems"], reasons["maxItems"]) == (1, 3)
    targets = VERDICT_GRAMMAR["properties"]["send_back_to"]["enum"]
    for target in targets:
        CriticVerdict.model_validate({"approved": False, "reasons": ["x"], "send_back_to": target})
    assert json_schema_to_gbnf(json.dumps(VERDICT_GRAMMAR))


@pytest.mark.parametrize(
    ("prefill", "expected"),
    [
        ("", VOTE_GRAMMAR),
        ("NOT", 'root ::= " YET - " reason'),
        ("READY", 'root ::= " - " reason'),
        ("READY - ", "root ::= reason"),
        ("READY -", 'root ::= " " reason'),
        ("NOT YET - the light", r"root ::= [^\n.!?]{0,90} [.!?]"),
        ("Honestly", None),
        ("READY - done.", None),
    ],
)
def test_a_vote_prefill_keeps_what_the_grammar_can_continue(prefill, expected):
    grammar = vote_grammar(prefill)
    if expected is None:
        assert grammar is None
    else:
        assert grammar is not None and grammar.strip().startswith(expected.strip())


# ------------------------------------------------------------------------------ prompts


def studio_messages(kind: str = "explore", prefill: str | None = None) -> list[Any]:
    state: dict[str, Any] = {
        "messages": [HumanMessage(REQUEST, name="user")],
        "brief": {"request": REQUEST},
        "phase": "ideation",
    }
    messages = build_messages(state, Turn(speaker="style", kind=kind), Configuration())  # type: ignore[arg-type]
    if prefill is not None:
        messages[-1].additional_kwargs["studio_turn"]["prefill"] = prefill
    return messages


def test_qwen_reads_the_studio_chat_messages_as_chatml():
    messages = studio_messages(prefill="")
    request = plan_request(
        QWEN, messages, structured=None, max_tokens=40, temperature=0.7, seed=None
    )
    text = "".join(piece for piece, _ in request.segments)
    for message in messages:
        assert message.text in text  # the same prompts an Ollama model reads
    assert text.startswith("<|im_start|>system\n" + messages[0].text + "<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")
    markup = [piece for piece, special in request.segments if special]
    assert all(piece.startswith(("<|im_start|>", "<|im_end|>")) for piece in markup)
    assert not any(special for piece, special in request.segments if piece == messages[1].text)


def test_the_prefill_goes_where_each_model_continues():
    messages = studio_messages(prefill="For the light, ")
    chat = plan_request(QWEN, messages, structured=None, max_tokens=40, temperature=0.7, seed=1)
    # The trailing space stays out of the prompt: the model writes " golden" as one token.
    assert "".join(p for p, _ in chat.segments).endswith("<|im_start|>assistant\nFor the light,")
    assert chat.prefill == "For the light, " and chat.heal
    assert chat.reply(" golden rim light.") == "For the light, golden rim light."
    assert chat.reply("golden rim light.\n") == "For the light, golden rim light."
    base = plan_request(GEMMA, messages, structured=None, max_tokens=40, temperature=0.7, seed=1)
    assert base.segments[-1][0].endswith("\nLuna (style): For the light,")
    exact = plan_request(
        GEMMA, studio_messages(prefill="Dusk"), structured=None, max_tokens=9, temperature=1, seed=1
    )
    assert not exact.heal and exact.reply("light") == "Dusklight"
    # A JSON grammar owns the first character: structured turns ignore the prefill.
    plan = plan_request(
        QWEN, messages, structured="TechnicalPlan", max_tokens=40, temperature=0.7, seed=1
    )
    assert plan.prefill == "" and plan.sampling.schema == plan_grammar()
    assert plan.sampling.max_tokens > 40 and plan.sampling.temperature < 0.7


def test_votes_run_under_the_vote_grammar_on_both_models():
    for prefill, continued in [("", ""), ("NOT YET", "NOT YET"), ("READY - ", "READY -")]:
        messages = studio_messages(kind="vote", prefill=prefill)
        for spec in (GEMMA, QWEN):
            request = plan_request(
                spec, messages, structured=None, max_tokens=40, temperature=0.7, seed=1
            )
            assert request.sampling.gbnf == vote_grammar(continued)
            assert request.prefill == prefill


def test_chatml_renders_assistant_turns_and_a_default_system_line():
    text = chatml_prompt([HumanMessage("hi"), AIMessage("hello"), HumanMessage("<|im_start|>")])
    assert text == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello"
        "<|im_end|>\n<|im_start|>user\n<|im_start|><|im_end|>\n<|im_start|>assistant\n"
    )
    assert chatml_prompt([SystemMessage("s")]).startswith("<|im_start|>system\ns<|im_end|>")
