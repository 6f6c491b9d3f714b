"""``fspo-bench serve``: the OpenAI-compatible server, over real HTTP on loopback.

The server runs over real backends: a small deterministic one written here, and the hf backend on
a tiny random model (when torch and transformers are installed); litellm talks to it as it would
to ``vllm serve``.
"""

from __future__ import annotations

import inspect
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer

from fspo_bench import Backend, FspoBenchError, GenerationParams, GenerationRequest, plugins
from fspo_bench import serve as serve_module
from fspo_bench.serve import add_serve_command, make_server

PLANTED_KEY = "sk-test-PLANTED-1234"


class EchoBackend(Backend):
    """A real (if simple) backend: answers ``echo: <last user message>``, deterministically.

    It records every request it gets and how many generate calls overlapped, and it fails on
    the message ``fail``.
    """

    name = "echo-test"
    description = "Test backend: echoes the last user message."

    def __init__(self, model: str, **options):
        super().__init__(model, **options)
        self.requests: list[GenerationRequest] = []
        self.active = 0
        self.max_active = 0
        self.delay = float(options.get("delay", 0.0))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            out = []
            for request in requests:
                self.requests.append(request)
                if request.messages is None:
                    text = request.prompt
                else:
                    text = [m for m in request.messages if m["role"] == "user"][-1]["content"]
                if text == "fail":
                    raise RuntimeError("the echo backend was asked to fail")
                out.append(f"echo: {text}"[: 6 + request.params.max_new_tokens])
            return out
        finally:
            self.active -= 1


class Running:
    """A make_server server serving in a background thread."""

    def __init__(self, backend: Backend, **kwargs):
        kwargs.setdefault("port", 0)
        self.backend = backend
        self.server = make_server(backend, log_requests=False, **kwargs)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def running():
    started = []

    def start(backend: Backend | None = None, **kwargs) -> Running:
        r = Running(backend or EchoBackend("echo-model"), **kwargs)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


def post(url: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def raw_exchange(port: int, head: str, timeout: float = 3.0) -> bytes:
    """Send raw request bytes (no body) and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)  # a server waiting for the body would time out here
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def assert_openai_error(payload: dict, kind: str = "invalid_request_error") -> None:
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert payload["error"]["type"] == kind and payload["error"]["message"]


# --------------------------------------------------------------------------- the protocol


def test_binds_to_loopback_by_default(running):
    assert inspect.signature(make_server).parameters["host"].default == "127.0.0.1"
    server = running(EchoBackend("m")).server
    assert server.server_address[0] == "127.0.0.1"


def test_models_lists_the_served_model(running):
    r = running(EchoBackend("some/model"), model_name="served-name")
    status, payload = get(f"{r.url}/models")
    assert status == 200
    assert payload["object"] == "list"
    assert [m["id"] for m in payload["data"]] == ["served-name"]
    assert payload["data"][0]["object"] == "model"


def test_chat_completion_has_the_openai_shape(running):
    r = running()
    status, payload = post(f"{r.url}/chat/completions", {
        "model": "echo-model",
        "messages": [{"role": "system", "content": "sys"},
                     {"role": "user", "content": [{"type": "text", "text": "hi "},
                                                  {"type": "text", "text": "there"}]}],
        "max_tokens": 20, "temperature": 0, "top_p": 0.5, "seed": 4, "stop": "###", "n": 1,
    })
    assert status == 200
    assert payload["object"] == "chat.completion" and payload["id"].startswith("chatcmpl-")
    assert payload["model"] == "echo-model" and isinstance(payload["created"], int)
    choice = payload["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "echo: hi there"}
    assert choice["finish_reason"] == "stop" and choice["index"] == 0
    assert payload["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert r.backend.requests == [GenerationRequest(
        params=GenerationParams(max_new_tokens=20, temperature=0.0, top_p=0.5, seed=4),
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi there"}],
        stop=["###"])]


def test_oversized_body_gets_413_before_it_is_read(running):
    r = running(max_request_bytes=1000)
    # The body is announced but never sent: a server that tried to read it would hang.
    reply = raw_exchange(r.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                 "Content-Type: application/json\r\n"
                                 "Content-Length: 100000000\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert_openai_error(json.loads(body))
    assert "1000" in json.loads(body)["error"]["message"]
    assert r.backend.requests == []


def test_oversized_body_with_expect_continue_is_refused_without_continue(running):
    r = running(max_request_bytes=1000)
    reply = raw_exchange(r.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                 "Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413") and b"100 Continue" not in reply


def test_a_body_at_the_limit_is_accepted(running):
    body = json.dumps({"model": "echo-model", "messages": [{"role": "user", "content": "x"}]})
    r = running(max_request_bytes=len(body))
    assert post(f"{r.url}/chat/completions", body.encode())[0] == 200
    r2 = running(max_request_bytes=len(body) - 1)
    assert post(f"{r2.url}/chat/completions", body.encode())[0] == 413


def test_missing_content_length_gets_411(running):
    r = running()
    reply = raw_exchange(r.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 411")


def test_malformed_json_gets_400_with_an_openai_error(running):
    r = running()
    status, payload = post(f"{r.url}/chat/completions", b'{"model": "echo-model", "messages": [')
    assert status == 400
    assert_openai_error(payload)
    assert "JSON" in payload["error"]["message"]
    # the connection and the server are fine afterwards
    assert post(f"{r.url}/chat/completions",
                {"model": "echo-model", "messages": [{"role": "user", "content": "ok"}]})[0] == 200


@pytest.mark.parametrize("change, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"n": 2}, "n"),
    ({"stream": True}, "stream"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"stop": [1]}, "stop"),
])
def test_invalid_fields_get_400(running, change, param):
    r = running()
    body = {"model": "echo-model", "messages": [{"role": "user", "content": "x"}], **change}
    status, payload = post(f"{r.url}/chat/completions", body)
    assert status == 400
    assert_openai_error(payload)
    assert payload["error"]["param"] == param
    assert r.backend.requests == []


def test_unknown_model_and_path_get_404(running):
    r = running()
    status, payload = post(f"{r.url}/chat/completions",
                           {"model": "other", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404 and payload["error"]["code"] == "model_not_found"
    assert get(f"http://127.0.0.1:{r.port}/nothing")[0] == 404
    assert post(f"{r.url}/completions", {"model": "echo-model"})[0] == 404


def test_backend_failure_is_a_500_and_the_server_keeps_serving(running):
    r = running()
    status, payload = post(f"{r.url}/chat/completions",
                           {"model": "echo-model", "messages": [{"role": "user",
                                                                 "content": "fail"}]})
    assert status == 500
    assert_openai_error(payload, "server_error")
    assert "asked to fail" in payload["error"]["message"]
    assert post(f"{r.url}/chat/completions",
                {"model": "echo-model", "messages": [{"role": "user", "content": "y"}]})[0] == 200


def test_generation_is_serialized(running):
    backend = EchoBackend("echo-model", delay=0.03)
    r = running(backend)
    results = []

    def client(i: int) -> None:
        results.append(post(f"{r.url}/chat/completions", {
            "model": "echo-model", "messages": [{"role": "user", "content": f"m{i}"}]}))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(p["choices"][0]["message"]["content"] for _, p in results) == sorted(
        f"echo: m{i}" for i in range(8))
    assert backend.max_active == 1


def test_make_server_refuses_a_bad_limit_and_a_taken_port(running):
    with pytest.raises(FspoBenchError):
        make_server(EchoBackend("m"), port=0, max_request_bytes=0)
    taken = running().port
    with pytest.raises(FspoBenchError, match=f"cannot listen on 127.0.0.1:{taken}"):
        make_server(EchoBackend("m"), port=taken)


# --------------------------------------------------------------------------- the command


def test_serve_command_resolves_the_backend_and_serves_on_loopback(monkeypatch):
    original_get = plugins.get
    monkeypatch.setattr(plugins, "get", lambda kind, name: EchoBackend
                        if (kind, name) == ("backend", "echo-test") else original_get(kind, name))
    servers = []

    def capturing_make_server(*args, **kwargs):
        servers.append(make_server(*args, log_requests=False, **kwargs))
        return servers[-1]

    monkeypatch.setattr(serve_module, "make_server", capturing_make_server)
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test app."""

    add_serve_command(app)
    command = typer.main.get_command(app)
    outcome = {}

    def run() -> None:
        outcome["code"] = command.main(
            args=["serve", "--model", "echo-model", "--backend", "echo-test", "--port", "0",
                  "-o", "delay=0"], standalone_mode=False)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not servers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert servers, "the serve command did not start a server"
    server = servers[0]
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert isinstance(server.backend, EchoBackend) and server.backend.options == {"delay": "0"}
        port = server.server_address[1]
        status, payload = get(f"http://127.0.0.1:{port}/v1/models")
        assert status == 200 and payload["data"][0]["id"] == "echo-model"
    finally:
        time.sleep(0.1)  # let serve_forever start before asking it to stop
        server.shutdown()
        thread.join(10)
    assert not thread.is_alive() and outcome["code"] in (None, 0)


# --------------------------------------------------------------------------- litellm end to end


@pytest.fixture
def litellm_env(monkeypatch):
    pytest.importorskip("litellm")
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)


def test_litellm_generates_through_the_server(running, litellm_env):
    from fspo_bench.backends.litellm_backend import LiteLLMBackend

    r = running()
    client = LiteLLMBackend("openai/echo-model", api_base=r.url, timeout=10)
    client.check()
    chat_request = GenerationRequest(
        params=GenerationParams(max_new_tokens=40, temperature=0.5, top_p=0.9, seed=11,
                                repetition_penalty=1.3),
        messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}],
        stop=["END"])
    raw_request = GenerationRequest(params=GenerationParams(max_new_tokens=40), prompt="raw!")
    assert client.generate([chat_request, raw_request]) == ["echo: hello", "echo: raw!"]
    # The server's backend got the same requests the client was given (a raw prompt arrives as
    # one user message), in whichever order the concurrent calls arrived.
    assert len(r.backend.requests) == 3  # the preflight check, then the two requests
    assert chat_request in r.backend.requests[1:]
    assert GenerationRequest(params=raw_request.params,
                             messages=[{"role": "user", "content": "raw!"}]
                             ) in r.backend.requests[1:]
    assert client.usage.calls == 3 and client.usage.failures == 0


def test_litellm_against_the_wrong_model_name_fails_clearly(running, litellm_env):
    from fspo_bench.backends.litellm_backend import LiteLLMBackend

    r = running()
    client = LiteLLMBackend("openai/not-served", api_base=r.url, timeout=10)
    with pytest.raises(FspoBenchError, match="not-served"):
        client.generate([GenerationRequest(params=GenerationParams(max_new_tokens=4),
                                           prompt="x")])
    assert client.usage.calls == 1  # a 404 is not retried


def _hf_available() -> bool:
    try:
        import fspo_bench.backends.hf  # noqa: F401
        import tests.tiny_model  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _hf_available(), reason="the hf backend is not there yet")
def test_litellm_through_the_server_matches_the_hf_backend(running, litellm_env, tmp_path: Path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from fspo_bench.backends.hf import HFBackend
    from fspo_bench.backends.litellm_backend import LiteLLMBackend
    from tests.tiny_model import build_tiny_model

    hf = HFBackend(str(build_tiny_model(tmp_path / "tiny")))
    r = running(hf, model_name="tiny")
    client = LiteLLMBackend("openai/tiny", api_base=r.url, timeout=60)
    requests = [
        GenerationRequest(params=GenerationParams(max_new_tokens=12),
                          messages=[{"role": "system", "content": "Be brief."},
                                    {"role": "user",
                                     "content": "What should I cook for dinner tonight?"}]),
        GenerationRequest(params=GenerationParams(max_new_tokens=12, repetition_penalty=1.3),
                          messages=[{"role": "user", "content": "The quick brown fox"}]),
        GenerationRequest(params=GenerationParams(max_new_tokens=10),
                          prompt="Explain like I'm five: why is the sky blue?"),
    ]
    served = client.generate(requests)
    # What the server ran: the same requests, a raw prompt as one user message.
    direct = hf.generate([
        q if q.messages is not None else GenerationRequest(
            params=q.params, messages=[{"role": "user", "content": q.prompt}])
        for q in requests
    ])
    assert served == direct
    assert any(text.strip() for text in served)
