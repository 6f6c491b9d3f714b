"""The litellm backend against real HTTP servers on loopback (offline, fast).

A scripted stdlib server (tests/fault_server.py) plays the faults (500, 429 with Retry-After, a
hang past the timeout, a dropped connection, 401 echoing the key) so retries, timeouts,
concurrency and secret scrubbing are checked end to end through litellm and the OpenAI client.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator

import pytest

from fspo_bench import FspoBenchError, GenerationParams, GenerationRequest
from fspo_bench.backends.litellm_backend import (
    LiteLLMBackend,
    Usage,
    backoff_delay,
    completion_params,
    request_seed,
    retry_after_seconds,
)

from .fault_server import FaultServer

PLANTED_KEY = "sk-test-PLANTED-1234"


def test_importing_the_api_modules_imports_no_heavy_library():
    code = (
        "import sys\n"
        "import fspo_bench.backends.litellm_backend, fspo_bench.backends.vllm_backend\n"
        "import fspo_bench.serve\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('litellm', 'vllm', 'openai', 'torch', 'transformers')]\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- pure helpers


def chat(content: str, **params) -> GenerationRequest:
    params.setdefault("max_new_tokens", 8)
    return GenerationRequest(params=GenerationParams(**params),
                             messages=[{"role": "user", "content": content}])


def test_completion_params_map_generation_params():
    request = GenerationRequest(
        params=GenerationParams(max_new_tokens=7, temperature=0.5, top_p=0.9, seed=3,
                                repetition_penalty=1.2),
        prompt="raw text", stop=["\n\n", "###"])
    kwargs = completion_params(request, server=True)
    assert kwargs == {
        "messages": [{"role": "user", "content": "raw text"}],
        "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["\n\n", "###"],
        "extra_body": {"repetition_penalty": 1.2},
    }
    hosted = completion_params(request, server=False)
    assert "extra_body" not in hosted
    plain = completion_params(chat("hi"), server=True)
    assert plain == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                     "temperature": 0.0, "seed": 0}  # top_p 1, no stop, no penalty: not sent


def test_request_seed_keeps_sample_zero_and_separates_samples():
    assert request_seed(GenerationParams(seed=5)) == 5
    seeds = {request_seed(GenerationParams(seed=5, sample_index=i)) for i in range(1, 50)}
    assert len(seeds) == 49 and all(0 <= s < 2**31 for s in seeds)
    assert request_seed(GenerationParams(seed=5, sample_index=1)) == request_seed(
        GenerationParams(seed=5, sample_index=1))


def test_retry_after_parsing():
    assert retry_after_seconds({"Retry-After": "0"}) == 0.0
    assert retry_after_seconds({"retry-after": "2.5"}) == 2.5
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"},
                               now=1445412480.0) == 10.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


def test_backoff_is_exponential_capped_and_jittered():
    rng = random.Random(0)
    for attempt in range(1, 8):
        delay = backoff_delay(attempt, None, base=1.0, cap=10.0, rng=rng)
        expected = min(10.0, 2.0 ** (attempt - 1))
        assert expected / 2 <= delay <= expected
    assert backoff_delay(3, 0.0, base=1.0, cap=10.0, rng=rng) <= 0.1
    assert 10.0 <= backoff_delay(1, 500.0, base=1.0, cap=10.0, rng=rng) <= 10.1


def test_options_that_could_hold_keys_or_fight_requests_are_refused():
    with pytest.raises(FspoBenchError, match="environment variable"):
        LiteLLMBackend("openai/gpt-4o-2024-08-06", api_key=PLANTED_KEY)
    with pytest.raises(FspoBenchError, match="temperature"):
        LiteLLMBackend("openai/gpt-4o-2024-08-06", temperature=1.0)
    with pytest.raises(FspoBenchError, match="concurrency"):
        LiteLLMBackend("openai/gpt-4o-2024-08-06", concurrency=0)


def test_identity_names_backend_model_and_api_base_only():
    backend = LiteLLMBackend("openai/gpt-4o-2024-08-06")
    assert backend.identity() == {"backend": "litellm", "model": "openai/gpt-4o-2024-08-06",
                                  "api_base": None}
    local = LiteLLMBackend("openai/tiny", api_base="http://127.0.0.1:8000/v1/")
    assert local.identity()["api_base"] == "http://127.0.0.1:8000/v1"


# --------------------------------------------------------------------------- a scripted server


@pytest.fixture
def litellm_env(monkeypatch):
    pytest.importorskip("litellm")
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)


@pytest.fixture
def scripted(litellm_env) -> Iterator[callable]:
    servers = []

    def start(script=(), delay: float = 0.0) -> FaultServer:
        server = FaultServer(script, delay)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def backend_for(server: FaultServer, **options) -> LiteLLMBackend:
    options.setdefault("timeout", 0.5)
    options.setdefault("backoff", 0.01)
    return LiteLLMBackend("openai/test-model", api_base=server.api_base, **options)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("fault", ["500", "429", "hang", "close"])
def test_a_transient_fault_is_retried_once_then_succeeds(scripted, fault):
    server = scripted([fault])
    backend = backend_for(server)
    assert backend.generate([chat("hello")]) == ["ok:hello"]
    assert server.hits == 2
    assert backend.usage == Usage(calls=2, retries=1, failures=0, prompt_tokens=3,
                                  completion_tokens=2, cost=0.0)


def test_every_transient_fault_in_a_row_still_ends_in_success(scripted):
    server = scripted(["500", "429", "hang", "close"])
    backend = backend_for(server)  # max_retries 4: exactly enough
    assert backend.generate([chat("again")]) == ["ok:again"]
    assert server.hits == 5
    assert (backend.usage.calls, backend.usage.retries, backend.usage.failures) == (5, 4, 0)


def test_retry_after_is_honoured_instead_of_backoff(scripted):
    server = scripted(["429", "429"])
    backend = backend_for(server, backoff=5.0)  # backoff would wait 2.5 s + 5 s
    start = time.monotonic()
    assert backend.generate([chat("rate")]) == ["ok:rate"]
    assert time.monotonic() - start < 2.0
    assert backend.usage.retries == 2


def test_a_server_that_always_fails_ends_after_max_retries_plus_one_attempts(scripted):
    server = scripted(["500"] * 50)
    backend = backend_for(server)
    with pytest.raises(FspoBenchError) as info:
        backend.generate([chat("doomed")])
    assert server.hits == 5  # default max_retries=4
    assert (backend.usage.calls, backend.usage.retries, backend.usage.failures) == (5, 4, 1)
    assert "after 5 attempts" in str(info.value)
    assert server.api_base in str(info.value)


def test_max_retries_zero_means_one_attempt(scripted):
    server = scripted(["500"] * 50)
    with pytest.raises(FspoBenchError):
        backend_for(server, max_retries=0).generate([chat("once")])
    assert server.hits == 1


@pytest.mark.parametrize("status", ["400", "404"])
def test_client_errors_fail_at_once(scripted, status):
    server = scripted([status] * 5)
    backend = backend_for(server)
    with pytest.raises(FspoBenchError, match=status):
        backend.generate([chat("bad")])
    assert server.hits == 1 and backend.usage.retries == 0 and backend.usage.failures == 1


def test_concurrency_limit_is_respected_and_order_kept(scripted):
    server = scripted(delay=0.05)
    backend = backend_for(server, concurrency=4)
    requests = [chat(f"q{i}") for i in range(20)]
    assert backend.generate(requests) == [f"ok:q{i}" for i in range(20)]
    assert server.hits == 20
    assert 2 <= server.max_in_flight <= 4  # concurrent, but never more than 4 at once
    assert backend.usage.calls == 20 and backend.usage.prompt_tokens == 60


def test_one_fatal_request_fails_the_call_with_one_error(scripted):
    server = scripted(["ok", "401"], delay=0.0)
    backend = backend_for(server, concurrency=1)
    with pytest.raises(FspoBenchError, match="401"):
        backend.generate([chat("a"), chat("b"), chat("c")])
    assert server.hits == 2  # the third request never ran


# --------------------------------------------------------------------------- secrets


def test_a_planted_key_never_leaks(scripted):
    server = scripted(["401"])
    backend = backend_for(server)
    with pytest.raises(FspoBenchError) as info:
        backend.generate([chat("secret?")])
    error = info.value
    formatted = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for text in (str(error), repr(error), formatted, json.dumps(backend.identity()),
                 json.dumps(backend.usage.to_dict()), repr(backend.usage)):
        assert PLANTED_KEY not in text
    assert "[redacted]" in str(error)  # the echoed key was there and was scrubbed
    assert "401" in str(error) and "OPENAI_API_KEY" in str(error)
    assert error.__cause__ is None and error.__context__ is None
    assert server.hits == 1


# --------------------------------------------------------------------------- requests


def test_usage_counts_the_cost_of_a_priced_model(scripted):
    import litellm

    server = scripted()
    backend = LiteLLMBackend("openai/gpt-4o-2024-08-06", api_base=server.api_base, timeout=5)
    backend.generate([chat("a"), chat("b")])
    prompt_cost, completion_cost = litellm.cost_per_token(
        model="gpt-4o-2024-08-06", prompt_tokens=3, completion_tokens=2)
    assert backend.usage.cost == pytest.approx(2 * (prompt_cost + completion_cost))
    assert backend.usage.cost > 0
    assert (backend.usage.prompt_tokens, backend.usage.completion_tokens) == (6, 4)


def test_estimate_cost_is_an_upper_bound_from_the_local_price_table(litellm_env):
    priced = LiteLLMBackend("openai/gpt-4o-2024-08-06")
    small, large = chat("hello", max_new_tokens=10), chat("hello", max_new_tokens=1000)
    assert 0 < priced.estimate_cost([small]) < priced.estimate_cost([large])
    assert priced.estimate_cost([small, small]) == pytest.approx(2 * priced.estimate_cost([small]))
    assert LiteLLMBackend("openai/no-such-model", api_base="http://127.0.0.1:1/v1"
                          ).estimate_cost([small]) == 0.0


def test_parameters_reach_the_server(scripted):
    server = scripted()
    backend = backend_for(server)
    request = GenerationRequest(
        params=GenerationParams(max_new_tokens=7, temperature=0.5, top_p=0.9, seed=11,
                                repetition_penalty=1.3),
        prompt="raw prompt", stop=["END"])
    assert backend.generate([request]) == ["ok:raw prompt"]
    body = server.bodies[0]
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "user", "content": "raw prompt"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        7, 0.5, 0.9, 11)
    assert body["stop"] == ["END"] and body["repetition_penalty"] == 1.3


def test_zero_max_new_tokens_makes_no_call(scripted):
    server = scripted()
    backend = backend_for(server)
    assert backend.generate([chat("x", max_new_tokens=0)]) == [""]
    assert server.hits == 0 and backend.usage.calls == 0


def test_generate_works_from_inside_a_running_event_loop(scripted):
    server = scripted()
    backend = backend_for(server)

    async def caller():
        return backend.generate([chat("nested")])

    assert asyncio.run(caller()) == ["ok:nested"]


# --------------------------------------------------------------------------- preflight


def test_check_passes_for_a_live_server_and_rate_limits(scripted):
    server = scripted(["429"])
    backend = backend_for(server)
    backend.check()  # a 429 means reachable
    backend.check()
    assert server.hits == 2 and server.bodies[1]["max_tokens"] == 1


def test_check_names_model_and_api_base_of_an_unreachable_server(litellm_env):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api_base = f"http://127.0.0.1:{port}/v1"
    backend = LiteLLMBackend("openai/nowhere", api_base=api_base, timeout=2, backoff=5.0)
    start = time.monotonic()
    with pytest.raises(FspoBenchError) as info:
        backend.check()
    assert str(info.value).startswith(f"cannot reach openai/nowhere at {api_base}: ")
    assert time.monotonic() - start < 2.0  # no retries, no backoff in the preflight


def test_a_local_server_needs_no_key(scripted, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server = scripted()
    assert backend_for(server).generate([chat("hello?")]) == ["ok:hello?"]
    [exchange] = server.exchanges
    assert exchange.authorization == "Bearer no-key-needed"  # a placeholder, not a secret
