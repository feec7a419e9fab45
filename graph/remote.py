"""The studio served elsewhere (``langgraph dev``, a deployment) as a resumable parent node.

``RemoteGraph`` added to a parent graph as a node streams well and surfaces the team's
question as the parent's interrupt, but the parent's ``Command(resume=...)`` never reaches
the remote thread (RemoteGraph does not forward it), so the team asks again for ever.
``remote_team_node(RemoteGraph(...))`` is a node that does the forwarding itself with the
RemoteGraph's SDK client:

* the parent thread gets one remote thread (a stable id derived from the parent's thread
  id), so follow-up requests are iterations of one conversation, as with graph/embed.py;
* the remote thread's state is read first: if the team waits for an answer, the node
  interrupts the parent with the team's question; the answer the parent resumes with is
  sent to the remote thread as ``command={"resume": answer}``, and the node goes on;
* otherwise the parent's newest request is sent as the run's input;
* it returns the same small output as the embedded team (``TeamOutput``).

A node that interrupts runs again from its start when resumed; the answers already sent
are counted in the remote thread's metadata, so a second question in the same parent
step is answered with the second answer, not the first one again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast
from uuid import NAMESPACE_URL, uuid5

from langchain_core.messages import AnyMessage, convert_to_messages
from langchain_core.runnables import RunnableConfig
from langgraph.pregel.remote import RemoteGraph
from langgraph.types import interrupt
from langgraph_sdk.client import LangGraphClient

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.embed import TEAM_NAME, TeamOutput, latest_request, team_output

RemoteNode = Callable[[dict[str, Any], RunnableConfig], Awaitable[TeamOutput]]


def remote_thread_id(parent_thread: str, node: str = TEAM_NAME) -> str:
    """The remote thread that holds the team's conversation for one parent thread."""
    return str(uuid5(NAMESPACE_URL, f"creative-studio/{node}/{parent_thread}"))


def remote_team_node(remote: RemoteGraph, *, node: str = TEAM_NAME) -> RemoteNode:
    """``parent.add_node("creative_team", remote_team_node(RemoteGraph("creative_studio", url=...)))``.

    The parent needs a checkpointer (interrupts need one) and a ``messages`` key. Settings
    the parent's run sets (``context`` or ``configurable`` keys named as Configuration
    fields) are passed on as the remote run's context; the rest is the server's default.
    """
    if remote.client is None:
        raise ValueError("remote_team_node needs a RemoteGraph with a url or an async client.")
    client: LangGraphClient = remote.client
    assistant = remote.assistant_id

    async def creative_team(state: dict[str, Any], config: RunnableConfig) -> TeamOutput:
        configurable = config.get("configurable") or {}
        thread_id = remote_thread_id(str(configurable.get("thread_id") or ""), node)
        await client.threads.create(thread_id=thread_id, if_exists="do_nothing")
        context = Configuration.explicit_values(config) or None
        step = str((config.get("metadata") or {}).get("langgraph_checkpoint_ns") or node)
        counter = f"answers_sent:{step}"
        sent = int(((await client.threads.get(thread_id)).get("metadata") or {}).get(counter, 0))
        for _ in range(sent):
            interrupt(None)  # answers this step already sent: replayed, not sent again
        request = latest_request(state.get("messages") or [])
        pending = (await client.threads.get_state(thread_id)).get("interrupts") or []
        if not pending and sent == 0 and request is not None:
            message = {"type": "human", "content": request.text, "id": str(request.id)}
            run_input: dict[str, Any] = {"messages": [message]}
            await client.runs.wait(thread_id, assistant, input=run_input, context=context)
            pending = (await client.threads.get_state(thread_id)).get("interrupts") or []
        while pending:
            answer = interrupt(pending[0].get("value"))  # the parent pauses here
            await client.runs.wait(
                thread_id, assistant, command={"resume": answer}, context=context
            )
            sent += 1
            await client.threads.update(thread_id, metadata={counter: sent})
            pending = (await client.threads.get_state(thread_id)).get("interrupts") or []
        final = (await client.threads.get_state(thread_id)).get("values")
        values: dict[str, Any] = dict(final) if isinstance(final, dict) else {}
        messages = cast(list[AnyMessage], convert_to_messages(values.get("messages") or []))
        values["messages"] = messages
        return team_output(values, request.id if request else None)

    creative_team.__name__ = node
    return creative_team


__all__ = ["RemoteNode", "remote_team_node", "remote_thread_id"]
