"""Reading preference rows from local files and from the Hugging Face Hub.

Every reader yields ``(row_number, row)`` pairs, row numbers counting from 1 in the order of the
source, so that each problem can be reported as ``file: row N: column C: what``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fspo_bench.errors import FspoBenchError

Rows = Iterator[tuple[int, dict[str, Any]]]
SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


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


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: invalid UTF-8 at byte {exc.start}") from None


def _object(path: Path, number: int, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{path}: row {number}: expected a JSON object, got {type(value).__name__}")
    return value


def _read_jsonl(path: Path) -> Rows:
    number = 0
    for line_number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {line_number}: malformed JSON: {exc.msg}") from None
        yield number, _object(path, number, value)


def _read_json(path: Path) -> Rows:
    try:
        value = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}: malformed JSON: {exc.msg}") from None
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a JSON list of rows, got {type(value).__name__}")
    for number, row in enumerate(value, start=1):
        yield number, _object(path, number, row)


def _read_csv(path: Path) -> Rows:
    reader = csv.DictReader(_text(path).splitlines())
    for number, row in enumerate(reader, start=1):
        yield number, dict(row)


def _read_parquet(path: Path) -> Rows:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
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
