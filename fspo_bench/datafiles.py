"""Reading preference rows from local files and from the Hugging Face Hub.

Every reader yields ``(row_number, row)`` pairs, row numbers counting from 1 in the order of the
source, so that each problem can be reported as ``file: row N: column C: what``.

Local files are read exactly: only a regular file is opened (a FIFO or a device is refused
before it can block or stream forever), its size is checked against :data:`MAX_FILE_BYTES`
before it is read, a UTF-8 byte order mark is accepted, JSONL is split on ``"\n"`` only (a text
may hold U+2028 or U+0085), and CSV goes through :mod:`csv` whole, so a newline inside a quoted
field is kept. What cannot be parsed (JSON nested past the interpreter's recursion limit, an
integer of more digits than Python converts) is one :class:`DataError` naming the line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fspo_bench.errors import FspoBenchError

Rows = Iterator[tuple[int, dict[str, Any]]]
SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
#: Longest text a row may hold (characters): far above any real preference, small enough that a
#: runaway or hostile row cannot blow up every prompt it would be a shot of. It is also the CSV
#: field limit.
MAX_TEXT_CHARS = 1_000_000
#: Largest local data file read (bytes); the whole file is held in memory while it is parsed.
MAX_FILE_BYTES = 1 << 30
FILE_KINDS = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device",
              stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


class DataError(FspoBenchError):
    """A data file that cannot be read, or rows that fail validation in strict mode."""


def read_rows(path: str | Path) -> Rows:
    """Rows of a local ``.jsonl``, ``.json`` (a list of objects), ``.parquet`` or ``.csv`` file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected one of {', '.join(SUFFIXES)}")
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet,
               ".csv": _read_csv}
    if suffix not in readers:
        raise DataError(f"{path}: unsupported file type {suffix!r}, expected {', '.join(SUFFIXES)}")
    return readers[suffix](path)


def _bytes(path: Path) -> bytes:
    """The whole content of a regular file of at most :data:`MAX_FILE_BYTES`."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = next((k for test, k in FILE_KINDS.items() if test(info.st_mode)), "special")
            raise DataError(f"{path}: is {kind}, not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise DataError(f"{path}: {info.st_size:,} bytes; at most {MAX_FILE_BYTES:,} are read")
        # Non-blocking: should a FIFO take the file's place, opening it does not wait for a writer.
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{path}: grew past {MAX_FILE_BYTES:,} bytes while it was read")
    return data


def _text(path: Path) -> str:
    data = _bytes(path)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: invalid UTF-8 at byte {exc.start}") from None


def _json(path: Path, text: str, line: int | None = None) -> Any:
    """``json.loads``, every failure one DataError (the line: ``line``, else the error's)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {line or exc.lineno}: malformed JSON: {exc.msg}") from None
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:  # an integer of more digits than int() converts
        reason = str(exc).split(";")[0]  # without the hint to raise the interpreter's limit
    where = f"line {line}: " if line else ""
    raise DataError(f"{path}: {where}malformed JSON: {reason}")


def _object(path: Path, number: int, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{path}: row {number}: expected a JSON object, got {type(value).__name__}")
    return value


def _read_jsonl(path: Path) -> Rows:
    number = 0
    for line_number, line in enumerate(_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        number += 1
        yield number, _object(path, number, _json(path, line, line_number))


def _read_json(path: Path) -> Rows:
    value = _json(path, _text(path))
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a JSON list of rows, got {type(value).__name__}")
    for number, row in enumerate(value, start=1):
        yield number, _object(path, number, row)


def _read_csv(path: Path) -> Rows:
    csv.field_size_limit(MAX_TEXT_CHARS)
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    try:
        yield from enumerate(reader, start=1)
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.reader.line_num}: malformed CSV: {exc}") from None


def _read_parquet(path: Path) -> Rows:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading parquet needs pyarrow: pip install pyarrow") from None
    data = _bytes(path)
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:
        raise DataError(f"{path}: not a readable parquet file: {exc}") from None
    yield from enumerate(table.to_pylist(), start=1)


def read_hub_rows(hub_id: str, split: str = "train") -> Rows:
    """Rows of a dataset through ``datasets.load_dataset(hub_id, split=split)``.

    ``hub_id`` is a Hub id or anything ``load_dataset`` accepts, such as a local folder of
    parquet or JSONL files in the same columns (which is how the tests exercise this path).
    """
    try:
        import datasets
    except ImportError:
        raise DataError("--data hub needs the datasets package: pip install datasets") from None
    try:
        dataset = datasets.load_dataset(hub_id, split=split)
    except Exception as exc:
        raise DataError(
            f"cannot load dataset {hub_id!r} (split {split!r}): {type(exc).__name__}: {exc}. "
            "Without access to the Hub use --data builtin or --data PATH"
        ) from None
    yield from enumerate(dataset, start=1)


def write_rows(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as ``.jsonl``, ``.json``, ``.parquet`` or ``.csv`` (nested values as JSON).

    The file appears whole or not at all: it is written next to its target, then renamed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}, expected {', '.join(SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp)
        elif suffix == ".csv":
            with tmp.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
                writer.writeheader()
                for row in rows:
                    writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v
                                     for k, v in row.items()})
        elif suffix == ".json":
            tmp.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        else:
            with tmp.open("w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
