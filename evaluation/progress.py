"""A dependency-free progress line for long evaluation work (DESIGN §6: long work shows progress)."""

from __future__ import annotations

import sys
import time
from typing import Self


class Progress:
    """``with Progress("embed", total) as p: p.update(n)`` prints at most every ``every`` seconds to stderr."""

    def __init__(self, label: str, total: int, every: float = 10.0, stream=None, enabled: bool = True) -> None:
        self.label, self.total, self.every = label, max(int(total), 0), every
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.done = 0
        self.start = self.last = time.monotonic()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self.total:
            self._print(final=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= self.every:
            self.last = now
            self._print()

    def _print(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        tail = f"done in {elapsed:.0f} s" if final else f"{elapsed:.0f} s, eta {eta:.0f} s"
        print(f"[{self.label}] {self.done}/{self.total} ({tail})", file=self.stream, flush=True)
