"""A full run through a faulty OpenAI-compatible server, and a load test of the judge path
(docs/reliability.md).

The model and the pairwise judge both run through the litellm backend against a
:class:`FaultServer` on loopback (tests/fault_server.py). With 30% of the requests answered by a
500, a 429 with ``Retry-After``, a hang past the timeout, a dropped connection or a completion
without a verdict, the run must complete with the same scores as a fault-free run, count every
invalid verdict, retry a bounded number of times, and score only verdicts the server gave.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from fspo_bench.cache import ResponseCache
from fspo_bench.judge import Comparison
from fspo_bench.judges.pairwise import PairwiseJudge
from fspo_bench.records import User
from fspo_bench.rundir import JUDGMENTS, read_result
from fspo_bench.runner import StageCount, cached_judge

from .api_runs import (
    GEN,
    JUDGE,
    PLANTED_KEY,
    UNDECIDED,
    needs_litellm,
    read_jsonl,
    reply,
    reply_sometimes_undecided,
    requests_per_body,
    run_args,
    verdicts_match_server,
)
from .fault_server import FAULTS, GARBAGE, FaultServer, FaultServerProcess
from .run_fixtures import canary_count, run_cli

LIMIT = 8
BACKEND_ATTEMPTS = 5  # the litellm backend's default max_retries (4) plus one
JUDGE_ATTEMPTS = 3  # the pairwise judge's default max_retries (2) plus one
HANG_TIMEOUT = 3.0  # seconds a client waits for a hanging answer (the server hangs for 5)


@pytest.fixture
def servers(monkeypatch) -> Iterator[Callable[..., FaultServer]]:
    needs_litellm()
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    started: list[FaultServer] = []

    def start(**options) -> FaultServer:
        started.append(FaultServer(**options))
        return started[-1]

    yield start
    for server in started:
        server.close()


def test_a_run_with_30_percent_faults_completes_with_the_fault_free_scores(servers, tmp_path):
    faulty = servers(fault_rate=0.3, salt="fspo", reply=reply_sometimes_undecided)
    clean = servers(reply=reply_sometimes_undecided)
    for server, name in ((faulty, "faulty"), (clean, "clean")):
        code = run_cli(*run_args(server, tmp_path / name, tmp_path / f"{name}.sqlite",
                                 limit=LIMIT, concurrency=4, timeout=HANG_TIMEOUT))
        assert code == 0
    (result,), (expected,) = (read_result(tmp_path / n).results for n in ("faulty", "clean"))
    assert result == expected  # every fault absorbed, no verdict changed

    judgments = read_jsonl(tmp_path / "faulty" / JUDGMENTS)
    verdicts_match_server(judgments, faulty)
    invalid = [j for j in judgments if not j["valid"]]
    assert result.n_invalid == len(invalid) > 0
    for j in invalid:  # always undecided, sometimes a faulty parseless answer in between
        assert UNDECIDED in j["meta"]["completions"]
        assert set(j["meta"]["completions"]) <= {UNDECIDED, GARBAGE}
    assert all(j["meta"]["attempts"] == JUDGE_ATTEMPTS for j in invalid)

    actions = Counter(e.action for e in faulty.work())
    assert set(FAULTS) <= set(actions)
    share = 1 - actions["ok"] / sum(actions.values())
    per_body = {model: requests_per_body(faulty, model) for model in (GEN, JUDGE)}
    assert max(max(counts.values()) for counts in per_body.values()) <= BACKEND_ATTEMPTS
    samples = Counter(e.body["messages"][-1]["content"] for e in faulty.work(JUDGE)
                      if e.action == "ok" or e.action == "garbage")
    # the judge's canaries reach the server too, except the degenerate ones its guard decides
    canaries = canary_count(tmp_path / "faulty", ("other_user",))
    assert len(samples) == 2 * LIMIT + canaries and max(samples.values()) <= JUDGE_ATTEMPTS
    assert (sum(per_body[JUDGE].values())
            <= (2 * LIMIT + canaries) * JUDGE_ATTEMPTS * BACKEND_ATTEMPTS)
    print(f"\n[30% faults] {faulty.hits} requests ({sum(per_body[GEN].values())} generation, "
          f"{sum(per_body[JUDGE].values())} judge, the rest preflight), {share:.0%} faulted: "
          f"{dict(sorted(actions.items()))}; most requests for one body "
          f"{max(max(c.values()) for c in per_body.values())} (bound {BACKEND_ATTEMPTS}); "
          f"invalid verdicts {result.n_invalid}/{2 * LIMIT}, each after {JUDGE_ATTEMPTS} "
          f"parseless completions; winrate {result.winrate:.1f} = fault-free run")


# --------------------------------------------------------------------------- load


def peak_rss_while(work: Callable[[], object]) -> tuple[object, int, int]:
    """``work()``'s value, the process's RSS before it and its peak during it (bytes), sampled
    every 20 ms."""
    psutil = pytest.importorskip("psutil")
    process = psutil.Process()
    before = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        value = work()
    finally:
        done.set()
        sampler.join()
    return value, before, max(peak, process.memory_info().rss)


@pytest.mark.slow
def test_5000_judge_calls_at_concurrency_64(tmp_path, monkeypatch):
    needs_litellm()
    server = FaultServerProcess(reply=reply, delay=0.05)  # 50 ms: a fast model's latency
    user = User("load-user", "The user likes short answers.", {})

    def judge_all(n: int, concurrency: int, cache: ResponseCache) -> float:
        judge = PairwiseJudge(model=f"openai/{JUDGE}", api_base=server.api_base,
                              concurrency=concurrency, timeout=30)
        comparisons = [Comparison(user, f"Question {concurrency}-{i}?",
                                  f"The first answer, number {i}.",
                                  f"The second answer, number {i}.", {"domain": "load"})
                       for i in range(n)]
        count = StageCount("judge")
        started = time.monotonic()
        judgments = cached_judge(judge, comparisons, cache, count, lambda *a, **k: None)
        seconds = time.monotonic() - started
        assert count.new == n and all(j.valid for j in judgments)
        return n / seconds

    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    try:
        with ResponseCache(tmp_path / "cache.sqlite") as cache:
            sequential = judge_all(50, 1, cache)
            concurrent, before, peak = peak_rss_while(lambda: judge_all(5000, 64, cache))
            assert len(cache) == 5050
        requests, in_flight = server.stats()
    finally:
        server.close()
    assert requests == 5050
    assert 32 <= in_flight <= 64
    ratio = concurrent / sequential
    mib = 2 ** 20
    print(f"\n[load] 5000 judge calls at concurrency 64: {concurrent:.0f} judgments/s; "
          f"50 at concurrency 1: {sequential:.1f} judgments/s; ratio {ratio:.1f}x; most "
          f"requests in flight {in_flight}; RSS {before / mib:.0f} MiB before, peak "
          f"{peak / mib:.0f} MiB (+{(peak - before) / mib:.0f} MiB)")
    assert ratio > 1.5
    assert peak - before < 512 * mib


def test_a_finished_run_re_runs_with_its_servers_down(servers, tmp_path):
    """Every item cached: no preflight, no request, exit 0, the same files."""
    server = servers(reply=reply)
    args = run_args(server, tmp_path / "run", tmp_path / "cache.sqlite", limit=2)
    assert run_cli(*args) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    hits = server.hits
    server.close()  # both the model and the judge server are gone
    assert run_cli(*args) == 0
    assert server.hits == hits
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
