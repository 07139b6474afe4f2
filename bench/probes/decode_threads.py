"""Probe for issue 21: decoding the hd set's 4:2:0 planes in 2 processes, FFmpeg's threads against one.

    PYTHONPATH=. python bench/probes/decode_threads.py [--clips 28] [--work-dir /tmp/dfer-bench]

Needs the hd set that bench/pipeline_speed.py makes in the work folder. Prints the wall time and
the per-process milliseconds per frame of each setting, twice (docs/benchmarks.md, issue 21, item 4).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def decode_planes(job: tuple[str, str]) -> tuple[float, int]:
    import av
    import numpy as np

    path, threads = job
    start, frames = time.perf_counter(), 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        if threads == "auto":
            stream.thread_type = "AUTO"
        else:
            stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            np.frombuffer(frame.planes[0], np.uint8).copy()
            frames += 1
    return time.perf_counter() - start, frames


def _warm(_: int) -> int:
    import av  # noqa: F401

    time.sleep(0.3)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=28)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dfer-bench"))
    args = parser.parse_args()
    paths = sorted(str(p) for p in (args.work_dir / "sets" / "hd" / "videos").glob("*.mp4"))[: args.clips]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_warm, range(4)))
        for _ in range(2):
            for threads in ("auto", "one"):
                start = time.perf_counter()
                done = list(pool.map(decode_planes, [(p, threads) for p in paths], chunksize=1))
                frames = sum(n for _, n in done)
                print(f"{threads}: wall {time.perf_counter() - start:.2f} s, "
                      f"{1e3 * sum(s for s, _ in done) / frames:.2f} ms/frame per process")


if __name__ == "__main__":
    main()
