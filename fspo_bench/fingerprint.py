"""Content fingerprints of model and adapter folders, for cache keys."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from fspo_bench.errors import FspoBenchError

_hash_cache: dict[tuple[str, int, int, int], str] = {}
_hash_lock = threading.Lock()


def _file_sha256(path: Path, stat: os.stat_result) -> str:
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    with _hash_lock:
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` over the relative names, sizes and SHA-256 of every file in ``folder``.

    Files are streamed in 1 MiB chunks; hidden files and folders (names starting with ``.``,
    such as ``.cache`` or ``.git``) are skipped. A file's hash is cached in this process for as
    long as its size, modification time and inode stay the same, so calling this again costs a
    few ``stat`` calls.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FspoBenchError(f"cannot fingerprint {root}: no such folder")
    entries = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        stat = path.stat()
        entries.append(f"{rel.as_posix()}\0{stat.st_size}\0{_file_sha256(path, stat)}\n")
    return "sha256:" + hashlib.sha256("".join(entries).encode("utf-8")).hexdigest()
