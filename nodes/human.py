"""The person decides: a LangGraph interrupt for questions only they can answer.

Two questions go to the person: "no consensus after N rounds, which option?" and,
with the approve_plans setting, "shall we generate this plan?". The graph pauses
with the question as the interrupt payload; the answer comes back as the resume
value (a string, or ``{"approved": bool, "feedback": str}`` / ``{"choice": str}``).

Every question is also a message in the transcript, so chat UIs that show only messages
(LangGraph Studio, agent-chat-ui) show it too: the router writes the no-consensus
question with its options; the approval question is written here, in a first pass of
this node (a node cannot write state before it interrupts), and the next pass asks.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import interrupt

from creative_studio.graph.phases import enter_phase
from creative_studio.graph.state import StudioState, brief_of, dump
from creative_studio.nodes.speaking import studio_message

_NO = ("no", "nope", "not", "don't", "dont", "reject", "change", "wait", "stop")


def _answer_text(answer: Any) -> str:
    if isinstance(answer, dict):
        for key in ("text", "choice", "feedback", "answer"):
            if answer.get(key):
                return str(answer[key]).strip()
        return ""
    return str(answer or "").strip()


def _approved(answer: Any) -> bool:
    if isinstance(answer, dict) and "approved" in answer:
        return bool(answer["approved"])
    first = _answer_text(answer).lower().split()
    return bool(first) and first[0].strip(".,!") not in _NO


def _question_shown(state: StudioState, question: dict[str, Any]) -> bool:
    recent = (state.get("messages") or [])[-6:]
    return any(m.additional_kwargs.get("question_id") == question.get("id") for m in recent)


async def ask_person(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Pause for the person's answer, then turn it into a decision the team follows."""
    question = state.get("question") or {}
    if question.get("type") == "approve_plan" and not _question_shown(state, question):
        text = str(question.get("question") or "")
        shown = studio_message(
            text, phase=state.get("phase", "review"), kind="question", question_id=question["id"]
        )
        return {"messages": [shown]}  # the router sends the graph straight back here
    answer = interrupt(question)
    text = _answer_text(answer)[:2000]
    # The runner stores the answer as the person's message first and passes its id,
    # so the history has it once, under the same id.
    message_id = (
        str(answer.get("message_id") or uuid4()) if isinstance(answer, dict) else str(uuid4())
    )
    handled = [*(state.get("handled_user_ids") or [])]
    if question.get("type") == "approve_plan":
        if _approved(answer):
            message = HumanMessage(content=text or "Approved.", name="user", id=message_id)
            handled.append(str(message.id))
            return {
                "question": None,
                "approved_by_person": True,
                "messages": [message],
                "handled_user_ids": handled,
                **enter_phase("generating"),
            }
        # Not approved: the feedback is a new direction the router takes in like any message.
        message = HumanMessage(content=text or "Not approved.", name="user", id=message_id)
        return {"question": None, "approved_by_person": False, "messages": [message]}
    # No consensus: the person's choice becomes a decision in the brief, then Pixel plans.
    brief = brief_of(state)
    decision = text or "Go with your best judgement."
    brief.decisions = [*brief.decisions, decision[:300]][-5:]
    message = HumanMessage(content=decision, name="user", id=message_id)
    handled.append(str(message.id))
    return {
        "question": None,
        "brief": dump(brief),
        "messages": [message],
        "handled_user_ids": handled,
        **enter_phase("synthesis"),
    }
