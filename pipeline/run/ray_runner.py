"""The one place that talks to Ray: start or join a cluster, run stages over shard jobs.

Ray's argument names change between releases; keeping every call here means one file to
update. Each stage becomes a Ray Data `map_batches` over a fixed pool of actors (one shard
job per batch) with the stage's declared CPUs and GPUs, so the model loads once per actor and
every core and GPU of the machine or cluster is used. All of a pool's actors start at once and
each is handed one shard at a time, so none idles while another has shards queued. Results
stream back in completion order, so the driver commits each shard as soon as it is done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator, Sequence

import numpy as np

from pipeline.run.stages import ShardJob, Stage


SHARD_ATTEMPTS = 3  # tries per shard when its worker dies (killed, out of memory, segfault)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> dict[str, float]:
    """Join `address` (a running cluster) or start a quiet local instance; return its resources."""
    import ray

    # Ray's C++ core writes its warnings straight to the terminal (e.g. about actor restarts,
    # which we rely on); only fatal ones should reach the user. Its logs stay in its session
    # folder, /tmp/ray/session_latest/logs.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if not ray.is_initialized():
        local = {} if address else {"num_cpus": num_cpus or os.cpu_count()}
        # Without an address, "local" starts our own instance whatever Ray's record of the last
        # cluster on this machine (ray_current_cluster in its temp folder) or RAY_ADDRESS says:
        # after such a cluster is gone, address=None would try to join it and fail.
        with _stderr_silenced():  # the core announces the log level it just read, on stderr
            ray.init(address=address or "local", include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False, configure_logging=True, **local)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # A shard that kills its worker SHARD_ATTEMPTS times (a clip that crashes the decoder, or
    # runs it out of memory) is dropped, not the whole run: run_stages' caller sees it missing.
    ctx.max_errored_blocks = -1
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray.cluster_resources()


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment (C++ code writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


class _StageActor:
    """Adapts a Stage to Ray Data's callable-class protocol."""

    def __init__(self, stage: Stage):
        self.stage = stage
        stage.setup()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = [self.stage.process(ShardJob.from_json(str(text))).to_json() for text in batch["job"]]
        return {"job": np.array(done, dtype=object)}


def run_stages(jobs: Sequence[ShardJob], stages: Sequence[tuple[Stage, int]]) -> Iterator[ShardJob]:
    """Push `jobs` through `stages`, each (stage, workers): a pool of `workers` actors (fewer when
    there are fewer jobs); yield jobs as they finish the last stage. A job whose worker died
    SHARD_ATTEMPTS times is not yielded: the caller reports the jobs that did not come back."""
    import ray

    if not jobs:
        return
    ds = ray.data.from_items([{"job": job.to_json()} for job in jobs], override_num_blocks=len(jobs))
    for stage, workers in stages:
        ds = ds.map_batches(
            _StageActor, fn_constructor_kwargs={"stage": stage}, batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, len(jobs))),
                                               max_tasks_in_flight_per_actor=1),
            num_cpus=stage.num_cpus, num_gpus=stage.num_gpus or None,
            # A dead actor is restarted and its shard retried from the start, SHARD_ATTEMPTS
            # times in all (Ray's default, forever, would loop on a clip that kills every
            # worker); the working tar is rewritten whole, so nothing is duplicated.
            max_restarts=-1, max_task_retries=SHARD_ATTEMPTS - 1)
    for row in ds.iter_rows():
        yield ShardJob.from_json(str(row["job"]))
