"""SIGKILL a real ``fspo-bench run`` at five points, re-run it, and compare with a clean run.

The run generates and judges through the litellm backend against a :class:`FaultServer` (no
faults here), so every model call is an HTTP request the test counts. The kill points are made
deterministic without any test-only code in the product:

- while generating / while judging: the server leaves the requests of one model unanswered
  after a few answers (``FaultServer.stall``), and the run is killed while it waits;
- while writing ``generations.jsonl`` / ``judgments.jsonl``: the file's temporary name
  (``.NAME.tmp-PID``, :mod:`fspo_bench.rundir`) is planted as a named pipe with a 4 KiB buffer,
  and the run is killed once it is blocked in the middle of writing the file;
- while writing ``results.json``: the same pipe with no reader, killed once the run is blocked
  opening it.

After the kill the planted pipe is replaced by what a crash leaves: a partial temporary file.
The resumed run must then make exactly one request per item missing from the cache (none for
finished items) and write the same files as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fspo_bench.rundir import GENERATIONS, JUDGMENTS, RESULTS

from .api_runs import (
    GEN,
    JUDGE,
    child_env,
    cli_command,
    replying_server,
    run_args,
    run_files,
)
from .fault_server import FaultServer
from .run_fixtures import canary_count
from .test_runner import cache_rows

pytestmark = [pytest.mark.slow]
LIMIT = 6
#: Every canary goes to the judge server (none is decided by the degenerate-answer guard), so
#: every cached item is one request.
UNGUARDED = ("--judge-option", "guard=false")
QUERY_ITEMS = 4 * LIMIT  # method and reference generations, and two judgments, per query
PIPE_SIZE = 4096
DEADLINE = 90.0


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with replying_server() as started:
        yield started


@pytest.fixture(scope="module")
def clean_run(server: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run that every resumed run must match."""
    root = tmp_path_factory.mktemp("clean")
    subprocess.run(cli_command(*run_args(server, root / "run", root / "cache.sqlite",
                                         limit=LIMIT, extra=UNGUARDED)),
                   env=child_env(), capture_output=True, check=True, timeout=DEADLINE)
    return root / "run"


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"the run never got to {what}"
        time.sleep(0.01)


def blocked_in(pid: int, kernel_function: str) -> bool:
    """Whether the main thread of ``pid`` sleeps in a kernel function named like
    ``kernel_function`` (``pipe_write`` is ``anon_pipe_write`` in newer kernels)."""
    try:
        return kernel_function in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def pipe_fill(fd: int) -> int:
    buffer = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buffer)
    return int.from_bytes(buffer, "little")


class KillPoint:
    """Plants what makes the run stop at one point, waits for it there, and cleans up after the
    kill; ``partial`` is what the run had written of the file when it died."""

    def __init__(self, name: str):
        self.name = name
        self.reader: int | None = None
        self.tmp: Path | None = None

    def arm(self, server: FaultServer, run_dir: Path, pid: int) -> None:
        if self.name in ("generating", "judging"):
            server.stalled.clear()
            server.stall(GEN if self.name == "generating" else JUDGE, after=5)
            return
        self.tmp = run_dir / f".{self.name.removeprefix('writing ')}.tmp-{pid}"
        os.mkfifo(self.tmp)
        if self.name != f"writing {RESULTS}":
            self.reader = os.open(self.tmp, os.O_RDONLY | os.O_NONBLOCK)
            fcntl.fcntl(self.reader, fcntl.F_SETPIPE_SZ, PIPE_SIZE)

    def wait(self, server: FaultServer, pid: int) -> None:
        if self.tmp is None:
            wait_for(server.stalled.is_set, self.name)
        elif self.reader is None:
            wait_for(lambda: blocked_in(pid, "wait_for_partner"), self.name)
        else:  # a full pipe: the writer is blocked with the rest of the file
            wait_for(lambda: pipe_fill(self.reader) == PIPE_SIZE, self.name)
            wait_for(lambda: blocked_in(pid, "pipe_write"), self.name)

    def after_kill(self, server: FaultServer) -> bytes:
        server.stall(GEN, None)
        server.stall(JUDGE, None)
        if self.tmp is None:
            return b""
        partial = os.read(self.reader, PIPE_SIZE) if self.reader is not None else b""
        if self.reader is not None:
            os.close(self.reader)
        self.tmp.unlink()
        self.tmp.write_bytes(partial)  # what a crash in the middle of the write leaves
        return partial


@pytest.mark.parametrize("point", ["generating", "judging", f"writing {GENERATIONS}",
                                   f"writing {JUDGMENTS}", f"writing {RESULTS}"])
def test_a_run_killed_at_any_point_resumes_to_the_clean_result(point, server, clean_run,
                                                               tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    run_dir.mkdir()
    args = cli_command(*run_args(server, run_dir, cache, limit=LIMIT, extra=UNGUARDED))
    before = len(server.work())
    child = subprocess.Popen(args, env=child_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    kill_point = KillPoint(point)
    try:
        kill_point.arm(server, run_dir, child.pid)
        kill_point.wait(server, child.pid)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    partial = kill_point.after_kill(server)
    finished = cache_rows(cache)
    killed_requests = len(server.work()) - before
    assert not (run_dir / RESULTS).exists()
    if kill_point.tmp is not None:
        assert stat.S_ISREG(kill_point.tmp.stat().st_mode)
        assert point.endswith(RESULTS) or len(partial) == PIPE_SIZE

    resumed = subprocess.run(args, env=child_env(), capture_output=True, text=True,
                             timeout=DEADLINE)
    assert resumed.returncode == 0, resumed.stderr
    # and the judge's canary verdicts, cached like the others
    canaries = canary_count(clean_run)
    items = QUERY_ITEMS + canaries
    resume_requests = len(server.work()) - before - killed_requests
    print(f"\n[kill while {point}] finished items at the kill {finished}/{items}; requests: "
          f"killed run {killed_requests}, resumed run {resume_requests} "
          f"(redone unfinished items: {killed_requests + resume_requests - items}); "
          f"partial file {len(partial)} bytes")
    assert resume_requests == items - finished  # nothing finished is asked again
    assert cache_rows(cache) == items
    assert run_files(run_dir) == run_files(clean_run)
