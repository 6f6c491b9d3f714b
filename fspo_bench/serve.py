"""``fspo-bench serve``: a small OpenAI-compatible server over any fspo-bench backend.

``POST /v1/chat/completions`` and ``GET /v1/models``, on the standard library's
``ThreadingHTTPServer``. Any client of the OpenAI API works with it, litellm included
(``LiteLLMBackend("openai/<name>", api_base="http://127.0.0.1:8000/v1")``, with
``OPENAI_API_KEY`` set to anything: the server does not check keys).

Requests
    ``model`` (must be the served name), ``messages`` (``content`` a string or a list of text
    parts), ``max_tokens`` (or ``max_completion_tokens``; default 256), ``temperature`` (default 1,
    as in the OpenAI API), ``top_p``, ``seed`` (default 0), ``stop`` (a string or a list),
    ``n`` (1 only), and vLLM's ``repetition_penalty`` extension. ``stream`` is not supported; other
    fields are ignored. Each request becomes one ``GenerationRequest(messages=...)``; a lock
    serializes generation, since backends are not thread-safe.

Responses
    The OpenAI JSON shape: ``id``, ``object``, ``created``, ``model``,
    ``choices[0].message.content``, ``finish_reason`` (always ``"stop"``: backends do not say
    why they stopped) and ``usage`` (token counts when the backend has a ``count_tokens(text)``
    method, else 0). Errors are OpenAI error objects: 400 (malformed JSON, invalid fields),
    404 (unknown path or model), 411 (no ``Content-Length``), 413 (a body over
    ``max_request_bytes``, refused before it is read), 500 (the backend failed).

Safety
    It binds to 127.0.0.1 by default and has no authentication: binding another address prints a
    warning.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any, Optional

import typer

from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.errors import FspoBenchError
from fspo_bench.safety import scrub_secrets

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_REQUEST_BYTES = 1_000_000
DEFAULT_MAX_TOKENS = GenerationParams().max_new_tokens
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class BadRequest(Exception):
    """A request the server refuses; becomes an OpenAI-style error object."""

    def __init__(self, message: str, status: int = 400, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.status, self.param, self.code, self.kind = (
            message, status, param, code, kind)


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# --------------------------------------------------------------------------- request parsing


def _number(body: dict[str, Any], name: str, default: float, *, low: float,
            high: float | None = None, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{name} must be a number", param=name)
    if value < low or (low_open and value == low) or (high is not None and value > high):
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise BadRequest(f"{name} must be {bound}, not {value}", param=name)
    return float(value)


def _integer(body: dict[str, Any], name: str, default: int, *, low: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer", param=name)
    if value < low:
        raise BadRequest(f"{name} must be >= {low}, not {value}", param=name)
    return value


def _content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise BadRequest(f"messages[{index}].content: only text parts are supported",
                                 param="messages")
            texts.append(part["text"])
        return "".join(texts)
    raise BadRequest(f"messages[{index}].content must be a string or a list of text parts",
                     param="messages")


def parse_chat_request(body: Any) -> GenerationRequest:
    """The GenerationRequest of a chat completion body (BadRequest if it is not valid)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", param="messages")
    parsed = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a string role",
                             param="messages")
        parsed.append({"role": message["role"], "content": _content(message, i)})
    if body.get("stream"):
        raise BadRequest("stream is not supported", param="stream")
    n = body.get("n", 1)
    if n not in (None, 1) or isinstance(n, bool):
        raise BadRequest("only n=1 is supported", param="n")
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise BadRequest("stop must be a string or a list of strings", param="stop")
    max_name = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    params = GenerationParams(
        max_new_tokens=_integer(body, max_name, DEFAULT_MAX_TOKENS, low=0),
        temperature=_number(body, "temperature", 1.0, low=0.0),
        top_p=_number(body, "top_p", 1.0, low=0.0, high=1.0, low_open=True),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, low=0.0, low_open=True),
        seed=_integer(body, "seed", 0, low=-(2**63)),
    )
    return GenerationRequest(params=params, messages=parsed, stop=stops)


# --------------------------------------------------------------------------- the server


class FspoServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its backend, served model name and body limit."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: Backend, model_name: str,
                 max_request_bytes: int, log_requests: bool = True):
        self.backend = backend
        self.model_name = model_name
        self.max_request_bytes = max_request_bytes
        self.log_requests = log_requests
        self.generate_lock = threading.Lock()
        self.created = int(time.time())
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FspoServer
    protocol_version = "HTTP/1.1"
    server_version = "fspo-bench"
    timeout = 120  # seconds a connection may sit idle or stall mid-request

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)

    # ----------------------------------------------------------------- replies

    def _send_json(self, status: int, payload: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, error: BadRequest, close: bool = False) -> None:
        self._send_json(error.status, error_body(error.message, error.kind, error.param,
                                                 error.code), close=close)

    # ----------------------------------------------------------------- body limits

    def _declared_length(self) -> int:
        """The Content-Length, refused (before any body is read) when missing or too large."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest("chunked request bodies are not supported; send Content-Length",
                             status=HTTPStatus.LENGTH_REQUIRED)
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise BadRequest("Content-Length is required", status=HTTPStatus.LENGTH_REQUIRED)
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            raise BadRequest(f"invalid Content-Length {raw!r}")
        if length > self.server.max_request_bytes:
            raise BadRequest(
                f"request body of {length} bytes is over the limit of "
                f"{self.server.max_request_bytes} bytes",
                status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        return length

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it (``Expect: 100-continue``)."""
        if self.command == "POST":
            try:
                self._declared_length()
            except BadRequest as error:
                self._send_error(error, close=True)
                return False
        return super().handle_expect_100()

    # ----------------------------------------------------------------- routes

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [{
                "id": self.server.model_name, "object": "model",
                "created": self.server.created, "owned_by": "fspo-bench",
            }]})
        elif path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"})
        else:
            self._send_error(BadRequest(f"no route GET {path or '/'}", status=404))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            length = self._declared_length()
        except BadRequest as error:
            # The body was not read: close the connection rather than parse it as a request.
            self._send_error(error, close=True)
            return
        raw = self.rfile.read(length)
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_error(BadRequest(f"no route POST {path or '/'}", status=404))
            return
        try:
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadRequest(f"the request body is not valid JSON: {exc}") from None
            request = parse_chat_request(body)
            model = body.get("model")
            if model != self.server.model_name:
                raise BadRequest(
                    f"the model {model!r} does not exist; this server serves "
                    f"{self.server.model_name!r}",
                    status=404, param="model", code="model_not_found",
                )
        except BadRequest as error:
            self._send_error(error)
            return
        try:
            with self.server.generate_lock:
                text = self.server.backend.generate([request])[0]
                usage = self._usage(request, text)
        except Exception as exc:
            message = scrub_secrets(f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, FspoBenchError):
                print(f"fspo-bench serve: generation failed: {message}", file=sys.stderr)
            self._send_error(BadRequest(f"generation failed: {message}", status=500,
                                        kind="server_error"))
            return
        self._send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }],
            "usage": usage,
        })

    def _usage(self, request: GenerationRequest, text: str) -> dict[str, int]:
        count = getattr(self.server.backend, "count_tokens", None)
        prompt = completion = 0
        if callable(count):
            try:
                prompt = int(count("".join(m["content"] for m in request.messages or [])))
                completion = int(count(text))
            except Exception:
                prompt = completion = 0
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}


def make_server(backend: Backend, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, *,
                model_name: str | None = None, log_requests: bool = True) -> FspoServer:
    """A bound (not yet serving) server over ``backend``; ``port=0`` picks a free port.

    ``model_name`` is the name clients ask for (default: ``backend.model``). Call
    ``serve_forever()`` on it (in a thread if you like) and ``shutdown()`` / ``server_close()``.
    """
    if max_request_bytes < 1:
        raise FspoBenchError(f"max_request_bytes must be >= 1, not {max_request_bytes}")
    try:
        return FspoServer((host, port), backend, model_name or backend.model, max_request_bytes,
                          log_requests)
    except OSError as exc:
        raise FspoBenchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(server: FspoServer) -> None:
    """Serve until Ctrl-C, then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _parse_options(options: list[str]) -> dict[str, str]:
    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise FspoBenchError(f"--option takes KEY=VALUE, not {option!r}")
        parsed[key.strip()] = value
    return parsed


def add_serve_command(app: typer.Typer) -> None:
    """Add ``fspo-bench serve`` to a typer app."""

    @app.command("serve")
    def serve_command(
        model: Annotated[str, typer.Option("--model", help="Model for the backend: a local "
                                           "folder, a hub id or 'embedded'.")],
        backend: Annotated[str, typer.Option("--backend", help="Backend name.")] = "hf",
        host: Annotated[str, typer.Option("--host", help="Address to bind (no authentication: "
                                          "keep it on loopback).")] = DEFAULT_HOST,
        port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = (
            DEFAULT_PORT),
        max_request_bytes: Annotated[int, typer.Option(
            "--max-request-bytes", help="Larger request bodies get 413.")] = (
            DEFAULT_MAX_REQUEST_BYTES),
        served_model_name: Annotated[
            Optional[str],  # noqa: UP045 - typer needs Optional on Python 3.10
            typer.Option("--served-model-name", help="Name clients use (default: --model)."),
        ] = None,
        option: Annotated[
            Optional[list[str]],  # noqa: UP045 - typer needs Optional on Python 3.10
            typer.Option("--option", "-o", help="Backend option KEY=VALUE (repeatable)."),
        ] = None,
    ) -> None:
        """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models)."""
        from fspo_bench import plugins

        instance = plugins.get("backend", backend)(model, **_parse_options(option or []))
        load = getattr(instance, "load", None)
        if callable(load):
            load()  # a model that cannot load fails now, not on the first request
        server = make_server(instance, host, port, max_request_bytes,
                             model_name=served_model_name)
        if host not in LOOPBACK:
            typer.echo(f"fspo-bench serve: warning: listening on {host} without authentication",
                       err=True)
        typer.echo(f"fspo-bench serve: {server.model_name} ({backend}) at {server.url} "
                   f"(Ctrl-C stops)", err=True)
        serve(server)
