"""Progress of long stages: rich bars on a terminal, a plain line per batch otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any


class StageProgress:
    """A callable ``(stage, done, total)`` that the runner reports to after every batch."""

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._bars: Any = None
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, status: str = "") -> None:
        if self.interactive:
            self._bar(stage, done, total, status)
            return
        start = self._started.setdefault(stage, time.monotonic())
        if done == 0 and total:
            return
        rate = done / max(time.monotonic() - start, 1e-9)
        extra = f"; {status}" if status else ""
        print(f"fspo-bench: {stage}: {done}/{total} ({rate:.2f}/s{extra})", file=self.stream,
              flush=True)

    def _bar(self, stage: str, done: int, total: int, status: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self._bars is None:
            self._bars = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                                  console=Console(file=self.stream))
            self._bars.start()
        if stage not in self._tasks:
            self._tasks[stage] = self._bars.add_task(stage, total=total, status=status)
        self._bars.update(self._tasks[stage], completed=done, total=total, status=status)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
