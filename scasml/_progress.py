"""Progress of a loop over chunks: a live bar on a terminal, plain rate-limited lines anywhere else.

The convention is that of tqdm and rich: when the stream is a terminal the bar is redrawn in place (``\\r``,
at most every ``refresh`` seconds); when it is not (a log file, a pipe, CI) each report is one complete line,
written at most every ``interval`` seconds plus the last one, so a log reads top to bottom without control
characters.

The ETA ignores the first step that ran in this process: that step compiles the program and is not
representative of the others. The ETA is computed from the rate of the steps after it (``?`` until a second
step has finished).
"""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """``update(done)`` reports ``done`` of ``total`` steps; ``close()`` ends the report.

    ``skipped`` steps (already finished in an earlier, interrupted run) count as done but not towards the ETA.
    ``stream`` defaults to ``sys.stderr``; ``live`` (default: whether the stream is a terminal) selects the
    in-place bar. ``interval`` is the least time between two plain lines, ``refresh`` between two redraws of
    the live bar (the first and the last update are always shown). ``clock`` is for tests.
    """

    def __init__(self, label: str, total: int, enabled: bool = True, skipped: int = 0, width: int = 30, *,
                 stream=None, live: bool | None = None, interval: float = 10.0, refresh: float = 0.1,
                 clock=time.perf_counter):
        self.label, self.total, self.enabled, self.width = label, max(total, 1), enabled, width
        self.skipped, self.done = skipped, skipped
        self.stream = sys.stderr if stream is None else stream
        self.live = _is_terminal(self.stream) if live is None else live
        self.interval, self.refresh, self.clock = interval, refresh, clock
        self.start = clock()
        self.first: tuple[float, int] | None = None  # (time, done) when the first (compiling) step finished
        self.last_shown: float | None = None
        self.shown_done: int | None = None
        self.drawn = False  # the live bar is on screen (close ends its line)
        self.closed = False
        if enabled and self.live:
            self._show(self.start)

    # ---- what is reported -------------------------------------------------------------------------------------
    def eta(self, now: float) -> float | None:
        """Seconds left, from the steps after the first one of this process (None until there are some)."""
        if self.first is None:
            return None
        t1, n1 = self.first
        steps = self.done - n1
        if steps <= 0:
            return None
        return (now - t1) / steps * (self.total - self.done)

    def text(self, now: float, note: str = "") -> str:
        elapsed = now - self.start
        eta = self.eta(now)
        eta_text = "?" if eta is None else f"{eta:.1f} s"
        counts = f"{self.done}/{self.total}"
        if self.live:
            bar = "#" * int(self.width * self.done / self.total)
            line = f"[{self.label}] {bar:<{self.width}} {counts}  {elapsed:6.1f} s  eta {eta_text:>8}"
        else:
            line = (f"[{self.label}] {counts} ({100 * self.done / self.total:.0f} %)  elapsed {elapsed:.1f} s  "
                    f"eta {eta_text}")
        return line + (f"  {note}" if note else "")

    # ---- reporting ------------------------------------------------------------------------------------------
    def update(self, done: int, note: str = "") -> None:
        if not self.enabled or self.closed:
            return
        now = self.clock()
        if self.first is None and done > self.skipped:
            self.first = (now, done)
        self.done = done
        final = done >= self.total
        if self.last_shown is None or final:
            self._show(now, note)
            return
        wait = self.refresh if self.live else self.interval
        if now - self.last_shown >= wait:
            self._show(now, note)

    def _show(self, now: float, note: str = "") -> None:
        line = self.text(now, note)
        if self.live:
            self.stream.write("\r" + line + "\x1b[K")  # erase what a longer previous line left
            self.drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_shown, self.shown_done = now, self.done

    def close(self) -> None:
        if not self.enabled or self.closed:
            return
        self.closed = True
        if self.live:
            if self.drawn:
                self.stream.write("\n")
                self.stream.flush()
        elif self.shown_done != self.done:  # the last step fell inside the rate limit: report where it ended
            self._show(self.clock())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
