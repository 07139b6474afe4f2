"""The pipeline's progress report, readable over a run of hours: clips done of all, failures so
far, clips per second and the time left.

On a terminal it is one line redrawn in place (a tqdm bar: done/total, rate, ETA, with the ok and
failed counts). Anywhere else (a log file, a pipe, a batch system) redrawing floods the log, so
it prints whole lines: one when the first shard is in, then one when a shard comes in at least
`interval` seconds (default a minute) after the last line, and one at the end when shards came
in since. A run therefore never writes more lines than it has shards, and over hours about one
a minute:

    [21:10:31] preprocess: 1,024/2,000 clips (51.2 %), 0 failed, 2.88 clips/s, 5m39s left (16/32 shards)
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

INTERVAL_S = 60.0


def duration(seconds: float) -> str:
    """`1h02m`, `58m51s`, `42s`."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressBar:
    """Clips done and failed, clips/s, time left. `stream` (default stderr) decides the form:
    a redrawn bar on a terminal, whole lines at most every `interval` seconds elsewhere."""

    def __init__(self, total: int, enabled: bool, shards: int = 0, stream: TextIO | None = None,
                 interval: float = INTERVAL_S, clock=time.monotonic, label: str = "preprocess"):
        self.label = label
        self.total, self.shards, self.interval, self.clock = total, shards, interval, clock
        self.ok = self.failed = self.shards_done = 0
        self.start = clock()
        self.last_line: float | None = None
        self.printed = 0   # clips done as of the last line printed
        self.stream = stream or sys.stderr
        self.bar = None
        self.enabled = bool(enabled and total)
        if self.enabled and is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="clip", desc=label, dynamic_ncols=True, file=self.stream)

    @property
    def done(self) -> int:
        return self.ok + self.failed

    def rate(self) -> float:
        return self.done / max(self.clock() - self.start, 1e-9)

    def update(self, ok: int, failed: int) -> None:
        """A shard came in with `ok` and `failed` clips."""
        self.ok += ok
        self.failed += failed
        self.shards_done += 1
        if self.bar is not None:
            self.bar.set_postfix(ok=self.ok, failed=self.failed)
            self.bar.update(ok + failed)
        elif self.enabled and (self.last_line is None or self.clock() - self.last_line >= self.interval):
            self._line()

    def line(self) -> str:
        rate = self.rate()
        left = duration((self.total - self.done) / rate) + " left" if rate > 0 and self.done < self.total else "done"
        shards = f" ({self.shards_done}/{self.shards} shards)" if self.shards else ""
        return (f"[{time.strftime('%H:%M:%S')}] {self.label}: {self.done:,}/{self.total:,} clips "
                f"({100 * self.done / max(self.total, 1):.1f} %), {self.failed:,} failed, {rate:.2f} clips/s, "
                f"{left}{shards}")

    def _line(self) -> None:
        self.last_line, self.printed = self.clock(), self.done
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.shards_done and self.printed != self.done:
            self._line()


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
