"""A stand-in Ollama server for the tests: real HTTP on 127.0.0.1, canned answers.

It answers ``POST /api/chat`` the way Ollama does (one JSON object, or NDJSON chunks
with ``"done": false`` and a last one with ``"done": true`` when the request
streams), choosing the answer from the request:

- the last message has role ``tool``: the final answer ``"The tool said: <its content>"``;
- the request offers ``tools``: a call of the first tool, each of its parameters set
  to the text of the last user message;
- the last user message is :data:`FAIL`: HTTP 500 with an ``error`` body;
- the last user message is :data:`FAIL_MIDWAY` (streaming): two chunks, then an
  error line (Ollama's way of failing in the middle of a stream);
- the last user message is :data:`HOLD` (streaming): the first chunks of the echo,
  up to and including :data:`HELD_CHUNK`, then nothing until :meth:`StandIn.release`
  (or ``close()``), then the rest: a reply to interrupt in the middle;
- the last user message is :data:`HOSTILE` (streaming or not): the reply
  :data:`HOSTILE_REPLY`, streamed as :data:`HOSTILE_CHUNKS` (escape sequences cut
  across chunks);
- the model is :data:`MISSING_MODEL`: HTTP 404, as Ollama answers for a model not pulled;
- otherwise: ``"echo: <text> (<n> messages)"``, ``n`` counting the request's
  messages, so a test sees how much history the client sent.

Streamed replies come one word per chunk.

It answers ``POST /api/embed`` as Ollama does, for the models of
:data:`EMBED_MODELS` (name -> dimension and context, in tokens of the shared
tokenizer): ``{"model", "embeddings": [[...], ...], "prompt_eval_count"}``, each
vector the test-kit hash embedding of the text's tokens (deterministic, unit length,
texts sharing words close). A text longer than the context is cut to it when
``truncate`` is true or absent (Ollama's silent default) and refused with HTTP 400
"the input length exceeds the context length" when it is false. An unknown model is
a 404 "model ... not found, try pulling it first"; :data:`CHAT_MODEL` answers 400
"does not support embeddings". Every embed request body is kept in
:attr:`StandIn.embed_requests`.

``GET /`` answers as Ollama does and ``GET /api/tags`` lists the embedding models;
anything else is a 404. Every chat request body is kept in :attr:`StandIn.requests`.

Run ``python tests/ollama_standin.py`` to serve until Ctrl-C (it prints the
``OLLAMA_HOST`` to use), e.g. for ``examples/ollama_chat.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest

from qv_session_manager.testing.embedders import HashEmbedder
from qv_session_manager.text import tokens

FAIL = "please fail"
FAIL_MIDWAY = "fail midway"
HOLD = "hold the stream"
#: The last chunk a held stream sends before waiting: "echo: hold the stream (n messages)" cut at words.
HELD_CHUNK = "hold "
HOSTILE = "be hostile"
#: Clears the screen, retitles the window, a C1 CSI, a bidi override and rich markup,
#: each escape sequence cut in two by the chunking.
HOSTILE_CHUNKS = ("start \x1b", "[2J \x1b]0;PWN", "ED\x07 \x9b", "31m\u202e", "[red]x[/red] end")
HOSTILE_REPLY = "".join(HOSTILE_CHUNKS)
MISSING_MODEL = "not-pulled:latest"
CREATED_AT = "2025-01-20T12:00:00.000000Z"
#: The embedding models the stand-in has "pulled": name -> (dimension, context in tokens).
EMBED_MODELS: dict[str, tuple[int, int]] = {"nomic-embed-text": (48, 64), "all-minilm": (16, 32)}
#: The chat model of the tests: it cannot embed.
CHAT_MODEL = "standin-model"
TOO_LONG = "the input length exceeds the context length"


def environment(url: str) -> dict[str, str]:
    """The environment variables that send an ``ollama`` client to ``url`` directly."""
    return {"OLLAMA_HOST": url, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def route_ollama(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Send this process's qv-ollama-sdk requests to ``url``.

    The SDK calls the module-level ``ollama.chat``, bound to a client that ``ollama``
    creates when it is first imported (which happened at collection, through
    qv_ollama_sdk), so setting OLLAMA_HOST now only reaches clients created from now
    on. A new ``ollama.Client()`` made after setting it (reading OLLAMA_HOST as any
    client does) replaces ``ollama.chat`` for the test. Subprocesses get OLLAMA_HOST.
    """
    import ollama

    for name, value in environment(url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ollama, "chat", ollama.Client().chat)


def last_text(messages: list[Mapping[str, Any]], role: str = "user") -> str:
    """The content of the last message with ``role`` ('' when there is none)."""
    for message in reversed(messages):
        if message.get("role") == role:
            return str(message.get("content", ""))
    return ""


def reply_for(request: Mapping[str, Any]) -> dict[str, Any]:
    """The assistant message answering a chat request (without failures)."""
    messages = list(request.get("messages") or [])
    if messages and messages[-1].get("role") == "tool":
        return {"role": "assistant", "content": f"The tool said: {messages[-1].get('content', '')}"}
    tools = request.get("tools") or []
    text = last_text(messages)
    if text == HOSTILE:
        return {"role": "assistant", "content": HOSTILE_REPLY}
    if tools:
        function = tools[0]["function"]
        parameters = (function.get("parameters") or {}).get("properties") or {}
        call = {"function": {"name": function["name"], "arguments": {name: text for name in parameters}}}
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    return {"role": "assistant", "content": f"echo: {text} ({len(messages)} messages)"}


def embed_model(name: str) -> tuple[int, int] | None:
    """(dimension, context) of an embedding model, given with or without its ``:latest`` tag."""
    base, _, tag = name.partition(":")
    return EMBED_MODELS.get(base) if tag in ("", "latest") else None


def embedding_of(text: str, dimension: int, context: int | None = None) -> list[float]:
    """The stand-in's vector of ``text``: its first ``context`` tokens, hashed."""
    words = tokens(text)[:context] if context is not None else tokens(text)
    return HashEmbedder(dimension).embed([" ".join(words)])[0]


def answer_embed(request: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of the stand-in's answer to an ``/api/embed`` request."""
    model = str(request.get("model", ""))
    found = embed_model(model)
    if found is None:
        if model.partition(":")[0] == CHAT_MODEL:
            return 400, {"error": f'"{model}" does not support embeddings'}
        return 404, {"error": f'model "{model}" not found, try pulling it first'}
    dimension, context = found
    given = request.get("input", [])
    texts = [given] if isinstance(given, str) else list(given)
    truncate = request.get("truncate", True) is not False
    if not truncate and any(len(tokens(text)) > context for text in texts):
        return 400, {"error": TOO_LONG}
    vectors = [embedding_of(text, dimension, context) for text in texts]
    counted = sum(min(len(tokens(text)), context) for text in texts)
    return 200, {
        "model": model,
        "embeddings": vectors,
        "total_duration": 1000,
        "load_duration": 10,
        "prompt_eval_count": counted,
    }


def _final(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": CREATED_AT,
        "done": True,
        "done_reason": "stop",
        "total_duration": 1000,
        "prompt_eval_count": 1,
        "eval_count": 1,
    }


def stream_chunks(request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The NDJSON objects of a streamed answer: word chunks, then the ``done`` one."""
    model = str(request.get("model", ""))
    reply = reply_for(request)
    if "tool_calls" in reply:
        yield {"model": model, "created_at": CREATED_AT, "message": reply, "done": False}
    elif reply["content"] == HOSTILE_REPLY:
        for piece in HOSTILE_CHUNKS:
            yield {
                "model": model,
                "created_at": CREATED_AT,
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
    else:
        words = reply["content"].split(" ")
        for index, word in enumerate(words):
            piece = word if index == len(words) - 1 else word + " "
            yield {
                "model": model,
                "created_at": CREATED_AT,
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
    yield {**_final(model), "message": {"role": "assistant", "content": ""}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/tags":
            models = [
                {"name": f"{name}:latest", "model": f"{name}:latest", "size": 1, "digest": "0" * 64}
                for name in EMBED_MODELS
            ]
            self._send_json(200, {"models": models})
        else:
            self._send_json(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path not in ("/api/chat", "/api/embed"):
            self._send_json(404, {"error": f"no route {self.path}"})
            return
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/api/embed":
            with self.server.lock:
                self.server.embed_requests.append(request)
            self._send_json(*answer_embed(request))
            return
        with self.server.lock:
            self.server.requests.append(request)
        text = last_text(request.get("messages") or [])
        if request.get("model") == MISSING_MODEL:
            self._send_json(404, {"error": f"model '{MISSING_MODEL}' not found, try pulling it first"})
        elif text == FAIL:
            self._send_json(500, {"error": "the stand-in was asked to fail"})
        elif request.get("stream"):
            self._stream(request, fail_midway=text == FAIL_MIDWAY, hold=text == HOLD)
        else:
            self._send_json(200, {**_final(str(request.get("model", ""))), "message": reply_for(request)})

    def _stream(self, request: Mapping[str, Any], *, fail_midway: bool, hold: bool) -> None:
        # HTTP/1.0 without a length: the body ends when the connection closes, as a
        # chunked stream would for the client.
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for index, chunk in enumerate(stream_chunks(request)):
            if fail_midway and index == 2:
                chunk = {"error": "the stand-in failed in the middle of the stream"}
            try:
                self.wfile.write(json.dumps(chunk).encode() + b"\n")
                self.wfile.flush()
            except OSError:  # the client went away (a held stream it interrupted)
                return
            if fail_midway and index == 2:
                return
            if hold and chunk.get("message", {}).get("content") == HELD_CHUNK:
                self.server.released.wait()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.embed_requests: list[dict[str, Any]] = []
        self.released = threading.Event()


class StandIn:
    """The server, serving from a thread between ``start()`` and ``close()`` (or as a ``with`` block)."""

    def __init__(self) -> None:
        self._server = _Server()
        # A short poll interval: close() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="ollama-standin", daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the value for OLLAMA_HOST."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the chat request bodies received so far, oldest first."""
        with self._server.lock:
            return list(self._server.requests)

    @property
    def embed_requests(self) -> list[dict[str, Any]]:
        """A copy of the ``/api/embed`` request bodies received so far, oldest first."""
        with self._server.lock:
            return list(self._server.embed_requests)

    def release(self) -> None:
        """Let held streams (:data:`HOLD`) go on, now and from now on."""
        self._server.released.set()

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port (held streams are released). Closing twice is harmless."""
        self.release()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


if __name__ == "__main__":
    with StandIn() as standin:
        print(f"OLLAMA_HOST={standin.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
