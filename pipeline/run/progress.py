"""The progress bar of the pipeline's commands: clips done and failed, and clips per second."""

from __future__ import annotations

import time


class ProgressBar:
    """Clips done, failed, clips/s — on a tqdm bar when enabled."""

    def __init__(self, total: int, enabled: bool):
        self.ok = self.failed = 0
        self.start = time.perf_counter()
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="clip", desc="preprocess", dynamic_ncols=True)

    def update(self, ok: int, failed: int) -> None:
        self.ok += ok
        self.failed += failed
        if self.bar is not None:
            rate = (self.ok + self.failed) / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix(ok=self.ok, failed=self.failed, clips_s=f"{rate:.2f}")
            self.bar.update(ok + failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
