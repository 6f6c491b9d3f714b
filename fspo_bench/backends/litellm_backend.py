"""The ``litellm`` backend: any API provider, or any OpenAI-compatible server, through litellm.

``LiteLLMBackend(model, api_base=None, concurrency=16, timeout=60, max_retries=4, **options)``

Model strings are litellm's: ``openai/gpt-4o-2024-08-06``, ``anthropic/claude-...``, or
``openai/<name>`` with ``api_base=`` for any OpenAI-compatible server (``vllm serve``,
``fspo-bench serve``; ``<name>`` is the name that server serves).

Keys
    API keys come only from the environment (litellm reads ``OPENAI_API_KEY``,
    ``ANTHROPIC_API_KEY``, ...). An ``openai/`` model at an ``api_base`` with no
    ``OPENAI_API_KEY`` set is sent the placeholder key :data:`LOCAL_SERVER_KEY` (local servers
    take any key); it is never written anywhere. An ``api_key`` option is refused: options are
    written to run directories. Keys never appear in :meth:`~LiteLLMBackend.identity`, in
    :attr:`~LiteLLMBackend.usage` or in error messages (the value of every ``*_KEY``,
    ``*_TOKEN``, ``*_SECRET`` environment variable is scrubbed, see
    :func:`fspo_bench.safety.scrub_secrets`).

Requests
    Chat ``messages`` are sent as they are; a raw ``prompt`` is sent as one user message (chat
    APIs have no raw-completion mode; for the official raw FSPO format use the ``hf`` or ``vllm``
    backend, or serve the model with ``fspo-bench serve``). ``max_new_tokens`` becomes
    ``max_tokens``, then ``temperature``, ``top_p`` (sent only when not 1), ``stop`` (when given)
    and ``seed`` (:func:`request_seed`: the request's seed, mixed with ``sample_index`` when that is
    not 0, so repeated samples differ). ``repetition_penalty`` is not an OpenAI parameter: when
    it is not 1 it is sent in ``extra_body`` to servers given by ``api_base`` (vLLM and
    ``fspo-bench serve`` honour it) and dropped, with a warning, for hosted providers. litellm's
    ``drop_params`` is on by default, so a parameter a provider does not accept (``seed`` for
    Anthropic) is dropped rather than failing; pass ``drop_params=False`` to be strict. Other
    options (``api_version``, ``reasoning_effort``, ``extra_headers``, ...) are passed to
    ``litellm.acompletion`` as they are. A request with ``max_new_tokens=0`` returns "" without a
    call.

Concurrency, retries, timeouts
    :meth:`~LiteLLMBackend.generate` runs its requests concurrently, at most ``concurrency`` at a
    time, on one background event loop shared by all instances (so it works from synchronous code
    and from code that already runs an event loop). Each attempt has a ``timeout`` (seconds).
    Rate limits (429; ``Retry-After``/``retry-after-ms`` honoured, up to ``max_backoff``), server
    errors (5xx, 408, 409), timeouts and connection errors are retried with exponential backoff and
    jitter (``backoff`` seconds doubled per attempt, capped at ``max_backoff``), at most
    ``max_retries`` times per request; litellm's and the OpenAI client's own retries are off, so
    these counts are exact. Any other error (401, 400, unknown model, ...) fails at once. A request
    that fails ends the whole call with one FspoBenchError; its other requests are cancelled.

Usage
    :attr:`~LiteLLMBackend.usage` (a :class:`Usage`) counts API calls (every attempt), retries,
    requests that finally failed, prompt and completion tokens, and the cost in USD when litellm
    knows the model's price (0 otherwise).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import os
import random
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.errors import FspoBenchError
from fspo_bench.safety import check_litellm_version, scrub_secrets

DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
#: Extra seconds the event loop waits beyond ``timeout`` in case a provider ignores the timeout.
TIMEOUT_GRACE = 5.0
RETRY_STATUS = frozenset({408, 409, 429})

#: Options that would fight the request-level parameters or the retry loop.
_RESERVED = frozenset({
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "seed", "stop", "n", "stream", "num_retries", "api_base", "base_url",
})  # fmt: skip
#: Messages of errors that no retry can fix although litellm gives them a 5xx status.
_CONFIG_ERRORS = ("Missing credentials", "api_key client option must be set")
_KEY_OPTIONS = frozenset({"api_key", "key", "token", "access_token", "aws_secret_access_key"})
#: Sent to an OpenAI-compatible ``api_base`` when OPENAI_API_KEY is unset (not a secret).
LOCAL_SERVER_KEY = "no-key-needed"


# --------------------------------------------------------------------------- pure helpers


@dataclass
class Usage:
    """Counters of one backend, for progress displays: ``calls`` counts every API attempt."""

    calls: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def request_seed(params: GenerationParams) -> int:
    """The API seed of a request: ``seed`` itself for sample 0, else a stable 31-bit mix of
    ``(seed, sample_index)`` so that the samples of one prompt differ and still reproduce."""
    if params.sample_index == 0:
        return params.seed
    digest = hashlib.sha256(f"{params.seed}:{params.sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def completion_params(request: GenerationRequest, *, server: bool) -> dict[str, Any]:
    """The ``litellm.acompletion`` arguments of one request (without model and connection).

    ``server`` says whether the endpoint is an OpenAI-compatible server given by ``api_base``
    (which gets ``repetition_penalty`` in ``extra_body``).
    """
    p = request.params
    if request.messages is not None:
        messages = [dict(m) for m in request.messages]
    else:
        messages = [{"role": "user", "content": request.prompt}]
    kwargs: dict[str, Any] = {
        "messages": messages,
        "max_tokens": p.max_new_tokens,
        "temperature": p.temperature,
        "seed": request_seed(p),
    }
    if p.top_p != 1.0:
        kwargs["top_p"] = p.top_p
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if p.repetition_penalty != 1.0 and server:
        kwargs["extra_body"] = {"repetition_penalty": p.repetition_penalty}
    return kwargs


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: float | None = None
) -> float | None:
    """Seconds a ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` header asks for."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v).strip() for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, retry_after: float | None, base: float, cap: float,
                  rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...).

    With a server-given ``retry_after``: that (at most ``cap``) plus a little jitter. Otherwise
    exponential backoff with "equal jitter": half of ``min(cap, base * 2**(attempt-1))`` plus a
    random share of the other half.
    """
    if retry_after is not None:
        return min(retry_after, cap) + rng.uniform(0.0, min(base, 1.0) * 0.1)
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay / 2 + rng.uniform(0.0, delay / 2)


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def import_litellm() -> Any:
    """Import litellm safely: refuse known-bad releases, keep it off the network at import."""
    check_litellm_version()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError:
        raise FspoBenchError(
            "the litellm backend needs litellm: pip install 'fspo-bench[api]'"
        ) from None
    litellm.suppress_debug_info = True
    return litellm


# --------------------------------------------------------------------------- the event loop


class _LoopThread:
    """One event loop in a daemon thread, shared by every LiteLLMBackend of the process.

    litellm caches HTTP clients; running every call on the same loop keeps those clients valid,
    and lets ``generate`` be called from synchronous code and from inside another event loop.
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid() or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="fspo-bench-litellm", daemon=True
                )
                thread.start()
                cls._loop, cls._pid = loop, os.getpid()
            return cls._loop

    @classmethod
    def run(cls, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, cls.loop())
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise FspoBenchError("litellm backend: the call was cancelled") from None
        except BaseException:
            future.cancel()  # Ctrl-C in the caller stops the requests in flight too
            raise


@dataclass
class _Failure:
    retryable: bool
    status: int | None
    reason: str  # one line, secrets scrubbed
    retry_after: float | None


def _headers_of(exc: BaseException) -> Mapping[str, str] | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers:
        return headers
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers:
        return headers
    headers = getattr(exc, "headers", None)
    return headers if isinstance(headers, Mapping) else None


def _classify(exc: BaseException, litellm: Any) -> _Failure:
    """Whether an exception from litellm is worth retrying, and what to say about it."""
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    transient_types = tuple(
        t
        for t in (getattr(litellm, "Timeout", None), getattr(litellm, "APIConnectionError", None))
        if isinstance(t, type)
    ) + (TimeoutError, asyncio.TimeoutError, ConnectionError)
    message = str(exc)
    if any(marker in message for marker in _CONFIG_ERRORS):
        retryable, status = False, 401  # litellm reports a missing key as a 500
    elif isinstance(exc, transient_types):
        retryable = True
    elif status is not None:
        retryable = status in RETRY_STATUS or status >= 500
    else:
        # Transport errors that litellm did not wrap (aiohttp, httpx) are transient too.
        retryable = type(exc).__module__.split(".")[0] in ("httpx", "httpcore", "aiohttp")
    if not message:
        is_timeout = isinstance(exc, (TimeoutError, asyncio.TimeoutError))
        message = "timed out" if is_timeout else type(exc).__name__
    reason = _one_line(scrub_secrets(f"{type(exc).__name__}: {message}"))
    return _Failure(retryable, status, reason, retry_after_seconds(_headers_of(exc)))


# --------------------------------------------------------------------------- the backend


def _number(name: str, value: Any, kind: type, minimum: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise FspoBenchError(
            f"option {name} of backend 'litellm' must be a number, not {value!r}"
        ) from None
    if number < minimum:
        raise FspoBenchError(
            f"option {name} of backend 'litellm' must be >= {minimum}, not {value!r}"
        )
    return number


class LiteLLMBackend(Backend):
    name = "litellm"
    description = (
        "Any API model through litellm (OpenAI, Anthropic, ...) or any OpenAI-compatible server "
        "(vllm serve, fspo-bench serve) with api_base; concurrent, with retries and timeouts; "
        "keys from the environment only."
    )

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        concurrency: int | str = DEFAULT_CONCURRENCY,
        timeout: float | str = DEFAULT_TIMEOUT,
        max_retries: int | str = DEFAULT_MAX_RETRIES,
        backoff: float | str = DEFAULT_BACKOFF,
        max_backoff: float | str = DEFAULT_MAX_BACKOFF,
        **options: Any,
    ) -> None:
        check_litellm_version()
        keys = sorted(k for k in options if k.lower() in _KEY_OPTIONS)
        if keys:
            raise FspoBenchError(
                f"backend 'litellm' does not take {', '.join(keys)} as an option: options are "
                f"recorded in run directories; set the provider's environment variable instead "
                f"(OPENAI_API_KEY, ANTHROPIC_API_KEY, ...)"
            )
        reserved = sorted(set(options) & _RESERVED)
        if reserved:
            raise FspoBenchError(
                f"backend 'litellm' sets {', '.join(reserved)} itself (from each request's "
                f"generation parameters, or api_base); remove the option(s)"
            )
        if not model or not isinstance(model, str):
            raise FspoBenchError("backend 'litellm' needs a model string such as openai/gpt-4o")
        super().__init__(model)
        self.api_base = str(api_base).rstrip("/") if api_base else None
        self.concurrency = _number("concurrency", concurrency, int, 1)
        self.batch_size = 4 * self.concurrency  # keep every slot busy between cache commits
        self.timeout = _number("timeout", timeout, float, 0.001)
        self.max_retries = _number("max_retries", max_retries, int, 0)
        self.backoff = _number("backoff", backoff, float, 0.0)
        self.max_backoff = _number("max_backoff", max_backoff, float, 0.0)
        self.passthrough = dict(options)
        drop = self.passthrough.get("drop_params", True)
        if isinstance(drop, str):  # from the command line
            drop = drop.strip().lower() not in ("0", "false", "no", "off", "")
        self.passthrough["drop_params"] = bool(drop)
        self.usage = Usage()
        self._rng = random.Random()
        self._warned_repetition_penalty = False

    # ----------------------------------------------------------------- identity

    def status(self) -> str:
        return f"retries {self.usage.retries}, cost ${self.usage.cost:.4f}"

    def identity(self) -> dict[str, Any]:
        """Backend, model and API base, with any ``user:password@`` removed from the URL."""
        api_base = self.api_base
        if api_base:
            parts = urlsplit(api_base)
            api_base = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        return {"backend": self.name, "model": self.model, "api_base": api_base}

    @property
    def _where(self) -> str:
        return self.api_base or "the provider's default endpoint"

    # ----------------------------------------------------------------- calls

    def _kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        kwargs = completion_params(request, server=self.api_base is not None)
        extra_body = {**self.passthrough.get("extra_body", {}), **kwargs.get("extra_body", {})}
        kwargs.update({k: v for k, v in self.passthrough.items() if k != "extra_body"})
        if extra_body:
            kwargs["extra_body"] = extra_body
        kwargs.update(model=self.model, timeout=self.timeout, max_retries=0)
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if self.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = LOCAL_SERVER_KEY
        return kwargs

    async def _attempt(self, litellm: Any, kwargs: dict[str, Any]) -> tuple[Any, _Failure | None]:
        """One API call: ``(response, None)`` or ``(None, failure)``; counts the call."""
        self.usage.calls += 1
        try:
            response = await asyncio.wait_for(
                litellm.acompletion(**kwargs), timeout=self.timeout + TIMEOUT_GRACE
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return None, _classify(exc, litellm)
        self._record(litellm, response)
        return response, None

    def _record(self, litellm: Any, response: Any) -> None:
        usage = getattr(response, "usage", None)
        self.usage.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
        self.usage.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # a model without a known price costs 0 here
            cost = 0.0
        self.usage.cost += cost

    def _error(self, failure: _Failure, attempts: int) -> FspoBenchError:
        hint = ""
        if failure.status in (401, 403):
            hint = " (check the API key environment variable of this provider"
            hint += (", e.g. OPENAI_API_KEY: this server wants a real key)"
                     if self.api_base else ", e.g. OPENAI_API_KEY or ANTHROPIC_API_KEY)")
        elif failure.status == 404:
            hint = " (unknown model or wrong api_base?)"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return FspoBenchError(
            f"litellm backend: request to {self.model} at {self._where} failed{tries}: "
            f"{failure.reason}{hint}"
        )

    @staticmethod
    def _text(response: Any) -> str:
        try:
            content = response.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError):
            return ""
        return "" if content is None else str(content)

    async def _complete(self, litellm: Any, kwargs: dict[str, Any] | None) -> str:
        if kwargs is None:  # max_new_tokens == 0
            return ""
        attempt = 0
        while True:
            response, failure = await self._attempt(litellm, kwargs)
            if failure is None:
                return self._text(response)
            if not failure.retryable or attempt >= self.max_retries:
                self.usage.failures += 1
                # Raised outside any except block: no chained exception carries a raw message.
                raise self._error(failure, attempt + 1)
            attempt += 1
            self.usage.retries += 1
            await asyncio.sleep(
                backoff_delay(attempt, failure.retry_after, self.backoff, self.max_backoff,
                              self._rng)
            )

    async def _complete_all(
        self, litellm: Any, calls: Sequence[dict[str, Any] | None]
    ) -> list[str]:
        semaphore = asyncio.Semaphore(self.concurrency)
        failed = asyncio.Event()  # once a request failed, queued requests start no call

        async def one(kwargs: dict[str, Any] | None) -> str:
            async with semaphore:
                if failed.is_set():
                    return ""  # never returned: the call as a whole fails
                try:
                    return await self._complete(litellm, kwargs)
                except BaseException:
                    failed.set()
                    raise

        tasks = [asyncio.ensure_future(one(kwargs)) for kwargs in calls]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
        return [task.result() for task in tasks]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        requests = list(requests)
        if not requests:
            return []
        if self.api_base is None and not self._warned_repetition_penalty:
            penalties = {r.params.repetition_penalty for r in requests} - {1.0}
            if penalties:
                self._warned_repetition_penalty = True
                warnings.warn(
                    f"backend 'litellm': repetition_penalty is not an API parameter of "
                    f"{self.model}; {min(penalties)} is ignored",
                    stacklevel=2,
                )
        calls = [self._kwargs(r) if r.params.max_new_tokens > 0 else None for r in requests]
        litellm = import_litellm()
        return _LoopThread.run(self._complete_all(litellm, calls))

    # ----------------------------------------------------------------- preflight and cost

    def check(self, params: GenerationParams | None = None) -> None:
        """One tiny request; FspoBenchError("cannot reach MODEL at API_BASE: ...") if it fails.

        A rate-limit answer (429) counts as reachable. No retries: a preflight should be quick.
        """
        litellm = import_litellm()
        request = GenerationRequest(
            params=GenerationParams(max_new_tokens=1),
            messages=[{"role": "user", "content": "Reply with OK."}],
        )

        async def ping() -> _Failure | None:
            _, failure = await self._attempt(litellm, self._kwargs(request))
            return failure

        failure = _LoopThread.run(ping())
        if failure is not None and failure.status != 429:
            raise FspoBenchError(f"cannot reach {self.model} at {self._where}: {failure.reason}")

    def estimate_cost(self, requests: Sequence[GenerationRequest]) -> float:
        """USD upper bound: prompt tokens (litellm's counter) plus ``max_new_tokens`` each, at
        litellm's local price table; 0 for a model without a known price."""
        requests = list(requests)
        if not requests:
            return 0.0
        litellm = import_litellm()
        try:
            litellm.cost_per_token(model=self.model, prompt_tokens=1, completion_tokens=1)
        except Exception:
            return 0.0
        total = 0.0
        for request in requests:
            messages = completion_params(request, server=False)["messages"]
            try:
                prompt_tokens = litellm.token_counter(model=self.model, messages=messages)
                prompt_cost, completion_cost = litellm.cost_per_token(
                    model=self.model,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=request.params.max_new_tokens,
                )
            except Exception:
                return 0.0
            total += prompt_cost + completion_cost
        return total
