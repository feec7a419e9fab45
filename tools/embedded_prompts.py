"""What the embedded models read: prompts for a base model and a chat model, and their grammars.

Gemma 3 270M is a BASE model: it continues text, it follows no instructions. It gets a
completion prompt built from the structured parts the studio attaches to its messages
(``studio_context``, ``studio_turn``): a meeting transcript (tools/prompts/embedded.toml),
the real transcript, the studio's cue line and the speaker's tag.

Qwen2.5-Coder 0.5B Instruct is an instruct model with a ChatML template. It reads the studio's
normal chat messages, exactly as every Ollama model does, rendered the way its own template
renders them (tests compare the two). The ChatML markers are tokenized as special tokens and the
message text as plain text, so a person typing ``<|im_start|>`` cannot forge a turn.

Both are prefix-first: what every speaker shares comes first, so llama.cpp reuses the cached
prefix on consecutive turns. Structured turns (plan, verdict) run under a JSON-schema grammar and
readiness votes under a READY / NOT YET grammar, so their shape never depends on a tiny model's
discipline.

A turn may carry ``prefill`` (``studio_turn["prefill"]``): the reply then begins with exactly that
text. It goes after the speaker cue (completion) or at the start of the assistant turn (chat) and
the model continues from it. JSON-schema turns ignore it: their grammar owns the first character.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any, get_args

from langchain_core.messages import BaseMessage

from creative_studio.tools.embedded_files import Prompting
from creative_studio.workflows.plan import TechnicalPlan, Template

SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde", "ddim", "uni_pc"]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple"]
SIZES = [512, 640, 768, 832, 896, 1024, 1152, 1216, 1344]
CFGS = [4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0]
# The workflow builder swaps in an installed checkpoint of the template's family
# (workflows/plan_fit.switch_checkpoint), so the model does not have to know file names; left
# free, a 0.5B model fills this field with words from the transcript.
CHECKPOINTS = ["sd_xl_base_1.0.safetensors"]

# The ChatML markers of Qwen's template (checked against the GGUF's template when it loads).
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# What Qwen's template puts first when a conversation has no system message.
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# ---------------------------------------------------------------------------------- grammars

# Gemma's grammar schemas: the fields the 270M model fills, each bounded (string lengths,
# enums), so the output is short and always valid JSON; pydantic still validates the result.
GEMMA_GRAMMARS: dict[str, dict[str, Any]] = {
    "TechnicalPlan": {
        "type": "object",
        "properties": {
            "template": {"enum": ["txt2img", "video_native"]},
            "checkpoint": {"enum": CHECKPOINTS},
            "sampler": {"enum": SAMPLERS},
            "scheduler": {"enum": SCHEDULERS},
            # An enum: llama.cpp's schema converter ignores minimum/maximum (3 steps came out).
            "steps": {"enum": list(range(10, 61))},
            "cfg": {"enum": CFGS},
            "width": {"enum": SIZES},
            "height": {"enum": SIZES},
            "positive_prompt": {"type": "string", "minLength": 10, "maxLength": 300},
            "negative_prompt": {"type": "string", "maxLength": 120},
            "rationale": {"type": "string", "maxLength": 160},
        },
        "required": [
            "template",
            "checkpoint",
            "sampler",
            "scheduler",
            "steps",
            "cfg",
            "width",
            "height",
            "positive_prompt",
            "negative_prompt",
            "rationale",
        ],
        "additionalProperties": False,
    },
    "CriticVerdict": {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "reasons": {
                "type": "array",
                "items": {"type": "string", "maxLength": 160},
                "minItems": 1,
                "maxItems": 1,
            },
            "send_back_to": {"enum": [None, "refinement", "synthesis"]},
        },
        "required": ["approved", "reasons", "send_back_to"],
        "additionalProperties": False,
    },
}

# The plan fields the studio decides itself, so the chat model is not asked for them: the seed
# (nodes/technical.choose_seed keeps or draws it), the batch size and denoise (fixed for a
# text-to-image plan), LoRAs (a 0.5B model knows no names installed on the server), and the
# checkpoint, sampler and scheduler: the builder switches in an installed checkpoint of the
# template's family anyway, and a 0.5B model's pick of sampler is a coin toss. Every field
# left out is ~10 forced tokens (~1 s on 2 cores) the grammar no longer makes it write.
PLAN_FIELDS_LEFT_TO_STUDIO = frozenset(
    {"seed", "batch_size", "denoise", "loras", "checkpoint", "sampler", "scheduler"}
)
# Tighter than the pydantic bounds: short strings keep a plan at 150-250 tokens (~20 s here).
PLAN_STRING_CAPS = {
    "positive_prompt": (10, 300),
    "negative_prompt": (0, 120),
    "rationale": (0, 110),
    "video.motion": (1, 60),
}
# llama.cpp's schema converter ignores numeric minimum/maximum, so bounded numbers become enums:
# the ones below, or every integer of a range of at most MAX_INT_ENUM values.
PLAN_NUMBER_CHOICES: dict[str, list[Any]] = {
    "steps": list(range(10, 61)),
    "cfg": CFGS,
    "width": SIZES,
    "height": SIZES,
    "video.frames": [16, 24, 32, 48, 64, 81, 97],
    "video.fps": [8, 12, 16, 24],
    "video.motion_strength": [0.5, 0.75, 1.0, 1.25, 1.5],
}
PLAN_CHOICES: dict[str, list[Any]] = {
    "checkpoint": CHECKPOINTS,
    "sampler": SAMPLERS,
    "scheduler": SCHEDULERS,
}
MAX_INT_ENUM = 64


def short_text(low: int, high: int) -> dict[str, Any]:
    """A JSON string of ``low``-``high`` characters without quotes, backslashes or control
    characters: the grammar then never needs an escape, and a raw newline (which json.loads
    refuses inside a string) cannot happen."""
    return {"type": "string", "pattern": f'^[^"\\\\\\x00-\\x1f]{{{low},{high}}}$'}


# Lens's verdict for the chat model, written by hand: CriticVerdict lives in graph/state.py,
# which this client layer may not import. Same fields, with short reasons (1-3).
VERDICT_GRAMMAR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "reasons": {
            "type": "array",
            "items": short_text(3, 140),
            "minItems": 1,
            "maxItems": 3,
        },
        "send_back_to": {"enum": [None, "refinement", "synthesis"]},
    },
    "required": ["approved", "reasons", "send_back_to"],
    "additionalProperties": False,
}

# Readiness votes must start with READY or NOT YET: a GBNF grammar makes that certain,
# the model still chooses which and writes the reason.
VOTE_REASON = r"[a-zA-Z] [^\n.!?]{4,90} [.!?]"
VOTE_GRAMMAR = rf"""
root ::= ("READY" | "NOT YET") " - " reason
reason ::= {VOTE_REASON}
"""
VOTE_KINDS = ("vote", "plan_check")
VOTE_HEADS = ("READY - ", "NOT YET - ")


def _text_templates() -> list[str]:
    """The plan templates that need no input image (the person supplies that, not Pixel)."""
    from creative_studio.workflows.catalog import catalog

    templates = catalog().templates
    return [
        name
        for name in get_args(Template)
        if name in templates and not templates[name].needs_init_image
    ]


def _bounded(path: str, schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One property of the pydantic schema as a short, bounded grammar schema."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if path == "template":
        return {"enum": _text_templates()}
    if path in PLAN_CHOICES:
        return {"enum": PLAN_CHOICES[path]}
    if path in PLAN_NUMBER_CHOICES:
        return {"enum": PLAN_NUMBER_CHOICES[path]}
    if "anyOf" in schema:
        return {"anyOf": [_bounded(path, member, defs) for member in schema["anyOf"]]}
    kind = schema.get("type")
    if kind == "object":
        properties = {
            name: _bounded(f"{path}.{name}", prop, defs)
            for name, prop in schema.get("properties", {}).items()
        }
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
    if kind == "string":
        low, high = PLAN_STRING_CAPS.get(path, (0, 200))
        low = max(low, int(schema.get("minLength", 0)))
        high = min(high, int(schema.get("maxLength", high)))
        return short_text(low, high)
    if kind == "integer" and "minimum" in schema and "maximum" in schema:
        low, high = int(schema["minimum"]), int(schema["maximum"])
        if high - low < MAX_INT_ENUM:
            return {"enum": list(range(low, high + 1))}
    if kind in ("null", "boolean"):
        return {"type": kind}
    raise ValueError(f"plan field {path!r} ({schema}) needs a bound in PLAN_NUMBER_CHOICES")


@cache
def plan_grammar() -> dict[str, Any]:
    """The chat model's plan schema, derived from TechnicalPlan (fields, order, types, limits).

    Every field is required (the grammar then writes them all, in order, and stops), strings are
    capped shorter than pydantic's limits and numbers are enums within pydantic's bounds.
    """
    full = TechnicalPlan.model_json_schema()
    defs = full.get("$defs", {})
    properties = {
        name: _bounded(name, prop, defs)
        for name, prop in full["properties"].items()
        if name not in PLAN_FIELDS_LEFT_TO_STUDIO
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def grammar_schema(prompting: Prompting, name: str | None) -> dict[str, Any] | None:
    """The JSON schema a structured turn named ``name`` is generated under (None: free text)."""
    if not name:
        return None
    if prompting == "completion":
        return GEMMA_GRAMMARS.get(name)
    return {"TechnicalPlan": plan_grammar(), "CriticVerdict": VERDICT_GRAMMAR}.get(name)


def vote_grammar(prefill: str = "") -> str | None:
    """The READY / NOT YET grammar for what follows ``prefill`` (None: no grammar fits it).

    A prefill that is the start of a vote head ("NOT", "READY - ") leaves the rest of the head
    to the grammar; one that already holds a head continues the reason; any other prefill has
    chosen words the vote grammar cannot continue, so the turn runs free (parse_vote reads it).
    """
    if not prefill:
        return VOTE_GRAMMAR
    for head in VOTE_HEADS:
        if head.startswith(prefill):
            rest = head[len(prefill) :]
            literal = f"{json.dumps(rest)} " if rest else ""
            return f"root ::= {literal}reason\nreason ::= {VOTE_REASON}\n"
        if prefill.startswith(head):
            written = prefill[len(head) :]
            if any(mark in written for mark in ".!?\n"):
                return None
            rest = r"[a-zA-Z] [^\n.!?]{4,90}" if not written else r"[^\n.!?]{0,90}"
            return f"root ::= {rest} [.!?]\n"
    return None


# ----------------------------------------------------------------------------------- prompts


@cache
def embedded_prompts() -> dict[str, Any]:
    text = (resources.files("creative_studio.tools") / "prompts" / "embedded.toml").read_text()
    return tomllib.loads(text)


def turn_parts(messages: Iterable[BaseMessage]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(studio_context, studio_turn) attached to the prompt, the latest of each."""
    context: dict[str, Any] = {}
    turn: dict[str, Any] = {}
    for message in messages:
        context = message.additional_kwargs.get("studio_context", context)
        turn = message.additional_kwargs.get("studio_turn", turn)
    return context, turn


def prefill_of(messages: Iterable[BaseMessage]) -> str:
    _, turn = turn_parts(messages)
    value = turn.get("prefill")
    return value if isinstance(value, str) else ""


def completion_prompt(messages: list[BaseMessage], prefill: str = "") -> str:
    """The few-shot completion prompt for one studio turn (see the module docstring)."""
    prompts = embedded_prompts()
    context, turn = turn_parts(messages)
    if not turn:  # not a studio prompt: plain continuation of the text
        return "\n".join(m.text for m in messages) + "\n" + prefill
    request = context.get("request") or "an image"
    lines = [str(prompts["header"]).strip().format(request=request), *context.get("transcript", [])]
    cue = str(prompts["cues"].get(turn.get("kind"), "")).format(
        directive=turn.get("directive", ""), name=turn.get("name", "")
    )
    if cue:
        lines.append(cue)
    tag = f"{turn.get('name')} ({turn.get('speaker')}):"
    # The model writes " text" after the colon; a prefill takes that place, space included.
    lines.append(f"{tag} {prefill}" if prefill else tag)
    return "\n".join(lines)


def speaker_stops(messages: list[BaseMessage]) -> tuple[str, ...]:
    """Where a chat model starts writing someone else's line: a new line opening with a name.

    The names come from the transcript ("Luna (style): ...") and the turn itself, plus the
    person and the studio, so the stream stops there rather than showing an invented dialogue
    that core/text.clean_reply would cut afterwards anyway.
    """
    context, turn = turn_parts(messages)
    names = {"Person", "Studio", str(turn.get("name") or "")}
    for line in context.get("transcript", []):
        head = str(line).split(":", 1)[0]
        names.add(head.split(" (", 1)[0].strip())
    return tuple(
        f"\n{prefix}{name}" for name in sorted(n for n in names if n) for prefix in ("", "**")
    )


CHAT_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def chat_turns(messages: list[BaseMessage]) -> list[tuple[str, str]]:
    """(role, text) per message, as the ChatML template sees them."""
    turns = [(CHAT_ROLES.get(m.type, "user"), str(m.text)) for m in messages]
    if not turns or turns[0][0] != "system":
        turns.insert(0, ("system", QWEN_DEFAULT_SYSTEM))
    return turns


def chatml_segments(messages: list[BaseMessage], prefill: str = "") -> list[tuple[str, bool]]:
    """The ChatML prompt as (text, is_markup) pieces: markup is tokenized with special tokens.

    Messages render as ``<|im_start|>role\\ntext<|im_end|>\\n`` and the prompt ends with the open
    assistant turn, followed by the prefill when there is one.
    """
    segments: list[tuple[str, bool]] = []
    for role, text in chat_turns(messages):
        segments += [(f"{IM_START}{role}\n", True), (text, False), (f"{IM_END}\n", True)]
    segments.append((f"{IM_START}assistant\n", True))
    if prefill:
        segments.append((prefill, False))
    return segments


def chatml_prompt(messages: list[BaseMessage], prefill: str = "") -> str:
    """The same prompt as one string (what the GGUF's own template renders)."""
    return "".join(text for text, _ in chatml_segments(messages, prefill))


__all__ = [
    "GEMMA_GRAMMARS",
    "VERDICT_GRAMMAR",
    "VOTE_GRAMMAR",
    "VOTE_KINDS",
    "chat_turns",
    "chatml_prompt",
    "chatml_segments",
    "completion_prompt",
    "embedded_prompts",
    "grammar_schema",
    "plan_grammar",
    "prefill_of",
    "speaker_stops",
    "turn_parts",
    "vote_grammar",
]
