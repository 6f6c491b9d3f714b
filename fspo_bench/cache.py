"""The response cache: every model call's result, keyed by a hash of the canonical request.

One SQLite file (stdlib ``sqlite3``, WAL journal) holds generations, judge verdicts and
log-likelihoods. A killed run resumes where it stopped because every result is committed the
moment it is stored; a finished run re-run costs zero model calls because every request it makes
is already in the file.

The key
-------
``cache_key(request)`` is the SHA-256 of the canonical JSON of the *whole* request, so the
request dict is the contract between a backend (or judge) and the cache:

* Two requests that differ in anything that can change the output MUST differ in the dict: kind
  (``"generate"``, ``"judge"``, ``"loglik"``, ...), backend, model id and pinned revision, the
  full prompt or chat messages (not a hash of a template name), every decoding parameter
  (temperature, top_p, max tokens, stop strings, ...), the seed and the sample index (so that N
  sampled generations of one prompt are N distinct, cacheable entries); for judges also the judge
  model, the template text or its hash, and the order in which the two responses are shown.
  Whatever is left out is silently shared between requests that differ in it.
* Keep types stable: JSON tells ``1`` from ``1.0`` and ``true`` from ``1``, so ``temperature=1``
  and ``temperature=1.0`` are different keys. Normalize before building the request.
* Secrets (API keys, tokens, authorization headers, private endpoints with credentials) must
  NEVER be in the request: it is stored verbatim in the file, for debugging and audits, and the
  file is meant to be shareable.

The stored values are JSON: what ``get`` returns is the JSON-decoded value (tuples come back as
lists, non-string dict keys as strings). ``None`` cannot be stored, because ``get`` uses it for a
miss; wrap such results in a dict.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fspo_bench.errors import FspoBenchError
from fspo_bench.hashing import canonical_json, stable_hash

__all__ = [
    "SCHEMA_VERSION",
    "CacheStats",
    "ResponseCache",
    "cache_key",
    "default_cache_path",
]

#: Version of the table layout, stored in the file as ``PRAGMA user_version``.
SCHEMA_VERSION = 1
#: Marks the file as an fspo-bench cache (``PRAGMA application_id``; ASCII "FSPO").
APPLICATION_ID = 0x4653504F
#: How long a statement waits for another process's write lock before failing. Writes are tiny
#: (one row), so this is only reached when something holds the file for a very long time.
BUSY_TIMEOUT_S = 30.0
#: ``get_many`` looks keys up in chunks of this many (well under SQLite's variable limit).
_CHUNK = 500
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key     TEXT PRIMARY KEY NOT NULL,  -- stable_hash(request)
    kind    TEXT,                       -- request.get("kind"), for audits
    request TEXT NOT NULL,              -- canonical JSON of the request
    value   TEXT NOT NULL,              -- JSON of the result
    created TEXT NOT NULL               -- ISO 8601, UTC
)
"""


def cache_key(request: Mapping[str, Any]) -> str:
    """The cache key of a request: ``stable_hash`` of its canonical JSON (key order is irrelevant).

    ``request`` is the whole canonical request; see the module docstring for what it must hold
    (everything that can change the output) and what it must never hold (secrets).
    """
    if not isinstance(request, Mapping):
        raise TypeError(f"a cache request must be a mapping, not {type(request).__name__}")
    return stable_hash(request)


def default_cache_path() -> Path:
    """Where the cache lives unless told otherwise.

    ``$FSPO_BENCH_CACHE`` if set, else ``($XDG_CACHE_HOME or ~/.cache)/fspo-bench/cache.sqlite``.
    """
    explicit = os.environ.get("FSPO_BENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fspo-bench" / "cache.sqlite"


@dataclass
class CacheStats:
    """Counters of one ``ResponseCache`` object (not of the file).

    ``hits``/``misses`` count looked-up requests (``get`` and each item of ``get_many``);
    ``writes`` counts rows actually inserted (a ``put`` of a key already present is not a write).
    """

    hits: int = 0
    misses: int = 0
    writes: int = 0


class ResponseCache:
    """A persistent, process- and thread-safe map from canonical requests to JSON results.

    Threads: the object holds ONE connection (``check_same_thread=False``) and serializes all
    use of it with a lock. SQLite allows one writer at a time anyway, a lookup or a one-row insert
    takes microseconds against model calls of milliseconds to minutes, and a single connection
    can be closed reliably by ``close()`` from any thread, whereas per-thread connections
    (``threading.local``) would stay open in pool threads that ``close()`` cannot reach.

    Processes: the file is in WAL mode, so readers never block the writer and vice versa, and
    every connection waits up to ``BUSY_TIMEOUT_S`` for another process's write lock. Each
    process must open its own ``ResponseCache``; an object inherited through ``fork()`` notices
    and opens a fresh connection in the child (SQLite connections must not cross a fork).

    Durability: every ``put`` is its own committed transaction, so killing the process (even
    with SIGKILL) loses at most the item being written. ``synchronous=NORMAL`` is used: safe
    against process crashes; a power loss can lose the last few commits but never corrupts
    the file.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(os.fspath(path)).expanduser()
        self._lock = threading.Lock()
        self._stats = CacheStats()
        self._closed = False
        self._pid = os.getpid()
        self._conn: sqlite3.Connection = self._open()
        _INSTANCES.add(self)

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if path.is_dir():
            raise FspoBenchError(
                f"the cache path {path} is a directory; give the path of a file, "
                f"for example {path / 'cache.sqlite'}"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FspoBenchError(
                f"cannot create the folder {path.parent} for the cache file {path}: "
                f"{exc.strerror or exc}"
            ) from exc
        if path.exists():
            self._check_header()
        # SQLite needs to create -wal/-shm files next to the database, so the folder must be
        # writable as well as the file.
        if not os.access(path.parent, os.W_OK | os.X_OK) or (
            path.exists() and not os.access(path, os.R_OK | os.W_OK)
        ):
            raise self._read_only_error()

        try:
            conn = sqlite3.connect(
                str(path),
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # autocommit: each statement is its own transaction
                check_same_thread=False,  # one connection shared by threads, under self._lock
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc
        try:
            self._init_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_header(self) -> None:
        """Refuse a non-empty file that is not SQLite, before SQLite ever touches it."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise FspoBenchError(
                f"cannot read the cache file {self.path}: {exc.strerror or exc}"
            ) from exc
        if head and head != _SQLITE_MAGIC:
            raise self._corrupt_error("it is not an SQLite database")

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        # Only reads until the file is known to be ours and not newer than this code.
        try:
            app_id, version, tables = self._read_header(conn)
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc
        self._check_version(app_id, version, tables)
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise FspoBenchError(
                    f"cannot switch the cache file {self.path} to WAL mode (SQLite kept "
                    f"{mode!r}); put the cache on a local disk (set FSPO_BENCH_CACHE)"
                )
            conn.execute("PRAGMA synchronous=NORMAL")
            if version == 0:
                # IMMEDIATE takes the write lock now, so two processes creating the same new
                # file do it one after the other; the second then sees version 1 and skips.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    app_id, version, tables = self._read_header(conn)
                    self._check_version(app_id, version, tables)
                    if version == 0:
                        conn.execute(_SCHEMA)
                        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc

    @staticmethod
    def _read_header(conn: sqlite3.Connection) -> tuple[int, int, list[str]]:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return app_id, version, tables

    def _check_version(self, app_id: int, version: int, tables: list[str]) -> None:
        foreign = app_id not in (0, APPLICATION_ID) or (
            app_id == 0 and (version != 0 or bool(tables))
        )
        if foreign:
            raise FspoBenchError(
                f"{self.path} is an SQLite database but not an fspo-bench cache; it was left "
                f"untouched. Give another path (set FSPO_BENCH_CACHE)"
            )
        if version > SCHEMA_VERSION:
            raise FspoBenchError(
                f"the cache file {self.path} has schema version {version}, newer than this "
                f"fspo-bench understands ({SCHEMA_VERSION}); upgrade fspo-bench or use another "
                f"cache file (set FSPO_BENCH_CACHE)"
            )

    # ------------------------------------------------------------------ errors

    def _corrupt_error(self, detail: str) -> FspoBenchError:
        return FspoBenchError(
            f"the cache file {self.path} is corrupt or not an fspo-bench cache ({detail}); it "
            f"was left untouched. Move it aside (together with any {self.path.name}-wal and "
            f"{self.path.name}-shm next to it), e.g. `mv {self.path} {self.path}.bad`, and run "
            f"again to start a fresh cache"
        )

    def _read_only_error(self, detail: str = "") -> FspoBenchError:
        extra = f" ({detail})" if detail else ""
        return FspoBenchError(
            f"the cache file {self.path} is in a read-only location{extra}: the file and its "
            f"folder {self.path.parent} must be writable; fix the permissions or set "
            f"FSPO_BENCH_CACHE to a writable path"
        )

    def _error(self, exc: sqlite3.Error, action: str) -> FspoBenchError:
        """Turn an SQLite error into one the user can act on, naming the file."""
        msg = str(exc)
        low = msg.lower()
        if "readonly" in low or "read-only" in low:
            return self._read_only_error(msg)
        if "locked" in low or "busy" in low:
            return FspoBenchError(
                f"the cache file {self.path} stayed locked by another process for more than "
                f"{BUSY_TIMEOUT_S:g} s ({action}: {msg})"
            )
        if "unable to open" in low:
            return FspoBenchError(
                f"cannot open the cache file {self.path} ({msg}); check that its folder exists "
                f"and is writable, or set FSPO_BENCH_CACHE"
            )
        if not isinstance(exc, sqlite3.OperationalError):
            # Plain DatabaseError: "file is not a database", "database disk image is malformed".
            return self._corrupt_error(msg)
        return FspoBenchError(f"cache file {self.path}: {action} failed: {msg}")

    # ------------------------------------------------------------------ connection

    def _connection(self) -> sqlite3.Connection:
        """The connection, checked; call with ``self._lock`` held."""
        if self._closed:
            raise ValueError(f"the response cache {self.path} is closed")
        if os.getpid() != self._pid:
            # Inherited through fork(): never use (or close) the parent's connection here.
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """Run one statement; call with ``self._lock`` held."""
        conn = self._connection()
        try:
            return conn.execute(sql, tuple(params))
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in the caller or in this module, not a problem with the file
        except sqlite3.Error as exc:
            raise self._error(exc, sql.split()[0].lower()) from exc

    # ------------------------------------------------------------------ public API

    def get(self, request: Mapping[str, Any]) -> Any | None:
        """The stored value for ``request`` (JSON-decoded), or None on a miss."""
        key = cache_key(request)
        with self._lock:
            row = self._execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            if row is None:
                self._stats.misses += 1
                return None
            self._stats.hits += 1
        return json.loads(row[0])

    def get_many(self, requests: Iterable[Mapping[str, Any]]) -> list[Any | None]:
        """``[get(r) for r in requests]`` in a few queries; order kept, None for misses."""
        keys = [cache_key(r) for r in requests]
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._execute(
                    f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update(rows)
            hits = sum(1 for k in keys if k in found)
            self._stats.hits += hits
            self._stats.misses += len(keys) - hits
        decoded = {k: json.loads(v) for k, v in found.items()}
        return [decoded.get(k) for k in keys]

    def put(self, request: Mapping[str, Any], value: Any) -> None:
        """Store ``value`` (JSON-able, not None) for ``request``, committed at once.

        If the key is already present the FIRST value is kept (INSERT OR IGNORE): results are
        deterministic given the key, and the stored one may already have been used downstream.
        """
        if value is None:
            raise ValueError("None cannot be cached (get() returns None for a miss); wrap it")
        key = cache_key(request)
        request_json = canonical_json(request)
        # Not canonical_json: keep the value's own key order. TypeError for a non-JSON-able value.
        value_json = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        kind = request.get("kind")
        if kind is not None and not isinstance(kind, str):
            kind = canonical_json(kind)
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._lock:
            cur = self._execute(
                "INSERT OR IGNORE INTO responses (key, kind, request, value, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, kind, request_json, value_json, created),
            )
            if cur.rowcount == 1:
                self._stats.writes += 1

    def __contains__(self, request: object) -> bool:
        if not isinstance(request, Mapping):
            return False
        key = cache_key(request)
        with self._lock:
            row = self._execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        with self._lock:
            return self._execute("SELECT count(*) FROM responses").fetchone()[0]

    @property
    def stats(self) -> CacheStats:
        """A snapshot of this object's counters."""
        with self._lock:
            return replace(self._stats)

    def close(self) -> None:
        """Close the connection; idempotent. Later use raises ValueError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if os.getpid() == self._pid:
                self._conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ResponseCache {str(self.path)!r} ({state})>"


# A threading.Lock copied by fork() may be held forever by a thread that does not exist in the
# child: give every live cache a fresh lock there (the child is single-threaded at this point).
# The connection itself is replaced lazily, on first use in the child (see _connection).
_INSTANCES: weakref.WeakSet[ResponseCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_INSTANCES):
        cache._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
