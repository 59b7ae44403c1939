"""A one-line progress bar with elapsed time and ETA, drawn on stderr."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """``update(done)`` redraws ``[label] #####----- done/total  elapsed  eta``; ``close()`` ends the line.

    ``skipped`` items (already finished in an earlier, interrupted run) count as done but not towards the ETA.
    """

    def __init__(self, label: str, total: int, enabled: bool = True, skipped: int = 0, width: int = 30):
        self.label, self.total, self.enabled, self.width = label, max(total, 1), enabled, width
        self.skipped = skipped
        self.start = time.perf_counter()
        self.update(skipped)

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        fresh = done - self.skipped
        eta = f"eta {elapsed / fresh * (self.total - done):6.1f}s" if fresh > 0 else "eta     ?"
        bar = "#" * int(self.width * done / self.total)
        line = f"\r[{self.label}] {bar:<{self.width}} {done}/{self.total}  {elapsed:6.1f}s  {eta}"
        print(line + (f"  {note}" if note else ""), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)
