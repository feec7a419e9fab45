"""ChatOllama whose requests cost a fraction of the CPU: aiohttp on the wire.

Every token a specialist writes is one NDJSON line from Ollama. Through ``ChatOllama.astream``
a line becomes an ``ollama.ChatResponse`` (pydantic), an ``AIMessageChunk`` and a
``ChatGenerationChunk`` (pydantic each), and LangChain adds each chunk to the ones before
it; under it, httpx reads every line through h11 (pure Python) and an anyio cancel scope.
At Ollama's pace (one line per read; bench/model_client.py: 50 streams at 50 tokens/s)
that is ~370 µs of CPU per token, ~200 µs of it httpx's reading alone: the largest single
cost of a token on its way to the person. ``astream_text`` sends the same request - the
body is built by ChatOllama and ollama-python's own types, so options, keep-alive, images
and format are exactly theirs, and so are the client's headers and base URL - with aiohttp
(its HTTP parser is C), and reads each line with one ``orjson.loads``: ~40-65 µs per token.
Its errors are translated to httpx's, the ones ChatOllama raises, so callers tell a
refused connection or a timeout the same way on both paths.

The other calls (votes, plans, reviews: ``ainvoke``, structured output, ``astream``, LangGraph's
"messages" stream) go over the same aiohttp request too, at the one place ChatOllama asks
ollama-python for a reply (``_acreate_chat_stream``), so what it makes of the reply is its
own: ~1.6 ms of CPU for a short vote through ``ainvoke`` against ~3.4 ms, and a team
turn brings two or three of them besides the streamed one.

The requests of a process share one aiohttp session per event loop (``close_sessions`` at
shutdown): a turn reuses a kept-alive connection instead of connecting, resolving the
host and reading the proxy settings in worker threads each time (several thread hops per
turn, each contending for the GIL with the event loop). A turn cut short closes its
connection (aiohttp does not reuse one whose reply was not read to the end), so Ollama
stops generating it, as it does when ChatOllama's stream is closed.

nodes/token_stream.py uses ``astream_text`` when the model has it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
import orjson
from httpx._utils import URLPattern, get_environment_proxies  # the client's own reading
from langchain_core.messages import BaseMessage
from langchain_ollama import ChatOllama
from langchain_ollama.chat_models import (
    _get_usage_metadata_from_generation_info as usage_from_done,  # ChatOllama's own reading
)
from ollama import Image, Message, ResponseError
from ollama._types import ChatRequest

__all__ = ["StreamingChatOllama", "close_sessions", "stream_end"]

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _session() -> aiohttp.ClientSession:
    """The running loop's session for streamed turns (made on first use)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # one connection per live turn
            read_bufsize=2**20,
            trust_env=False,  # proxies as httpx reads them: _proxy, once per origin
        )
        _sessions[loop] = session
    return session


async def close_sessions() -> None:
    """Close the running loop's session (at shutdown; the next turn would open another)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


def _proxy(url: httpx.URL, trust_env: bool) -> str | None:
    """The proxy an httpx client that trusts the environment would use for ``url``."""
    if not trust_env:
        return None
    settings = tuple(
        os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES
    )
    return _proxy_for(url.scheme, url.host, url.port, settings)


@functools.lru_cache(maxsize=64)
def _proxy_for(
    scheme: str, host: str, port: int | None, settings: tuple[str | None, ...]
) -> str | None:
    """httpx's own choice from the environment: its patterns, most specific first, the
    first that matches wins (``settings`` only keys the cache)."""
    origin = httpx.URL(scheme=scheme, host=host, port=port)
    proxies = {URLPattern(key): proxy for key, proxy in get_environment_proxies().items()}
    for pattern in sorted(proxies):
        if pattern.matches(origin):
            return proxies[pattern]
    return None


def _tls(verify: Any) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl`` for the httpx client's ``verify`` (a context, or off)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    return verify is not False


def stream_end(done: dict[str, Any]) -> dict[str, Any]:
    """What ChatOllama keeps of the final ``done`` line: response and usage metadata."""
    response = {k: v for k, v in done.items() if k != "message"}
    if "model" in response:
        response["model_name"] = response["model"]
    response["model_provider"] = "ollama"
    return {"response_metadata": response, "usage_metadata": usage_from_done(done)}


def _message(raw: dict[str, Any]) -> Message:
    """As ollama-python's client copies a message: empty fields dropped, images wrapped."""
    fields = {k: v for k, v in raw.items() if v}
    if "images" in fields:
        fields["images"] = [Image(value=image) for image in fields["images"]]
    return Message.model_validate(fields)


class StreamingChatOllama(ChatOllama):
    """ChatOllama whose requests go over aiohttp, plus ``astream_text`` for streamed turns.

    ``_acreate_chat_stream`` is the one place ChatOllama talks to Ollama asynchronously
    (``ainvoke``, ``astream``, structured output, LangGraph's "messages" stream all come
    through it): here it sends the same request over aiohttp and yields each reply line as
    the dict ollama-python's ``ChatResponse`` reads from, so everything ChatOllama makes of
    them (chunks, metadata, callbacks) is its own. A vote through ``ainvoke`` costs ~1.6 ms
    of CPU this way against ~3.4 ms through ollama-python's httpx client (bench clock
    server, short replies). A request with tools goes through ChatOllama's own client
    (ollama-python converts Python functions to tool schemas).
    """

    def request_body(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The JSON ``AsyncClient.chat`` would send for this request (streamed unless
        ``stream=False`` is passed, as ChatOllama decides)."""
        return _body(self._chat_params(messages, stop, **kwargs))

    async def _acreate_chat_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[Mapping[str, Any] | str]:
        """ChatOllama's request, sent with aiohttp: each reply line as a dict."""
        params = self._chat_params(messages, stop, **kwargs)  # the messages converted once
        if params.get("tools"):
            async for part in super()._acreate_chat_stream(messages, stop, **kwargs):
                yield part
            return
        async for part in self._replies(_body(params)):
            yield part

    async def astream_text(
        self, messages: list[BaseMessage]
    ) -> AsyncIterator[str | dict[str, Any]]:
        """Each piece of text as Ollama sends it, then one dict (``stream_end``); no
        LangChain chunk or callback per token (nodes/token_stream.py)."""
        async for part in self._replies(self.request_body(messages)):
            for piece in _pieces(part):
                yield piece

    async def _replies(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST ``body`` to /api/chat: each NDJSON line of a streamed reply, or the one
        JSON reply, as a dict.

        Errors are ollama-python's ``ResponseError`` for an error status or an error line
        (a model that is not installed is a 404), and httpx's for a connection that fails
        or a model that stops answering (``_as_httpx_error``).
        """
        client = self._async_client
        if client is None:
            raise RuntimeError("the Ollama client is not initialised")
        http: httpx.AsyncClient = client._client
        content = orjson.dumps(body)
        # httpx's own URL and headers for this request (a base URL with a path prefix, the
        # client's default headers); aiohttp sets the framing ones itself.
        request = http.build_request("POST", "/api/chat", content=content)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _FRAMING}
        try:
            async with _session().post(
                str(request.url),
                data=content,
                headers=headers,
                timeout=_timeout(http.timeout),
                proxy=_proxy(request.url, http.trust_env),
                ssl=_tls((self.client_kwargs or {}).get("verify", True)),
            ) as reply:
                if reply.status >= 400:
                    raise ResponseError(await reply.text(), reply.status)
                if not body.get("stream", True):
                    yield _checked(orjson.loads(await reply.read()))
                    return
                async for line in reply.content:  # one NDJSON line at a time
                    if line.strip():
                        yield _checked(orjson.loads(line))
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _as_httpx_error(error, request) from error


def _body(params: dict[str, Any]) -> dict[str, Any]:
    """ChatOllama's parameters as the JSON ollama-python's ``AsyncClient.chat`` sends."""
    if params.get("tools"):
        raise ValueError("tool calls go through ChatOllama's own client")
    return ChatRequest(
        model=params["model"],
        messages=[_message(dict(m)) for m in params["messages"]],
        tools=[],
        stream=bool(params.get("stream", True)),
        think=params.get("think"),
        logprobs=params.get("logprobs"),
        top_logprobs=params.get("top_logprobs"),
        format=params.get("format"),
        options=params.get("options"),
        keep_alive=params.get("keep_alive"),
    ).model_dump(exclude_none=True)


_FRAMING = frozenset(
    {"host", "connection", "content-length", "transfer-encoding", "accept-encoding"}
)


def _timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    """The httpx client's limits, as aiohttp spells them (no limit on the whole turn: a
    long reply is fine as long as the model keeps writing)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=timeout.connect, sock_read=timeout.read)


def _as_httpx_error(error: BaseException, request: httpx.Request) -> httpx.HTTPError:
    """The httpx error ChatOllama would have raised for the same failure."""
    text = str(error) or type(error).__name__
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text, request=request)
    if isinstance(error, TimeoutError):  # asyncio's is the same class
        return httpx.ReadTimeout(f"the model stopped answering: {text}", request=request)
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return httpx.RemoteProtocolError(text, request=request)
    if isinstance(error, aiohttp.ClientOSError):
        return httpx.ReadError(text, request=request)
    return httpx.TransportError(text, request=request)


def _checked(part: Any) -> dict[str, Any]:
    """A reply line, or ollama-python's error for one that reports an error."""
    if not isinstance(part, dict):
        raise ResponseError(f"unexpected reply from the model server: {str(part)[:200]}")
    if error := part.get("error"):
        raise ResponseError(error)
    return part


def _pieces(part: dict[str, Any]) -> list[str | dict[str, Any]]:
    """What one reply line says: its text, and after the ``done`` line the metadata."""
    text = (part.get("message") or {}).get("content") or ""
    pieces: list[str | dict[str, Any]] = [text] if text else []
    if part.get("done") is True and part.get("done_reason") != "load":
        pieces.append(stream_end(part))
    return pieces
