"""Tests for fspo_bench.cache, on real SQLite files in tmp_path."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from fspo_bench.cache import (
    SCHEMA_VERSION,
    CacheStats,
    ResponseCache,
    cache_key,
    default_cache_path,
)
from fspo_bench.errors import FspoBenchError


def gen_request(prompt: str = "Hello", sample: int = 0, **extra) -> dict:
    request = {
        "kind": "generate",
        "backend": "transformers",
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "revision": "7ae557604adf67be50417f59c2c2f167def9a775",
        "messages": [{"role": "user", "content": prompt}],
        "params": {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 64},
        "seed": 1234,
        "sample_index": sample,
    }
    request.update(extra)
    return request


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------- keys


def test_key_is_independent_of_dict_order(tmp_path):
    a = {"kind": "judge", "model": "m", "params": {"temperature": 0.0, "max_tokens": 5}}
    b = {"params": {"max_tokens": 5, "temperature": 0.0}, "model": "m", "kind": "judge"}
    assert list(a) != list(b)
    assert cache_key(a) == cache_key(b)
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put(a, {"winner": "a"})
        assert cache.get(b) == {"winner": "a"}
        assert b in cache
        assert len(cache) == 1


def test_sample_index_and_other_fields_change_the_key(tmp_path):
    base = gen_request(sample=0)
    assert cache_key(gen_request(sample=1)) != cache_key(base)
    assert cache_key(gen_request(seed=1235)) != cache_key(base)
    assert cache_key(gen_request(prompt="Hello!")) != cache_key(base)
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put(gen_request(sample=0), {"text": "first sample"})
        cache.put(gen_request(sample=1), {"text": "second sample"})
        assert cache.get(gen_request(sample=0)) == {"text": "first sample"}
        assert cache.get(gen_request(sample=1)) == {"text": "second sample"}
        assert cache.get(gen_request(sample=2)) is None
        assert len(cache) == 2


def test_key_rejects_non_mapping_requests():
    with pytest.raises(TypeError):
        cache_key("already-a-key")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cache_key({"kind": "generate", "stop": {"a", "b"}})  # sets are not JSON


# ---------------------------------------------------------------------------------------- values


def test_round_trip_of_nested_values(tmp_path):
    value = {
        "text": 'Voilà — ünïcödé, emoji 🙂, quotes " and \\ and\nnewlines',
        "tokens": [1, 2, 3],
        "logprobs": [-0.25, -1.5e-9, float("-inf")],
        "meta": {"finish_reason": "stop", "usage": {"prompt": 12, "completion": 3}},
        "flags": [True, False, None],
        "empty": {"list": [], "dict": {}, "str": ""},
        "z_first": 1,
        "a_second": 2,
    }
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put(gen_request(), value)
        got = cache.get(gen_request())
    assert got == value
    assert list(got) == list(value)  # the value's own key order is kept
    # Scalars and lists are values too.
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put({"kind": "loglik", "i": 1}, -12.75)
        cache.put({"kind": "loglik", "i": 2}, [[-1.0, -2.0], [-3.0]])
        cache.put({"kind": "judge", "i": 3}, "a")
        assert cache.get({"kind": "loglik", "i": 1}) == -12.75
        assert cache.get({"kind": "loglik", "i": 2}) == [[-1.0, -2.0], [-3.0]]
        assert cache.get({"kind": "judge", "i": 3}) == "a"


def test_put_rejects_none_and_non_json_values(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(ValueError):
            cache.put(gen_request(), None)
        with pytest.raises(TypeError):
            cache.put(gen_request(), {"obj": object()})
        assert len(cache) == 0
        assert cache.stats.writes == 0


def test_second_put_of_same_key_keeps_the_first_value(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put(gen_request(), {"text": "first"})
        cache.put(gen_request(), {"text": "second"})
        assert cache.get(gen_request()) == {"text": "first"}
        assert len(cache) == 1
        assert cache.stats.writes == 1  # the ignored put is not a write
    with ResponseCache(path) as cache:  # and a later process cannot replace it either
        cache.put(gen_request(), {"text": "third"})
        assert cache.get(gen_request()) == {"text": "first"}


def test_row_holds_kind_canonical_request_and_timestamp(tmp_path):
    path = tmp_path / "c.sqlite"
    request = gen_request()
    with ResponseCache(path) as cache:
        cache.put(request, {"text": "x"})
        cache.put({"no_kind": True}, 1)
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT key, kind, request, value, created FROM responses").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    by_key = {row[0]: row for row in rows}
    key, kind, request_json, value_json, created = by_key[cache_key(request)]
    assert kind == "generate"
    assert request_json == (
        '{"backend":"transformers","kind":"generate","messages":[{"content":"Hello",'
        '"role":"user"}],"model":"Qwen/Qwen2.5-0.5B-Instruct","params":{"max_new_tokens":64,'
        '"temperature":0.7,"top_p":0.95},"revision":"7ae557604adf67be50417f59c2c2f167def9a775",'
        '"sample_index":0,"seed":1234}'
    )
    assert value_json == '{"text":"x"}'
    assert created.startswith("20") and created.endswith("+00:00")
    assert by_key[cache_key({"no_kind": True})][1] is None
    assert mode == "wal"
    assert version == SCHEMA_VERSION


# ---------------------------------------------------------------------------------------- API


def test_persistence_across_reopen(tmp_path):
    path = tmp_path / "deep" / "er" / "c.sqlite"  # parent folders are created
    with ResponseCache(path) as cache:
        for i in range(20):
            cache.put(gen_request(sample=i), {"text": f"sample {i}"})
    assert path.is_file()
    with ResponseCache(path) as cache:
        assert len(cache) == 20
        assert [cache.get(gen_request(sample=i)) for i in range(20)] == [
            {"text": f"sample {i}"} for i in range(20)
        ]
        assert cache.stats == CacheStats(hits=20, misses=0, writes=0)


def test_stats_counting(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.stats == CacheStats(0, 0, 0)
        assert cache.get(gen_request(sample=0)) is None
        cache.put(gen_request(sample=0), "a")
        cache.put(gen_request(sample=0), "again")
        cache.put(gen_request(sample=1), "b")
        assert cache.get(gen_request(sample=0)) == "a"
        assert cache.get(gen_request(sample=1)) == "b"
        assert cache.get(gen_request(sample=2)) is None
        cache.get_many([gen_request(sample=0), gen_request(sample=5), gen_request(sample=0)])
        _ = gen_request(sample=0) in cache  # membership tests are not lookups
        len(cache)
        stats = cache.stats
        assert stats == CacheStats(hits=4, misses=3, writes=2)
        stats.hits = 100  # a snapshot, not the live counters
        assert cache.stats.hits == 4


def test_get_many(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.get_many([]) == []
        for i in range(0, 1200, 2):  # more than one chunk of the IN (...) query
            cache.put(gen_request(sample=i), {"i": i})
        requests = [gen_request(sample=i) for i in reversed(range(1200))]
        requests.append(gen_request(sample=4))  # duplicates are answered too
        got = cache.get_many(iter(requests))  # any iterable
        assert got[:-1] == [{"i": i} if i % 2 == 0 else None for i in reversed(range(1200))]
        assert got[-1] == {"i": 4}
        assert cache.stats.hits == 601 and cache.stats.misses == 600


def test_contains_len_close_and_context_manager(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    assert len(cache) == 0
    assert gen_request() not in cache
    assert "not a request" not in cache
    cache.put(gen_request(), "x")
    assert gen_request() in cache
    assert len(cache) == 1
    assert str(path) in repr(cache)
    cache.close()
    cache.close()  # idempotent
    with pytest.raises(ValueError):
        cache.get(gen_request())
    with ResponseCache(path) as again:
        assert again.get(gen_request()) == "x"
    with pytest.raises(ValueError):
        len(again)


def test_default_cache_path(monkeypatch, tmp_path):
    monkeypatch.setenv("FSPO_BENCH_CACHE", str(tmp_path / "mine.sqlite"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "mine.sqlite"
    monkeypatch.delenv("FSPO_BENCH_CACHE")
    assert default_cache_path() == tmp_path / "xdg" / "fspo-bench" / "cache.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "fspo-bench" / "cache.sqlite"
    assert default_cache_path() == expected
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the XDG spec: ignored
    assert default_cache_path() == expected


# ---------------------------------------------------------------------------------------- threads


def test_threads_share_one_cache(tmp_path):
    n_threads, n_own, n_shared = 8, 60, 40
    cache = ResponseCache(tmp_path / "c.sqlite")
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []
    seen_shared: list[dict[int, str]] = [{} for _ in range(n_threads)]

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(max(n_own, n_shared)):
                if i < n_own:
                    own = gen_request(prompt=f"thread {t}", sample=i)
                    cache.put(own, f"t{t}-i{i}")
                    assert cache.get(own) == f"t{t}-i{i}"
                if i < n_shared:  # every thread writes the same keys, each its own value
                    shared = gen_request(prompt="shared", sample=i)
                    cache.put(shared, f"from-{t}")
                    seen_shared[t][i] = cache.get(shared)
                    assert shared in cache
            mine = [gen_request(prompt=f"thread {t}", sample=i) for i in range(n_own)]
            got = cache.get_many(mine)
            assert got == [f"t{t}-i{i}" for i in range(n_own)]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(cache) == n_threads * n_own + n_shared
    assert cache.stats.writes == n_threads * n_own + n_shared
    for i in range(n_shared):
        final = cache.get(gen_request(prompt="shared", sample=i))
        assert final in {f"from-{t}" for t in range(n_threads)}
        # INSERT OR IGNORE: the first writer's value is what every thread read back.
        assert {seen_shared[t][i] for t in range(n_threads)} == {final}
    cache.close()


# ---------------------------------------------------------------------------------------- processes
# Child-process targets live at module level so that the 'spawn' context can import them.


def _child_put_items(path: str, worker: int, n: int, start) -> None:
    start.wait(30)
    with ResponseCache(path) as cache:
        for i in range(n):
            cache.put(gen_request(prompt=f"worker {worker}", sample=i), {"w": worker, "i": i})


def _child_put_then_sigkill(path: str, n: int) -> None:
    cache = ResponseCache(path)
    for i in range(n):
        cache.put(gen_request(prompt="before the kill", sample=i), {"i": i})
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit, no flush


def test_two_processes_write_the_same_file(tmp_path):
    path = tmp_path / "shared.sqlite"  # does not exist yet: both processes create it at once
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_child_put_items, args=(str(path), w, 200, start)) for w in (0, 1)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    with ResponseCache(path) as cache:
        assert len(cache) == 400
        requests = [gen_request(prompt=f"worker {w}", sample=i) for w in (0, 1) for i in range(200)]
        expected = [{"w": w, "i": i} for w in (0, 1) for i in range(200)]
        assert cache.get_many(requests) == expected


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_writes_committed_before_sigkill_survive(tmp_path):
    path = tmp_path / "killed.sqlite"
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_child_put_then_sigkill, args=(str(path), 25))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == -signal.SIGKILL
    with ResponseCache(path) as cache:
        assert len(cache) == 25
        got = cache.get_many([gen_request(prompt="before the kill", sample=i) for i in range(25)])
        assert got == [{"i": i} for i in range(25)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_cache_inherited_through_fork_opens_its_own_connection(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put(gen_request(sample=0), "parent")
    pid = os.fork()
    if pid == 0:  # child: use the inherited object, then leave without running pytest's exit
        code = 1
        try:
            ok = cache.get(gen_request(sample=0)) == "parent"
            cache.put(gen_request(sample=1), "child")
            cache.close()
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get(gen_request(sample=1)) == "child"  # the parent's connection still works
    cache.close()


# ---------------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "content",
    [
        b"this is a text file, not a database\n" * 40,
        b"SQLite format 3\x00" + bytes(range(256)) * 20,  # right magic, garbage after it
        b"SQLite format 3\x00\x10",  # truncated header
    ],
    ids=["text", "garbage-after-magic", "truncated"],
)
def test_corrupt_file_is_refused_and_left_untouched(tmp_path, content):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(content)
    with pytest.raises(FspoBenchError) as info:
        ResponseCache(path)
    message = str(info.value)
    assert str(path) in message
    assert "move it aside" in message.lower()
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.sqlite"]


def test_corruption_inside_a_cache_is_reported_not_repaired(tmp_path):
    path = tmp_path / "cache.sqlite"
    with ResponseCache(path) as cache:
        for i in range(300):
            cache.put(gen_request(sample=i), "x" * 500)
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page : 6 * page] = bytes(range(256)) * (4 * page // 256)  # garble table pages
    path.write_bytes(bytes(data))
    digest = file_digest(path)
    with pytest.raises(FspoBenchError) as info:
        with ResponseCache(path) as cache:  # page 1 is intact, so opening may succeed ...
            cache.get_many([gen_request(sample=i) for i in range(300)])  # ... reading fails
    assert str(path) in str(info.value)
    assert "move it aside" in str(info.value).lower()
    assert file_digest(path) == digest


def test_other_sqlite_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('ada')")
    conn.commit()
    conn.close()
    digest = file_digest(path)
    with pytest.raises(FspoBenchError, match="not an fspo-bench cache") as info:
        ResponseCache(path)
    assert str(path) in str(info.value)
    assert file_digest(path) == digest


def test_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "cache.sqlite"
    with ResponseCache(path) as cache:
        cache.put(gen_request(), "x")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    digest = file_digest(path)
    with pytest.raises(FspoBenchError, match="newer") as info:
        ResponseCache(path)
    assert str(path) in str(info.value)
    assert file_digest(path) == digest


def test_directory_path_is_refused(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(FspoBenchError, match="directory") as info:
        ResponseCache(folder)
    assert str(folder) in str(info.value)
    assert list(folder.iterdir()) == []


def test_parent_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(FspoBenchError) as info:
        ResponseCache(blocker / "cache.sqlite")
    assert str(blocker) in str(info.value)
    assert blocker.read_text() == "a file where a folder should be"


def _open_error(path: Path, as_uid: int | None) -> str:
    """Try to open a cache at ``path`` (as ``as_uid`` in a forked child if given); the error."""
    if as_uid is None:
        try:
            ResponseCache(path).close()
        except FspoBenchError as exc:
            return str(exc)
        return "OPENED"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgid(as_uid)
            os.setuid(as_uid)
            try:
                ResponseCache(path).close()
                message = "OPENED"
            except FspoBenchError as exc:
                message = str(exc)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                message = f"UNEXPECTED {exc!r}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
def test_read_only_location_is_refused(tmp_path, existing):
    # Root ignores permission bits, so as root the attempt runs in a child that drops to nobody
    # (pytest's tmp_path is private to root, hence a world-traversable temporary folder).
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="fspo-ro-")) if as_root else tmp_path
    folder = base / "ro"
    folder.mkdir()
    path = folder / "cache.sqlite"
    try:
        if existing:
            with ResponseCache(path) as cache:
                cache.put(gen_request(), "x")
            path.chmod(0o444)
        base.chmod(0o755)
        folder.chmod(0o555)
        before = sorted(p.name for p in folder.iterdir())
        message = _open_error(path, 65534 if as_root else None)
        assert "read-only" in message, message
        assert str(path) in message
        assert sorted(p.name for p in folder.iterdir()) == before
    finally:
        folder.chmod(0o755)
        if as_root:
            shutil.rmtree(base)
