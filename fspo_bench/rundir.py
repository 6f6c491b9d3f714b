"""Reading and writing run directories (docs/runs.md). Every file is written whole or not at all."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from fspo_bench.errors import FspoBenchError
from fspo_bench.records import Generation, Judgment, Record, RunResult

CONFIG, GENERATIONS, JUDGMENTS, RESULTS = (
    "config.json", "generations.jsonl", "judgments.jsonl", "results.json")
PREFACC = "preference_accuracy.json"
CANARIES = "judge_canaries.json"
#: The files a run records the digest of in config.json's ``files`` as it writes them.
RECORDED = (GENERATIONS, JUDGMENTS, PREFACC, CANARIES)
LOCK = ".fspo-bench.lock"
R = TypeVar("R", bound=Record)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of ``path`` that writers killed mid-write left behind (their
    process is gone); POSIX only, where signal 0 probes a process without touching it."""
    if os.name != "posix":
        return
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    """Write a temporary file next to ``path`` and rename it into place: a reader sees the old
    file or the new one, never half of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise FspoBenchError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_json(path: Path, value: Any) -> None:
    _atomic_write(path, json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def write_records(path: Path, records: Iterable[Record]) -> None:
    _atomic_write(path, "".join(r.to_json() + "\n" for r in records))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FspoBenchError(f"{path}: missing (is this a run directory?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FspoBenchError(f"{path}: not valid JSON: {exc}") from None


def read_records(path: Path, kind: type[R]) -> list[R]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FspoBenchError(f"{path}: missing (is this a run directory?)") from None
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(kind.from_json(line))
        except (ValueError, TypeError, KeyError) as exc:
            raise FspoBenchError(f"{path}: line {number}: not a {kind.__name__}: {exc}") from None
    return records


def read_generations(run_dir: Path) -> list[Generation]:
    return read_records(run_dir / GENERATIONS, Generation)


def read_judgments(run_dir: Path) -> list[Judgment]:
    return read_records(run_dir / JUDGMENTS, Judgment)


def read_result(run_dir: Path) -> RunResult:
    return RunResult.from_dict(read_json(run_dir / RESULTS))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def claimed(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock (the hidden file :data:`LOCK` in it) while writing it: a
    second fspo-bench process that tries is one FspoBenchError, so two runs never write one
    directory at once. A directory created here and left with nothing but the lock (the run
    failed before writing anything) is removed again."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise FspoBenchError(f"cannot write {run_dir}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FspoBenchError(f"{run_dir} is in use by another fspo-bench process; wait for "
                                 "it or use another --out") from None
        yield
    finally:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK]:
            (run_dir / LOCK).unlink()
            run_dir.rmdir()
        os.close(fd)


def check_files(run_dir: Path, config: dict[str, Any]) -> None:
    """Every file config.json records is there and is the file the run wrote; one
    FspoBenchError naming the first that is not (files of different runs mixed in one
    directory, or a file edited by hand). Runs from before files were recorded pass."""
    for name, digest in (config.get("files") or {}).items():
        path = run_dir / name
        if not path.is_file():
            raise FspoBenchError(f"{path}: missing, though config.json records it")
        if file_digest(path) != digest:
            raise FspoBenchError(f"{path}: not the file this run wrote (config.json records "
                                 "another digest): files of different runs, or edited by hand?")
