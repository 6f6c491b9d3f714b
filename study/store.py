"""The study database: one SQLite file with participants, their stated preferences and ratings.

Participants are known only by the SHA-256 of their invitation token (the token itself is never
stored), so the file cannot be used to impersonate anyone. Every write is its own committed
transaction, so a participant resumes exactly where they stopped, even after a server restart.
The first answer to an item is kept: a re-submitted form (back button, double click) changes
nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fspo_bench.errors import FspoBenchError

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{20,64}")
TOKEN_BYTES = 18

_SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    key       TEXT PRIMARY KEY NOT NULL,  -- sha256(token)
    csrf      TEXT NOT NULL,              -- per-participant form token
    created   TEXT NOT NULL,
    consented TEXT,                       -- when they agreed to the consent text
    error     TEXT                        -- why their comparisons could not be prepared
);
CREATE TABLE IF NOT EXISTS shots (
    participant TEXT NOT NULL REFERENCES participants(key),
    idx         INTEGER NOT NULL,
    question_id TEXT NOT NULL,
    question    TEXT NOT NULL,
    chosen      TEXT NOT NULL,
    rejected    TEXT NOT NULL,
    shown_first TEXT NOT NULL,            -- 'chosen' or 'rejected': what was shown as A
    answered    TEXT NOT NULL,
    PRIMARY KEY (participant, idx)
);
CREATE TABLE IF NOT EXISTS tasks (
    participant TEXT NOT NULL REFERENCES participants(key),
    idx         INTEGER NOT NULL,         -- the order the participant rates them in
    question_id TEXT NOT NULL,
    question    TEXT NOT NULL,
    method      TEXT NOT NULL,
    reference   TEXT NOT NULL,
    method_first INTEGER NOT NULL,        -- 1 when the method's response is shown as A
    text_a      TEXT NOT NULL,
    text_b      TEXT NOT NULL,
    winner      TEXT,                     -- 'a', 'b', 'tie'; NULL until rated
    answered    TEXT,
    PRIMARY KEY (participant, idx)
);
"""


def token_key(token: str) -> str:
    """What the database stores for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def participant_id(key: str) -> str:
    """The participant's id in exports: a prefix of the token hash."""
    return key[:16]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Participant:
    key: str
    csrf: str
    consented: str | None
    error: str | None

    @property
    def id(self) -> str:
        return participant_id(self.key)


@dataclass(frozen=True)
class ShotAnswer:
    """One stated preference: ``chosen`` was picked over ``rejected``."""

    idx: int
    question_id: str
    question: str
    chosen: str
    rejected: str
    shown_first: str


@dataclass(frozen=True)
class Task:
    """One blinded pair to rate; ``winner`` is None until rated."""

    idx: int
    question_id: str
    question: str
    method: str
    reference: str
    method_first: bool
    text_a: str
    text_b: str
    winner: str | None = None


class StudyStore:
    """The study database; thread-safe (one connection, one lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), isolation_level=None,
                                         check_same_thread=False, timeout=30)
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise FspoBenchError(f"cannot open the study database {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _write(self, sql: str, params: tuple = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    # ------------------------------------------------------------------ participants

    def invite(self) -> str:
        """A new participant; returns their token (shown once, never stored)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._write("INSERT INTO participants (key, csrf, created) VALUES (?, ?, ?)",
                    (token_key(token), secrets.token_urlsafe(TOKEN_BYTES), _now()))
        return token

    def participant(self, token: str) -> Participant | None:
        """The participant a token belongs to; None for a malformed or unknown token."""
        if not TOKEN_PATTERN.fullmatch(token):
            return None
        rows = self._rows("SELECT key, csrf, consented, error FROM participants WHERE key = ?",
                          (token_key(token),))
        return Participant(*rows[0]) if rows else None

    def participant_keys(self) -> list[str]:
        return [row[0] for row in self._rows("SELECT key FROM participants ORDER BY created, key")]

    def consent(self, key: str) -> None:
        self._write("UPDATE participants SET consented = ? WHERE key = ? AND consented IS NULL",
                    (_now(), key))

    def set_error(self, key: str, error: str | None) -> None:
        self._write("UPDATE participants SET error = ? WHERE key = ?", (error, key))

    # ------------------------------------------------------------------ stated preferences

    def add_shot(self, key: str, answer: ShotAnswer) -> bool:
        """Store a stated preference; False if that item was already answered."""
        return self._write(
            "INSERT OR IGNORE INTO shots (participant, idx, question_id, question, chosen, "
            "rejected, shown_first, answered) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, answer.idx, answer.question_id, answer.question, answer.chosen,
             answer.rejected, answer.shown_first, _now())) == 1

    def shots(self, key: str) -> list[ShotAnswer]:
        rows = self._rows("SELECT idx, question_id, question, chosen, rejected, shown_first "
                          "FROM shots WHERE participant = ? ORDER BY idx", (key,))
        return [ShotAnswer(*row) for row in rows]

    # ------------------------------------------------------------------ ratings

    def add_tasks(self, key: str, tasks: list[Task]) -> None:
        """Store the participant's pairs to rate, all at once (ignored if already stored)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                exists = self._conn.execute("SELECT 1 FROM tasks WHERE participant = ? LIMIT 1",
                                            (key,)).fetchone()
                if not exists:
                    self._conn.executemany(
                        "INSERT INTO tasks (participant, idx, question_id, question, method, "
                        "reference, method_first, text_a, text_b) VALUES (?,?,?,?,?,?,?,?,?)",
                        [(key, t.idx, t.question_id, t.question, t.method, t.reference,
                          int(t.method_first), t.text_a, t.text_b) for t in tasks])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def tasks(self, key: str) -> list[Task]:
        rows = self._rows("SELECT idx, question_id, question, method, reference, method_first, "
                          "text_a, text_b, winner FROM tasks WHERE participant = ? ORDER BY idx",
                          (key,))
        return [Task(*row[:5], bool(row[5]), *row[6:]) for row in rows]

    def rate(self, key: str, idx: int, winner: str) -> bool:
        """Store a rating ('a', 'b' or 'tie'); False if that pair was already rated."""
        if winner not in ("a", "b", "tie"):
            raise ValueError(f"a rating is 'a', 'b' or 'tie', not {winner!r}")
        return self._write("UPDATE tasks SET winner = ?, answered = ? WHERE participant = ? "
                           "AND idx = ? AND winner IS NULL", (winner, _now(), key, idx)) == 1
